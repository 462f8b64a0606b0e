"""How right would the moves be? An estimate, on the user's own data and before anything moves,
of the precision and recall of the moves a rule makes at each threshold.

Why: a threshold chosen on one dataset is a guess about every other one (faces140k's 0.95 moved
files 82-84% right there and 53% right on a web set whose voters were overconfident).

Two parts, each measuring what the other cannot:

- **A self-test: how often would a mislabelled image move?** Every image is, in memory and one
  at a time, given the other folder's label, and the rule is asked whether it would move it
  back. One at a time because an image's out-of-fold probability comes from heads that never
  saw its label, so swapping it alone (and refitting) leaves its probability unchanged: the
  self-test costs no head, and it adds none of the noise of a self-test that swaps many labels
  at once (whose extra swaps weaken every head: the issue's first try read 0.29 precision for a
  true 0.53). The share of folder B's images that would move if they sat in folder A is the
  recall expected on A's mislabelled images, which are B-images too (divided by 1 - B's noise
  rate, since B's own mislabelled images are among them), counted cautiously: the lower end of
  a one-sided 84% Wilson bound (:func:`wilson_low`), so a rate read off a handful of images is
  not taken at face value.
- **The noise rate per folder**, from a label-noise model (label-noise-robust logistic
  regression, Bootkrajang & Kaban 2012, on one score ``z``, the logit of the mean of the
  files' ``prob_fake``: :func:`score`): the true class is fake with probability
  ``sigmoid(a z + b)``, an image of true class c sits in the other folder with probability
  ``flip[c]``; maximum likelihood of the folder labels. The noise rate of a folder is its
  images' mean posterior of being misfiled.

Then for the moves M_A out of folder A at a threshold: expected right moves = min(M_A, noise_A *
n_A * recall_A); precision = right / moves; recall = right / expected mislabelled images.

What it assumes: mislabelled images look like the correctly filed images of their true class
(true for random swaps; real label errors are often harder, so there the estimate can
overstate), and the voters' logit is roughly linear in the true log-odds in the bulk of the
data (the scores' 1% tails are clipped, so the model never extrapolates past them).
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
    z_range: tuple[float, float] = (-np.inf, np.inf)
    """Scores are clipped to this range (:data:`TAIL`) before the model sees them."""

    def p_true_fake(self, z: np.ndarray) -> np.ndarray:
        z = np.clip(z, *self.z_range)
        return np.asarray(1.0 / (1.0 + np.exp(-(self.a * z + self.b))))

    def p_wrong_folder(self, z: np.ndarray, in_fake: np.ndarray) -> np.ndarray:
        """Posterior that an image with score ``z`` in the fake (``in_fake``) or real folder
        belongs to the other class."""
        q = self.p_true_fake(np.asarray(z, np.float64))
        p_fake_folder = self.flip_real + (1 - self.flip_real - self.flip_fake) * q
        wrong_in_fake = self.flip_real * (1 - q) / np.maximum(p_fake_folder, 1e-300)
        wrong_in_real = self.flip_fake * q / np.maximum(1 - p_fake_folder, 1e-300)
        return np.where(np.asarray(in_fake, bool), wrong_in_fake, wrong_in_real)

    def as_dict(self) -> dict[str, float | int | list[float]]:
        return {
            "a": round(self.a, 4),
            "b": round(self.b, 4),
            "flip_real": round(self.flip_real, 4),
            "flip_fake": round(self.flip_fake, 4),
            "images": self.images,
            "z_range": [round(float(v), 3) for v in self.z_range],
        }


def score(prob_fake: Sequence[float]) -> float:
    """One image's voter score: the logit of the mean of its files' ``prob_fake`` (clipped at
    1e-6, so a hard 0/1 label counts as |logit| 13.8, not infinity).

    Why the mean probability and not the mean logit: it is the statistic the default rule
    (``mean``) thresholds, and the link fits it better. With the mean logit, one voter's
    confident miss outweighed the other's doubt, the voters' shared misses looked surer than
    they are, and the real folder's noise came out 0.077-0.088 for a true 0.100 on faces140k
    (pair, three draws); with the mean probability 0.085-0.097 (bench/README, issue 17c)."""
    p = float(np.mean(np.asarray(prob_fake, np.float64)))
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


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


TAIL = 0.01
"""Scores beyond the 1st and 99th percentiles are clipped to them: the model never
extrapolates past the bulk of the data. Why: a weak voter (Lite0 pooled at 64 px on faces140k,
63% accurate) puts a few correctly labelled images at its most extreme scores, and a logistic
tail fitted through the bulk called those moves 92% right (true: 20%)."""


def _best(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """The lowest penalised NLL from several starting noise rates (it is not convex in them)."""
    from scipy.optimize import minimize

    bounds = [(1e-3, 50.0), (-30.0, 30.0), (0.0, MAX_FLIP), (0.0, MAX_FLIP)]
    share = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
    # the last start is "the folders are right and the voters know nothing"
    starts = [[1.0, 0.0, e, e] for e in (0.01, 0.1, 0.25)] + [
        [1e-3, float(np.log(share / (1 - share))), 0.0, 0.0]
    ]
    best: tuple[float, np.ndarray] | None = None
    for x0 in starts:
        r = minimize(_nll, x0, args=(z, y), jac=True, method="L-BFGS-B", bounds=bounds)
        if best is None or r.fun < best[0]:
            best = (float(r.fun), np.asarray(r.x))
    assert best is not None
    return best


def fit(z: np.ndarray, in_fake: np.ndarray) -> NoiseModel:
    """The maximum likelihood noise model of the folder labels ``in_fake`` given the scores
    ``z`` (clipped to their :data:`TAIL` quantiles)."""
    y = np.asarray(in_fake, bool)
    if len(y) == 0 or y.all() or not y.any():
        return NoiseModel(1.0, 0.0, 0.0, 0.0, len(y))
    z_lo, z_hi = (float(v) for v in np.quantile(np.asarray(z, np.float64), [TAIL, 1 - TAIL]))
    z = np.clip(np.asarray(z, np.float64), z_lo, z_hi)
    _, theta = _best(z, y)
    a, b, e0, e1 = (float(v) for v in theta)
    return NoiseModel(a, b, e0, e1, len(z), (z_lo, z_hi))


def folder_noise(model: NoiseModel, z: np.ndarray, in_fake: np.ndarray) -> dict[bool, float]:
    """Estimated share of misfiled images in the fake (True) and real (False) folders."""
    y = np.asarray(in_fake, bool)
    post = model.p_wrong_folder(z, y)
    return {f: float(post[y == f].mean()) if (y == f).any() else 0.0 for f in (True, False)}


def wilson_low(k: int, n: int, zq: float = 1.0) -> float:
    """Lower end of the Wilson score interval of k successes in n (``zq`` sigmas)."""
    if n == 0:
        return 0.0
    p = k / n
    centre = p + zq * zq / (2 * n)
    spread = zq * np.sqrt(p * (1 - p) / n + zq * zq / (4 * n * n))
    return float(max(0.0, (centre - spread) / (1 + zq * zq / n)))


@dataclass(frozen=True)
class MoveEstimate:
    """What the model expects of one set of moves."""

    moves: int
    precision: float | None
    """Expected right moves over moves (None: no moves)."""
    recall: float | None
    """Expected right moves over expected misfiled images (None: none expected)."""
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


def estimate(
    moved: np.ndarray, swapped_moved: np.ndarray, in_fake: np.ndarray, noise: dict[bool, float]
) -> MoveEstimate:
    """What the self-test expects of one threshold's moves: ``moved``, which images the rule
    moves; ``swapped_moved``, which it would move if each sat alone in the other folder;
    ``noise``, :func:`folder_noise`."""
    mv = np.asarray(moved, bool)
    sw = np.asarray(swapped_moved, bool)
    y = np.asarray(in_fake, bool)
    right = errors = 0.0
    for folder in (True, False):
        mine, other = y == folder, y != folder
        n_other = int(other.sum())
        recall = wilson_low(int(sw[other].sum()), n_other) / max(1e-9, 1 - noise[not folder])
        expected = noise[folder] * int(mine.sum())
        errors += expected
        right += min(float(mv[mine].sum()), expected * min(1.0, recall))
    n = int(mv.sum())
    return MoveEstimate(
        moves=n,
        precision=right / n if n else None,
        recall=right / errors if errors > 0 else None,
        expected_wrong=n - right,
        noise_rate=errors / len(y) if len(y) else 0.0,
    )
