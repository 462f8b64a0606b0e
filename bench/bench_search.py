"""Radius search on random 64-bit hashes: cleaner's multi-index search against imagededup's
Cython brute force, in the same run.

``--n`` random hashes plus ``--planted`` pairs at random distances 0..8 (each planted hash is a
copy of a random one with that many bits flipped); radius 8. cleaner: every planted pair must be
found (checked); time and peak memory (``ru_maxrss`` growth of this process, and the peak of
numpy/Python allocations under ``tracemalloc`` in a second, traced run). imagededup
(``find_duplicates(search_method="brute_force_cython")``) on ``--peer-n`` hashes, which grows as
N^2; ``ratio_same_n`` compares both at the peer's N, ``ratio_extrapolated`` compares cleaner at
``--n`` with the peer's time scaled by (n / peer_n)^2. The other design we considered, a
vectorised numpy popcount of every pair (in blocks of 1,024 queries), is timed at the peer's N
too. Prints one JSON line.

    .venv/bin/python bench/bench_search.py                 # 100,000 hashes, peer on 5,000
    .venv/bin/python bench/bench_search.py --full          # 1,000,000 hashes, peer on 20,000
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _imagededup

from cleaner.hashindex import radius_pairs

RADIUS = 8


def make(n: int, planted: int, seed: int = 0) -> tuple[np.ndarray, set[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    h = rng.integers(0, np.iinfo(np.uint64).max, n + planted, dtype=np.uint64, endpoint=True)
    pairs: set[tuple[int, int]] = set()
    src = rng.choice(n, size=planted, replace=False)
    for k, i in enumerate(src.tolist()):
        bits = rng.choice(64, size=int(rng.integers(0, RADIUS + 1)), replace=False)
        h[n + k] = h[i] ^ np.uint64(sum(1 << int(b) for b in bits))
        pairs.add((int(i), n + k))
    return h, pairs


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ours(h: np.ndarray, planted: set[tuple[int, int]]) -> dict[str, Any]:
    base = rss_mib()
    t0 = time.perf_counter()
    i, j, _ = radius_pairs(h, RADIUS)
    seconds = time.perf_counter() - t0
    peak = rss_mib()
    found = set(zip(i.tolist(), j.tolist(), strict=True))
    return {
        "seconds": round(seconds, 2),
        "pairs": int(i.size),
        "planted_found": len(planted & found),
        "planted": len(planted),
        "all_planted_found": planted <= found,
        "rss_growth_mib": round(peak - base, 1),
        "rss_peak_mib": round(peak, 1),
    }


def traced_peak(h: np.ndarray) -> float:
    tracemalloc.start()
    radius_pairs(h, RADIUS)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return round(peak / 2**20, 1)


def numpy_brute_force(h: np.ndarray) -> float:
    """The other design measured: vectorised popcount of blocks of 1,024 queries x all N."""
    t0 = time.perf_counter()
    for c0 in range(0, h.size, 1024):
        q = h[c0 : c0 + 1024, None]
        d = np.bitwise_count(q ^ h[None, :])
        np.nonzero(d <= RADIUS)
    return time.perf_counter() - t0


def peer(h: np.ndarray) -> float | None:
    mod = _imagededup.load()
    if mod is None:
        return None
    enc = {f"{k}.jpg": f"{int(v):016x}" for k, v in enumerate(h.tolist())}
    ph = mod.PHash(verbose=False)
    t0 = time.perf_counter()
    ph.find_duplicates(
        encoding_map=enc, max_distance_threshold=RADIUS, search_method="brute_force_cython"
    )
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="1,000,000 hashes, peer on 20,000")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--planted", type=int, default=1000)
    ap.add_argument("--peer-n", type=int, default=None)
    args = ap.parse_args()
    n = args.n or (1_000_000 if args.full else 100_000)
    peer_n = args.peer_n or (20_000 if args.full else 5_000)
    h, planted = make(n, args.planted)
    res: dict[str, Any] = {"bench": "search", "n": int(h.size), "radius": RADIUS}
    res["cleaner"] = ours(h, planted)
    res["cleaner"]["tracemalloc_peak_mib"] = traced_peak(h)
    hp = h[:peer_n]
    t0 = time.perf_counter()
    radius_pairs(hp, RADIUS)
    ours_small = time.perf_counter() - t0
    t_peer = peer(hp)
    res["peer_n"] = peer_n
    res["cleaner_seconds_at_peer_n"] = round(ours_small, 3)
    res["numpy_brute_force_seconds_at_peer_n"] = round(numpy_brute_force(hp), 2)
    if t_peer is None:
        res["imagededup"] = "not installed (see bench/_imagededup.py)"
    else:
        res["imagededup_seconds_at_peer_n"] = round(t_peer, 2)
        res["ratio_same_n"] = round(t_peer / max(ours_small, 1e-9), 1)
        extrapolated = t_peer * (h.size / peer_n) ** 2
        res["imagededup_extrapolated_seconds_at_n"] = round(extrapolated)
        res["ratio_extrapolated"] = round(extrapolated / res["cleaner"]["seconds"], 1)
    print(json.dumps(res))
    if not res["cleaner"]["all_planted_found"]:
        sys.exit("a planted pair was missed")


if __name__ == "__main__":
    main()
