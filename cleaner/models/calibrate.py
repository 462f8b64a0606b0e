"""A decision threshold for the target source, from a few dozen labelled images of it.

A detector's *ranking* transfers to a new source far better than its 0.5 threshold does (Wang
et al., CVPR 2020: StyleGAN 98.5 AP but 73.4% accuracy at 0.5). ``cleaner predict-dir
--calibrate LABELS.json`` therefore keeps every ``prob_fake`` as the model gives it and moves
only the threshold the ``prediction`` label uses: the one that labels the labelled images of
the folder best.

The rule (:func:`fit_threshold`): Platt scaling. A logistic regression of the labels on the
model's logit, ``P(fake) = sigmoid(a * logit(prob_fake) + b)``, fitted on the labelled images;
the threshold is where it crosses 0.5, ``prob_fake = sigmoid(-b / a)``. It uses every labelled
image's distance from the cut, not only which side it falls on, so it moves less from one draw
of a few dozen images to the next than the cut that labels them best (measured on faces140k
re-encoded at 0.5x + JPEG 50, 50 labelled images, 200 draws: accuracy on the others 0.019
below the best threshold's on average, against 0.032 for the best cut on the labelled ones;
bench/README.md "Issue 28"). Where the fitted slope is not positive (the model ranks the
labelled images backwards), the cut that labels them best is taken instead and the record says
so. The accuracy the threshold reaches *on the labelled images* is in-sample and flatters it.

No TensorFlow here: JSON and numpy.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cleaner.choices import Label
from cleaner.dataset import check_input
from cleaner.errors import CleanerError

MIN_LABELLED = 10
"""Fewest labelled images (both classes among them) a threshold is fitted on."""

LABELS_FIX = 'write a JSON list [{"image": "1.png", "label": "fake"}, ...] (or {"1.png": "fake"})'


@dataclass(frozen=True)
class Calibration:
    """The threshold chosen and what it was chosen on."""

    threshold: float
    used: int
    """Labelled images of the folder whose prob_fake the threshold was fitted on."""
    real: int
    fake: int
    accuracy: float
    """Accuracy on those images at ``threshold`` (in-sample)."""
    accuracy_at_half: float
    """Accuracy on those images at the default 0.5."""
    ignored: int
    """Labels that named no predicted image of the folder (missing, skipped or unreadable)."""
    rule: str = "platt"

    def summary(self) -> dict[str, Any]:
        return {
            "threshold": round(self.threshold, 6),
            "labelled_used": self.used,
            "labelled_real": self.real,
            "labelled_fake": self.fake,
            "accuracy_on_labelled": round(self.accuracy, 4),
            "accuracy_on_labelled_at_0.5": round(self.accuracy_at_half, 4),
            "labels_ignored": self.ignored,
            "rule": self.rule,
            "note": "accuracy_on_labelled is in-sample (the threshold was fitted on them)",
        }


def read_labels(path: str | os.PathLike[str]) -> dict[str, Label]:
    """``LABELS.json``: image name -> label, from ``[{"image", "label"}]`` (the format of
    ``cleaner evaluate --labels``) or ``{"name": "label"}``; one clear error otherwise."""
    p = check_input(path, "--calibrate", LABELS_FIX)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CleanerError(f"--calibrate {p} is not valid JSON ({e}); {LABELS_FIX}") from None
    pairs: list[tuple[Any, Any]]
    if isinstance(doc, Mapping):
        pairs = list(doc.items())
    elif isinstance(doc, list) and all(isinstance(e, Mapping) for e in doc):
        pairs = [(e.get("image"), e.get("label")) for e in doc]
    else:
        raise CleanerError(f"--calibrate {p}: not a list of {{image, label}}; {LABELS_FIX}")
    out: dict[str, Label] = {}
    for name, label in pairs:
        if not isinstance(name, str) or label not in tuple(Label):
            raise CleanerError(
                f"--calibrate {p}: entry {name!r} -> {label!r} needs an image name and a label "
                f"real or fake; {LABELS_FIX}"
            )
        out[Path(name).name] = Label(label)
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(q / (1 - q))


def fit_threshold(
    prob: Sequence[float] | np.ndarray, fake: Sequence[bool] | np.ndarray
) -> tuple[float, float, str]:
    """The threshold (``prediction`` is fake when ``prob_fake >= threshold``) for these images:
    Platt scaling's 0.5 crossing, or (slope not positive) :func:`best_cut`; returns
    ``(threshold, its accuracy on them, the rule used)``."""
    from sklearn.linear_model import LogisticRegression

    lz = _logit(np.asarray(prob, np.float64))
    y = np.asarray(fake, bool)
    fit = LogisticRegression(C=10.0).fit(lz[:, None], y)
    a, b = float(fit.coef_[0, 0]), float(fit.intercept_[0])
    if a <= 0:
        t, acc = best_cut(prob, fake)
        return t, acc, "best cut (the model ranks these images backwards)"
    c = -b / a
    return 1.0 / (1.0 + math.exp(-c)), float(np.mean((lz >= c) == y)), "platt"


def best_cut(
    prob: Sequence[float] | np.ndarray, fake: Sequence[bool] | np.ndarray
) -> tuple[float, float]:
    """The cut that labels these images best, the median of the best ones in logit space;
    returns ``(threshold, its accuracy)``."""
    p = np.asarray(prob, np.float64)
    y = np.asarray(fake, bool)
    z = np.unique(_logit(p))
    cuts = np.concatenate([[z[0] - 1.0], (z[:-1] + z[1:]) / 2, [z[-1] + 1.0]])
    lz = _logit(p)
    acc = np.array([np.mean((lz >= c) == y) for c in cuts])
    best = cuts[acc >= acc.max() - 1e-12]
    c = float(np.median(best))
    if len(best) % 2 == 0:  # the median of an even count: one of the two middle cuts, not between
        c = float(best[len(best) // 2 - 1])
    return 1.0 / (1.0 + math.exp(-c)), float(np.mean((lz >= c) == y))


def calibrate(
    names: Sequence[str], prob: Sequence[float], labels: Mapping[str, Label], source: str
) -> Calibration:
    """The threshold fitted on the predicted images (``names`` with their ``prob``) that
    ``labels`` names; ``source``: the labels file, for the error messages."""
    at = {n: i for i, n in enumerate(names)}
    used = [(at[n], lab) for n, lab in labels.items() if n in at]
    n_fake = sum(1 for _, lab in used if lab is Label.FAKE)
    n_real = len(used) - n_fake
    if len(used) < MIN_LABELLED or min(n_fake, n_real) == 0:
        raise CleanerError(
            f"--calibrate {source}: {len(used)} labelled images of the folder were predicted "
            f"({n_real} real, {n_fake} fake); label at least {MIN_LABELLED} of its images, "
            "both classes among them (a few dozen are better)"
        )
    p = np.array([prob[i] for i, _ in used], np.float64)
    y = np.array([lab is Label.FAKE for _, lab in used])
    threshold, acc, rule = fit_threshold(p, y)
    return Calibration(
        threshold=threshold,
        used=len(used),
        real=n_real,
        fake=n_fake,
        accuracy=acc,
        accuracy_at_half=float(np.mean((p >= 0.5) == y)),
        ignored=len(labels) - len(used),
        rule=rule,
    )
