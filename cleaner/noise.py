"""How right would the moves be? An estimate of each image's chance of being mislabelled, fitted
on the user's own out-of-fold probabilities and folder labels, before anything moves.

Why a model and not a fixed threshold: a threshold chosen on one dataset is a guess about every
other one (faces140k's 0.95 moved files 82-84% right there and 53% right on a web set whose
voters were overconfident). What the data itself says is how the folder labels relate to the
voters' score ``z`` (the mean logit of the files' ``prob_fake``) over the whole dataset.

The model (label-noise-robust logistic regression, Bootkrajang & Kaban 2012, on one score):
the true class is fake with probability ``q = sigmoid(a z + b)`` (a recalibration of the
voters, fitted here), and an image of true class ``c`` sits in the other class's folder with
probability ``flip[c]``, whatever it looks like (class-conditional noise: errors are drawn at
random within a class). The folder label is then fake with probability
``flip_real + (1 - flip_real - flip_fake) q``; the four numbers maximise the likelihood of the
folder labels. Each image's posterior of being in the wrong folder follows, so for any set of
moves: estimated precision = mean posterior of the moved images, expected wrong moves = the
sum of (1 - posterior), estimated recall = the moved posterior mass over the whole dataset's,
the estimated noise rate = the mean posterior.

This is also what a self-test that swaps labels in memory measures, without its bias: an image's
out-of-fold probability comes from a head that never saw its label, so swapping one image's
label (and refitting) leaves its own probability unchanged; the only thing a refit with many
swapped labels adds is noise in the *other* images' heads that the real run does not have
(the issue's naive self-test read 0.29 for a true 0.53). Swapping every image alone, which
costs nothing, is what the fit above uses. What it assumes: mislabelled images look like the
correctly labelled images of their true class (true for random swaps; real label errors are
often harder, so on them the estimate can overstate), and the recalibrated voters' logit is
linear in the true log-odds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_FLIP = 0.45
"""Largest noise rate the fit allows per class: at 0.5 a folder says nothing about its class."""


@dataclass(frozen=True)
class NoiseModel:
    """A fitted noise model: the voters' recalibration and the per-class noise rates."""

    a: float
    b: float
    flip_real: float
    """P(in the fake folder | truly real)."""
    flip_fake: float
    """P(in the real folder | truly fake)."""
    images: int

    def p_true_fake(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(1.0 / (1.0 + np.exp(-(self.a * z + self.b))))

    def p_wrong_folder(self, z: np.ndarray, in_fake: np.ndarray) -> np.ndarray:
        """Posterior that an image with score ``z`` in the fake (``in_fake``) or real folder
        belongs to the other class."""
        q = self.p_true_fake(np.asarray(z, np.float64))
        p_fake_folder = self.flip_real + (1 - self.flip_real - self.flip_fake) * q
        wrong_in_fake = self.flip_real * (1 - q) / np.maximum(p_fake_folder, 1e-300)
        wrong_in_real = self.flip_fake * q / np.maximum(1 - p_fake_folder, 1e-300)
        return np.where(np.asarray(in_fake, bool), wrong_in_fake, wrong_in_real)

    def as_dict(self) -> dict[str, float | int]:
        return {
            "a": round(self.a, 4),
            "b": round(self.b, 4),
            "flip_real": round(self.flip_real, 4),
            "flip_fake": round(self.flip_fake, 4),
            "images": self.images,
        }


def score(prob_fake: Sequence[float]) -> float:
    """One image's voter score: the mean logit of its files' ``prob_fake`` (clipped at 1e-6,
    so a hard 0/1 label counts as |logit| 13.8, not infinity)."""
    p = np.clip(np.asarray(prob_fake, np.float64), 1e-6, 1 - 1e-6)
    return float(np.mean(np.log(p / (1 - p))))


PRIOR = 2.0
"""Weight of the prior ``(1 - flip)^PRIOR`` on each noise rate (a Beta(1, 3) prior): it only
decides where the data cannot, and there it prefers less noise, so fewer moves. Without it a
voter that knows nothing, on a dataset with more of one class, fits "every image is truly of
the larger class, the other folder is all mislabelled" as well as "the folders are right",
and the first would call every move right."""


def _nll(theta: np.ndarray, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """The penalised negative log-likelihood and its gradient in (a, b, flip_real, flip_fake)."""
    a, b, e0, e1 = theta
    q = 1.0 / (1.0 + np.exp(-(a * z + b)))
    p1 = np.clip(e0 + (1 - e0 - e1) * q, 1e-12, 1 - 1e-12)
    prior = PRIOR * (np.log1p(-e0) + np.log1p(-e1))
    f = -np.sum(np.where(y, np.log(p1), np.log1p(-p1))) - prior
    g = np.where(y, -1.0 / p1, 1.0 / (1.0 - p1))  # d f / d p1
    slope = g * (1 - e0 - e1) * q * (1 - q)
    grad = np.array(
        [
            np.dot(slope, z),
            slope.sum(),
            np.dot(g, 1 - q) + PRIOR / (1 - e0),
            -np.dot(g, q) + PRIOR / (1 - e1),
        ]
    )
    return float(f), grad


LOWER_BOUND_NLL = 1.35
"""How much worse than the best fit (in log-likelihood) the cautious model may be: half the
chi-square(1) 0.9 quantile, so its noise is a one-sided 95% lower bound. Less noise means lower
posteriors, so estimated precision errs low (moves lost), not high (wrong moves made)."""


def _best(z: np.ndarray, y: np.ndarray, max_noise: float | None = None) -> tuple[float, np.ndarray]:
    """The lowest penalised NLL (several starting noise rates: it is not convex in them),
    with ``flip_real + flip_fake <= max_noise`` when given."""
    from scipy.optimize import minimize

    bounds = [(1e-3, 50.0), (-30.0, 30.0), (0.0, MAX_FLIP), (0.0, MAX_FLIP)]
    best: tuple[float, np.ndarray] | None = None
    for e in (0.01, 0.1, 0.25):
        if max_noise is None:
            r = minimize(
                _nll, [1.0, 0.0, e, e], args=(z, y), jac=True, method="L-BFGS-B", bounds=bounds
            )
        else:
            e = min(e, max_noise / 2)
            cons = [
                {
                    "type": "ineq",
                    "fun": lambda t: max_noise - t[2] - t[3],
                    "jac": lambda t: np.array([0.0, 0.0, -1.0, -1.0]),
                }
            ]
            r = minimize(
                _nll, [1.0, 0.0, e, e], args=(z, y), jac=True, method="SLSQP", bounds=bounds,
                constraints=cons,
            )  # fmt: skip
        if best is None or r.fun < best[0]:
            best = (float(r.fun), np.asarray(r.x))
    assert best is not None
    return best


def fit(z: np.ndarray, in_fake: np.ndarray, *, cautious: bool = True) -> NoiseModel:
    """The noise model of the folder labels ``in_fake`` given the scores ``z``: the maximum
    likelihood fit, or (``cautious``) the fit with the least noise the data still allow
    (:data:`LOWER_BOUND_NLL`; found by bisection on ``flip_real + flip_fake``)."""
    z = np.asarray(z, np.float64)
    y = np.asarray(in_fake, bool)
    if len(z) == 0 or y.all() or not y.any():
        return NoiseModel(1.0, 0.0, 0.0, 0.0, len(z))
    nll, theta = _best(z, y)
    if cautious:
        lo, hi = 0.0, float(theta[2] + theta[3])
        for _ in range(10):
            mid = (lo + hi) / 2
            f, t = _best(z, y, mid)
            if f <= nll + LOWER_BOUND_NLL:
                hi, theta = mid, t
            else:
                lo = mid
            if hi - lo < 0.002:
                break
    a, b, e0, e1 = (float(v) for v in theta)
    return NoiseModel(a, b, e0, e1, len(z))


@dataclass(frozen=True)
class MoveEstimate:
    """What the model expects of one set of moves."""

    moves: int
    precision: float | None
    """Mean posterior of the moved images (None: no moves)."""
    recall: float | None
    """Their posterior mass over the dataset's (None: no mislabelled image expected)."""
    expected_wrong: float
    noise_rate: float
    """Expected fraction of mislabelled images in the dataset."""

    def as_dict(self) -> dict[str, float | int | None]:
        r = None if self.recall is None else round(self.recall, 4)
        return {
            "moves": self.moves,
            "estimated_precision": None if self.precision is None else round(self.precision, 4),
            "estimated_recall": r,
            "expected_wrong_moves": round(self.expected_wrong, 1),
            "estimated_noise_rate": round(self.noise_rate, 4),
        }


def estimate(posterior: np.ndarray, moved: np.ndarray) -> MoveEstimate:
    """Estimated precision, recall and wrong moves of moving the images ``moved`` (a bool
    mask over the images whose posteriors are ``posterior``)."""
    post = np.asarray(posterior, np.float64)
    m = np.asarray(moved, bool)
    total = float(post.sum())
    hit = float(post[m].sum())
    n = int(m.sum())
    return MoveEstimate(
        moves=n,
        precision=hit / n if n else None,
        recall=hit / total if total > 0 else None,
        expected_wrong=n - hit,
        noise_rate=total / len(post) if len(post) else 0.0,
    )
