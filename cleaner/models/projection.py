"""Features reduced for the frozen heads at a million images: standardised, then projected on
their top principal components, fitted once on a sample.

Lite2's texture features are 19,844 numbers per image: 7.9 GB per 100,000 images, 79 GB at a
million, more than a 24 GB machine holds, and an L-BFGS head reads its training rows at every
one of its 100-300 evaluations, so reading them from disk instead would take days. The heads
are L2 logistic regressions on standardised features; a :class:`Projection` keeps the top
``k`` principal directions of the standardised features (an orthonormal basis), so a head on
the projected coordinates with the same penalty is today's head restricted to that subspace
(``||w||`` is the same in either basis). So the heads fit the coordinates *as they are*: a
second standardisation would whiten them and give the noise directions the weight of the
signal ones. At ``k`` = 1,024 the features of a million images are 4.1 GB.

The projection is fitted without labels (every image's features, or a seeded sample of them),
so no held-out label reaches a fold's head; its mean and scale come from every image, its
directions from :data:`SAMPLE_ROWS` of them. What it costs in quality: bench/README "Heads at
a million images".
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from cleaner.errors import CleanerError
from cleaner.models.logreg import Moments, chunk_rows

DIM = 1024
"""Principal components kept by default (per region row)."""

SAMPLE_ROWS = 4096
"""Feature rows (images, or region rows of ``-gram-quad`` backbones) the directions are
fitted on: a ``4096 x 4096`` eigenproblem (its cost grows with the cube: 8,192 rows took 8x
as long), 0.7 GB at Lite2's width while it runs."""


class HeadFeatures(StrEnum):
    """What the frozen heads train on (``cleaner predict --head-features``)."""

    AUTO = "auto"
    """``full`` when the feature matrix fits :data:`FULL_MEMORY_FRACTION` of this machine's
    memory, else ``pca``."""
    FULL = "full"
    """Every feature of every image in memory (exact; 7.9 GB per 100,000 Lite2-gram images)."""
    PCA = "pca"
    """A :class:`Projection` of them, streamed from the embedding cache's shards."""


FULL_MEMORY_FRACTION = 1 / 3
"""``auto`` keeps the full features up to this fraction of the machine's memory (24 GB: 8 GB,
some 100,000 Lite2-gram images), the rest being the heads' copies, the embedding pass and
what else runs."""


def machine_memory() -> int:
    """This machine's physical memory in bytes (16 GiB when the system will not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16 << 30


def choose_head_features(
    mode: HeadFeatures, images: int, dim: int, copies: int = 1
) -> HeadFeatures:
    """``auto`` resolved: ``full`` while ``copies`` (2 with ``--mirror``) ``images x dim``
    float32 matrices fit :data:`FULL_MEMORY_FRACTION` of the machine's memory."""
    if mode is not HeadFeatures.AUTO:
        return mode
    need = copies * images * dim * 4
    return (
        HeadFeatures.FULL if need <= FULL_MEMORY_FRACTION * machine_memory() else HeadFeatures.PCA
    )


Shards = Callable[[], Iterable[tuple[list[str], np.ndarray]]]
"""A fresh pass over the features: ``(keys, rows)`` pieces, each key once over the pass."""


@dataclass(frozen=True)
class Projection:
    """``z = basis.T @ ((x - mean) / scale)``: standardise, then the top principal directions."""

    mean: np.ndarray
    scale: np.ndarray
    basis: np.ndarray
    """``(D, k)``, orthonormal columns."""
    explained: float
    """Fraction of the sample's standardised variance the ``k`` directions keep."""
    sample_rows: int

    @property
    def dim(self) -> int:
        return int(self.basis.shape[1])

    @functools.cached_property
    def _raw(self) -> tuple[np.ndarray, np.ndarray]:
        """The projection on raw rows: ``x @ w - offset`` (standardisation folded in)."""
        w = self.basis / self.scale[:, None].astype(np.float32)
        offset = ((self.mean / self.scale) @ self.basis).astype(np.float32)
        return np.ascontiguousarray(w, np.float32), offset

    def apply(self, rows: np.ndarray) -> np.ndarray:
        """``(n, D)`` raw feature rows -> ``(n, k)`` float32 coordinates, chunk by chunk."""
        w, offset = self._raw
        out = np.empty((len(rows), self.dim), np.float32)
        step = chunk_rows(rows.shape[1])
        for at in range(0, len(rows), step):
            out[at : at + step] = np.asarray(rows[at : at + step], np.float32) @ w - offset
        return out

    def info(self) -> dict[str, object]:
        """What a predictions file records about it."""
        return {
            "method": "pca",
            "dim": self.dim,
            "explained_variance": round(self.explained, 4),
            "sample_rows": self.sample_rows,
        }


