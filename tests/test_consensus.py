"""Each consensus rule on hand-made probabilities with known answers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleaner.consensus import (
    KEEP,
    MIN_CONFIDENCE_FLOOR,
    MOVE,
    REVIEW,
    Evidence,
    ImageVotes,
    check_params,
    decide,
)
from cleaner.errors import CleanerError


def img(path: str, label: str, *probs: float) -> ImageVotes:
    ev = tuple(Evidence(f"f{i}.json", p) for i, p in enumerate(probs))
    return ImageVotes(path, f"sha-{path}", label, ev)


def actions(images: list[ImageVotes], **kw: object) -> dict[str, str]:
    return {d.path: d.action for d in decide(images, **kw)}  # type: ignore[arg-type]


# prob_fake of three files for a "real" image; the other class is "fake"
CASES = [
    # path, label, probs, unanimous, majority, mean
    ("all_high", "real", (0.95, 0.97, 0.92), MOVE, MOVE, MOVE),
    ("two_high_one_unsure", "real", (0.95, 0.97, 0.6), REVIEW, MOVE, REVIEW),
    ("one_high", "real", (0.95, 0.5, 0.6), REVIEW, REVIEW, REVIEW),
    ("disagree", "real", (0.99, 0.99, 0.02), REVIEW, REVIEW, REVIEW),
    ("coin_flips", "real", (0.55, 0.55, 0.55), KEEP, KEEP, KEEP),
    ("right", "real", (0.02, 0.05, 0.1), KEEP, KEEP, KEEP),
    ("fake_flipped", "fake", (0.01, 0.03, 0.08), MOVE, MOVE, MOVE),
    ("fake_right", "fake", (0.99, 0.97, 0.92), KEEP, KEEP, KEEP),
    ("mean_only", "real", (0.99, 0.99, 0.85), REVIEW, MOVE, MOVE),
    ("single_file", "fake", (0.05,), MOVE, MOVE, MOVE),
]


@pytest.mark.parametrize("rule", ["unanimous", "majority", "mean"])
def test_rules_on_known_probabilities(rule: str) -> None:
    col = {"unanimous": 3, "majority": 4, "mean": 5}[rule]
    images = [img(c[0], c[1], *c[2]) for c in CASES]  # type: ignore[arg-type]
    got = actions(images, rule=rule, min_confidence=0.9)
    want = {str(c[0]): str(c[col]) for c in CASES}
    assert got == want


def test_decision_carries_destination_evidence_and_reason() -> None:
    (d,) = decide([img("real_images/a.png", "real", 0.95, 0.97)], rule="unanimous")
    assert (d.action, d.from_label, d.to_label) == (MOVE, "real", "fake")
    assert [e.prob_fake for e in d.evidence] == [0.95, 0.97]
    assert d.mean_other == pytest.approx(0.96)
    assert "unanimous" in d.why
    (r,) = decide([img("real_images/b.png", "real", 0.99, 0.01)], rule="majority")
    assert r.action == REVIEW and "disagree" in r.why


def test_threshold_is_inclusive_and_min_confidence_matters() -> None:
    images = [img("a", "real", 0.9, 0.9), img("b", "real", 0.8, 0.85)]
    assert actions(images, rule="unanimous", min_confidence=0.9) == {"a": MOVE, "b": KEEP}
    assert actions(images, rule="unanimous", min_confidence=0.8) == {"a": MOVE, "b": MOVE}
    assert actions(images, rule="unanimous", min_confidence=0.95) == {"a": KEEP, "b": KEEP}


def test_uncovered_images_get_no_decision() -> None:
    assert decide([ImageVotes("a", "s", "real", ())]) == []


@pytest.mark.parametrize("c", [0.5, 0.55, MIN_CONFIDENCE_FLOOR - 0.01, 1.01])
def test_coin_flip_confidence_is_refused(c: float) -> None:
    with pytest.raises(CleanerError, match="min-confidence"):
        check_params("unanimous", c)
    with pytest.raises(CleanerError, match="min-confidence"):
        decide([img("a", "real", 0.55)], min_confidence=c)


def test_unknown_rule_is_refused() -> None:
    with pytest.raises(CleanerError, match="unknown rule 'vote'"):
        decide([img("a", "real", 0.99)], rule="vote")


def _confident_dataset() -> tuple[list[ImageVotes], set[str], set[str]]:
    """60 real + 60 fake images; 6 per class confidently flipped, 6 per class at 0.55."""
    images: list[ImageVotes] = []
    flips: set[str] = set()
    coins: set[str] = set()
    for label in ("real", "fake"):
        for i in range(60):
            path = f"{label}/{i}"
            right = 0.05 + 0.01 * (i % 5)
            p_right = right if label == "real" else 1 - right
            if i < 6:
                p = 1 - p_right
                flips.add(path)
            elif i < 12:
                p = 0.55 if label == "real" else 0.45
                coins.add(path)
            else:
                p = p_right
            images.append(img(path, label, p, min(1.0, max(0.0, p + 0.01))))
    return images, flips, coins


def test_confident_rule_moves_flags_that_reach_confidence_never_coin_flips() -> None:
    from cleanlab.filter import find_label_issues

    images, flips, coins = _confident_dataset()
    got = actions(images, rule="confident", min_confidence=0.9)
    assert {p for p, a in got.items() if a == MOVE} == flips
    assert not {p for p in coins if got[p] == MOVE}
    # cleanlab alone does flag some of the coin flips: the confidence requirement is what
    # keeps them in place (cleanlab PR #950)
    import numpy as np

    labels = np.array([0 if im.label == "real" else 1 for im in images])
    pf = np.array([sum(e.prob_fake for e in im.evidence) / 2 for im in images])
    flagged = find_label_issues(labels, np.stack([1 - pf, pf], axis=1))
    flagged_paths = {im.path for im, f in zip(images, flagged, strict=True) if f}
    assert flagged_paths & coins


def test_confident_rule_needs_examples_of_each_class() -> None:
    with pytest.raises(CleanerError, match="at least 5 images of each class"):
        decide([img("a", "real", 0.99), img("b", "fake", 0.99)], rule="confident")


# ------------------------------------------------------------------ properties

PROBS = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=5)


@settings(max_examples=300, deadline=None)
@given(
    probs=PROBS,
    label=st.sampled_from(["real", "fake"]),
    c=st.floats(MIN_CONFIDENCE_FLOOR, 1.0),
)
def test_property_rules_never_move_on_weak_or_split_evidence(
    probs: list[float], label: str, c: float
) -> None:
    im = img("x", label, *probs)
    p_other = [p if label == "real" else 1 - p for p in probs]
    got = {r: decide([im], rule=r, min_confidence=c)[0] for r in ("unanimous", "majority", "mean")}
    for r, d in got.items():
        if d.action == MOVE:  # a move needs confident evidence for the other class ...
            assert max(p_other) >= c - 1e-9 and d.mean_other >= 0.5
            assert not any(p <= 1 - c + 1e-12 for p in p_other), r  # ... and no dissent
        if all(1 - c + 1e-9 < p < c - 1e-9 for p in p_other):  # only abstentions
            assert d.action == KEEP, r
    # unanimous is the strictest: whatever it moves, majority and mean move too
    if got["unanimous"].action == MOVE:
        assert got["majority"].action == MOVE and got["mean"].action == MOVE
