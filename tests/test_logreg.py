"""The heads' logistic regression: scikit-learn's model and solution, without copying the
feature matrix (read in chunks, standardisation folded into the coefficients)."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest

from cleaner.models import folds as F
from cleaner.models import logreg


def _data(n: int = 300, dim: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(int)
    x = rng.normal(0, 1, (n, dim)) * rng.uniform(0.01, 50, dim) + rng.normal(0, 100, dim)
    x[:, :5] += y[:, None] * rng.uniform(0.5, 3, 5) * x[:, :5].std(axis=0)
    x[:, 7] = 3.0  # a constant feature: scale 1, as StandardScaler does
    return x.astype(np.float32), y


def _sklearn(x: np.ndarray, y: np.ndarray, c: float, w: np.ndarray | None = None) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr = LogisticRegression(C=c, max_iter=300).fit(sc.transform(x), y, sample_weight=w)
    return np.asarray(lr.predict_proba(sc.transform(x))[:, 1])


@pytest.mark.parametrize("c", [0.003, 0.03, 1.0])
def test_same_solution_as_scikit_learn(c: float) -> None:
    x, y = _data()
    rows = np.flatnonzero(np.arange(len(y)) % 4 != 0)
    head = logreg.fit([(x, rows)], y[rows], c=c)
    ours = head.prob(x, rows)
    theirs = _sklearn(x[rows], y[rows], c)
    assert np.abs(ours - theirs).max() < 2e-3
    assert ((ours >= 0.5) == (theirs >= 0.5)).mean() > 0.99
    # held-out rows too: the folded standardisation is the training rows'
    test = np.flatnonzero(np.arange(len(y)) % 4 == 0)
    assert head.prob(x, test).shape == (len(test),)


def test_sample_weights_match_scikit_learn() -> None:
    x, y = _data(seed=1)
    w = np.where(y == 1, 3.0, 1.0)
    head = logreg.fit([(x, np.arange(len(y)))], y, c=0.03, sample_weight=w)
    assert np.abs(head.prob(x) - _sklearn(x, y, 0.03, w)).max() < 2e-3


def test_chunked_reading_gives_the_gathered_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _data(seed=2)
    rows = np.arange(0, len(y), 2)
    gathered = logreg.fit([(x, rows)], y[rows], c=0.03)
    monkeypatch.setattr(logreg, "GATHER_BYTES", 0)
    monkeypatch.setattr(logreg, "CHUNK_BYTES", 17 * 4 * x.shape[1])  # 17 rows
    chunked = logreg.fit([(x, rows)], y[rows], c=0.03)
    assert np.abs(chunked.prob(x) - gathered.prob(x)).max() < 1e-4
    assert chunked.n_iter == pytest.approx(gathered.n_iter, abs=3)


def test_two_blocks_are_their_rows_stacked() -> None:
    """The mirror rows of the frozen heads: a second block, the same as one stacked array."""
    x, y = _data(seed=3)
    mirror = (x + np.random.default_rng(9).normal(0, 0.1, x.shape)).astype(np.float32)
    rows = np.arange(100)
    two = logreg.fit([(x, rows), (mirror, rows)], np.concatenate([y[rows]] * 2), c=0.03)
    stacked = np.concatenate([x[rows], mirror[rows]])
    one = logreg.fit([(stacked, np.arange(200))], np.concatenate([y[rows]] * 2), c=0.03)
    assert np.abs(two.prob(x) - one.prob(x)).max() < 1e-6


def test_explicit_standardisation_is_used_as_given() -> None:
    """``cleaner train`` passes its Normalization layer's mean and scale: the weights then
    apply to ``(x - mean) / scale`` exactly."""
    x, y = _data(seed=4)
    mean, scale = x.mean(axis=0) + 1.0, x.std(axis=0) + 2.0
    head = logreg.fit([(x, np.arange(len(y)))], y, c=0.03, standardise=(mean, scale))
    logit = ((x - mean) / scale) @ head.weights + head.intercept
    assert np.allclose(head.decision(x), logit, atol=1e-3)


def test_memory_is_a_chunk_not_a_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above GATHER_BYTES the rows are read in chunks: a head on 4,000 x 500 features (8 MB)
    allocates well under one copy of them (scikit-learn's pipeline: about 3)."""
    x, y = _data(n=4000, dim=500, seed=5)
    rows = np.flatnonzero(np.arange(len(y)) % 5 != 0)
    monkeypatch.setattr(logreg, "GATHER_BYTES", 0)
    monkeypatch.setattr(logreg, "CHUNK_BYTES", 64 * 4 * x.shape[1])  # 64 rows
    tracemalloc.start()
    try:
        head = logreg.fit([(x, rows)], y[rows], c=0.03, max_iter=50)
        head.prob(x, rows)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes / 4, (peak, x.nbytes)


def test_the_default_fold_head_is_this_model() -> None:
    x, y = _data(seed=6)
    fold = F.assign_folds(y, np.arange(len(y)), 3)
    res = F.frozen_oof(x, y, fold, c=0.03)
    for f in range(3):
        tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        expected = logreg.fit([(x, tr)], y[tr], c=0.03).prob(x, te)
        assert np.allclose(res.prob_fake[te], expected)
    assert ((res.prob_fake >= 0.5) == (y == 1)).mean() > 0.8


def test_fit_runs_on_one_blas_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The solver's BLAS runs on :data:`logreg.FIT_BLAS_THREADS` threads, whatever the process
    allows (idle OpenBLAS threads spinning against the solver made texture heads 20-50x slower
    on 2 cores), and the process's own limit is back afterwards."""
    import scipy.optimize
    from threadpoolctl import threadpool_info, threadpool_limits

    seen: list[int] = []
    real = scipy.optimize.minimize

    def spy(*args: object, **kwargs: object) -> object:
        seen.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
        return real(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(scipy.optimize, "minimize", spy)
    x, y = _data()
    with threadpool_limits(2, user_api="blas"):
        before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
        logreg.fit([(x, np.arange(len(y)))], y, c=1.0)
        after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert seen and set(seen) == {logreg.FIT_BLAS_THREADS}
    assert after == before
