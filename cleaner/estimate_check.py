"""The check of the move-precision estimate on the user's own data, every ``separate`` run.

Why: the estimate (:mod:`cleaner.noise`) rests on a noise model whose noise rates the data do
not pin down on weak voters: a voter that is unsure, and a folder that holds misfiled files,
look alike to it. On faces140k with a weak voter it read 31% noise in one folder and 0.7% in
the other for a true 10% and 10%, and promised 77% right moves where 30% were (issue 25);
nothing in the voters' scores alone can show that (the self-test, the mixture-proportion bound
and the fit's own likelihood were all consistent with the wrong answer).

What the check knows that the estimate does not: ``cleaner predict`` fitted its heads a second
time with the labels of a known sample of each folder swapped (:mod:`cleaner.models.planted`,
``planted_prob_fake`` in the predictions files). In that planted run the noise is the user's
plus swaps the check counted itself. So the noise model is fitted again on the planted run,
and the misfiled files it finds there are compared with the ones it found in the user's run:

- expected rise in folder A: the swaps put into A that were truly misfiled before, minus the
  truly misfiled A files swapped out, ``(1 - noise_B) k_B - noise_A k_A`` (the noise rates the
  model gave the user's run);
- found: ``noise'_A n'_A - noise_A n_A`` (the planted run's folders).

Their ratio, the **recovery**, is about 1 when the model sees misfiled files as misfiled (the
default pair on faces140k) and far from it when it cannot tell them from the voters' doubt (the
weak voter found *fewer* misfiled files after 220 were planted). When the found rise exceeds
the expected one by more than :data:`OVER` of it, or falls short by more than :data:`UNDER`
(or, on few swaps, by more than :data:`SIGMAS` square roots of it: 15 planted per folder on 300
images), in either folder, the check fails: no threshold is vouched for, nothing moves
whatever ``--target-precision`` says, and the plan says why in one line. Without a planted
run in every predictions file (other tools' files, ``--no-planted``, files from before this
check) there is nothing to check with: the same refusal, naming the fix.

Cost in ``separate``: one more noise-model fit (about a second per 2,200 images); the heads'
second fit is ``predict``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cleaner.choices import CheckOutcome
from cleaner.noise import fit, folder_noise, score

OVER = 0.3
"""Largest share of the expected rise by which the misfiled files found in the planted run may
exceed it (recovery up to 1.3): more, and the model reads the voters' doubt as noise, the
direction in which its precision overstates."""
UNDER = 0.5
"""Largest share by which they may fall short (recovery down to 0.5). A model that finds too
few misfiled files counts too little noise, so its estimate understates (Lite2-gram alone on
faces140k: recovery 0.74 in the real folder, whose noise it put at 7.4% for a true 10%, every
precision estimate below the truth); one that finds none or fewer than before is blind to
them (the weak voter: -0.38, 0.00). bench/README issue 25 lists the recoveries measured."""
SIGMAS = 2.0
"""On few swaps the gap may also reach this many square roots of the expected rise."""

REFUSAL = "the voters' evidence cannot vouch for any threshold"


@dataclass(frozen=True)
class PlantedRun:
    """The planted run of every covered image (same order as the user's run): each file's
    ``planted_prob_fake`` and whether the run swapped the image's label."""

    prob_fake: Sequence[Sequence[float]]
    swapped: np.ndarray


@dataclass
class Check:
    """What the check found; ``vouched``: the estimate stands."""

    outcome: CheckOutcome
    why: str
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def vouched(self) -> bool:
        return self.outcome == CheckOutcome.PASSED

    def line(self) -> str:
        """One line for the summary: the outcome and why."""
        if self.vouched:
            return f"check passed: {self.why}"
        return f"{REFUSAL}: {self.why}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": "planted swaps: noise refitted on predict's planted run",
            "outcome": self.outcome.value,
            "why": self.why,
            "over": OVER,
            "under": UNDER,
            "sigmas": SIGMAS,
            "folders": self.folders,
        }


def unavailable(why: str) -> Check:
    return Check(CheckOutcome.UNAVAILABLE, why)


def check(
    z: np.ndarray, in_fake: np.ndarray, noise: dict[bool, float], planted: PlantedRun
) -> Check:
    """Compare the misfiled files the noise model finds in the planted run with those it found
    in the user's run (``z``, ``in_fake``, ``noise``: :class:`cleaner.consensus.SelfTest`'s)."""
    y = np.asarray(in_fake, bool)
    sw = np.asarray(planted.swapped, bool)
    if len(sw) != len(y) or len(planted.prob_fake) != len(y):
        return unavailable("the planted run does not cover the same images as the votes")
    if not sw.any():
        return unavailable("the planted run swapped no image (too few per folder)")
    y2 = y ^ sw
    z2 = np.array([score(list(p)) for p in planted.prob_fake])
    noise2 = folder_noise(fit(z2, y2), z2, y2)
    folders: dict[str, dict[str, Any]] = {}
    bad: list[str] = []
    for f, name in ((True, "fake"), (False, "real")):
        k_in, k_out = int((sw & ~y).sum() if f else (sw & y).sum()), int((sw & (y == f)).sum())
        expected = (1 - noise[not f]) * k_in - noise[f] * k_out
        found = noise2[f] * int((y2 == f).sum()) - noise[f] * int((y == f).sum())
        recovery = found / expected if expected > 0 else 0.0
        folders[name] = {
            "swapped_in": k_in,
            "expected_rise": round(expected, 1),
            "found_rise": round(found, 1),
            "recovery": round(recovery, 3),
            "noise": round(noise[f], 4),
            "noise_planted": round(noise2[f], 4),
        }
        root = SIGMAS * float(np.sqrt(max(expected, 0.0)))
        low, high = expected - max(UNDER * expected, root), expected + max(OVER * expected, root)
        folders[name]["allowed"] = [round(low, 1), round(high, 1)]
        if expected <= 0 or not low <= found <= high:
            bad.append(
                f"of {k_in} swaps planted into the {name} folder the noise model found "
                f"{found:+.0f} misfiled files for about {expected:.0f} expected"
            )
    if bad:
        return Check(CheckOutcome.FAILED, "; ".join(bad), folders)
    rec = ", ".join(f"{n} {v['recovery']:.2f}" for n, v in folders.items())
    return Check(
        CheckOutcome.PASSED, f"the noise model recovered the planted swaps ({rec})", folders
    )
