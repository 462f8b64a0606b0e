"""Consensus rules: several prediction files' probabilities for each image -> move, review, keep.

Why these rules: one model's disagreement with a label is weak evidence (on faces140k with 10%
flipped labels, moving every disagreement of a 71%-accurate model moves 745 images of which 580
were right). So a move needs *confident* evidence from the files, combined by a stated rule:

- a file **votes for the other class** when its probability of that class is at least
  ``min_confidence`` (default 0.9), and **for the current label** when that probability is at
  most ``1 - min_confidence``; anything between is an abstention;
- ``unanimous`` (default): every file covering the image votes for the other class;
- ``majority``: more than half of the files covering the image vote for the other class;
- ``mean``: the mean probability of the other class over the covering files reaches
  ``min_confidence``;
- ``confident``: cleanlab's confident learning (``find_label_issues`` on the files' mean
  probabilities over the whole dataset) flags the image *and* that mean reaches
  ``min_confidence`` (cleanlab alone flags binary coin flips; see cleanlab PR #950).

Whatever the rule, an image on which confident files disagree (one votes to move, another to
stay) goes to the review list, never moved; so does an image with a confident vote to move that
the rule does not carry. ``min_confidence`` below :data:`MIN_CONFIDENCE_FLOOR` is refused: a
probability near 0.5 never moves a file.

:func:`choose` picks the threshold for a target precision instead: the lowest, from a floor up,
at which the precision of the rule's moves estimated by :class:`SelfTest` (:mod:`cleaner.noise`)
reaches the target; when none does, nothing moves and the would-be moves go to review.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from cleaner.choices import Label, Rule, values
from cleaner.dataset import other_label
from cleaner.errors import CleanerError
from cleaner.estimate_check import Check, PlantedRun, check, unavailable
from cleaner.noise import MoveEstimate, NoiseModel, estimate, fit, folder_noise, score

RULES: tuple[str, ...] = values(Rule)
DEFAULT_RULE = Rule.UNANIMOUS
DEFAULT_MIN_CONFIDENCE = 0.9
MIN_CONFIDENCE_FLOOR = 0.6
"""The lowest ``--min-confidence`` accepted: below it a near coin flip could move a file."""

MOVE, REVIEW, KEEP = "move", "review", "keep"


@dataclass(frozen=True)
class Evidence:
    """One prediction file's probability for one image."""

    file: str
    prob_fake: float


@dataclass(frozen=True)
class ImageVotes:
    """An image under ROOT with the evidence every covering predictions file gives for it."""

    path: str
    sha256: str
    label: str
    """Its current class (the folder it sits in)."""
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True)
class Decision:
    """What the rule decided for one image, and why (the plan's moves and review list)."""

    path: str
    sha256: str
    from_label: str
    to_label: str
    action: str
    """``move``, ``review`` or ``keep``."""
    why: str
    evidence: tuple[Evidence, ...]
    mean_other: float
    """Mean probability of ``to_label`` over the covering files."""
    votes_other: int
    votes_stay: int


def check_params(rule: str, min_confidence: float) -> None:
    """Refuse an unknown rule or a confidence that would let a coin flip move a file."""
    if rule not in RULES:
        raise CleanerError(f"unknown rule {rule!r}; use one of {', '.join(RULES)}")
    if not (MIN_CONFIDENCE_FLOOR <= min_confidence <= 1.0):
        raise CleanerError(
            f"--min-confidence {min_confidence:g} is outside [{MIN_CONFIDENCE_FLOOR}, 1]: below "
            f"{MIN_CONFIDENCE_FLOOR} a near coin flip could move a file; use a value in "
            f"[{MIN_CONFIDENCE_FLOOR}, 1] (default {DEFAULT_MIN_CONFIDENCE})"
        )


def _p_other(label: str, prob_fake: float) -> float:
    return prob_fake if label == Label.REAL else 1.0 - prob_fake


