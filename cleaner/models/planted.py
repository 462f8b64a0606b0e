"""The planted run of ``cleaner predict``: what ``separate``'s check of its estimate needs.

The heads are fitted a second time on the cached features, with the labels of a small sample
of each folder swapped in memory (the images stay where they are), and every image's
out-of-fold probability of that run is written beside its own (``planted_prob_fake``; the
swapped ones also say ``planted: true``). ``separate`` (:mod:`cleaner.estimate_check`) then has
images it *knows* are misfiled, in a world it knows more about than the user's: how many of
them each threshold moves back, against what its estimate expects.

Cost: the heads once more (the same folds, the same pruning); the backbone never runs again
(the features come from the embedding cache the first run filled or read).

Which images: in each folder the :data:`PLANT_SHARE` whose ``sha256("cleaner-planted:" +
sha256)`` is smallest, a choice by content alone, so every voter's ``predict`` on the same
images swaps the same ones whatever its seed, and ``separate`` can combine their votes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PLANT_SHARE = 0.1
"""Share of each folder swapped in the planted run: 110 of 1,100 faces per folder (enough to
count recoveries at the thresholds a target picks), like the 10% of real label noise the
benches plant, so the planted run's heads are not much weaker than the user's."""


def plant_key(sha256: str) -> str:
    """The content key that orders images for planting (smallest first)."""
    return hashlib.sha256(f"cleaner-planted:{sha256}".encode()).hexdigest()


def planted_mask(
    labels: Sequence[int] | np.ndarray, shas: Sequence[str], share: float = PLANT_SHARE
) -> np.ndarray:
    """Which images the planted run swaps: in each folder (label value) the ``share`` (rounded)
    with the smallest :func:`plant_key`."""
    y = np.asarray(labels)
    out = np.zeros(len(y), bool)
    keys = np.array([plant_key(s) for s in shas])
    for v in np.unique(y):
        idx = np.flatnonzero(y == v)
        k = round(share * len(idx))
        if k and len(idx) > k:
            out[idx[np.argsort(keys[idx], kind="stable")[:k]]] = True
    return out


@dataclass
class PlantedRun:
    """The planted run's out-of-fold probabilities and which images it swapped."""

    prob_fake: np.ndarray
    swapped: np.ndarray
    seconds: float

    def info(self) -> dict[str, Any]:
        """What the predictions file's ``model`` says of the run."""
        return {
            "share": PLANT_SHARE,
            "swapped": int(self.swapped.sum()),
            "key": "sha256('cleaner-planted:' + sha256), smallest per folder",
            "seconds": round(self.seconds, 1),
        }


def planted_run(
    fit: Callable[[np.ndarray], np.ndarray], y: np.ndarray, shas: Sequence[str]
) -> PlantedRun:
    """``fit(labels) -> prob_fake``: the same heads as the user's run (same folds, same
    pruning), given the labels with :func:`planted_mask`'s images swapped."""
    t0 = time.perf_counter()
    swapped = planted_mask(y, shas)
    prob = fit(np.where(swapped, 1 - y, y))
    return PlantedRun(np.asarray(prob), swapped, time.perf_counter() - t0)
