"""The heads at a million images: features projected on their top principal components,
streamed from the embedding cache's shards (``--head-features pca``). Where every component is
kept the projection loses nothing (the same head as on the full features); streamed and in
memory give the same coordinates; through ``cleaner predict`` the out-of-fold files stay valid,
honest and close to the full heads'."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.hashing import file_sha256
from cleaner.models import embeddings as E
from cleaner.models import folds as F
from cleaner.models import heads as H
from cleaner.models import logreg
from cleaner.models import projection as P
from cleaner.models.backbones import get_backbone
from tests.models_helpers import make_root

runner = CliRunner()


def _data(n: int = 240, dim: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features of very different scales and offsets; the label in a few of them."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(np.int64)
    x = rng.normal(0, 1, (n, dim)) * rng.uniform(0.01, 50, dim) + rng.normal(0, 100, dim)
    x[:, :4] += y[:, None] * rng.uniform(0.3, 1.5, 4) * x[:, :4].std(axis=0)
    return x.astype(np.float32), y


def _projection(x: np.ndarray, dim: int) -> P.Projection:
    m = logreg.Moments(x.shape[1])
    m.add(x)
    return P.fit_projection(x, *m.mean_scale(), dim)


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def test_every_component_kept_is_the_full_head() -> None:
    """k = every direction of the data: the head on the coordinates, fitted as they are, is
    the head on the full features standardised the same way (the L2 penalty does not see an
    orthonormal change of basis)."""
    x, y = _data(n=120, dim=200)  # more features than images: the sample Gram route
    proj = _projection(x, 10_000)
    assert proj.dim == 119 and proj.explained == pytest.approx(1.0, abs=1e-6)  # rank n - 1
    rows = np.flatnonzero(np.arange(len(y)) % 4 != 0)
    z = proj.apply(x)
    head = H.make_head("logreg", c=0.03, standardised=True)
    head.fit_rows(z, y, rows, None)
    full = logreg.fit([(x, rows)], y[rows], c=0.03, standardise=(proj.mean, proj.scale))
    np.testing.assert_allclose(head.prob_rows(z, np.arange(len(y))), full.prob(x), atol=2e-3)


def test_standardising_the_coordinates_again_would_be_another_model() -> None:
    """Why the heads take the coordinates as they are: re-standardised (whitened), the same
    coordinates give other probabilities."""
    x, y = _data(seed=1)
    z = _projection(x, 30).apply(x)
    rows = np.arange(len(y))
    as_is = H.make_head("logreg", c=0.03, standardised=True)
    as_is.fit_rows(z, y, rows, None)
    whitened = H.make_head("logreg", c=0.03)
    whitened.fit_rows(z, y, rows, None)
    assert np.abs(as_is.prob_rows(z, rows) - whitened.prob_rows(z, rows)).max() > 0.01


@settings(max_examples=10, deadline=None)
@given(
    n=st.integers(5, 60),
    regions=st.sampled_from([1, 2, 4]),
    width=st.integers(3, 12),
    shard=st.integers(1, 25),
    dim=st.integers(1, 8),
)
def test_streamed_is_the_in_memory_projection(
    n: int, regions: int, width: int, shard: int, dim: int
) -> None:
    """Any shard size, any region count: each image's row of the streamed result is the
    projection of its region rows (:func:`cleaner.models.heads.region_rows`' layout); a key
    repeated in a later shard is read once."""
    rng = np.random.default_rng(n * 31 + width)
    x = rng.normal(0, 3, (n, regions * width)).astype(np.float32)
    keys = [f"k{i}" for i in range(n)]
    proj = _projection(H.region_rows(x, regions), dim)

    def shards() -> list[tuple[list[str], np.ndarray]]:
        out = [(keys[a : a + shard], x[a : a + shard]) for a in range(0, n, shard)]
        return [*out, (keys[:1], x[:1] + 1000)]  # a stale duplicate of key 0: ignored

    rows_of = {k: [i] for i, k in enumerate(keys)}
    z, found = P.project_streamed(shards, rows_of, n, proj, regions=regions)
    assert found == set(keys)
    expected = proj.apply(H.region_rows(x, regions)).reshape(n, -1)
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-4)


def test_the_fit_pass_sees_every_row_and_samples_some() -> None:
    x, _ = _data(n=300, dim=20, seed=2)
    keys = [f"k{i}" for i in range(300)]
    sample = P.sample_keys(keys, 64, 1, seed=0)
    assert len(sample) == 64 and sample == P.sample_keys(keys, 64, 1, seed=0)

    def shards() -> list[tuple[list[str], np.ndarray]]:
        return [(keys[a : a + 50], x[a : a + 50]) for a in range(0, 300, 50)]

    proj = P.fit_streamed(shards, sample, dim=5)
    np.testing.assert_allclose(proj.mean, x.astype(np.float64).mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(proj.scale, x.astype(np.float64).std(axis=0), rtol=1e-4)
    assert proj.sample_rows == 64 and proj.dim == 5
    np.testing.assert_allclose(proj.basis.T @ proj.basis, np.eye(5), atol=1e-5)


def test_out_of_fold_heads_on_the_projection_stay_close_to_the_full_ones() -> None:
    """Pruned K-fold heads with every component kept: the same out-of-fold quality as on the
    full features (the only difference: one standardisation for all images instead of one per
    fold's training rows)."""
    x, y = _data(n=400, dim=80, seed=3)
    fold = F.assign_folds(y, np.arange(len(y)), 5)
    full = F.frozen_oof(x, y, fold, c=0.03, prune=True)
    z = _projection(x, 80).apply(x)
    pca = F.frozen_oof(z, y, fold, c=0.03, prune=True, standardised=True)
    assert np.array_equal(pca.fold, full.fold)
    assert abs(_auc(y, pca.prob_fake) - _auc(y, full.prob_fake)) < 0.01
    assert np.abs(pca.prob_fake - full.prob_fake).max() < 0.1
    assert _auc(y, pca.prob_fake) > 0.8  # and they learned something


def test_auto_keeps_full_features_while_they_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    third = P.machine_memory() // 3
    auto = P.HeadFeatures.AUTO
    assert P.choose_head_features(auto, 1000, 100) is P.HeadFeatures.FULL
    assert P.choose_head_features(auto, third // 400 + 1, 100) is P.HeadFeatures.PCA
    assert P.choose_head_features(auto, third // 800, 100, copies=2) is P.HeadFeatures.FULL
    monkeypatch.setattr(P, "FULL_MEMORY_FRACTION", 0.0)
    assert P.choose_head_features(P.HeadFeatures.FULL, 10**9, 10**5) is P.HeadFeatures.FULL


def _predict(root: Path, out: Path, *extra: str) -> dict:  # type: ignore[type-arg]
    args = ["predict", "--root", str(root), "--backbone", "spectrum", "--folds", "4"]
    r = runner.invoke(app, [*args, *extra, "--out", str(out), "--json"])
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_predict_with_pca_heads(tmp_path: Path) -> None:
    """Through the CLI: a valid out-of-fold file naming the projection, every image predicted
    by a head of another fold, close to the full heads' file."""
    root = make_root(tmp_path / "R", 10, size=48)
    assert runner.invoke(app, ["scan", "--root", str(root), "--json"]).exit_code == 0
    s = _predict(root, tmp_path / "pca.json", "--head-features", "pca", "--pca-dim", "6")
    assert s["computed"] == 20 and s["predicted"] == 20
    doc = json.loads((tmp_path / "pca.json").read_text())
    hf = doc["model"]["head_features"]
    assert hf["method"] == "pca" and hf["dim"] == 6 and hf["sample_rows"] == 20
    assert 0 < hf["explained_variance"] <= 1
    assert all(e["fold"] in range(4) for e in doc["predictions"])
    # the full heads from the cache: nothing computed again
    full = _predict(root, tmp_path / "full.json", "--head-features", "full")
    assert full["computed"] == 0 and full["cached"] == 20
    fdoc = json.loads((tmp_path / "full.json").read_text())
    assert fdoc["model"]["head_features"] == "full"
    p = {e["path"]: e["prob_fake"] for e in doc["predictions"]}
    q = {e["path"]: e["prob_fake"] for e in fdoc["predictions"]}
    assert p.keys() == q.keys()
    assert abs(s["auc"] - full["auc"]) < 0.1 and s["auc"] > 0.8


def test_predict_pca_with_repeats_mirror_and_new_images(tmp_path: Path) -> None:
    """--repeats and --mirror on the projection (the mirror features projected by the same
    fit); images added later are the only ones computed."""
    root = make_root(tmp_path / "R", 8, size=48)
    assert runner.invoke(app, ["scan", "--root", str(root), "--json"]).exit_code == 0
    extra = ["--head-features", "pca", "--pca-dim", "5", "--repeats", "2", "--mirror"]
    extra += ["--no-planted"]  # the planted run (test_predict's) would fit every head again
    s = _predict(root, tmp_path / "a.json", *extra)
    assert s["computed"] == 32 and s["model"]["repeats"] == 2
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["model"]["mirror_augment"] is True and doc["model"]["head_features"]["dim"] == 5
    assert all(len(e["folds"]) == 2 for e in doc["predictions"])
    more = make_root(tmp_path / "more", 1, size=48, seed=5)
    for f in more.glob("*_images/*.png"):
        f.rename(root / f.parent.name / f"new_{f.name}")
    assert runner.invoke(app, ["scan", "--root", str(root), "--json"]).exit_code == 0
    s = _predict(root, tmp_path / "b.json", *extra)
    assert (s["computed"], s["cached"]) == (4, 32)  # 2 new images, each also mirrored


def test_pca_features_from_the_api_match_the_cache(tmp_path: Path) -> None:
    """``embed_for_heads``: the projection of what ``embed`` reads from the cache."""
    root = make_root(tmp_path / "R", 6, size=48)
    items = [(p, file_sha256(p)) for p in sorted(root.glob("*_images/*.png"))]
    spec = E.EmbeddingSpec(get_backbone("spectrum"), "none", 64, "center")
    got = E.embed_for_heads(root, items, spec, mode=P.HeadFeatures.PCA, pca_dim=4)
    assert got.projection is not None and got.features.shape == (12, 4) and got.ok.all()
    full = E.embed(root, items, spec)
    assert full.computed == 0  # embed_for_heads cached everything
    np.testing.assert_allclose(got.features, got.projection.apply(full.features), atol=1e-4)
    again = E.embed_for_heads(root, items, spec, mode=P.HeadFeatures.FULL)
    assert again.projection is None and again.computed == 0
    np.testing.assert_array_equal(again.features, full.features)


def test_bad_head_features_values_are_one_line(tmp_path: Path) -> None:
    from cleaner.errors import CleanerError
    from cleaner.models.config import OOFConfig

    root = make_root(tmp_path / "R", 2, size=40)
    out = tmp_path / "x.json"
    r = runner.invoke(app, ["predict", "--root", str(root), "--backbone", "spectrum",
                            "--head-features", "tiny", "--out", str(out)])  # fmt: skip
    assert r.exit_code == 2 and "tiny" in r.stderr
    with pytest.raises(CleanerError, match="--head-features 'tiny': choose one of auto, full"):
        OOFConfig("spectrum", out, head_features="tiny")
    with pytest.raises(CleanerError, match="--pca-dim 0: give 1 or more"):
        OOFConfig("spectrum", out, pca_dim=0)
