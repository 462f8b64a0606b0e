"""Phase 1 of ``cleaner train`` at a million images: the frozen-backbone head's features
streamed from the embedding cache, never stacked.

Phase 1 used to take the features of the train and val splits as one ``(N, D)`` array each
(``embed``), standardise them with Keras' ``Normalization.adapt`` (a copy inside
``tf.data``) and fit on them: at 1,000,000 images x 1,280 (EfficientNetB0 pooled) that is
5.1 GB float32 plus copies, and 79 GB for Lite2's texture features. The out-of-fold heads of
``cleaner predict`` already solved this (bench/README "Heads at a million images"), so the
head phase reuses their machinery instead of a second one:

- the features come from :func:`cleaner.models.embeddings.embed_for_heads` (one call for
  train + val): missing ones computed into the cache shard by shard, then either the full
  features (``--head-features full``; ``auto`` while they fit a third of the machine's memory)
  or their projection on the top principal directions (``pca``), streamed from the shards;
- the ``Normalization`` layer's mean and variance are running float64 sums over the training
  rows read in chunks (:class:`cleaner.models.logreg.Moments`), not ``adapt``;
- the logistic regression reads its rows in place, gathered chunk by chunk
  (:func:`cleaner.models.logreg.fit`);
- a head fitted on projected coordinates ``z = B.T ((x - m) / s)`` is a head on the full
  features: ``w . z = (B w) . ((x - m) / s)``, so the model's ``Normalization`` gets the
  projection's ``m`` and ``s**2`` and its ``Dense`` kernel ``B w`` (times ``s' / s`` where the
  variance floor raised ``s`` to ``s'``). The saved model takes pixels as before; what the
  projection costs in quality: bench/README "Training".
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cleaner.dataset import Workspace
from cleaner.models import logreg
from cleaner.models import projection as P
from cleaner.models.embeddings import EmbeddingSpec, embed_for_heads

VARIANCE_FLOOR = 1e-4
"""Feature variances below this fraction of the median one are raised to it (see
:func:`floored_variance`)."""

Item = tuple[str | os.PathLike[str], str]


def floored_variance(var: np.ndarray) -> np.ndarray:
    """``var`` with each variance at least :data:`VARIANCE_FLOOR` times the median positive one.
    A feature constant on the training split (a ReLU6 channel that never fires on it) would
    otherwise be divided by Keras' epsilon, 1e-7, and explode as soon as fine-tuning or an
    unseen image moves it: the first fine-tuning epoch of the demo's detector had a training
    loss of 4,564 with the dense head."""
    var = np.asarray(var, np.float64)
    positive = var[var > 0]
    floor = VARIANCE_FLOOR * float(np.median(positive)) if positive.size else 1.0
    return np.maximum(var, floor)


def feature_norm(features: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the model's ``Normalization`` layer holds for the rows ``features[rows]``: their
    mean and :func:`floored_variance`, in float64, read chunk by chunk (no copy of them, unlike
    ``Normalization.adapt``)."""
    mean, var = logreg.moments([(features, rows)]).mean_var()
    return mean, floored_variance(var)


@dataclass
class HeadInputs:
    """The head's features of train + val, and which of their rows each split uses."""

    features: np.ndarray
    """``(n_train + n_val, regions * width)``: full features, or projected coordinates."""
    train: np.ndarray
    """Rows of the training images whose features exist (failed ones left out)."""
    val: np.ndarray
    regions: int
    projection: P.Projection | None
    mode: P.HeadFeatures
    computed: int
    cached: int
    failed: list[int]
    """Positions (into train + val items) whose features could not be computed."""
    train_image: np.ndarray | None = None
    """Per row of ``train``, its image's position in the training split; None when the rows
    are the images' own (extra views of them add rows, :mod:`cleaner.models.head_views`)."""

    def train_images(self) -> np.ndarray:
        """The training split position of each training row (for its label and weight)."""
        return self.train if self.train_image is None else self.train_image

    @property
    def width(self) -> int:
        return self.features.shape[1] // self.regions

    def train_blocks(self) -> list[logreg.Rows]:
        """The training rows as the heads read them: every region row of each image."""
        view = P.region_view(self.features, self.regions)
        r = self.regions
        rows = (self.train[:, None] * r + np.arange(r)).ravel() if r > 1 else self.train
        return [(view, rows)]

    def val_features(self) -> tuple[np.ndarray, np.ndarray | None]:
        """What the model's head sees of each validation image, as ``(array, rows or None)``:
        the rows in place, or (regions) the mean of each image's region rows, which is what the
        model's ``region_mean`` layer gives its head (and, the projection being affine, the
        projection of that mean)."""
        if self.regions == 1:
            return self.features, self.val
        out = np.empty((len(self.val), self.width), np.float32)
        step = logreg.chunk_rows(self.features.shape[1])
        for at in range(0, len(self.val), step):
            part = np.asarray(self.features[self.val[at : at + step]], np.float32)
            out[at : at + step] = part.reshape(len(part), self.regions, -1).mean(axis=1)
        return out, None


