"""L2-regularised logistic regression over rows of a feature matrix, without copying it.

The frozen heads (:mod:`cleaner.models.folds`) and ``cleaner train``'s phase 1 fit this model
on wide features (Lite2's texture statistics: 19,844 numbers per image). scikit-learn's
``StandardScaler`` + ``LogisticRegression`` needs the training rows copied, then standardised
into a second copy: several times the whole feature matrix on top of it (bench/README.md
"Heads" has the figures and the command). Here the standardisation is folded into
the coefficients (``w / scale`` on the raw rows, ``mean`` into the intercept) and the rows are
read in place, so a head costs one copy of its training rows when they fit
:data:`GATHER_BYTES`, and a chunk when they do not.

The objective, the solver and its stopping rule are scikit-learn's (``lbfgs``, the loss
averaged over the sample weights, ``||w||^2 / (2 C)`` on the standardised coefficients, the
intercept not penalised, ``gtol`` = ``tol``): on the same features it stops at the same
iteration and its probabilities agree with ``LogisticRegression``'s to about 1e-3 (tested).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

GATHER_BYTES = 1 << 30
"""Training rows up to this size are gathered once into one array; larger sets are gathered
chunk by chunk at every evaluation of the objective (slower, constant memory)."""

CHUNK_BYTES = 256 * 19844 * 4
"""Bytes per chunk when reading features piecewise: 256 rows of Lite2's texture features (20
MB); narrower rows (a :class:`cleaner.models.projection.Projection`'s 1,024 numbers) come
more at a time, so 800,000 training rows are some 160 chunks per evaluation, not 3,000."""


FIT_BLAS_THREADS = 1
"""BLAS threads while :func:`fit` runs. Its products are matrix-vector (a chunk of rows times
the coefficients), which more threads barely speed up, while idle OpenBLAS threads spin
against the solver, and numpy and scipy each load their own OpenBLAS: on 2 cores three fits on
Lite1-gram's 17,504 features took 15.2 / 14.6 s with the default threads against 7.5 / 10.0 s
on one (quiet machine), and 17.7 s against 0.34 s under load 7 (bench/README, Predict)."""


def chunk_rows(dim: int) -> int:
    """Rows per chunk of features ``dim`` wide (256 at Lite2's width, more for narrower)."""
    return max(1, CHUNK_BYTES // (4 * max(dim, 1)))


Rows = tuple[np.ndarray, np.ndarray]
"""A block of training rows: ``(features, row indices into them)``."""


@dataclass(frozen=True)
class LinearHead:
    """A fitted model: ``P(y = 1 | x) = sigmoid(weights . (x - mean) / scale + intercept)``."""

    weights: np.ndarray
    """Coefficients on the standardised features (what a Keras ``Normalization`` layer followed
    by ``Dense(1)`` holds)."""
    intercept: float
    mean: np.ndarray
    scale: np.ndarray
    c: float
    n_iter: int

    @property
    def raw_coef(self) -> np.ndarray:
        """Coefficients on the raw features (float32, for chunked matrix products)."""
        return (self.weights / self.scale).astype(np.float32)

    @property
    def raw_intercept(self) -> float:
        return float(self.intercept - self.mean @ (self.weights / self.scale))

    def decision(self, features: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """The logit of each row in ``rows`` (all rows when None), read chunk by chunk."""
        rows = np.arange(len(features)) if rows is None else np.asarray(rows)
        v = self.raw_coef
        parts = [chunk @ v for chunk in _chunks([(features, rows)])]
        out = np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)
        return out + self.raw_intercept

    def prob(self, features: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """P(class 1) of each row in ``rows``."""
        from scipy.special import expit

        return np.asarray(expit(self.decision(features, rows)), np.float64)


class Moments:
    """Running float64 sums of rows added chunk by chunk, for their mean and scale."""

    def __init__(self, dim: int) -> None:
        self.total, self.total_sq, self.n = np.zeros(dim), np.zeros(dim), 0

    def add(self, chunk: np.ndarray) -> None:
        self.total += chunk.sum(axis=0, dtype=np.float64)
        self.total_sq += np.einsum("ij,ij->j", chunk, chunk, dtype=np.float64)
        self.n += len(chunk)

    def mean_var(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and population variance."""
        mean = self.total / max(self.n, 1)
        return mean, np.maximum(self.total_sq / max(self.n, 1) - mean**2, 0.0)

    def mean_scale(self) -> tuple[np.ndarray, np.ndarray]:
        """As ``StandardScaler`` computes them: population variance; a constant feature gets
        scale 1."""
        mean, var = self.mean_var()
        scale = np.sqrt(var)
        scale[scale < 10 * np.finfo(np.float64).eps] = 1.0
        return mean, scale


def moments(blocks: Sequence[Rows]) -> Moments:
    """The running sums of the rows of ``blocks``, accumulated chunk by chunk."""
    out = Moments(blocks[0][0].shape[1])
    for chunk in _chunks(blocks, views=False):  # float64 sums cast chunk by chunk
        out.add(chunk)
    return out


def standardisation(blocks: Sequence[Rows]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of the rows (:class:`Moments`), accumulated chunk by chunk."""
    return moments(blocks).mean_scale()


def _chunks(blocks: Sequence[Rows], *, views: bool = True) -> Iterator[np.ndarray]:
    """The rows of ``blocks`` in order: :func:`chunk_rows` at a time where they must be gathered, or
    (``views``) the whole block at once where they are all its rows in order (a view: no copy,
    and one matrix product instead of many: 13% faster on the pruned heads)."""
    for features, rows in blocks:
        whole = len(rows) == len(features) and bool(np.all(rows == np.arange(len(rows))))
        if whole and views and features.dtype == np.float32:
            yield features
            continue
        step = chunk_rows(features.shape[1])
        for at in range(0, len(rows), step):
            part = slice(at, at + step) if whole else rows[at : at + step]
            yield np.asarray(features[part], np.float32)


def fit(
    blocks: Sequence[Rows],
    y: np.ndarray,
    *,
    c: float,
    sample_weight: np.ndarray | None = None,
    standardise: tuple[np.ndarray, np.ndarray] | None = None,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> LinearHead:
    """Fit on the rows of ``blocks`` (in order; ``y`` and ``sample_weight`` follow that order).

    ``standardise``: ``(mean, scale)`` to use instead of the rows' own (``cleaner train`` passes
    its Keras ``Normalization`` layer's, so the coefficients drop into the model as they are)."""
    from scipy.optimize import minimize
    from scipy.special import expit
    from threadpoolctl import threadpool_limits

    t = np.asarray(y, np.float64)
    n = len(t)
    sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    sw_sum = float(sw.sum())
    mean, scale = standardisation(blocks) if standardise is None else standardise
    mean, scale = np.asarray(mean, np.float64).ravel(), np.asarray(scale, np.float64).ravel()
    dim = len(mean)
    size = sum(len(rows) for _, rows in blocks) * dim * 4
    if size <= GATHER_BYTES:  # one copy of the training rows, read as contiguous chunks
        parts = [np.asarray(f[r], np.float32) for f, r in blocks]
        gathered = parts[0] if len(parts) == 1 else np.concatenate(parts)
        blocks = [(gathered, np.arange(n))]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:dim], theta[dim]
        v = w / scale
        v32, off = v.astype(np.float32), b - float(mean @ v)
        loss, grad_v, grad_b, at = 0.0, np.zeros(dim), 0.0, 0
        for chunk in _chunks(blocks):
            z = (chunk @ v32).astype(np.float64) + off
            tt, ww = t[at : at + len(z)], sw[at : at + len(z)]
            loss += float(ww @ (np.logaddexp(0.0, z) - tt * z))
            r = ww * (expit(z) - tt)
            grad_v += r.astype(np.float32) @ chunk
            grad_b += float(r.sum())
            at += len(z)
        grad_w = (grad_v - mean * grad_b) / scale
        value = (loss + 0.5 * float(w @ w) / c) / sw_sum
        return value, np.concatenate([grad_w + w / c, [grad_b]]) / sw_sum

    options = {"maxiter": max_iter, "maxls": 50, "gtol": tol, "ftol": 64 * np.finfo(float).eps}
    with threadpool_limits(FIT_BLAS_THREADS, user_api="blas"):
        res = minimize(objective, np.zeros(dim + 1), jac=True, method="L-BFGS-B", options=options)
    return LinearHead(
        weights=res.x[:dim].copy(),
        intercept=float(res.x[dim]),
        mean=mean,
        scale=scale,
        c=float(c),
        n_iter=int(res.nit),
    )
