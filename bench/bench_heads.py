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

``--images N``: the heads at scale (bench/README "Heads at a million images"). N synthetic
images at Lite2-gram's width, generated shard by shard (4,096 rows, seeded per shard, never all
in memory, as the embedding cache's shards are read), go through what ``cleaner predict
--head-features pca`` runs: a pass for the mean, scale and a sample, the principal directions,
a pass projecting every row, then one head on 80% of the images and K out-of-fold heads
(pruned unless ``--no-prune``; none with ``--no-oof``). ``--full`` also fits today's head on
the full features held in memory (N x 19,844 x 4 bytes: only where that fits) and compares.
Peak memory is the process's maximum resident set (``ru_maxrss``); run it under
``/usr/bin/time -v`` too.

    nice .venv/bin/python bench/bench_heads.py --images 20000 --full
    nice /usr/bin/time -v .venv/bin/python bench/bench_heads.py --images 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from cleaner.models import folds as F
from cleaner.models import heads as H
from cleaner.models import logreg
from cleaner.models import projection as P

SHARD = 4096
LATENT = 64
"""Synthetic features: 64 latent factors of decaying variance mixed into every feature, the
label shifting 8 of them, plus independent noise with a scale per feature."""


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


class Synthetic:
    """N images' features at width ``dim``, regenerated shard by shard from seeds."""

    def __init__(self, n: int, dim: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.n, self.dim, self.seed = n, dim, seed
        self.y = (rng.random(n) < 0.5).astype(np.int64)
        spread = (0.97 ** np.arange(LATENT)).astype(np.float32)[:, None]
        self.mix = rng.standard_normal((LATENT, dim), dtype=np.float32) * spread
        self.scale = rng.uniform(0.01, 10, dim).astype(np.float32)
        self.keys = [f"{i:08d}" for i in range(n)]

    def shard(self, j: int) -> np.ndarray:
        lo, hi = j * SHARD, min(self.n, (j + 1) * SHARD)
        rng = np.random.default_rng((self.seed, j))
        z = rng.standard_normal((hi - lo, LATENT), dtype=np.float32)
        z[:, :8] += 0.35 * self.y[lo:hi, None].astype(np.float32)
        x = rng.standard_normal((hi - lo, self.dim), dtype=np.float32)
        x += z @ self.mix
        x *= self.scale
        return x

    def shards(self) -> P.Shards:
        def passes() -> Any:
            for j in range(-(-self.n // SHARD)):
                yield self.keys[j * SHARD : (j + 1) * SHARD], self.shard(j)

        return passes

    def full(self) -> np.ndarray:
        return np.concatenate([self.shard(j) for j in range(-(-self.n // SHARD))])


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def oof_auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(y, p)), 4)


def stage(out: dict[str, Any], **figures: Any) -> None:
    """Record figures and print the record so far on stderr (a long run's partial result)."""
    out.update(figures, peak_so_far_mib=round(peak_mib()))
    print(json.dumps(out), file=sys.stderr, flush=True)


def at_scale(args: argparse.Namespace) -> dict[str, Any]:
    """The streamed projection and the heads on it at ``args.images`` synthetic images."""
    data = Synthetic(args.images, args.dim)
    y, out = data.y, {"bench": "heads_at_scale", "images": args.images, "dim": args.dim}
    stage(out)
    t0 = time.perf_counter()
    keys = P.sample_keys(data.keys, P.SAMPLE_ROWS, 1, 0)
    proj = P.fit_streamed(data.shards(), keys, dim=args.pca_dim)
    t1 = time.perf_counter()
    stage(out, fit_pass_s=round(t1 - t0, 1), explained_variance=round(proj.explained, 4))
    rows_of = {k: [i] for i, k in enumerate(data.keys)}
    z, _ = P.project_streamed(data.shards(), rows_of, args.images, proj)
    t2 = time.perf_counter()
    out |= {
        "pca_dim": proj.dim,
        "explained_variance": round(proj.explained, 4),
        "full_features_gib": round(args.images * args.dim * 4 / 2**30, 2),
        "projected_gib": round(z.nbytes / 2**30, 2),
        "fit_pass_s": round(t1 - t0, 1),
        "project_pass_s": round(t2 - t1, 1),
        "peak_after_projection_mib": round(peak_mib()),
    }
    stage(out)
    train = np.flatnonzero(np.arange(len(y)) % 5 != 0)
    t3 = time.perf_counter()
    head = H.make_head("logreg", c=args.c, standardised=True)
    head.fit_rows(z, y, train, None)
    out["one_head_s"] = round(time.perf_counter() - t3, 1)
    out["one_head_iterations"] = head.model.n_iter
    stage(out)
    test = np.flatnonzero(np.arange(len(y)) % 5 == 0)
    p_pca = head.prob_rows(z, test)
    out["one_head_test_auc"] = oof_auc(y[test], p_pca)
    if args.oof:
        fold = F.assign_folds(y, np.arange(len(y)), args.folds)
        t4 = time.perf_counter()
        res = F.frozen_oof(z, y, fold, c=args.c, prune=args.prune, standardised=True)
        out[f"{args.folds}_fold_heads_s"] = round(time.perf_counter() - t4, 1)
        out["pruned"] = args.prune
        out["oof_auc_pca"] = oof_auc(y, res.prob_fake)
    out["peak_mib"] = round(peak_mib())
    if args.full:  # today's head on every feature in memory
        del z
        x = data.full()
        t5 = time.perf_counter()
        full = H.make_head("logreg", c=args.c)
        full.fit_rows(x, y, train, None)
        out["full_one_head_s"] = round(time.perf_counter() - t5, 1)
        out["full_one_head_iterations"] = full.model.n_iter
        p_full = full.prob_rows(x, test)
        out["full_one_head_test_auc"] = oof_auc(y[test], p_full)
        out["one_head_max_prob_difference"] = round(float(np.abs(p_full - p_pca).max()), 4)
        out["peak_with_full_mib"] = round(peak_mib())
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, help="the heads at scale on this many images")
    ap.add_argument("--pca-dim", type=int, default=P.DIM)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--prune", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--oof", action=argparse.BooleanOptionalAction, default=True, help="K heads")
    ap.add_argument("--full", action="store_true", help="also today's head on full features")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=19844)
    ap.add_argument("--c", type=float, default=0.03)
    ap.add_argument("--features", help="an .npy of real features (rows = images)")
    ap.add_argument("--labels", help="an .npy of their 0/1 labels")
    args = ap.parse_args()
    if args.images:
        print(json.dumps(at_scale(args)))
        return

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
