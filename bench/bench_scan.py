"""Scan throughput: `cleaner.manifest.scan` (first scan and rescan) against a plain loop.

Two data sets, each in a temp folder outside the repository, class folders under aliases
(``REAL``/``ai``):

- faces140k: a copy of ../shared/data/faces140k (skipped when absent);
- generated: N small images (32-64 px, JPEG and PNG); N=2,000 by default so ``make bench``
  stays short, ``--full`` (or ``BENCH_SCAN_N=20000``) for 20,000.

The peer, timed in the same run on the same files: a plain single-process loop that reads each
file once, hashes it with sha256 and decodes it fully with Pillow (what scan does per file,
without the pool, the format sniffing, the manifest or the incremental check). Prints one JSON
line: images/s for each, ``speedup_vs_peer`` and ``rescan_speedup`` (first scan / rescan).

    .venv/bin/python bench/bench_scan.py            # faces140k + 2,000 generated
    .venv/bin/python bench/bench_scan.py --full     # faces140k + 20,000 generated
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cleaner.manifest import scan

FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces140k"


def peer_loop(root: Path) -> int:
    """The plain way: one process, read once, sha256, Pillow open + load."""
    n = 0
    for p in sorted(root.rglob("*")):
        if not p.is_file() or ".cleaner" in p.parts:
            continue
        data = p.read_bytes()
        hashlib.sha256(data).hexdigest()
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
        except Exception:
            pass
        n += 1
    return n


def copy_faces(dst: Path) -> int:
    n = 0
    for cls, alias in (("real", "REAL"), ("fake", "ai")):
        (dst / alias).mkdir(parents=True)
        for p in sorted((FACES / cls).iterdir()):
            if p.is_file():
                shutil.copyfile(p, dst / alias / p.name)
                n += 1
    return n


def generate(dst: Path, n: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    for alias in ("REAL", "ai"):
        (dst / alias).mkdir(parents=True)
    base = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for i in range(n):
        size = int(rng.integers(32, 65))
        shift = int(rng.integers(0, 64))
        arr = np.roll(base, shift, axis=1)[:size, :size] ^ np.uint8(i % 251)
        folder = "REAL" if i % 2 == 0 else "ai"
        im = Image.fromarray(np.ascontiguousarray(arr), "RGB")
        if i % 3 == 0:
            im.save(dst / folder / f"{i:06d}.png", compress_level=1)
        else:
            im.save(dst / folder / f"{i:06d}.jpg", quality=85)
    return n


def measure(root: Path, workers: int | None) -> dict[str, object]:
    t = time.perf_counter()
    n_peer = peer_loop(root)
    peer_s = time.perf_counter() - t
    first = scan(root, workers=workers, progress=False)
    again = scan(root, workers=workers, progress=False)
    n = len(first.rows)
    assert n == n_peer, (n, n_peer)
    assert again.read == 0 and again.reused == n
    return {
        "files": n,
        "ok": sum(1 for r in first.rows if r.ok),
        "scan_s": round(first.seconds, 3),
        "scan_img_s": round(n / first.seconds, 1),
        "rescan_s": round(again.seconds, 3),
        "rescan_img_s": round(n / again.seconds, 1),
        "rescan_speedup": round(first.seconds / again.seconds, 1),
        "peer_s": round(peer_s, 3),
        "peer_img_s": round(n / peer_s, 1),
        "speedup_vs_peer": round(peer_s / first.seconds, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="20,000 generated images")
    ap.add_argument("--n", type=int, default=None, help="generated images (default 2,000)")
    ap.add_argument("--workers", type=int, default=None, help="scan workers (default: CPUs)")
    args = ap.parse_args()
    n = args.n or (20_000 if args.full else int(os.environ.get("BENCH_SCAN_N", "2000")))
    out: dict[str, object] = {"bench": "scan", "cpus": os.cpu_count(), "workers": args.workers}
    with tempfile.TemporaryDirectory(prefix="cleaner-bench-scan-") as tmp:
        if (FACES / "real").is_dir():
            faces = Path(tmp) / "faces"
            copy_faces(faces)
            out["faces140k"] = measure(faces, args.workers)
        else:
            out["faces140k"] = "skipped: ../shared/data/faces140k is absent"
        gen = Path(tmp) / "generated"
        t = time.perf_counter()
        generate(gen, n)
        out["generated_setup_s"] = round(time.perf_counter() - t, 1)
        out["generated"] = measure(gen, args.workers)
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