def head_inputs(
    ws: Workspace,
    train: Sequence[Item],
    val: Sequence[Item],
    spec: EmbeddingSpec,
    *,
    regions: int = 1,
    mode: P.HeadFeatures = P.HeadFeatures.AUTO,
    pca_dim: int = P.DIM,
    seed: int = 0,
    batch_size: int = 32,
) -> HeadInputs:
    """The features of ``train`` then ``val`` items (``(path, sha256)``) through the embedding
    cache under ROOT (:func:`cleaner.models.embeddings.embed_for_heads`)."""
    e = embed_for_heads(
        ws,
        [*train, *val],
        spec,
        mode=mode,
        pca_dim=pca_dim,
        regions=regions,
        seed=seed,
        batch_size=batch_size,
    )
    ok = e.ok
    n_tr = len(train)
    return HeadInputs(
        features=e.features,
        train=np.flatnonzero(ok[:n_tr]),
        val=n_tr + np.flatnonzero(ok[n_tr:]),
        regions=regions,
        projection=e.projection,
        mode=P.HeadFeatures.PCA if e.projection is not None else P.HeadFeatures.FULL,
        computed=e.computed,
        cached=e.cached,
        failed=np.flatnonzero(~ok).tolist(),
    )


def standardisation(inputs: HeadInputs) -> tuple[np.ndarray, np.ndarray]:
    """The model's ``Normalization`` mean and (floored) variance, per region width: the
    training rows' own (full features), or the projection's (pca)."""
    if inputs.projection is not None:
        p = inputs.projection
        return np.asarray(p.mean, np.float64), floored_variance(np.asarray(p.scale) ** 2)
    view, rows = inputs.train_blocks()[0]
    return feature_norm(view, rows)


def fit_logreg(
    inputs: HeadInputs,
    y_train: np.ndarray,
    w_train: np.ndarray | None,
    norm: tuple[np.ndarray, np.ndarray],
    *,
    c: float,
    epsilon: float = 1e-7,
) -> tuple[logreg.LinearHead, np.ndarray, float]:
    """The logistic regression on the training rows (``y_train``/``w_train`` per image, repeated
    over regions): ``(the fitted head on inputs' features, the Dense kernel (width,) on the
    model's Normalization output, the bias)``. ``norm``: the layer's mean and variance."""
    r = inputs.regions
    y = np.repeat(y_train, r) if r > 1 else y_train
    w = None if w_train is None else (np.repeat(w_train, r) if r > 1 else w_train)
    if inputs.projection is None:  # standardised by the layer's own figures: drops in as is
        standardise = (norm[0], np.maximum(np.sqrt(norm[1]), epsilon))
    else:  # projected coordinates are fitted as they are (no second standardisation)
        k = inputs.projection.dim
        standardise = (np.zeros(k), np.ones(k))
    lr = logreg.fit(
        inputs.train_blocks(), y, c=c, sample_weight=w, standardise=standardise, max_iter=500
    )
    return lr, dense_kernel(inputs, lr.weights, norm, epsilon), lr.intercept


def dense_kernel(
    inputs: HeadInputs, w: np.ndarray, norm: tuple[np.ndarray, np.ndarray], epsilon: float
) -> np.ndarray:
    """The model's ``Dense`` kernel ``(width,)`` on its ``Normalization`` output (``norm``: the
    layer's mean and variance, ``epsilon`` Keras') for a head ``w`` fitted on ``inputs``'
    features: ``w`` itself on full features; on projected ones the kernel on
    ``(x - m) / scale_n`` that gives ``w . z``: ``(B w) * scale_n / s``."""
    w = np.asarray(w, np.float64).ravel()
    if inputs.projection is None:
        return w
    p = inputs.projection
    scale_n = np.maximum(np.sqrt(norm[1]), epsilon)
    return (p.basis.astype(np.float64) @ w) * scale_n / np.asarray(p.scale, np.float64)
