"""A review list a person can finish: the candidates ranked by how likely each file is
misfiled, the top ``budget`` kept, and what the noise model expects in and below them.

Why: a plan's review list was every image with a confident vote the rule did not carry; on a
weak-voter set that was 752 files, 37% of the dataset (issue 25), in folder order. Ranked by
the probability of being misfiled, the first files a person looks at are the likeliest errors,
and the plan says how many errors the top ``budget`` should hold and how many are left below,
so the person knows what stopping there leaves.

The probability is the noise model's posterior (:meth:`cleaner.noise.NoiseModel.
p_wrong_folder`, with the folder noise rates the estimate's check vouches for); without a
model (hard labels) the mean probability of the other class orders the list and nothing is
expected. ``cleaner serve``'s queue and the report read the same order
(:func:`cleaner.state.plans.review_order`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_REVIEW_BUDGET = 200
"""Files a person is asked to look at (``separate --review-budget``, ``REVIEW_BUDGET``)."""


@dataclass(frozen=True)
class Ranked:
    """One review candidate with its probability of being misfiled (None: no model)."""

    path: str
    p_misfiled: float | None
    mean_other: float


@dataclass
class ReviewList:
    """The candidates in review order, the budget, and what the model expects."""

    order: list[Ranked]
    budget: int
    expected_unlisted: float | None
    """Expected misfiled files among the covered files neither moved nor candidates."""
    by_probability: bool = True
    """Ordered by the noise model's probability (False: by the mean probability)."""

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
            "order": "p_misfiled" if self.by_probability else "mean_prob_other",
            "expected_misfiled_listed": expected(self.listed),
            "expected_misfiled_below": expected(self.below),
            "expected_misfiled_unlisted": None
            if self.expected_unlisted is None
            else round(self.expected_unlisted, 1),
        }


def rank(
    candidates: Sequence[tuple[str, float]],
    p_misfiled: Mapping[str, float] | None,
    budget: int,
    *,
    expected_unlisted: float | None = None,
) -> ReviewList:
    """``candidates``: (path, mean probability of the other class); ``p_misfiled``: path ->
    posterior of being misfiled (None: order by the mean probability). Highest first; ties by
    path, so the order is the same on every run."""
    if budget < 0:
        raise ValueError("budget must be >= 0")
    ranked = [
        Ranked(path, None if p_misfiled is None else float(p_misfiled[path]), mean)
        for path, mean in candidates
    ]

    def key(r: Ranked) -> tuple[float, float, str]:
        return (
            -(r.p_misfiled if r.p_misfiled is not None else r.mean_other),
            -r.mean_other,
            r.path,
        )

    return ReviewList(sorted(ranked, key=key), budget, expected_unlisted, p_misfiled is not None)
