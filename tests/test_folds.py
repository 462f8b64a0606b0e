"""Grouped K-fold: no image is predicted by a head that trained on it (checked through the
recorded fold ids and a head that records what it saw), duplicate groups stay in one fold."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest

from cleaner.errors import CleanerError
from cleaner.models import folds as F
from cleaner.models import heads as H


class RecordingHead:
    """A head whose features are image ids: remembers which ids it trained on and refuses to
    predict any of them."""

    log: ClassVar[list[dict[str, set[int]]]] = []

    def fit(self, x: np.ndarray, y: np.ndarray) -> RecordingHead:
        self.trained = {int(i) for i in x[:, 0]}
        self.rate = float(y.mean())
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        ids = {int(i) for i in x[:, 0]}
        assert not ids & self.trained, "a head predicted an image it trained on"
        RecordingHead.log.append({"trained": self.trained, "predicted": ids})
        p = np.full(len(x), self.rate)
        return np.stack([1 - p, p], axis=1)


def _recorded_ids(monkeypatch: pytest.MonkeyPatch, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every head a RecordingHead (log emptied); ``n`` alternating labels and their ids as
    one-column features."""
    RecordingHead.log = []
    monkeypatch.setattr(H, "make_head", lambda name="logreg", **kw: H.SklearnHead(RecordingHead()))
    return np.array([0, 1] * (n // 2)), np.arange(n, dtype=float)[:, None]


def test_no_image_is_predicted_by_a_head_that_saw_it(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 40
    y, ids = _recorded_ids(monkeypatch, n)
    groups = F.group_ids([f"p{i}" for i in range(n)], [f"s{i}" for i in range(n)], [])
    fold = F.assign_folds(y, groups, 5, seed=3)
    res = F.frozen_oof(ids, y, fold)
    assert len(RecordingHead.log) == 5 and np.isfinite(res.prob_fake).all()
    for entry in RecordingHead.log:
        (f,) = {int(res.fold[i]) for i in entry["predicted"]}  # one fold per head
        assert entry["trained"] == {i for i in range(n) if res.fold[i] != f}
    assert set(res.fold.tolist()) == set(range(5))
    # stratified: every fold holds both classes
    for f in range(5):
        assert set(y[res.fold == f]) == {0, 1}


def test_duplicate_groups_stay_in_one_fold() -> None:
    n = 30
    paths = [f"real_images/{i}.png" for i in range(n)]
    shas = [f"{i:064x}" for i in range(n)]
    shas[29] = shas[28]  # byte-identical copies are one group even without duplicates.json
    groups = [
        [(paths[0], shas[0]), (paths[1], shas[1]), (paths[2], shas[2])],
        [(paths[10], "unknown-sha"), (paths[20], shas[20])],  # matched by path
    ]
    g = F.group_ids(paths, shas, groups)
    assert g[0] == g[1] == g[2] and g[10] == g[20] and g[28] == g[29]
    assert len(set(g.tolist())) == n - 4
    y = np.array([i % 2 for i in range(n)])
    for seed in range(5):
        fold = F.assign_folds(y, g, 3, seed=seed)
        assert fold[0] == fold[1] == fold[2] and fold[10] == fold[20] and fold[28] == fold[29]


def test_heads_learn_from_features() -> None:
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 30)
    x = rng.normal(0, 1, (60, 5))
    x[:, 0] += y * 3.0
    fold = F.assign_folds(y, np.arange(60), 3)
    res = F.frozen_oof(x, y, fold)
    assert ((res.prob_fake >= 0.5) == (y == 1)).mean() > 0.85


def test_too_few_images_for_k_is_a_clear_error() -> None:
    with pytest.raises(CleanerError, match="--folds 5 needs at least 5"):
        F.assign_folds(np.array([0, 1, 0]), np.arange(3), 5)
    with pytest.raises(CleanerError, match="at least 2 folds"):
        F.assign_folds(np.array([0, 1, 0]), np.arange(3), 1)


def test_reads_duplicates_json(tmp_path: Any) -> None:
    state = tmp_path / ".cleaner"
    state.mkdir()
    (state / "duplicates.json").write_text(
        '{"method": "phash", "max_distance": 8, "groups": [{"kept": "a", "conflict": false, '
        '"members": [{"path": "real_images/a.png", "label": "real", "sha256": "x", '
        '"distance": 0}, {"path": "fake_images/b.png", "label": "fake", "sha256": "y", '
        '"distance": 2}]}]}'
    )
    assert F.duplicate_groups(tmp_path) == [
        [("real_images/a.png", "x"), ("fake_images/b.png", "y")]
    ]
    (state / "duplicates.json").write_text("{not json")
    with pytest.raises(CleanerError, match=r"duplicates\.json"):
        F.duplicate_groups(tmp_path)
    assert F.duplicate_groups(tmp_path / "elsewhere") == []


class MirrorRecordingHead(RecordingHead):
    """Rows are image ids; a mirror row is ``id + MIRROR``. Records every head, inner ones too."""

    MIRROR = 1000

    def fit(self, x: np.ndarray, y: np.ndarray) -> MirrorRecordingHead:
        ids = x[:, 0].astype(int)
        self.rows = len(ids)
        self.trained = {int(i) % self.MIRROR for i in ids}
        self.saw_mirror = bool((ids >= self.MIRROR).any())
        self.rate = float(y.mean())
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        ids = {int(i) for i in x[:, 0]}
        assert all(i < self.MIRROR for i in ids), "a mirror row was predicted"
        assert not ids & self.trained, "a head predicted an image it trained on"
        RecordingHead.log.append({"trained": self.trained, "predicted": ids})
        # a confident, label-blind guess, so that cleanlab has something to flag
        p = np.where(np.array(sorted(ids)) % 7 == 0, 0.95, 0.05)[np.argsort(np.argsort(x[:, 0]))]
        return np.stack([1 - p, p], axis=1)


def test_pruning_and_mirror_rows_never_use_the_held_out_fold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With --prune every inner head of fold f trains and predicts inside the other folds, and
    mirror rows are training rows only: no label of fold f reaches fold f's probabilities."""
    RecordingHead.log = []
    heads: list[MirrorRecordingHead] = []

    iterations: list[int] = []

    def make(name: str = "logreg", **kw: Any) -> H.SklearnHead:
        heads.append(MirrorRecordingHead())
        iterations.append(kw["max_iter"])
        return H.SklearnHead(heads[-1])

    monkeypatch.setattr(H, "make_head", make)
    n = 60
    y = np.array([0, 1] * (n // 2))
    ids = np.arange(n, dtype=float)[:, None]
    fold = F.assign_folds(y, np.arange(n), 5, seed=1)
    res = F.frozen_oof(ids, y, fold, mirror=ids + MirrorRecordingHead.MIRROR, prune=True)
    assert res.mirror and len(res.pruned) == 5 and sum(res.pruned) > 0
    assert np.isfinite(res.prob_fake).all()
    assert len(heads) == 5 * (F.INNER_FOLDS + 1)  # per fold: inner heads, then the fold's head
    # the inner heads only rank for cleanlab: capped iterations; the fold's head runs to 300
    assert iterations == ([F.INNER_MAX_ITER] * F.INNER_FOLDS + [300]) * 5
    assert all(h.saw_mirror and h.rows == 2 * len(h.trained) for h in heads)
    # the log, fold by fold: INNER_FOLDS inner heads, then the head that predicts fold f
    per_fold = F.INNER_FOLDS + 1
    assert len(RecordingHead.log) == 5 * per_fold
    for f in range(5):
        held_out = set(np.flatnonzero(fold == f).tolist())
        others = set(range(n)) - held_out
        *inner, final = RecordingHead.log[f * per_fold : (f + 1) * per_fold]
        for e in inner:  # deciding what to prune never touches fold f
            assert (e["trained"] | e["predicted"]) <= others
        assert final["predicted"] == held_out
        assert final["trained"] <= others and len(others - final["trained"]) == res.pruned[f]


def test_pruning_leaves_out_planted_label_errors() -> None:
    """Separable classes with 10% of the labels flipped: what a fold's inner cross-validation
    prunes is mostly the flips, and the pruned heads judge the flips better."""
    rng = np.random.default_rng(0)
    n = 400
    truth = np.array([0, 1] * (n // 2))
    x = rng.normal(0, 1, (n, 20))
    x[:, :3] += truth[:, None] * 2.5
    y = truth.copy()
    flipped = rng.choice(n, n // 10, replace=False)
    y[flipped] = 1 - y[flipped]
    train = np.arange(n)
    doubt = F.prune_set(x, y, train, np.arange(n), c=1.0)
    hits = len(set(doubt.tolist()) & set(flipped.tolist()))
    assert hits / len(doubt) >= 0.7 and hits >= 0.7 * len(flipped)
    fold = F.assign_folds(y, np.arange(n), 5)
    plain = F.frozen_oof(x, y, fold, c=1.0)
    pruned = F.frozen_oof(x, y, fold, c=1.0, prune=True)
    assert sum(pruned.pruned) > 0 and plain.pruned == []

    def other_class(p: np.ndarray) -> np.ndarray:  # probability of the label's other class
        return np.where(y == 1, 1 - p, p)

    from sklearn.metrics import roc_auc_score

    is_flip = np.isin(np.arange(n), flipped)
    auc_plain = roc_auc_score(is_flip, other_class(plain.prob_fake))
    auc_pruned = roc_auc_score(is_flip, other_class(pruned.prob_fake))
    assert auc_pruned >= auc_plain - 0.005 and auc_pruned > 0.85


def test_region_rows_train_together_and_predict_by_their_mean_logit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """regions=4: every head (inner pruning heads too) trains on all four rows of its training
    images and never on a row of the images it predicts; an image's probability is the mean
    logit of its four rows."""
    RecordingHead.log = []
    fits: list[np.ndarray] = []

    class RowHead(MirrorRecordingHead):
        def fit(self, x: np.ndarray, y: np.ndarray) -> RowHead:
            fits.append(x[:, 0].astype(int))
            return super().fit(x // 4, y)  # the image id of each region row

        def predict_proba(self, x: np.ndarray) -> np.ndarray:
            ids = x[:, 0].astype(int) // 4
            assert not set(ids.tolist()) & self.trained, "a head predicted an image it trained on"
            RecordingHead.log.append({"trained": self.trained, "predicted": set(ids.tolist())})
            p = np.where(ids % 7 == 0, 0.95, 0.05)  # confident and label-blind: cleanlab flags
            return np.stack([1 - p, p], axis=1)

    def make(name: str = "logreg", **kw: Any) -> H.RegionHead:
        return H.RegionHead(H.SklearnHead(RowHead()), kw["regions"])

    monkeypatch.setattr(H, "make_head", make)
    n = 60
    y = np.array([0, 1] * (n // 2))
    rows = np.arange(4 * n, dtype=float).reshape(n, 4)  # row r of image i is 4 i + r
    fold = F.assign_folds(y, np.arange(n), 5, seed=1)
    res = F.frozen_oof(rows, y, fold, prune=True, regions=4)
    assert np.isfinite(res.prob_fake).all() and len(fits) == 5 * (F.INNER_FOLDS + 1)
    for ids in fits:  # all four rows of each training image, never a part of one
        _, counts = np.unique(ids // 4, return_counts=True)
        assert (counts == 4).all() and set((ids % 4).tolist()) == {0, 1, 2, 3}
    for entry in RecordingHead.log:
        assert not entry["trained"] & entry["predicted"]
    # the mean logit: a head whose rows say 0.9, 0.9, 0.9 and 0.1 says logit(0.9) / 2
    head = H.RegionHead(H.SklearnHead(RecordingHead()), 4)
    head.inner = type("P", (), {"prob_rows": lambda s, f, r: np.array([0.9, 0.9, 0.9, 0.1])})()
    (p,) = head.prob_rows(np.zeros((1, 8)), np.array([0]))
    assert p == pytest.approx(1 / (1 + np.exp(-np.log(9) / 2)))
    with pytest.raises(CleanerError, match="4 equal regions"):
        head.prob_rows(np.zeros((1, 7)), np.array([0]))


def test_region_heads_learn_from_quadrant_rows() -> None:
    """With the real logistic-regression head: images whose four rows each carry a weak
    signal are separated better by four rows per image than by one."""
    rng = np.random.default_rng(0)
    n, d = 300, 10
    y = np.array([0, 1] * (n // 2))
    rows = rng.normal(0, 1, (n, 4, d))
    rows[:, :, 0] += y[:, None] * 0.8
    fold = F.assign_folds(y, np.arange(n), 5)
    quad = F.frozen_oof(rows.reshape(n, 4 * d), y, fold, c=1.0, regions=4)
    single = F.frozen_oof(rows[:, 0], y, fold, c=1.0)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, quad.prob_fake) > roc_auc_score(y, single.prob_fake) + 0.05


def test_repeated_folds_are_each_honest_and_kept_per_image(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 40
    y, ids = _recorded_ids(monkeypatch, n)
    groups = np.arange(n)
    folds = [F.assign_folds(y, groups, 4, seed=s) for s in (0, 1)]
    res = F.repeated_frozen_oof(ids, y, folds)
    assert len(RecordingHead.log) == 8  # RecordingHead refuses to predict what it trained on
    assert res.repeat_folds is not None and res.repeat_folds.shape == (2, n)
    assert (res.repeat_folds[0] == folds[0]).all() and (res.repeat_folds[1] == folds[1]).all()
    assert (res.fold == folds[0]).all()
    assert (folds[0] != folds[1]).any()  # two different splits, not one split twice
    for r, fold in enumerate(folds):  # heads 4r .. 4r+3 belong to repetition r
        for entry in RecordingHead.log[4 * r : 4 * r + 4]:
            (f,) = {int(fold[i]) for i in entry["predicted"]}
            assert entry["trained"] == {i for i in range(n) if fold[i] != f}


def test_repeats_average_by_mean_logit() -> None:
    rng = np.random.default_rng(4)
    n = 80
    y = np.array([0, 1] * (n // 2))
    x = rng.normal(size=(n, 6)) + y[:, None] * 0.8
    groups = np.arange(n)
    folds = [F.assign_folds(y, groups, 4, seed=s) for s in (5, 6)]
    res = F.repeated_frozen_oof(x, y, folds, seed=5, prune=True)
    a = F.frozen_oof(x, y, folds[0], seed=5, prune=True).prob_fake
    b = F.frozen_oof(x, y, folds[1], seed=6, prune=True).prob_fake  # repetition 1: seed + 1
    za, zb = np.log(a / (1 - a)), np.log(b / (1 - b))
    assert np.allclose(res.prob_fake, 1 / (1 + np.exp(-(za + zb) / 2)))
    assert not np.allclose(a, b)  # the mean is of two different runs
    assert len(res.pruned) == 8
    one = F.repeated_frozen_oof(x, y, folds[:1], seed=5)
    assert np.array_equal(one.prob_fake, F.frozen_oof(x, y, folds[0], seed=5).prob_fake)
    assert one.repeat_folds is None


def test_repeats_log_names_the_assignment() -> None:
    y = np.array([0, 1] * 20)
    x = np.random.default_rng(5).normal(size=(40, 3)) + y[:, None]
    folds = [F.assign_folds(y, np.arange(40), 4, seed=s) for s in (3, 4)]
    lines: list[str] = []
    F.repeated_frozen_oof(x, y, folds, seed=3, log=lines.append)
    assert len(lines) == 8
    assert all(line.startswith("assignment 1/2 (seed 3): fold ") for line in lines[:4])
    assert all(line.startswith("assignment 2/2 (seed 4): fold ") for line in lines[4:])
    single: list[str] = []
    F.repeated_frozen_oof(x, y, folds[:1], seed=3, log=single.append)
    assert single[0].startswith("fold 1/4: head trained on ")
