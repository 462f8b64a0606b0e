"""Hashing throughput on faces140k: cleaner's hashing against imagededup's
``PHash().encode_images`` on the same files, in the same run, with the same number of workers.

The files are copied to a temp folder outside the repository (flat, as imagededup reads one
folder). Both sides run ``--repeats`` times, alternating, and the best time counts (the machine
is shared). cleaner computes more per image than imagededup (the hash, the hashes of the mirror
image and of the central crop, and keeps the 32 x 32 grey pixels) but decodes on the fast path
(JPEG draft mode at 1/8 scale). File keys are names, as the sha256 comes from the manifest in
real runs. ``cached`` is a rerun that finds every hash in the sha256 cache. Prints one JSON line;
``ratio`` = cleaner images/s / imagededup images/s.

    .venv/bin/python bench/bench_hash.py
    .venv/bin/python bench/bench_hash.py --repeats 5 --method phash
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _imagededup

from cleaner.dataset import Workspace
from cleaner.engine import default_workers
from cleaner.hashing import hash_files

FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces140k"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--method", default="phash")
    ap.add_argument("--workers", type=int, default=default_workers())
    args = ap.parse_args()
    if not FACES.is_dir():
        print(json.dumps({"bench": "hash", "skipped": f"{FACES} not found"}))
        return
    mod = _imagededup.load()
    peer_cls = {"phash": "PHash", "dhash": "DHash", "whash": "WHash", "ahash": "AHash"}
    with tempfile.TemporaryDirectory(prefix="cleaner-bench-hash-") as tmp:
        folder = Path(tmp) / "faces"
        folder.mkdir()
        for f in sorted(FACES.glob("*/*.jpg")):
            shutil.copy(f, folder / f"{f.parent.name}_{f.name}")
        files = sorted(folder.iterdir())
        for f in files:  # both sides start from a warm page cache
            f.read_bytes()
        items = [(str(f), f.name) for f in files]
        ours: list[float] = []
        theirs: list[float] = []
        cache_root = Path(tmp) / "root"
        for _ in range(args.repeats):
            if mod is not None:
                enc = getattr(mod, peer_cls[args.method])(verbose=False)
                t0 = time.perf_counter()
                out = enc.encode_images(image_dir=str(folder), num_enc_workers=args.workers)
                theirs.append(time.perf_counter() - t0)
                assert len(out) == len(files)
            t0 = time.perf_counter()
            run = hash_files(items, args.method, workers=args.workers, progress=False)
            ours.append(time.perf_counter() - t0)
            assert len(run.table) == len(files)
        hash_files(
            items,
            args.method,
            ws=Workspace.open(cache_root, require_classes=False),
            workers=args.workers,
            progress=False,
        )
        t0 = time.perf_counter()
        cached = hash_files(
            items,
            args.method,
            ws=Workspace.open(cache_root, require_classes=False),
            workers=args.workers,
        )
        t_cached = time.perf_counter() - t0
        assert cached.computed == 0
    n = len(files)
    res: dict[str, Any] = {
        "bench": "hash",
        "method": args.method,
        "images": n,
        "workers": args.workers,
        "cleaner_images_per_s": round(n / min(ours), 1),
        "cleaner_cached_images_per_s": round(n / t_cached, 1),
    }
    if theirs:
        res["imagededup_images_per_s"] = round(n / min(theirs), 1)
        res["ratio"] = round(min(theirs) / min(ours), 2)
    else:
        res["imagededup"] = "not installed (see bench/_imagededup.py)"
    print(json.dumps(res))


if __name__ == "__main__":
    main()
