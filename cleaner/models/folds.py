"""Honest probabilities: grouped K-fold, each image predicted by a model that never saw it.

Relabeling judges each image's label by a model's probability; a model that trained on the
image has memorised its (possibly wrong) label and hides the error. So the images are split
into K folds, stratified by label, with every near-duplicate group of ``duplicates.json`` kept
inside one fold (a copy in the training folds would leak the held-out image's label). For each
fold a head is trained on the other K-1 folds and predicts this one. The fold id of every image
is recorded, so "no image was predicted by a head that trained on it" is checkable afterwards.

Two modes:
- frozen (the default): a logistic-regression head on cached embeddings
  (:mod:`cleaner.models.embeddings`): the backbone runs once per image whatever K is, then K
  heads cost seconds. This is cross-validation on embeddings, as cleanlab's users were told to
  do after in-library CV took days (cleanlab #555). *Pruning* makes these heads stronger on
  noisy labels (measured on faces140k with 10% planted flips, bench/README "Planted label
  errors": +1.5 points of accuracy against the true labels for every texture voter):
  confident learning's prune-and-retrain, inside the fold: an inner cross-validation over the
  training folds only, cleanlab's ``find_label_issues`` on its probabilities, and the head
  trains without the images it flags; so a wrong label in the training folds pulls the head
  less, and the held-out fold's own labels are never used, not even to choose what to prune.
  Optionally the heads also train on the features of the mirror images (a mirrored fake is
  still fake): +1 point on clean labels at 256 px, nothing on noisy ones, so off by default.
  Repeated assignments (:func:`repeated_frozen_oof`, ``--repeats``) average the probabilities
  of several K-fold splits, each honest, by their mean logit.
- fine-tune: each fold trains the top of the backbone plus a sigmoid head on the images of the
  other folds (two phases: head only, then the top ``trainable_top`` layers at a low learning
  rate, batch norm frozen). K trainings: far slower; on faces140k, in the epochs a CPU
  affords, weaker than the frozen texture heads (bench/README "Planted label errors")."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cleaner.dataset import Workspace
from cleaner.errors import CleanerError
from cleaner.models.heads import fit_head, mean_logit
from cleaner.state import duplicates


@dataclass
class OutOfFold:
    """Out-of-fold probabilities, the fold of each image and each fold's size."""

    prob_fake: np.ndarray
    fold: np.ndarray
    """Fold id per image (-1: not predicted, e.g. it did not decode)."""
    k: int
    head: str
    pruned: list[int] = field(default_factory=list)
    """Training images left out of each fold's head by pruning (empty: no pruning)."""
    mirror: bool = False
    """The heads also trained on the mirror images' features."""
    repeat_folds: np.ndarray | None = None
    """``(R, N)`` fold ids, one row per fold assignment, when R > 1 were averaged
    (:func:`repeated_frozen_oof`); ``fold`` is the first row."""


def duplicate_groups(ws: Workspace | None) -> list[list[tuple[str, str]]]:
    """Near-duplicate groups from ``R/.cleaner/duplicates.json`` as lists of (path, sha256);
    ``[]`` when the file is absent. A damaged file is an error naming it (silently ignoring it
    would leak duplicates across folds)."""
    return duplicates.member_keys(ws)


def group_ids(
    paths: Sequence[str], shas: Sequence[str], groups: Sequence[Sequence[tuple[str, str]]]
) -> np.ndarray:
    """One group id per image: images that share a duplicate group (matched by sha256, then by
    path) or the same bytes get the same id; every other image is its own group."""
    return np.array(duplicates.group_index(paths, shas, groups), dtype=np.int64)