def _confident_flags(images: Sequence[ImageVotes]) -> list[bool]:
    """cleanlab's label-issue flags over the images' mean probabilities (classes real=0,
    fake=1). Imported here: only this rule pays cleanlab's import time."""
    import warnings

    import numpy as np
    from cleanlab.filter import find_label_issues

    labels = np.array([0 if im.label == Label.REAL else 1 for im in images], dtype=int)
    counts = np.bincount(labels, minlength=2)
    if counts.min() < 5:
        raise CleanerError(
            f"the confident rule needs predictions for at least 5 images of each class "
            f"(real: {counts[0]}, fake: {counts[1]}); use --rule unanimous or mean"
        )
    pf = np.array([sum(e.prob_fake for e in im.evidence) / len(im.evidence) for im in images])
    pf = np.clip(pf, 1e-6, 1 - 1e-6)
    probs = np.stack([1.0 - pf, pf], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flags = find_label_issues(labels, probs)
    return [bool(f) for f in flags]


def decide(
    images: Sequence[ImageVotes],
    *,
    rule: str = DEFAULT_RULE,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    flags: Sequence[bool] | None = None,
) -> list[Decision]:
    """One :class:`Decision` per image that at least one file covers, in input order.
    ``flags``: the confident rule's cleanlab flags of the covered images, when already known."""
    check_params(rule, min_confidence)
    covered = [im for im in images if im.evidence]
    if flags is None:
        flags = _confident_flags(covered) if rule == "confident" and covered else []
    c = min_confidence
    out: list[Decision] = []
    for k, im in enumerate(covered):
        to = other_label(im.label)
        ps = [_p_other(im.label, e.prob_fake) for e in im.evidence]
        n = len(ps)
        # a tiny epsilon so 0.9 read from JSON counts as 0.9
        up = sum(1 for p in ps if p >= c - 1e-12)
        stay = sum(1 for p in ps if p <= 1.0 - c + 1e-12)
        mean = sum(ps) / n
        if up and stay:
            action = REVIEW
            why = f"confident files disagree: {up} of {n} for {to}, {stay} for {im.label}"
        else:
            if rule == "unanimous":
                ok = up == n
                short = f"unanimous needs all {n}"
            elif rule == "majority":
                ok = up * 2 > n
                short = f"majority needs more than {n / 2:g}"
            elif rule == "mean":
                ok = mean >= c - 1e-12
                short = f"mean {mean:.3f} < {c:g}"
            else:
                ok = flags[k] and mean >= c - 1e-12
                short = "cleanlab does not flag it" if not flags[k] else f"mean {mean:.3f} < {c:g}"
            if ok:
                action = MOVE
                why = f"{rule}: {up} of {n} files vote {to} (>= {c:g}), mean {mean:.3f}"
            elif up:
                action, why = REVIEW, f"{up} of {n} files vote {to} (>= {c:g}); {short}"
            else:
                action, why = KEEP, ""
        out.append(
            Decision(
                path=im.path,
                sha256=im.sha256,
                from_label=im.label,
                to_label=to,
                action=action,
                why=why,
                evidence=im.evidence,
                mean_other=mean,
                votes_other=up,
                votes_stay=stay,
            )
        )
    return out


# --- choosing the threshold for a target precision ------------------------------------------

DEFAULT_TARGET_PRECISION = 0.9
DEFAULT_FLOOR = 0.7
"""The lowest threshold ``--target-precision`` tries unless ``--min-confidence`` says."""

THRESHOLDS: tuple[float, ...] = (
    *(round(0.6 + 0.01 * i, 2) for i in range(40)),
    0.995,
    0.999,
)
"""The thresholds tried, from the floor up."""


def check_target(target: float) -> None:
    """0 turns the estimate's choice off; otherwise a precision in (0.5, 1)."""
    if target != 0 and not (0.5 < target < 1.0):
        raise CleanerError(
            f"--target-precision {target:g} is outside (0.5, 1): below 0.5 most moves would be "
            "wrong and 1 is never estimated; use e.g. 0.9 (default), or 0 for the fixed "
            "--min-confidence alone"
        )


@dataclass(frozen=True)
class _Matrix:
    """The images' evidence as arrays: probability of the other class per (image, file)."""

    p_other: np.ndarray
    """(N, F), NaN where a file does not cover the image."""
    n: np.ndarray
    mean: np.ndarray


def _matrix(covered: Sequence[ImageVotes]) -> _Matrix:
    files = sorted({e.file for im in covered for e in im.evidence})
    col = {f: j for j, f in enumerate(files)}
    p = np.full((len(covered), len(files)), np.nan)
    for i, im in enumerate(covered):
        for e in im.evidence:
            p[i, col[e.file]] = _p_other(im.label, e.prob_fake)
    n = np.sum(~np.isnan(p), axis=1)
    mean = np.nansum(p, axis=1) / np.maximum(n, 1)
    return _Matrix(p, n, mean)


def moved_mask(m: _Matrix, rule: str, c: float, flags: Sequence[bool]) -> np.ndarray:
    """Which images :func:`decide` moves at ``min_confidence = c`` (same tests, vectorised,
    so every threshold can be tried on 100,000 images)."""
    with np.errstate(invalid="ignore"):
        up = np.sum(m.p_other >= c - 1e-12, axis=1)
        stay = np.sum(m.p_other <= 1.0 - c + 1e-12, axis=1)
    if rule == "unanimous":
        ok = up == m.n
    elif rule == "majority":
        ok = up * 2 > m.n
    elif rule == "mean":
        ok = m.mean >= c - 1e-12
    else:
        ok = np.asarray(flags, bool) & (m.mean >= c - 1e-12)
    return np.asarray(ok & ~((up > 0) & (stay > 0)) & (m.n > 0))


@dataclass(frozen=True)
class Tried:
    """One threshold tried: what the rule would move there and what the model expects."""

    threshold: float
    estimate: MoveEstimate


@dataclass
class Choice:
    """The threshold chosen for a target precision (None: none reaches it) and the evidence."""

    target: float
    threshold: float | None
    model: NoiseModel
    noise: dict[bool, float]
    """Estimated share of misfiled images in the fake (True) and real (False) folders."""
    tried: list[Tried]
    decisions: list[Decision]
    """At the chosen threshold; when none, at the floor with every move turned into review."""
    p_misfiled: dict[str, float] | None
    """Path -> the noise model's posterior of sitting in the wrong folder (the review order);
    None when the check did not vouch for the model."""
    check: Check
    """The check of the estimate on the planted run (:mod:`cleaner.estimate_check`)."""

    def at(self, threshold: float | None) -> Tried | None:
        return next((t for t in self.tried if t.threshold == threshold), None)


def _swapped(im: ImageVotes) -> ImageVotes:
    return replace(im, label=other_label(im.label))


class SelfTest:
    """The estimate of :mod:`cleaner.noise` for a set of images: the noise model fitted once,
    then the rule scored at any threshold (every image swapped alone into the other folder)."""

    def __init__(self, images: Sequence[ImageVotes], rule: str) -> None:
        self.covered = [im for im in images if im.evidence]
        self.rule = rule
        self.flags = _confident_flags(self.covered) if rule == "confident" and self.covered else []
        z = np.array([score([e.prob_fake for e in im.evidence]) for im in self.covered])
        self.z = z
        self.in_fake = np.array([im.label == "fake" for im in self.covered], dtype=bool)
        self.model = fit(z, self.in_fake)
        self.noise = folder_noise(self.model, z, self.in_fake)
        self.m = _matrix(self.covered)
        self.m_swapped = _matrix([_swapped(im) for im in self.covered])

    def p_misfiled(self) -> dict[str, float]:
        """Path -> the noise model's posterior that the image sits in the wrong folder."""
        post = self.model.p_wrong_folder(self.z, self.in_fake)
        return {im.path: float(p) for im, p in zip(self.covered, post, strict=True)}

    def _swapped_moves(self, c: float) -> np.ndarray:
        """Which images the rule would move at ``c`` if each sat alone in the other folder (the
        confident rule's by its confidence test alone: cleanlab's flags are of the real run)."""
        return moved_mask(self.m_swapped, self.rule, c, [True] * len(self.covered))

    def at(self, c: float) -> MoveEstimate:
        """The estimate of the rule's moves at threshold ``c``."""
        moved = moved_mask(self.m, self.rule, c, self.flags)
        return estimate(moved, self._swapped_moves(c), self.in_fake, self.noise)

    def of(self, decisions: Sequence[Decision], c: float) -> MoveEstimate:
        """The estimate of the moves of ``decisions``, made at threshold ``c``."""
        moving = {d.path for d in decisions if d.action == MOVE}
        moved = np.array([im.path in moving for im in self.covered], dtype=bool)
        return estimate(moved, self._swapped_moves(c), self.in_fake, self.noise)


def checked(st: SelfTest, planted: PlantedRun | None, missing: str = "") -> Check:
    """The check of ``st``'s estimate on the planted run (unavailable without one: ``missing``
    says why)."""
    if planted is None:
        return unavailable(missing or "the predictions files have no planted run")
    return check(st.z, st.in_fake, st.noise, planted)


def choose(
    images: Sequence[ImageVotes],
    *,
    rule: str = DEFAULT_RULE,
    target: float = DEFAULT_TARGET_PRECISION,
    floor: float = DEFAULT_FLOOR,
    planted: PlantedRun | None = None,
    missing: str = "",
) -> Choice:
    """The lowest threshold from ``floor`` up at which the estimated precision of the rule's
    moves reaches ``target``, and the decisions there. When none does, or the check of the
    estimate on the ``planted`` run fails (:mod:`cleaner.estimate_check`), nothing moves: the
    floor's would-be moves go to the review list."""
    check_params(rule, floor)
    check_target(target)
    st = SelfTest(images, rule)
    chk = checked(st, planted, missing)
    tried = [Tried(t, st.at(t)) for t in sorted({floor, *(t for t in THRESHOLDS if t > floor)})]
    chosen = next(
        (
            t.threshold
            for t in tried
            if chk.vouched
            and t.estimate.precision is not None
            and t.estimate.precision >= target - 1e-12
        ),
        None,
    )
    decisions = decide(st.covered, rule=rule, min_confidence=chosen or floor, flags=st.flags)
    if chosen is None:
        best = max((t.estimate.precision or 0.0 for t in tried), default=0.0)
        why = f"no threshold's moves reach the estimated precision {target:g} (best {best:.2f})"
        if not chk.vouched:
            why = chk.line()
        decisions = [_to_review(d, why) if d.action == MOVE else d for d in decisions]
    p_mis = st.p_misfiled() if chk.vouched else None
    return Choice(target, chosen, st.model, st.noise, tried, decisions, p_mis, chk)


def _to_review(d: Decision, why: str) -> Decision:
    return replace(d, action=REVIEW, why=why)
