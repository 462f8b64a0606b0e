"""Precision and recall of near-duplicate detection per transform kind, beside imagededup.

Builds, in a temporary folder outside the repository, ``--originals`` faces from
../shared/data/faces140k (half real, half fake) and five transformed copies of each: half-size,
JPEG quality 40, +30 % brightness, a 5 % crop at a random offset, a mirror image. Then:

- cleaner: hashes (pHash on the fast-path decode), candidate pairs within ``--radius`` (hash,
  mirror hash, crop hash), confirmed by the aligned pixel check (``cleaner.dedupe``);
- imagededup: ``PHash().encode_images`` + ``find_duplicates`` at its default radius 10.

A found pair is true when both files come from the same original. faces140k itself holds a few
near-identical StyleGAN faces (``SOURCE_DUPLICATES``, checked by eye): pairs between those are
left out of both tools' counts. Prints one JSON line.

    .venv/bin/python bench/bench_dedupe_quality.py              # 200 faces + 1,000 copies
    .venv/bin/python bench/bench_dedupe_quality.py --full       # all 2,200 faces + 11,000 copies
    .venv/bin/python bench/bench_dedupe_quality.py --sweep      # cleaner at radius 6..14 too
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _imagededup

from cleaner.dedupe import (
    DEFAULT_MAX_DISTANCE,
    DEFAULT_MIN_CORRELATION,
    candidate_pairs,
    verify_pairs,
)
from cleaner.hashing import hash_files

FACES = Path(
    os.environ.get(
        "FACES140K", Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces140k"
    )
)
KINDS = ("half", "jpeg40", "bright", "crop5", "mirror")
SOURCE_DUPLICATES = {
    frozenset(p)
    for p in (
        ("fake/0B925CPFSK.jpg", "fake/1A8SFV254Q.jpg"),
        ("fake/0C3SNOUVEY.jpg", "fake/0CSC8SIMA9.jpg"),
        ("fake/0GTFMAQMQQ.jpg", "fake/0R4POY5DTW.jpg"),
        ("fake/0MJ9X634NH.jpg", "fake/0PUM4O6RRM.jpg"),
        ("fake/0YYEKMF3GY.jpg", "fake/1DKCGEETES.jpg"),
    )
}
"""Pairs of faces140k files that are near-identical already (different seeds, same face)."""


def build(out: Path, n: int, seed: int = 0) -> dict[str, tuple[str, str]]:
    """Write originals and copies; file name -> (source file, kind)."""
    real = sorted((FACES / "real").glob("*.jpg"))
    fake = sorted((FACES / "fake").glob("*.jpg"))
    rng = random.Random(seed)
    chosen = real[: (n + 1) // 2] + fake[: n // 2]
    truth: dict[str, tuple[str, str]] = {}
    out.mkdir(parents=True, exist_ok=True)
    for k, f in enumerate(chosen):
        src = f"{f.parent.name}/{f.name}"
        im = Image.open(f).convert("RGB")
        w, h = im.size
        base = f"{k:05d}"
        cw, ch = round(w * 0.95), round(h * 0.95)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        variants = {
            "orig": (im, 95),
            "half": (im.resize((w // 2, h // 2), Image.Resampling.LANCZOS), 95),
            "jpeg40": (im, 40),
            "bright": (ImageEnhance.Brightness(im).enhance(1.3), 95),
            "crop5": (im.crop((x, y, x + cw, y + ch)), 95),
            "mirror": (im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 95),
        }
        for kind, (v, q) in variants.items():
            name = f"{base}_{kind}.jpg"
            v.save(out / name, quality=q)
            truth[name] = (src, kind)
    return truth


def score(pairs: set[frozenset[str]], truth: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """Recall per kind (original-copy pairs found) and precision (overall and per kind)."""
    tp = fp = 0
    fp_kind = dict.fromkeys(KINDS, 0)
    tp_kind = dict.fromkeys(KINDS, 0)
    found_kind = dict.fromkeys(KINDS, 0)
    n = sum(1 for s, k in truth.values() if k == "orig")
    for p in pairs:
        a, b = sorted(p)
        (sa, ka), (sb, kb) = truth[a], truth[b]
        if sa != sb and frozenset((sa, sb)) in SOURCE_DUPLICATES:
            continue
        kinds = {ka, kb} - {"orig"}
        if sa == sb:
            tp += 1
            for k in kinds:
                tp_kind[k] += 1
            if "orig" in (ka, kb):
                found_kind[(kinds or {"orig"}).pop()] += 1
        else:
            fp += 1
            for k in kinds:
                fp_kind[k] += 1
    return {
        "precision": round(tp / max(1, tp + fp), 4),
        "false_pairs": fp,
        "true_pairs": tp,
        "recall": {k: round(found_kind[k] / n, 3) for k in KINDS},
        "precision_by_kind": {
            k: round(tp_kind[k] / max(1, tp_kind[k] + fp_kind[k]), 4) for k in KINDS
        },
    }


def run_cleaner(folder: Path, names: list[str], radius: int, min_corr: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    run = hash_files([(str(folder / n), n) for n in names], "phash", workers=None)
    table = run.table
    pairs = candidate_pairs(table, radius)
    t_search = time.perf_counter() - t0
    ver = verify_pairs(table, pairs, min_corr)
    t_verify = time.perf_counter() - t0 - t_search
    sha = table.sha256
    found = {frozenset((str(sha[a]), str(sha[b]))) for a, b in zip(ver.a, ver.b, strict=True)}

    unchecked = {
        frozenset((str(sha[a]), str(sha[b]))) for a, b in zip(pairs.a, pairs.b, strict=True)
    }
    assert ver.tested is not None
    ta, tb, tv = ver.tested
    sweep = {}
    for t in (0.6, 0.7, 0.75, 0.8, 0.85, 0.9):
        keep = tv >= t
        got = {
            frozenset((str(sha[a]), str(sha[b]))) for a, b in zip(ta[keep], tb[keep], strict=True)
        }
        r = score(got, TRUTH)
        sweep[t] = {"false_pairs": r["false_pairs"], "recall": r["recall"]}
    return {
        "threshold_sweep": sweep,
        "seconds": round(time.perf_counter() - t0, 2),
        "seconds_search": round(t_search, 2),
        "seconds_verify": round(t_verify, 2),
        "seconds_calibrate": round(ver.seconds_calibrate, 2),
        "verified_pairs": ver.calibration.tested_pairs,
        "us_per_verified_pair": round(
            1e6 * ver.seconds_score / max(1, ver.calibration.tested_pairs), 1
        ),
        "radius": radius,
        "min_correlation": min_corr,
        "candidates": int(pairs.a.size),
        "calibration": ver.calibration.to_json(),
        "confirmed": score(found, TRUTH),
        "hash_only": score(unchecked, TRUTH),
    }


def run_imagededup(folder: Path, radius: int = 10) -> dict[str, Any] | None:
    mod = _imagededup.load()
    if mod is None:
        return None
    t0 = time.perf_counter()
    ph = mod.PHash(verbose=False)
    enc = ph.encode_images(image_dir=str(folder))
    dups = ph.find_duplicates(
        encoding_map=enc, max_distance_threshold=radius, search_method="brute_force_cython"
    )
    found = {frozenset((a, b)) for a, bs in dups.items() for b in bs}
    return {"seconds": round(time.perf_counter() - t0, 2), "radius": radius, **score(found, TRUTH)}


TRUTH: dict[str, tuple[str, str]] = {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--originals", type=int, default=200)
    ap.add_argument("--full", action="store_true", help="all 2,200 faces")
    ap.add_argument("--radius", type=int, default=DEFAULT_MAX_DISTANCE)
    ap.add_argument("--min-correlation", type=float, default=DEFAULT_MIN_CORRELATION)
    ap.add_argument("--sweep", action="store_true", help="also cleaner at radius 6, 8, 12, 14")
    args = ap.parse_args()
    if not FACES.is_dir():
        print(json.dumps({"bench": "dedupe_quality", "skipped": f"{FACES} not found"}))
        return
    n = 2200 if args.full else args.originals
    with tempfile.TemporaryDirectory(prefix="cleaner-bench-dq-") as tmp:
        folder = Path(tmp)
        TRUTH.update(build(folder, n))
        names = sorted(TRUTH)
        ours = run_cleaner(folder, names, args.radius, args.min_correlation)
        sweep = (
            {r: run_cleaner(folder, names, r, args.min_correlation) for r in (6, 8, 12, 14)}
            if args.sweep
            else None
        )
        peer = run_imagededup(folder)
    out: dict[str, Any] = {
        "bench": "dedupe_quality",
        "images": len(TRUTH),
        "originals": n,
        "cleaner": ours,
        "imagededup": peer if peer is not None else "not installed (see bench/_imagededup.py)",
    }
    if sweep:
        out["sweep"] = {
            r: {
                "candidates": v["candidates"],
                "precision": v["confirmed"]["precision"],
                "recall": v["confirmed"]["recall"],
                "hash_only_precision": v["hash_only"]["precision"],
            }
            for r, v in sweep.items()
        }
    if peer is not None:
        out["precision_ratio"] = round(
            ours["confirmed"]["precision"] / max(1e-9, peer["precision"]), 3
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
