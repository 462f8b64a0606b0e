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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cleaner.choices import Label, Rule, values
from cleaner.dataset import other_label
from cleaner.errors import CleanerError

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
) -> list[Decision]:
    """One :class:`Decision` per image that at least one file covers, in input order."""
    check_params(rule, min_confidence)
    covered = [im for im in images if im.evidence]
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