def assign_folds(y: np.ndarray, groups: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """Fold id per image: stratified by label, groups never split."""
    from sklearn.model_selection import StratifiedGroupKFold

    n = len(y)
    if k < 2:
        raise CleanerError(f"--folds {k}: out-of-fold probabilities need at least 2 folds")
    n_groups = len(np.unique(groups))
    if n_groups < k:
        raise CleanerError(
            f"--folds {k} needs at least {k} images (or duplicate groups), found {n_groups}; "
            "pass a smaller --folds"
        )
    fold = np.full(n, -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "least populated class has fewer than k members"
        for f, (_, test) in enumerate(splitter.split(np.zeros(n), y, groups)):
            fold[test] = f
    return fold


INNER_FOLDS = 4
"""Folds of the inner cross-validation that decides what a fold's head prunes."""

INNER_MAX_ITER = 30
"""L-BFGS iterations of those inner heads (the fold's own head: up to 300). They only rank the
training images for cleanlab: capping them leaves the pruned voter's flip ranking as it was
and takes about half the time (bench/README.md "Five folds", figures and command there)."""


def prune_set(
    features: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    groups: np.ndarray,
    *,
    head: str = "logreg",
    c: float | None = None,
    mirror: np.ndarray | None = None,
    seed: int = 0,
    regions: int = 1,
    standardised: bool = False,
) -> np.ndarray:
    """The training images (a subset of the indices ``train``) whose labels cleanlab's
    ``find_label_issues`` doubts, judged by an inner grouped cross-validation over ``train``
    alone."""
    from cleanlab.filter import find_label_issues

    yt = y[train]
    if len(np.unique(yt)) < 2 or len(np.unique(groups[train])) < INNER_FOLDS:
        return train[:0]
    inner = assign_folds(yt, groups[train], INNER_FOLDS, seed=seed)
    prob = np.zeros(len(train))
    for g in range(INNER_FOLDS):
        fit_on = train[inner != g]
        if len(np.unique(y[fit_on])) < 2:
            prob[inner == g] = float(y[fit_on].mean())
            continue
        model = fit_head(
            features, y, fit_on, head=head, c=c, mirror=mirror, max_iter=INNER_MAX_ITER,
            regions=regions, standardised=standardised,
        )  # fmt: skip
        prob[inner == g] = model.prob_rows(features, train[inner == g])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        issues = find_label_issues(yt, np.stack([1 - prob, prob], axis=1))
    return train[np.asarray(issues, dtype=bool)]


def frozen_oof(
    features: np.ndarray,
    y: np.ndarray,
    fold: np.ndarray,
    *,
    head: str = "logreg",
    c: float | None = None,
    ok: np.ndarray | None = None,
    mirror: np.ndarray | None = None,
    prune: bool = False,
    groups: np.ndarray | None = None,
    seed: int = 0,
    regions: int = 1,
    standardised: bool = False,
    log: Callable[[str], None] | None = None,
) -> OutOfFold:
    """Train one head per fold on the other folds' features; predict the held-out fold.

    ``mirror``: features of the mirror images (same rows), extra training rows. ``prune``:
    each head trains without the images :func:`prune_set` flags among its training folds
    (``groups`` keeps near duplicates in one inner fold). ``regions``: the features are that
    many rows per image (:class:`cleaner.models.heads.RegionHead`). ``standardised``: the
    features are a projection's coordinates (:func:`cleaner.models.heads.make_head`)."""
    ok = np.ones(len(y), bool) if ok is None else ok
    groups = np.arange(len(y)) if groups is None else groups
    prob = np.full(len(y), np.nan)
    k = int(fold.max()) + 1 if len(fold) else 0
    out_fold = np.where(ok, fold, -1)
    pruned: list[int] = []
    for f in range(k):
        train = np.flatnonzero((fold != f) & ok & (fold >= 0))
        test = (fold == f) & ok
        if not test.any():
            pruned.append(0)
            continue
        if len(np.unique(y[train])) < 2:  # one class only: its prior is all a head could say
            prob[test] = float(y[train].mean()) if len(train) else 0.5
            pruned.append(0)
            continue
        if prune:
            doubt = prune_set(
                features, y, train, groups, head=head, c=c, mirror=mirror, seed=seed + 1 + f,
                regions=regions, standardised=standardised,
            )  # fmt: skip
            kept = np.setdiff1d(train, doubt)
            if len(np.unique(y[kept])) == 2:  # never prune a class away
                train = kept
                pruned.append(len(doubt))
            else:
                pruned.append(0)
        model = fit_head(
            features, y, train, head=head, c=c, mirror=mirror, regions=regions,
            standardised=standardised,
        )  # fmt: skip
        prob[test] = model.prob_rows(features, np.flatnonzero(test))
        if log is not None:
            note = f", {pruned[-1]} pruned" if prune else ""
            log(f"fold {f + 1}/{k}: head trained on {len(train)}{note}, predicted {test.sum()}")
    return OutOfFold(
        prob_fake=prob,
        fold=out_fold,
        k=k,
        head=head,
        pruned=pruned if prune else [],
        mirror=mirror is not None,
    )


def repeated_frozen_oof(
    features: np.ndarray, y: np.ndarray, folds: Sequence[np.ndarray], *, seed: int = 0, **kw: Any
) -> OutOfFold:
    """:func:`frozen_oof` once per fold assignment in ``folds`` (repetition ``r`` with seed
    ``seed + r``, as ``--seed`` would give it alone); an image's probability is the mean logit
    of its repetitions. Each is an honest out-of-fold probability, so their mean is one too;
    averaging takes out the luck of one split (which images share a training set, which ones
    the pruning drops). ``pruned`` lists every repetition's folds in turn; with more than one,
    each log line names its assignment."""
    log = kw.pop("log", None)
    runs = [
        frozen_oof(features, y, f, seed=seed + r, log=_named(log, r, len(folds), seed), **kw)
        for r, f in enumerate(folds)
    ]
    if len(runs) == 1:
        return runs[0]
    return OutOfFold(
        prob_fake=mean_logit(np.stack([r.prob_fake for r in runs]), axis=0),
        fold=runs[0].fold,
        k=runs[0].k,
        head=runs[0].head,
        pruned=[n for r in runs for n in r.pruned],
        mirror=runs[0].mirror,
        repeat_folds=np.stack([r.fold for r in runs]),
    )


def _named(
    log: Callable[[str], None] | None, r: int, n: int, seed: int
) -> Callable[[str], None] | None:
    """``log`` with each line prefixed by fold assignment ``r`` of ``n`` (and its seed)."""
    if log is None or n == 1:
        return log
    return lambda line: log(f"assignment {r + 1}/{n} (seed {seed + r}): {line}")


NORM_SAMPLE = 256
"""Training images per fold whose features set ``--finetune``'s feature standardisation."""


def finetune_oof(
    paths: Sequence[str | os.PathLike[str]],
    y: np.ndarray,
    fold: np.ndarray,
    *,
    backbone: Any,
    weights: str,
    image_size: int,
    crop: str,
    epochs: int = 3,
    head_epochs: int = 1,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    ok: np.ndarray | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> OutOfFold:
    """Per fold: a fresh backbone + sigmoid head, trained on the other folds (head first, then
    the top ``backbone.trainable_top`` layers), predicting the held-out fold."""
    import keras
    import tensorflow as tf

    from cleaner.models.inputs import predict_paths, tf_dataset

    ok = np.ones(len(y), bool) if ok is None else ok
    prob = np.full(len(y), np.nan)
    k = int(fold.max()) + 1
    rng = np.random.default_rng(seed)
    for f in range(k):
        train_idx = np.flatnonzero((fold != f) & ok & (fold >= 0))
        test_idx = np.flatnonzero((fold == f) & ok)
        if not len(test_idx):
            continue
        keras.utils.set_random_seed(seed + f)
        base = backbone.build(weights, image_size)
        inp = keras.Input((image_size, image_size, 3))
        x = base(inp, training=False)  # batch norm stays in inference mode
        # standardise the features as the frozen heads and `cleaner train` do (texture features
        # span orders of magnitude), with statistics of a sample of this fold's training images
        norm = keras.layers.Normalization()
        sample = rng.choice(train_idx, min(len(train_idx), NORM_SAMPLE), replace=False)
        feats, _ = predict_paths(
            base, [paths[int(i)] for i in sample], image_size, crop=crop, batch_size=batch_size
        )
        norm.adapt(feats)
        x = keras.layers.Dropout(0.2)(norm(x))
        out = keras.layers.Dense(1, activation="sigmoid")(x)
        model = keras.Model(inp, out)

        def train_ds(idx: np.ndarray) -> Any:
            order = rng.permutation(idx)  # shuffled here: fit gets shuffle=False
            imgs = tf_dataset(
                [paths[int(i)] for i in order], image_size, crop=crop, batch_size=batch_size
            ).unbatch()
            labels = tf.data.Dataset.from_tensor_slices(y[order].astype(np.float32))
            ds = tf.data.Dataset.zip((imgs, labels)).map(
                lambda im, lab: (tf.image.random_flip_left_right(im[0]), lab)
            )
            ds = ds.apply(tf.data.experimental.assert_cardinality(len(order)))
            return ds.batch(batch_size).prefetch(2)

        phases = [
            (head_epochs, 0, 1e-3),
            (max(0, epochs - head_epochs), backbone.trainable_top, learning_rate),
        ]
        for n_epochs, top, lr in phases:
            if n_epochs <= 0:
                continue
            base.trainable = top > 0
            if top > 0:
                for layer in base.layers[:-top]:
                    layer.trainable = False
                for layer in base.layers:
                    if isinstance(layer, keras.layers.BatchNormalization):
                        layer.trainable = False
            model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy")
            for _ in range(n_epochs):
                model.fit(train_ds(train_idx), epochs=1, verbose=0, shuffle=False)
        p, _ = predict_paths(
            model, [paths[int(i)] for i in test_idx], image_size, crop=crop, batch_size=batch_size
        )
        prob[test_idx] = p[:, 0]
        if log is not None:
            log(f"fold {f + 1}/{k}: trained on {len(train_idx)}, predicted {len(test_idx)}")
        keras.backend.clear_session()
    return OutOfFold(prob_fake=prob, fold=np.where(ok, fold, -1), k=k, head="finetune")
