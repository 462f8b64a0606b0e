"""Audit throughput: `cleaner.audit` reading every file's form, against a plain Pillow loop.

Data, in a temp folder outside the repository: a copy of ../shared/data/faces140k (256 px
JPEGs; skipped when absent) and N generated 256 px JPEGs (N=2,000 by default, ``--n``).

The peer, timed in the same run on the same files: one process that reads each file, hashes it
with sha256 and reads with Pillow the properties the audit records (format, size, mode, info,
quantisation tables, subsampling, EXIF make/model/software). ``audit_files_s`` is the audit's
reading phase (headers through cleaner.images, the C2PA check, the engine's pool, the cache
written); ``total_s`` adds the scoring (per-property AUCs, the out-of-fold trees, the
bootstrap); ``cached_files_s`` is a second reading, served by the cache. Prints one JSON line
per data set.

    nice .venv/bin/python bench/bench_audit.py
    nice .venv/bin/python bench/bench_audit.py --n 20000 --workers 2
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin

from cleaner.audit import read_all, score
from cleaner.dataset import Workspace

FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces140k"


def peer_loop(root: Path) -> int:
    """The plain way: one process, read, sha256, Pillow header and the same metadata."""
    n = 0
    for p in sorted(root.rglob("*")):
        if not p.is_file() or ".cleaner" in p.parts:
            continue
        data = p.read_bytes()
        hashlib.sha256(data).hexdigest()
        try:
            with Image.open(io.BytesIO(data)) as im:
                _ = (im.format, im.size, im.mode, dict(im.info))
                if im.format == "JPEG":
                    _ = (im.quantization, JpegImagePlugin.get_sampling(im))  # type: ignore[attr-defined]
                ex = im.getexif()
                _ = (ex.get(0x010F), ex.get(0x0110), ex.get(0x0131))
        except Exception:
            pass
        n += 1
    return n


def copy_faces(dst: Path) -> None:
    for cls, alias in (("real", "real_images"), ("fake", "fake_images")):
        (dst / alias).mkdir(parents=True)
        for p in sorted((FACES / cls).iterdir()):
            shutil.copyfile(p, dst / alias / p.name)


def generate(dst: Path, n: int, seed: int = 0) -> None:
    """``n`` 256 px JPEGs (quality 75-95), half in each class folder."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (256, 512, 3), dtype=np.uint8)
    for alias in ("real_images", "fake_images"):
        (dst / alias).mkdir(parents=True)
    for i in range(n):
        arr = np.roll(base, int(rng.integers(0, 512)), axis=1)[:, :256] ^ np.uint8(i % 251)
        folder = "real_images" if i % 2 == 0 else "fake_images"
        Image.fromarray(np.ascontiguousarray(arr), "RGB").save(
            dst / folder / f"{i:06d}.jpg", quality=int(rng.integers(75, 96))
        )


def measure(root: Path, workers: int | None) -> dict[str, object]:
    t = time.perf_counter()
    n_peer = peer_loop(root)
    peer_s = time.perf_counter() - t
    t = time.perf_counter()
    ws = Workspace.open(root)
    files, read = read_all(ws, workers=workers, progress=False)
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    _, shortcut = score(ws, files)
    score_s = time.perf_counter() - t
    t = time.perf_counter()
    again, reread = read_all(Workspace.open(root), workers=workers, progress=False)
    cached_s = time.perf_counter() - t
    n = len(files)
    assert n == n_peer == len(again) and read == n and reread == 0, (n, n_peer, read, reread)
    return {
        "files": n,
        "audit_files_s": round(n / read_s, 1),
        "peer_files_s": round(n / peer_s, 1),
        "speedup_vs_peer": round(peer_s / read_s, 2),
        "score_s": round(score_s, 2),
        "total_s": round(read_s + score_s, 2),
        "cached_files_s": round(n / cached_s, 1),
        "shortcut_auc": round(shortcut.auc, 3),
        "interval": [round(shortcut.low, 3), round(shortcut.high, 3)],
        "named": shortcut.named,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="generated 256 px JPEGs (default 2,000)")
    ap.add_argument("--workers", type=int, default=None, help="audit workers (default: CPUs)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cleaner-bench-audit-") as tmp:
        sets = []
        if (FACES / "real").is_dir():
            copy_faces(Path(tmp) / "faces140k")
            sets.append("faces140k")
        generate(Path(tmp) / "generated", args.n)
        sets.append("generated")
        for name in sets:
            load = round(os.getloadavg()[0], 1)
            row = {"bench": "audit", "data": name, "cpus": os.cpu_count(), "load": load,
                   "workers": args.workers, **measure(Path(tmp) / name, args.workers)}  # fmt: skip
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
