"""The move-precision estimate (cleaner.noise, cleaner.consensus.SelfTest and choose) on
generated scores whose mislabelled images are known: it finds the planted noise rate, its
precision at each threshold is close to the true one and not above it, and voters that know
nothing move nothing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleaner.consensus import (
    MIN_CONFIDENCE_FLOOR,
    MOVE,
    Evidence,
    ImageVotes,
    SelfTest,
    _matrix,
    choose,
    decide,
    moved_mask,
)
from cleaner.estimate_check import PlantedRun
from cleaner.models.planted import planted_mask
from cleaner.noise import fit, folder_noise, score, wilson_low


def planted(
    seed: int, n: int, *, sep: float, fake_share: float = 0.5, noise: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores (logits) of a voter whose logit is N(+-sep, 1.5) by true class, folders with
    ``noise`` of the images in the wrong one; returns z, in_fake, mislabelled."""
    rng = np.random.default_rng(seed)
    fake = rng.random(n) < fake_share
    z = np.where(fake, rng.normal(sep, 1.5, n), rng.normal(-sep, 1.5, n))
    wrong = rng.random(n) < noise
    return z, fake ^ wrong, wrong


@pytest.mark.parametrize(
    ("seed", "sep", "share", "over"), [(0, 3.0, 0.5, 0.05), (2, 2.0, 0.7, 0.05), (1, 1.5, 0.5, 0.1)]
)
def test_estimate_tracks_the_planted_noise_and_precision(
    seed: int, sep: float, share: float, over: float
) -> None:
    """One voter, the mean rule: per folder noise near the planted 10%, and at every threshold
    the self-test's precision is never more than ``over`` above the truth nor far below it.
    A weak voter (sep 1.5: about 80% accurate) gets the looser bound: its noise rate is less
    well determined (0.118 fitted for 0.104 planted here), and precision follows it. Below the
    truth it may fall further (0.77 for 0.98 at 0.95 with 70% of the images fake): a cautious
    estimate costs moves, not wrong ones."""
    z, in_fake, wrong = planted(seed, 3000, sep=sep, fake_share=share)
    st = SelfTest(votes(z, in_fake, files=1), "mean")
    for folder in (True, False):
        assert abs(st.noise[folder] - wrong[in_fake == folder].mean()) < 0.03
    for t in (0.8, 0.9, 0.95):
        est = st.at(t)
        moved = moved_mask(st.m, "mean", t, [])
        true_precision = (moved & wrong).sum() / moved.sum()
        assert est.precision is not None
        assert true_precision - 0.25 <= est.precision <= true_precision + over, t
        assert est.moves == moved.sum() and 0 <= est.expected_wrong <= est.moves
        assert est.recall is not None and 0 < est.recall <= 1


def test_a_voter_that_knows_nothing_expects_no_errors_even_with_unequal_classes() -> None:
    """Scores unrelated to the labels, 70% of the images in the fake folder: the folders are
    believed (little noise), not "every real-folder image is a fake"."""
    rng = np.random.default_rng(5)
    z = rng.normal(0, 2.0, 2000)
    in_fake = rng.random(2000) < 0.7
    noise = folder_noise(fit(z, in_fake), z, in_fake)
    assert noise[True] < 0.1 and noise[False] < 0.1


def test_wilson_bound_is_cautious_on_few_images() -> None:
    assert wilson_low(0, 10) == 0.0 and wilson_low(5, 0) == 0.0
    assert wilson_low(2, 4) < 0.5 < wilson_low(2000, 4000) + 0.01
    assert wilson_low(2, 4) < wilson_low(20, 40) < wilson_low(200, 400) < 0.5