def fit_projection(
    sample: np.ndarray, mean: np.ndarray, scale: np.ndarray, dim: int = DIM
) -> Projection:
    """The top ``dim`` principal directions of ``sample`` standardised by ``mean`` and
    ``scale`` (the second moment about ``mean``, which is the features' mean over every image,
    not the sample's), by the eigenvectors of the smaller of the sample's two Gram matrices."""
    from scipy.linalg import eigh

    if dim < 1:
        raise CleanerError(f"--pca-dim {dim}: give 1 or more")
    s = (sample - mean.astype(np.float32)) / scale.astype(np.float32)
    m, d = s.shape
    k = min(dim, m, d)
    by_rows = m <= d
    gram = s @ s.T if by_rows else s.T @ s
    total = float(np.trace(gram, dtype=np.float64))
    lam, vec = eigh(gram, driver="evd", overwrite_a=True)  # all: faster than a subset
    del gram
    lam, vec = lam[::-1][:k].astype(np.float64), vec[:, ::-1][:, :k]
    keep = lam > max(float(lam.max(initial=0.0)), 1e-30) * 1e-6
    lam, vec = lam[keep], vec[:, keep]
    if by_rows:  # right singular vectors from the left ones: s.T u / sigma
        basis = (s.T @ vec.astype(np.float32)) / np.sqrt(lam).astype(np.float32)
    else:
        basis = vec.astype(np.float32)
    basis, _ = np.linalg.qr(basis)  # orthonormal to float32 precision
    return Projection(
        mean=np.asarray(mean, np.float64),
        scale=np.asarray(scale, np.float64),
        basis=np.ascontiguousarray(basis, np.float32),
        explained=float(lam.sum() / total) if total > 0 else 1.0,
        sample_rows=m,
    )


def region_view(rows: np.ndarray, regions: int) -> np.ndarray:
    """``(n, R * D)`` -> ``(n * R, D)``: one row per region (as the heads read them)."""
    return rows.reshape(len(rows) * regions, -1)


def fit_streamed(
    shards: Shards, sample_keys: set[str], *, regions: int = 1, dim: int = DIM
) -> Projection:
    """One pass over ``shards``: the mean and scale of every row, and the rows of
    ``sample_keys`` kept; then :func:`fit_projection` on those."""
    moments: Moments | None = None
    kept: list[np.ndarray] = []
    for keys, feats in shards():
        rows = region_view(feats, regions)
        moments = moments or Moments(rows.shape[1])
        moments.add(rows)
        pick = [i for i, k in enumerate(keys) if k in sample_keys]
        if pick:
            kept.append(region_view(np.asarray(feats[pick], np.float32), regions))
    if moments is None or not kept:
        raise CleanerError("no cached features to fit the projection on; predict again")
    mean, scale = moments.mean_scale()
    return fit_projection(np.concatenate(kept), mean, scale, dim)


def project_streamed(
    shards: Shards,
    rows_of: dict[str, list[int]],
    n: int,
    projection: Projection,
    *,
    regions: int = 1,
) -> tuple[np.ndarray, set[str]]:
    """One pass over ``shards``: each key's rows projected into row(s) ``rows_of[key]`` of an
    ``(n, regions * k)`` array (zeros where no shard had the key); returns it and the keys
    found. Memory: the result and one shard."""
    out = np.zeros((n, regions * projection.dim), np.float32)
    found: set[str] = set()
    for keys, feats in shards():
        pick = [i for i, k in enumerate(keys) if k in rows_of and k not in found]
        if not pick:
            continue
        z = projection.apply(region_view(np.asarray(feats[pick]), regions))
        z = z.reshape(len(pick), -1)
        for j, i in enumerate(pick):
            out[rows_of[keys[i]]] = z[j]
            found.add(keys[i])
    return out, found


def sample_keys(keys: Iterable[str], rows: int, regions: int, seed: int = 0) -> set[str]:
    """A seeded sample of ``keys`` holding about ``rows`` feature rows (all when fewer)."""
    pool = sorted(keys)
    take = max(1, rows // max(regions, 1))
    if len(pool) <= take:
        return set(pool)
    rng = np.random.default_rng(seed)
    return {pool[i] for i in rng.choice(len(pool), take, replace=False)}
