"""The --max-fraction guard shared by `separate` and `dedupe`: a plan that takes more than a
set fraction of a class out of its folder says more about the check than about the data, so it
is written and not applied."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Protocol


class Explain(Protocol):
    def __call__(self, label: str, n_out: int, total: int, frac: float, needed: float) -> str: ...


def fraction_guard(
    out: Mapping[str, int],
    totals: Mapping[str, int],
    labels: Iterable[str],
    max_fraction: float,
    explain: Explain,
) -> dict[str, Any]:
    """Per class: the fraction of its files the plan takes out, and whether all are within
    ``max_fraction``; ``why`` (from ``explain``) names the worst class over it, with the
    fraction (rounded up to 0.01) that would let the plan through."""
    fractions: dict[str, float] = {}
    why = ""
    worst = 0.0
    for label in labels:
        n_out, total = out.get(label, 0), totals.get(label, 0)
        frac = n_out / total if total else 0.0
        fractions[label] = round(frac, 6)
        if frac > max_fraction + 1e-12 and frac > worst:
            worst = frac
            why = explain(label, n_out, total, frac, math.ceil(frac * 100) / 100)
    return {"ok": not why, "max_fraction": max_fraction, "fractions": fractions, "why": why}
