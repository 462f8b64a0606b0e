"""The heads on frozen features: what the out-of-fold folds (:mod:`cleaner.models.folds`),
``train --by-source`` (:mod:`cleaner.models.sources`) and the benches fit on embeddings.

- :class:`LogRegHead`: the default, L2 logistic regression (:mod:`cleaner.models.logreg`) reading
  its training rows in place; :class:`SklearnHead`: a scikit-learn estimator (``logreg-cv``);
  :class:`RegionHead`: a head over the quadrant rows of a ``-quad`` backbone, judging an image by
  the mean logit of its rows.
- :func:`make_head` builds one by name (:class:`~cleaner.choices.HeadKind`), :func:`fit_head`
  builds and fits one on some rows.
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import numpy as np

from cleaner.choices import HeadKind, values
from cleaner.errors import CleanerError

HEADS: tuple[str, ...] = values(HeadKind)

HEAD_C = 0.003
"""Regularisation of the default head: as good as choosing C by inner cross-validation
(``logreg-cv``) at a fraction of the time, on faces140k (bench/README.md "Five folds")."""


class Head(Protocol):
    """What the folds need of a head: fit on some rows of a feature matrix (read in place,
    with their mirror rows when given), then prob_fake of other rows. :func:`make_head` builds
    the ones cleaner has (:class:`~cleaner.choices.HeadKind`)."""

    def fit_rows(
        self, features: np.ndarray, y: np.ndarray, rows: np.ndarray, mirror: np.ndarray | None
    ) -> None: ...

    def prob_rows(self, features: np.ndarray, rows: np.ndarray) -> np.ndarray: ...


class LogRegHead:
    """The default head: L2 logistic regression on standardised features
    (:mod:`cleaner.models.logreg`), reading the training rows in place instead of copying and
    standardising them (scikit-learn's pipeline needs 2.6x the feature matrix on top of it)."""

    def __init__(self, c: float, max_iter: int = 300, *, standardise: bool = True) -> None:
        self.c = c
        self.max_iter = max_iter
        self.standardise = standardise
        """False: the features are a projection's coordinates, already standardised
        (:mod:`cleaner.models.projection`), and are used as they are."""
        self.model: Any = None

    def fit_rows(
        self, features: np.ndarray, y: np.ndarray, rows: np.ndarray, mirror: np.ndarray | None
    ) -> None:
        from cleaner.models import logreg

        blocks = [(features, rows)] + ([(mirror, rows)] if mirror is not None else [])
        t = np.concatenate([y[rows]] * len(blocks))
        dim = features.shape[1]
        given = None if self.standardise else (np.zeros(dim), np.ones(dim))
        self.model = logreg.fit(blocks, t, c=self.c, max_iter=self.max_iter, standardise=given)

    def prob_rows(self, features: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.prob(features, rows))


class SklearnHead:
    """A scikit-learn classifier (``fit`` / ``predict_proba``) behind the heads' interface; it
    gets copies of the rows (``logreg-cv``)."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit_rows(
        self, features: np.ndarray, y: np.ndarray, rows: np.ndarray, mirror: np.ndarray | None
    ) -> None:
        x, t = features[rows], y[rows]
        if mirror is not None:
            x, t = np.concatenate([x, mirror[rows]]), np.concatenate([t, t])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn's FutureWarnings and ConvergenceWarnings
            self.estimator.fit(x, t)

    def prob_rows(self, features: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.predict_proba(features[rows])[:, 1])


def region_rows(features: np.ndarray, regions: int) -> np.ndarray:
    """``(N, R * D)`` features of a ``regions = R`` backbone as ``(N * R, D)``: row ``i * R + r``
    is region ``r`` of image ``i`` (a view of contiguous features, not a copy)."""
    n, d = features.shape
    if d % regions:
        raise CleanerError(
            f"features of width {d} are not {regions} equal regions; "
            "delete R/.cleaner/cache/embeddings and predict again"
        )
    return features.reshape(n * regions, d // regions)


class RegionHead:
    """A head over images whose feature vector is ``regions`` rows (a ``-gram-quad``
    backbone's quadrants): it trains ``inner`` on every region row with its image's label and
    judges an image by the mean logit of its rows (:func:`region_rows`); an image's regions
    always fall on the same side of a fold."""

    def __init__(self, inner: Head, regions: int) -> None:
        self.inner = inner
        self.regions = regions

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        return (np.asarray(rows)[:, None] * self.regions + np.arange(self.regions)).ravel()

    def fit_rows(
        self, features: np.ndarray, y: np.ndarray, rows: np.ndarray, mirror: np.ndarray | None
    ) -> None:
        r = self.regions
        m = region_rows(mirror, r) if mirror is not None else None
        self.inner.fit_rows(region_rows(features, r), np.repeat(y, r), self._rows(rows), m)

    def prob_rows(self, features: np.ndarray, rows: np.ndarray) -> np.ndarray:
        p = self.inner.prob_rows(region_rows(features, self.regions), self._rows(rows))
        return mean_logit(np.asarray(p).reshape(-1, self.regions), axis=1)


def mean_logit(prob: np.ndarray, axis: int) -> np.ndarray:
    """The probability whose logit is the mean of the logits of ``prob`` along ``axis`` (an
    image's regions, or its repeated out-of-fold probabilities); probabilities are clipped at
    1e-12 first, so |logit| <= 27.6. NaN stays NaN."""
    p = np.clip(np.asarray(prob, np.float64), 1e-12, 1 - 1e-12)
    z = np.log(p / (1 - p)).mean(axis=axis)
    return np.asarray(1 / (1 + np.exp(-z)))


def make_head(
    name: str = "logreg",
    *,
    c: float | None = None,
    max_iter: int = 300,
    regions: int = 1,
    standardised: bool = False,
) -> Head:
    """A fresh head for embeddings: standardise, then logistic regression, strongly
    regularised (features are wide, folds are small; ``c`` overrides :data:`HEAD_C`, as the
    texture backbones do); ``logreg-cv`` picks C by an inner 3-fold CV instead (scikit-learn's
    ``LogisticRegressionCV``, about 18x slower, and it copies the rows). ``regions > 1``: a
    :class:`RegionHead` around it. ``standardised``: the features are a projection's
    coordinates (:mod:`cleaner.models.projection`), fitted as they are, not standardised again.
    """
    if regions > 1:
        inner = make_head(name, c=c, max_iter=max_iter, standardised=standardised)
        return RegionHead(inner, regions)
    if name == "logreg":
        return LogRegHead(HEAD_C if c is None else c, max_iter, standardise=not standardised)
    if name == "logreg-cv":
        from sklearn.linear_model import LogisticRegressionCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        lr = LogisticRegressionCV(
            Cs=[0.001, 0.003, 0.01, 0.03, 0.1, 1.0], cv=3, max_iter=300, scoring="neg_log_loss"
        )
        return SklearnHead(
            make_pipeline(lr) if standardised else make_pipeline(StandardScaler(), lr)
        )
    raise CleanerError(f"unknown head {name!r}; choose one of: {', '.join(HEADS)}")


def fit_head(
    features: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    *,
    head: str,
    c: float | None,
    mirror: np.ndarray | None,
    max_iter: int = 300,
    regions: int = 1,
    standardised: bool = False,
) -> Head:
    """A head fitted on the rows ``train`` (indices), plus their mirror rows when given."""
    model = make_head(head, c=c, max_iter=max_iter, regions=regions, standardised=standardised)
    model.fit_rows(features, y, train, mirror)
    return model
