"""Memory and time of dedupe's verification step (``cleaner.dedupe.verify_pairs``) at scale.

A synthetic table of ``--images`` grey 32 x 32 images (smooth random: 12 x 12 noise,
bilinear), no files: ``--copies`` of them (a fraction) are replaced by a copy of another image
(mirrored, cropped 5 % at 2 % from the left, brightened +30 % or with noise), and the candidate
pairs are those copies with their originals plus ``--random-pairs`` (a fraction of the images)
random pairs, as the hash search would hand them over (``Pairs`` with the pre-check passed).
Then ``verify_pairs`` runs as in ``cleaner dedupe``: the basis, the 100,000 null pairs, the
calibration, the candidates, the two-hop pairs.

``--before`` runs it with the scorer as it was before features were computed per pair: both
orientations of every image of the table at once (``(N, rows, 256)`` float32 each: 10 rows,
20 KiB an image, before the 90 % windows; ``verify._FEATURE_ROWS`` = 26, 52 KiB, since).
Prints one JSON line: seconds, peak resident memory (``ru_maxrss``; run it under
``/usr/bin/time -v`` too), planted copies accepted, random pairs accepted, the calibration.
``--scores-out``/``--compare`` save every tested pair's score and compare two runs.

    nice /usr/bin/time -v .venv/bin/python bench/bench_verify_scale.py --images 100000
    nice /usr/bin/time -v .venv/bin/python bench/bench_verify_scale.py --images 100000 --before
    nice /usr/bin/time -v .venv/bin/python bench/bench_verify_scale.py --images 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

from cleaner import dedupe, verify
from cleaner.hashing import CROP_KEEP, GREY_PIXELS, HASH_SIDE, HashTable, resample_matrix

_GEN_CHUNK = 65536
KINDS = ("mirror", "crop", "bright", "noise")


def _upsample(k: int) -> np.ndarray:
    pos = np.linspace(0, k - 1, HASH_SIDE)
    lo = np.minimum(np.floor(pos).astype(int), k - 2)
    w = pos - lo
    m = np.zeros((HASH_SIDE, k), dtype=np.float32)
    m[np.arange(HASH_SIDE), lo] = 1 - w
    m[np.arange(HASH_SIDE), lo + 1] = w
    return m


def synthetic(
    n: int, copies: int, random_pairs: int, seed: int
) -> tuple[np.ndarray, dedupe.Pairs, np.ndarray]:
    """The grey table, the candidate pairs and which of them are planted copies."""
    rng = np.random.default_rng(seed)
    s, up = HASH_SIDE, _upsample(12)
    grey = np.empty((n, GREY_PIXELS), dtype=np.uint8)
    for c0 in range(0, n, _GEN_CHUNK):
        low = rng.random((min(_GEN_CHUNK, n - c0), 12, 12), dtype=np.float32) * 255
        grey[c0 : c0 + low.shape[0]] = np.matmul(np.matmul(up, low), up.T).reshape(-1, s * s)
    rows = rng.permutation(n)[: 2 * copies]
    orig, copy = rows[:copies], rows[copies:]
    kind = rng.integers(0, len(KINDS), copies)
    src = grey[orig].reshape(-1, s, s).astype(np.float32)
    crop = resample_matrix(CROP_KEEP, 0.02).astype(np.float32)
    out = np.where(
        (kind == 0)[:, None, None],
        src[:, :, ::-1],
        np.where(
            (kind == 1)[:, None, None],
            np.matmul(np.matmul(crop, src), crop.T),
            np.where((kind == 2)[:, None, None], src * 1.3, src + rng.normal(0, 4, src.shape)),
        ),
    )
    grey[copy] = np.clip(out, 0, 255).astype(np.uint8).reshape(-1, s * s)
    ra, rb = rng.integers(0, n, random_pairs), rng.integers(0, n, random_pairs)
    a = np.concatenate([orig, ra])
    b = np.concatenate([copy, rb])
    m = np.concatenate([kind == 0, rng.random(random_pairs) < 0.05])
    keep = a != b
    a, b, m = a[keep], b[keep], m[keep]
    planted = np.arange(a.size) < int(keep[:copies].sum())
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    # the mirror flag mirrors ``a``: a mirrored copy is symmetric, either side will do
    pairs = dedupe.Pairs(lo, hi, np.zeros(lo.size, np.int64), m, np.ones(lo.size))
    return grey, pairs, planted


class WholeTableScorer(verify.Scorer):
    """The scorer before: features of every image in both orientations, computed up front
    (filled a chunk at a time, as ``features`` wrote its two whole-table arrays)."""

    def __init__(self, grey: np.ndarray, basis: verify.Basis) -> None:
        super().__init__(grey, basis, keep_bytes=0)
        n = grey.shape[0]
        kept = np.empty((n, 2, *self._shape), dtype=np.float32)
        for c0 in range(0, n, _GEN_CHUNK):
            for m in (False, True):
                kept[c0 : c0 + _GEN_CHUNK, int(m)] = verify.features(
                    grey[c0 : c0 + _GEN_CHUNK], basis, mirror=m
                )
        self._kept = kept.reshape(2 * n, *self._shape)  # row 2 * image + mirror
        self._row = np.arange(2 * n)
        self._cap = self._used = 2 * n


def _table(grey: np.ndarray) -> HashTable:
    n = grey.shape[0]
    z = np.zeros(n, dtype=np.uint64)
    return HashTable("phash", np.zeros(n, "<U1"), z, z, z, np.zeros((n, 4), np.uint64), grey)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--copies", type=float, default=0.01, help="fraction of images")
    ap.add_argument("--random-pairs", type=float, default=0.05, help="fraction of images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--before", action="store_true", help="whole-table features (the old way)")
    ap.add_argument("--scores-out", type=Path)
    ap.add_argument("--compare", type=Path)
    args = ap.parse_args()
    n = args.images
    t0 = time.perf_counter()
    grey, pairs, planted = synthetic(n, int(n * args.copies), int(n * args.random_pairs), args.seed)
    t1 = time.perf_counter()
    rss_table = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.before:
        dedupe.Scorer = WholeTableScorer  # type: ignore[assignment,misc]
    ver = dedupe.verify_pairs(_table(grey), pairs, dedupe.DEFAULT_MIN_CORRELATION)
    t2 = time.perf_counter()
    accepted = {(int(x), int(y)) for x, y in zip(ver.a, ver.b, strict=True)}
    keys = list(zip(pairs.a.tolist(), pairs.b.tolist(), strict=True))
    hit = np.array([k in accepted for k in keys])
    assert ver.tested is not None
    ta, tb, tv = ver.tested
    result = {
        "images": n,
        "scorer": "before (whole table)" if args.before else "pairs' images",
        "candidate_pairs": int(pairs.a.size),
        "planted": int(planted.sum()),
        "planted_accepted": int(hit[planted].sum()),
        "random_accepted": int(hit[~planted].sum()),
        "two_hop_pairs": int(ta.size - pairs.a.size),
        "calibration": ver.calibration.to_json(),
        "seconds_table": round(t1 - t0, 1),
        "seconds_calibrate": round(ver.seconds_calibrate, 1),
        "seconds_score": round(ver.seconds_score, 1),
        "seconds_verify": round(t2 - t1, 1),
        "grey_table_mib": round(grey.nbytes / 2**20),
        "whole_table_features_mib": round(2 * n * verify._FEATURE_ROWS * verify.BAND * 4 / 2**20),
        "peak_rss_mib_after_table": round(rss_table),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if args.scores_out:
        np.savez(args.scores_out, a=ta, b=tb, v=tv)
    if args.compare:
        z = np.load(args.compare)
        same = np.array_equal(z["a"], ta) and np.array_equal(z["b"], tb)
        result["compare_same_pairs"] = bool(same)
        if same:
            result["compare_max_abs_diff"] = float(np.abs(z["v"] - tv).max())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
