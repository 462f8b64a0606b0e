"""A review list a person can finish: the candidates ranked by how likely each file is
misfiled, the top ``budget`` kept, and what the noise model expects in and below them.

Why: a plan's review list was every image with a confident vote the rule did not carry; on a
weak-voter set that was 752 files, 37% of the dataset (issue 25), in folder order. Ranked by
the probability of being misfiled, the first files a person looks at are the likeliest errors,
and the plan says how many errors the top ``budget`` should hold and how many are left below,
so the person knows what stopping there leaves.

The probability is the noise model's posterior (:meth:`cleaner.noise.NoiseModel.
p_wrong_folder`, with the folder noise rates the estimate's check vouches for). Without a model
the check vouches for (a failed check, hard labels) nothing is expected, and the voters' mean
logit of the other class orders the list (:func:`mean_logit_other`). ``cleaner serve``'s queue
and the report read the same order (:func:`cleaner.state.plans.review_order`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_REVIEW_BUDGET = 200
"""Files a person is asked to look at (``separate --review-budget``, ``REVIEW_BUDGET``)."""


def mean_logit_other(p_other: Sequence[float]) -> float:
    """The voters' mean logit of the other class (each probability clipped at 1e-6): the
    review order when no noise model is vouched for.

    Why the mean logit and not the mean probability: of two voters, one sure of the other
    class (0.999) and one in doubt rank above two that are both fairly sure (0.8, 0.8) by the
    mean logit, below by the mean probability; on faces140k degraded (two voters that the
    check fails, three draws of 10% flips) the top 200 held 104 / 103 / 102 planted flips
    ordered by the mean logit against 102 / 98 / 98 by the mean probability (bench/README,
    issue 25). With one voter the two orders are the same."""
    p = np.clip(np.asarray(p_other, np.float64), 1e-6, 1 - 1e-6)
    return float(np.mean(np.log(p / (1 - p)))) if len(p) else 0.0


@dataclass(frozen=True)
class Ranked:
    """One review candidate with its probability of being misfiled (None: no model)."""

    path: str
    p_misfiled: float | None
    mean_other: float
    logit_other: float = 0.0
    """:func:`mean_logit_other` of its votes (the order without a model)."""


@dataclass
class ReviewList:
    """The candidates in review order, the budget, and what the model expects."""

    order: list[Ranked]
    budget: int
    expected_unlisted: float | None
    """Expected misfiled files among the covered files neither moved nor candidates."""
    by_probability: bool = True
    """Ordered by the noise model's probability (False: by :func:`mean_logit_other`)."""

    @property
    def listed(self) -> list[Ranked]:
        return self.order[: self.budget]

    @property
    def below(self) -> list[Ranked]:
        return self.order[self.budget :]

    def summary(self) -> dict[str, Any]:
        """The plan's ``review_budget``."""

        def expected(items: Sequence[Ranked]) -> float | None:
            ps = [r.p_misfiled for r in items]
            if any(p is None for p in ps):
                return None
            return round(sum(p for p in ps if p is not None), 1)

        return {
            "budget": self.budget,
            "candidates": len(self.order),
            "listed": len(self.listed),
            "order": "p_misfiled" if self.by_probability else "mean_logit_other",
            "expected_misfiled_listed": expected(self.listed),
            "expected_misfiled_below": expected(self.below),
            "expected_misfiled_unlisted": None
            if self.expected_unlisted is None
            else round(self.expected_unlisted, 1),
        }


def rank(
    candidates: Sequence[tuple[str, Sequence[float]]],
    p_misfiled: Mapping[str, float] | None,
    budget: int,
    *,
    expected_unlisted: float | None = None,
) -> ReviewList:
    """``candidates``: (path, each vote's probability of the other class); ``p_misfiled``: path
    -> posterior of being misfiled (None: order by :func:`mean_logit_other`). Highest first;
    ties by the mean probability, then by path, so the order is the same on every run."""
    if budget < 0:
        raise ValueError("budget must be >= 0")
    ranked = [
        Ranked(
            path,
            None if p_misfiled is None else float(p_misfiled[path]),
            float(np.mean(ps)) if len(ps) else 0.0,
            mean_logit_other(ps),
        )
        for path, ps in candidates
    ]

    def key(r: Ranked) -> tuple[float, float, str]:
        return (
            -(r.p_misfiled if r.p_misfiled is not None else r.logit_other),
            -r.mean_other,
            r.path,
        )

    return ReviewList(sorted(ranked, key=key), budget, expected_unlisted, p_misfiled is not None)
