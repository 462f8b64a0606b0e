"""`cleaner report` at scale: a 50,000-row dataset with thousands of items to show.

In a temp folder outside the repository: the images of ../shared/data/faces140k (2,200 JPEGs at
256 px; generated 256 px JPEGs when absent), a manifest of 50,000 rows (the real files plus
synthetic rows, 2% of them unreadable), a plan with one move or review item per image (so every
image needs a thumbnail), duplicates.json with 500 pairs, and split.csv.

Timed in the same run on the same images:

- ``report_cold``: :func:`cleaner.report.build_report` from nothing (thumbnails made in
  parallel, JPEG draft decoding);
- ``report_warm``: the same again (every thumbnail found in the sha256 cache);
- ``peer``: the plain way to make the same thumbnails: one process, ``Image.open`` + full
  decode + ``Image.thumbnail`` + save, per image.

Prints one JSON line: thumbnails/s for both, ``speedup_vs_peer``, ``warm_speedup`` (cold /
warm), the page's size and its number of ``<img>`` tags.

    .venv/bin/python bench/bench_report.py             # 50,000 manifest rows
    .venv/bin/python bench/bench_report.py --rows 200000
    .venv/bin/python bench/bench_report.py --photos 600   # camera-sized JPEGs: draft decoding
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cleaner.hashing import file_sha256
from cleaner.manifest import COLUMNS
from cleaner.report import build_report

FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces140k"


def images_into(root: Path, n_gen: int, photos: int = 0) -> list[tuple[str, str]]:
    """Copy faces140k (or generate) into ROOT's class folders; (relpath, label) per image.
    ``photos``: instead, that many generated 1600 x 1200 JPEGs (camera-sized pictures)."""
    out: list[tuple[str, str]] = []
    for label in ("real", "fake"):
        d = root / f"{label}_images"
        d.mkdir(parents=True)
        src = FACES / label
        if photos:
            rng = np.random.default_rng(2 if label == "real" else 3)
            for i in range(photos // 2):
                arr = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
                im = Image.fromarray(arr).resize((1600, 1200), Image.Resampling.BICUBIC)
                im.save(d / f"p{i:05d}.jpg", "JPEG", quality=90)
                out.append((f"{label}_images/p{i:05d}.jpg", label))
        elif src.is_dir():
            for p in sorted(src.iterdir()):
                if p.is_file():
                    shutil.copyfile(p, d / p.name)
                    out.append((f"{label}_images/{p.name}", label))
        else:
            rng = np.random.default_rng(0 if label == "real" else 1)
            for i in range(n_gen // 2):
                arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                im = Image.fromarray(arr).resize((256, 256), Image.Resampling.BICUBIC)
                im.save(d / f"{i:05d}.jpg", "JPEG", quality=90)
                out.append((f"{label}_images/{i:05d}.jpg", label))
    return out


def write_state(root: Path, files: list[tuple[str, str]], rows: int) -> dict[str, str]:
    sha = {rel: file_sha256(root / rel) for rel, _ in files}
    state = root / ".cleaner"
    (state / "plans").mkdir(parents=True)
    with open(state / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for rel, label in files:
            w.writerow({c: "" for c in COLUMNS} | {"path": rel, "label": label, "sha256": sha[rel],
                       "bytes": 1, "width": 256, "height": 256, "format": "JPEG",
                       "status": "ok", "mtime_ns": 0})  # fmt: skip
        for i in range(rows - len(files)):
            label = ("real", "fake")[i % 2]
            bad = i % 50 == 0
            w.writerow({c: "" for c in COLUMNS} | {
                "path": f"{label}_images/synthetic/{i:06d}.jpg", "label": label,
                "sha256": f"{i:064x}", "bytes": 1, "width": 0 if bad else 256,
                "height": 0 if bad else 256, "format": "" if bad else "JPEG",
                "status": "truncated" if bad else "ok", "mtime_ns": 0,
                "reason": "image data is truncated" if bad else ""})  # fmt: skip
    moves, review = [], []
    for k, (rel, label) in enumerate(files):
        to = "fake" if label == "real" else "real"
        p = float((k * 7919) % 1000) / 1000
        item = {"path": rel, "sha256": sha[rel], "from_label": label, "to_label": to,
                "dst": rel.replace(f"{label}_images", f"{to}_images", 1),
                "evidence": [{"file": "a.json", "prob_fake": p},
                             {"file": "b.json", "prob_fake": 1 - p}]}  # fmt: skip
        (review if k % 3 == 0 else moves).append({**item, "why": "split"} if k % 3 == 0 else item)
    plan = {"format": "cleaner.plan.v1", "run_id": "bench", "created": "2026-11-23T00:00:00Z",
            "rule": "unanimous", "min_confidence": 0.9, "applied": False,
            "predictions": [{"file": "a.json"}, {"file": "b.json"}],
            "moves": moves, "review": review}  # fmt: skip
    (state / "plans" / "bench.json").write_text(json.dumps(plan))
    groups = []
    for k in range(0, min(1000, len(files) - 1), 2):
        a, b = files[k][0], files[k + 1][0]
        groups.append({"kept": a, "conflict": files[k][1] != files[k + 1][1], "members": [
            {"path": a, "label": files[k][1], "sha256": sha[a], "distance": 0},
            {"path": b, "label": files[k + 1][1], "sha256": sha[b], "distance": 6}]})  # fmt: skip
    (state / "duplicates.json").write_text(
        json.dumps({"method": "phash", "max_distance": 8, "groups": groups})
    )
    with open(state / "split.csv", "w") as f:
        f.write("path,sha256,label,split,group\n")
        for k, (rel, label) in enumerate(files):
            f.write(f"{rel},{sha[rel]},{label},{('train', 'val', 'test')[k % 3]},{k}\n")
    return sha


def peer(root: Path, files: list[tuple[str, str]], out: Path) -> float:
    """Plain single-process thumbnails: full decode, Image.thumbnail, save."""
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    for i, (rel, _) in enumerate(files):
        with Image.open(root / rel) as im:
            im = im.convert("RGB")
            im.thumbnail((160, 160))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=80)
            (out / f"{i}.jpg").write_bytes(buf.getvalue())
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=50_000, help="manifest rows")
    ap.add_argument("--generated", type=int, default=2_000, help="images when faces140k is absent")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--photos", type=int, default=0, help="N generated 1600x1200 JPEGs instead")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-report-"))
    try:
        root = work / "root"
        files = images_into(root, args.generated, args.photos)
        write_state(root, files, max(args.rows, len(files)))
        page = work / "out" / "report.html"
        t0 = time.perf_counter()
        cold = build_report(root, page, workers=args.workers, progress=False, rescan=False)
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = build_report(root, page, workers=args.workers, progress=False, rescan=False)
        t_warm = time.perf_counter() - t0
        t_peer = peer(root, files, work / "peer")
        html = page.read_text(encoding="utf-8")
        n = cold.thumbs_made
        print(json.dumps({
            "bench": "report",
            "data": "photos-1600x1200"
            if args.photos
            else ("faces140k" if (FACES / "real").is_dir() else "generated"),
            "manifest_rows": max(args.rows, len(files)),
            "items_shown": sum(cold.counts[k] for k in ("moves", "review", "unreadable"))
            + cold.counts["duplicates"],
            "thumbnails": n,
            "workers": args.workers or len(os.sched_getaffinity(0)),
            "report_cold_s": round(t_cold, 2),
            "report_warm_s": round(t_warm, 2),
            "warm_made": warm.thumbs_made,
            "thumbs_per_s": round(n / t_cold, 1),
            "peer_thumbs_per_s": round(len(files) / t_peer, 1),
            "speedup_vs_peer": round((n / t_cold) / (len(files) / t_peer), 2),
            "warm_speedup": round(t_cold / t_warm, 1),
            "page_mib": round(len(html.encode()) / 2**20, 2),
            "img_tags_in_page": html.count("<img"),
        }))  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
