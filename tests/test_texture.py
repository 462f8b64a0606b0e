"""`efficientnet-lite0-gram`: texture statistics of every Lite0 block (GramNet-style features).

The statistics are checked against numpy on a known feature map, the layer survives a .keras
save and `load_model`, and the backbone runs end to end through `cleaner predict --folds` and a
trained model through `predict-dir`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.dataset import Workspace
from cleaner.models import texture
from cleaner.models.backbones import get_backbone
from cleaner.predictions import read_predictions
from tests.models_helpers import make_root

runner = CliRunner()


def _numpy_stats(fmap: np.ndarray, with_gram: bool) -> np.ndarray:
    b, h, w, c = fmap.shape
    flat = fmap.reshape(b, h * w, c)
    mean = flat.mean(1)
    centred = flat - mean[:, None, :]
    parts = [mean, np.sqrt((centred**2).mean(1) + 1e-6)]
    if with_gram:
        gram = np.einsum("bnc,bnd->bcd", centred, centred) / (h * w)
        rows, cols = np.triu_indices(c, 1)
        parts.append(gram[:, rows, cols])
    return np.concatenate(parts, axis=1)


def _assert_predict_dir(folder: Path, model: Path, out: Path) -> None:
    """`predict-dir FOLDER --model MODEL` succeeds with a probability for each of its 8 images."""
    r = runner.invoke(app, ["predict-dir", str(folder), "--model", str(model), "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    rows = json.loads(out.read_text())
    assert len(rows) == 8 and all(0.0 <= r["prob_fake"] <= 1.0 for r in rows)


def test_texture_stats_are_mean_std_and_gram_upper_triangle() -> None:
    import keras

    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 6, 5, 4)).astype(np.float32)
    b = rng.normal(2.0, 3.0, size=(3, 3, 3, 7)).astype(np.float32)
    ins = [keras.Input((6, 5, 4)), keras.Input((3, 3, 7))]
    layer = texture._layer_class()([True, False])
    model = keras.Model(ins, layer(ins))
    got = np.asarray(model([a, b]))
    want = np.concatenate([_numpy_stats(a, True), _numpy_stats(b, False)], axis=1)
    assert got.shape == (3, texture.feature_dim([4, 7], [True, False])) == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # a texture change that keeps every channel's mean and spread moves only the Gram part
    swapped = a.copy()
    swapped[0, ..., 1] = rng.permutation(a[0, ..., 1].reshape(-1)).reshape(6, 5)
    diff = np.abs(np.asarray(model([swapped, b])) - got)[0]
    assert diff[:8].max() < 1e-4 and diff[8:14].max() > 1e-3


def test_backbone_dimension_and_save_load_roundtrip(tmp_path: Path) -> None:
    import keras

    from cleaner.models.saved import load_model

    for name, dim in (("efficientnet-lite1-gram", 17_504), ("efficientnet-lite2-gram", 19_844)):
        assert get_backbone(name).build("none", 32).output_shape == (None, dim)
    bb = get_backbone("efficientnet-lite0-gram")
    assert bb.input_size == 256 and "gram" in bb.preprocessing_key()
    net = bb.build("none", 32)
    assert net.output_shape == (None, 16_608)
    inp = keras.Input((32, 32, 3))
    clf = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(net(inp)))
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    clf.save(tmp_path / "g.keras")
    again = load_model(tmp_path / "g.keras")
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(clf(x)), rtol=1e-5, atol=1e-6)


def test_gram_folds_and_predict_dir_through_the_cli(tmp_path: Path) -> None:
    root = make_root(tmp_path / "R", 8, size=40)
    out = tmp_path / "gram.json"
    args = ["--backbone", "efficientnet-lite0-gram", "--weights", "none", "--image-size", "32"]
    # the heads' exact logistic regressions on 16,608 features are most of this test's time:
    # pruning on texture features is the quad test's, the planted run test_predict's
    heads = ["--no-prune", "--no-planted"]
    r = runner.invoke(
        app,
        ["predict", "--root", str(root), *args, "--folds", "4", *heads, "--out", str(out),
         "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    pf = read_predictions(out, ws=Workspace.open(root))
    assert len(pf.entries) == 16 and json.loads(out.read_text())["out_of_fold"] is True
    assert json.loads(r.stdout)["computed"] == 16
    # --mirror: the images come from the cache, only their mirror images run the backbone
    r = runner.invoke(
        app,
        ["predict", "--root", str(root), *args, "--folds", "4", "--mirror", *heads,
         "--out", str(tmp_path / "m.json"), "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    info = json.loads((tmp_path / "m.json").read_text())["model"]
    assert json.loads(r.stdout)["computed"] == 16 and json.loads(r.stdout)["cached"] == 16
    assert info["mirror_augment"] is True and info["pruned"] == []
    mirrored = get_backbone("efficientnet-lite0-gram")
    from cleaner.models.embeddings import EmbeddingSpec

    spec = EmbeddingSpec(mirrored, "none", 32, "center")
    assert spec.mirrored().key != spec.key and spec.mirrored().preprocessing.endswith("|mirror")
    # a model trained on this backbone loads in predict-dir (the custom layer is registered);
    # robust views of these features are test_robust's
    model = tmp_path / "m.keras"
    r = runner.invoke(
        app,
        ["train", "--root", str(root), *args, "--epochs", "0", "--head-epochs", "2",
         "--no-augment", "--out", str(model)],
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    _assert_predict_dir(root / "fake_images", model, tmp_path / "p.json")


def test_weights_identity_is_each_variants_checkpoint() -> None:
    from cleaner.models import lite

    ids = set()
    for i in sorted(lite.VARIANTS):
        want = f"lite{i}-pth:" + lite.weights_checksum(index=i)
        assert get_backbone(f"efficientnet-lite{i}-gram").weights_id("imagenet") == want
        assert get_backbone(f"efficientnet-lite{i}").weights_id("imagenet") == want
        ids.add(want)
    assert len(ids) == len(lite.VARIANTS)


def test_lite0_cache_keys_did_not_change() -> None:
    """Embedding caches written before the Lite family existed must still hit."""
    bb = get_backbone("efficientnet-lite0-gram")
    assert bb.preprocessing_key() == (
        "lite0-gram-v1:raw0-255:imagenet-mean-std:block-mean-std+gram(2,4,7,10)|size=256|crop=center"
    )
    assert get_backbone("efficientnet-lite0").preprocessing_key() == (
        "lite0:raw0-255:imagenet-mean-std|size=224|crop=center"
    )


@pytest.mark.parametrize(
    ("index", "blocks"), [(0, (2, 4, 7, 10)), (1, (3, 6, 10, 14)), (2, (3, 6, 10, 14))]
)
def test_gram_blocks_are_the_ends_of_stages_1_to_4(index: int, blocks: tuple[int, ...]) -> None:
    assert texture.gram_blocks(index) == blocks
    bb = get_backbone(f"efficientnet-lite{index}-gram")
    assert f"gram({','.join(map(str, blocks))})" in bb.preprocessing


def test_quadrant_stats_are_the_stats_of_each_quadrant() -> None:
    """grid=2: four vectors, each the statistics of one quadrant of every map, row by row; a
    map smaller than the grid (1 x 1) gives every cell its one pixel, never an empty mean."""
    import keras

    rng = np.random.default_rng(2)
    a = rng.normal(size=(2, 6, 4, 3)).astype(np.float32)
    b = rng.normal(1.0, 2.0, size=(2, 1, 1, 5)).astype(np.float32)
    ins = [keras.Input((6, 4, 3)), keras.Input((1, 1, 5))]
    model = keras.Model(ins, texture._layer_class()([True, False], 2)(ins))
    got = np.asarray(model([a, b]))
    quads = [(slice(0, 3), slice(0, 2)), (slice(0, 3), slice(2, 4)),
             (slice(3, 6), slice(0, 2)), (slice(3, 6), slice(2, 4))]  # fmt: skip
    want = np.concatenate(
        [
            np.concatenate([_numpy_stats(a[:, r, c], True), _numpy_stats(b, False)], axis=1)
            for r, c in quads
        ],
        axis=1,
    )
    assert got.shape == want.shape == (2, 4 * texture.feature_dim([3, 5], [True, False]))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert texture.cell_bounds(1, 2, 1) == (0, 1) and texture.cell_bounds(7, 2, 1) == (3, 7)


def test_quad_backbone_folds_train_and_predict_dir(tmp_path: Path) -> None:
    """`-gram-quad`: four region rows per image through `predict --folds` (pruned heads) and
    `train`, whose model averages the rows inside itself, so `predict-dir` needs nothing else;
    the trained model's validation accuracy is the one the saved model reproduces."""
    root = make_root(tmp_path / "R", 8, size=40)
    bb = get_backbone("efficientnet-lite0-gram-quad")
    assert (
        bb.regions == 4
        and bb.preprocessing_key() != get_backbone("efficientnet-lite0-gram").preprocessing_key()
    )
    assert bb.build("none", 32).output_shape == (None, 4 * 16_608)
    args = ["--backbone", bb.name, "--weights", "none", "--image-size", "32"]
    out = tmp_path / "quad.json"
    r = runner.invoke(  # the planted run (the heads again) is test_predict's
        app,
        ["predict", "--root", str(root), *args, "--folds", "4", "--no-planted", "--out", str(out)],
    )
    assert r.exit_code == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["model"]["regions"] == 4 and len(doc["model"]["pruned"]) == 4
    assert len(read_predictions(out, ws=Workspace.open(root)).entries) == 16
    model = tmp_path / "q.keras"
    r = runner.invoke(
        app,
        ["train", "--root", str(root), *args, "--epochs", "0", "--out", str(model)],
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    from cleaner.models.saved import load_model

    clf = load_model(model)
    assert clf.get_layer("region_mean") is not None
    assert clf.get_layer("feature_norm").output.shape[-1] == 16_608
    _assert_predict_dir(root / "real_images", model, tmp_path / "p.json")