def votes(z: np.ndarray, in_fake: np.ndarray, files: int = 2, seed: int = 0) -> list[ImageVotes]:
    """Each image covered by ``files`` voters that see its logit (plus a little noise when
    there are several)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, (zi, f) in enumerate(zip(z, in_fake, strict=True)):
        jitter = rng.normal(0, 0.3, files) if files > 1 else np.zeros(1)
        ps = 1 / (1 + np.exp(-(zi + jitter)))
        ev = tuple(Evidence(f"f{k}", float(p)) for k, p in enumerate(ps))
        out.append(ImageVotes(f"i{i}", f"s{i}", "fake" if f else "real", ev))
    return out


def same_run(images: list[ImageVotes]) -> PlantedRun:
    """The planted run of voters whose probabilities do not follow the labels they were
    given (what strong heads on good features do): the same probabilities, 10% swapped."""
    y = [im.label == "fake" for im in images]
    swapped = planted_mask(y, [im.sha256 for im in images])
    return PlantedRun([tuple(e.prob_fake for e in im.evidence) for im in images], swapped)


def test_choose_reaches_the_target_or_moves_nothing() -> None:
    z, in_fake, wrong = planted(3, 2000, sep=3.0)
    images = votes(z, in_fake)
    truth = {f"i{i}" for i in np.flatnonzero(wrong)}
    run = same_run(images)
    lo = choose(images, rule="mean", target=0.75, planted=run)
    hi = choose(images, rule="mean", target=0.9, planted=run)
    assert lo.check.vouched and hi.check.vouched
    assert lo.threshold is not None and hi.threshold is not None
    assert lo.threshold <= hi.threshold  # a higher target never needs a lower threshold
    for ch, target in ((lo, 0.75), (hi, 0.9)):
        moved = {d.path for d in ch.decisions if d.action == MOVE}
        assert len(moved & truth) / len(moved) >= target - 0.06
        tried = ch.at(ch.threshold)
        assert tried is not None and tried.estimate.moves == len(moved)
    # voters that know nothing: no threshold reaches 0.9, nothing moves, candidates to review
    rng = np.random.default_rng(4)
    weak = votes(rng.normal(0, 1.5, 600), rng.random(600) < 0.5, seed=1)
    ch = choose(weak, rule="mean", target=0.9, planted=same_run(weak))
    assert ch.threshold is None
    assert not any(d.action == MOVE for d in ch.decisions)
    assert any("cannot vouch" in d.why or "no threshold" in d.why for d in ch.decisions)
    # no planted run to check with: nothing is vouched for, even on strong voters
    unchecked = choose(images, rule="mean", target=0.75)
    assert unchecked.threshold is None and not unchecked.check.vouched
    assert not any(d.action == MOVE for d in unchecked.decisions)


PROB = st.floats(0.0, 1.0)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from(["real", "fake"]), st.lists(PROB, min_size=1, max_size=4)),
        min_size=1,
        max_size=12,
    ),
    rule=st.sampled_from(["unanimous", "majority", "mean"]),
    c=st.floats(MIN_CONFIDENCE_FLOOR, 1.0),
)
def test_property_vectorised_moves_are_decides_moves(
    rows: list[tuple[str, list[float]]], rule: str, c: float
) -> None:
    """The thresholds the estimate tries move exactly what :func:`decide` moves."""
    images = [
        ImageVotes(f"i{i}", f"s{i}", lab, tuple(Evidence(f"f{k}", p) for k, p in enumerate(ps)))
        for i, (lab, ps) in enumerate(rows)
    ]
    want = [d.action == MOVE for d in decide(images, rule=rule, min_confidence=c)]
    assert moved_mask(_matrix(images), rule, c, []).tolist() == want


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5))
def test_score_is_the_logit_of_the_mean_probability(probs: list[float]) -> None:
    """The noise model reads the statistic the ``mean`` rule thresholds: a voter's confident
    miss (0.999) beside another's doubt (0.4) is an image near 0.7, not one at the mean logit's
    3.25 (0.963)."""
    p = min(max(float(np.mean(probs)), 1e-6), 1 - 1e-6)
    assert score(probs) == pytest.approx(np.log(p / (1 - p)), abs=1e-9)
    mean_prob = 1 / (1 + np.exp(-score(probs)))
    assert mean_prob == pytest.approx(p, abs=1e-9)


def test_score_of_a_confident_and_a_doubtful_voter() -> None:
    assert 1 / (1 + np.exp(-score([0.999, 0.4]))) == pytest.approx(0.6995)
