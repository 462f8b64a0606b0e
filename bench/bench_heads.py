"""The frozen heads' logistic regression (cleaner/models/logreg.py) against scikit-learn's
``StandardScaler`` + ``LogisticRegression`` pipeline on the same rows: fit time, peak memory
allocated on top of the features (tracemalloc), and agreement of the probabilities.

Features are Lite2-texture-wide (19,844 numbers) Gaussian ones with a planted signal, or real
cached ones (``--features F.npy --labels y.npy``). Three fits: the scikit-learn pipeline,
cleaner's head with the training rows gathered once (below ``GATHER_BYTES``: the default at
this size) and read in chunks (what sets above 1 GiB of training rows get).

    nice .venv/bin/python bench/bench_heads.py                 # 2,000 x 19,844 (make bench)
    nice .venv/bin/python bench/bench_heads.py --n 8000

Prints one JSON line; "memory_ratio" is sklearn's peak / cleaner's chunked peak, "time_ratio"
sklearn's fit time / cleaner's gathered fit time (both > 1 when cleaner is better).
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from cleaner.models import logreg


def measure(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``(result, seconds, peak MiB)``: the faster of two runs of its own (the first pays for
    warm-up; tracemalloc would slow allocation-heavy code several-fold), then one run under
    tracemalloc for the peak."""
    seconds = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        out = fn()
        seconds = min(seconds, time.perf_counter() - t0)
    tracemalloc.start()
    try:
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return out, seconds, peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=19844)
    ap.add_argument("--c", type=float, default=0.03)
    ap.add_argument("--features", help="an .npy of real features (rows = images)")
    ap.add_argument("--labels", help="an .npy of their 0/1 labels")
    args = ap.parse_args()

    if args.features:
        x = np.ascontiguousarray(np.load(args.features), dtype=np.float32)
        y = np.load(args.labels).astype(int)
    else:
        rng = np.random.default_rng(0)
        y = (rng.random(args.n) < 0.5).astype(int)
        x = rng.standard_normal((args.n, args.dim), dtype=np.float32)
        x *= rng.uniform(0.01, 10, args.dim).astype(np.float32)
        x[:, :200] += (y[:, None] * 0.5).astype(np.float32) * x[:, :200].std(axis=0)
    train = np.flatnonzero(np.arange(len(y)) % 5 != 0)
    test = np.flatnonzero(np.arange(len(y)) % 5 == 0)

    def sklearn_fit() -> np.ndarray:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), LogisticRegression(C=args.c, max_iter=300))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(x[train], y[train])
        return np.asarray(model.predict_proba(x[test])[:, 1])

    def cleaner_fit() -> np.ndarray:
        return logreg.fit([(x, train)], y[train], c=args.c).prob(x, test)

    p_sk, t_sk, m_sk = measure(sklearn_fit)
    p_g, t_g, m_g = measure(cleaner_fit)
    saved = logreg.GATHER_BYTES
    logreg.GATHER_BYTES = 0
    try:
        p_c, t_c, m_c = measure(cleaner_fit)
    finally:
        logreg.GATHER_BYTES = saved
    pairs = [("sklearn", p_sk), ("cleaner", p_g)]
    acc = {k: float(np.mean((p >= 0.5) == y[test])) for k, p in pairs}
    print(
        json.dumps(
            {
                "bench": "heads",
                "images": len(y),
                "dim": int(x.shape[1]),
                "features_mib": round(x.nbytes / 2**20, 1),
                "train_rows_mib": round(len(train) * x.shape[1] * 4 / 2**20, 1),
                "sklearn_s": round(t_sk, 2),
                "sklearn_peak_mib": round(m_sk, 1),
                "cleaner_gathered_s": round(t_g, 2),
                "cleaner_gathered_peak_mib": round(m_g, 1),
                "cleaner_chunked_s": round(t_c, 2),
                "cleaner_chunked_peak_mib": round(m_c, 1),
                "test_accuracy": acc,
                "max_prob_difference": round(float(np.abs(p_sk - p_g).max()), 5),
                "chunked_vs_gathered": round(float(np.abs(p_c - p_g).max()), 6),
                "memory_ratio": round(m_sk / m_c, 2),
                "time_ratio": round(t_sk / t_g, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
