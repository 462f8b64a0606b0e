"""The fast runtime (TensorFlow Lite with XNNPACK): its features equal Keras' within the stated
tolerance for every registered backbone with a fast path (on real faces when present), a saved
frozen-backbone classifier gives the same probabilities on it, the CLI's --runtime picks it, one
cache serves both, and a machine without it falls back with one line.

Converting a network costs seconds (tracing, freezing, the converter's passes), so the check of
every fast backbone converts once per family: one network per Lite trunk whose output is the
three registered backbones' outputs side by side (pooled, texture statistics, and those of each
quadrant: the same maps, read three ways), at 64 px, with the packaged ImageNet weights; the
family's outputs are checked against the registered builders' own networks for Lite0."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.errors import CleanerError
from cleaner.models import runtime as RT
from cleaner.models.backbones import BACKBONES, get_backbone
from tests.models_helpers import make_root

runner = CliRunner()
FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces140k"
SIZE = 64
"""The family check's input side: every map of the Lite trunks keeps at least 2 x 2 cells."""
FAST = sorted(n for n, b in BACKBONES.items() if b.fast)
LITE = (0, 1, 2)
VARIANTS = ("", "-gram", "-gram-quad")


@pytest.fixture(autouse=True)
def _runtime_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    """--runtime through CliRunner sets this process's choice: undo it after each test."""
    monkeypatch.setattr(RT, "_chosen", None)
    monkeypatch.setattr(RT, "_warned", False)
    monkeypatch.delenv(RT.RUNTIME_ENV, raising=False)


def _images(tmp_path: Path, n: int = 4) -> list[Path]:
    if (FACES / "fake").is_dir():
        return [p for c in ("real", "fake") for p in sorted((FACES / c).iterdir())[: n // 2]]
    root = make_root(tmp_path / "R", n // 2, size=96)
    return sorted(root.rglob("*.png"))


def _pixels(paths: list[Path], size: int) -> np.ndarray:
    from cleaner.models.inputs import load_one

    return np.stack([load_one(p, size, "resize")[0] for p in paths]).astype(np.float32)


@dataclass
class Family:
    """One converted network for several registered backbones: ``widths[name]`` columns of
    its output each, in order; ``keras`` and ``fast``: its outputs on ``pixels``."""

    widths: dict[str, int]
    pixels: np.ndarray
    keras: np.ndarray
    fast: np.ndarray


def _lite_family(index: int) -> tuple[Any, dict[str, int]]:
    """Lite``index``'s three backbones as one Keras network, built from the registered
    ``-gram-quad`` one: its maps pooled (``efficientnet-lite{index}``: the average of the last
    map), their statistics (``-gram``: the same texture layer with no grid), and its output."""
    import keras

    from cleaner.models.texture import QUAD_GRID, feature_dim

    quad = get_backbone(f"efficientnet-lite{index}-gram-quad").build("imagenet", SIZE)
    stats = quad.get_layer("texture_stats")
    maps = stats.input
    whole = type(stats).from_config({**stats.get_config(), "grid": 1, "name": "whole"})(maps)
    pooled = keras.layers.GlobalAveragePooling2D()(maps[-1])
    out = keras.layers.Concatenate()([pooled, whole, quad.output])
    one = feature_dim([int(m.shape[-1]) for m in maps], stats.gram)
    widths = (int(maps[-1].shape[-1]), one, one * QUAD_GRID**2)
    names = [f"efficientnet-lite{index}{v}" for v in VARIANTS]
    return keras.Model(quad.input, out), dict(zip(names, widths, strict=True))


def _converted(key: str, model: Any, size: int) -> Path:
    """``model`` converted by :func:`cleaner.models.runtime.convert`, kept between runs beside
    the backbones' converted files under a name that is a digest of everything the file
    depends on: the network (its layers' configuration and its weights), the conversion's
    source code and the TensorFlow version. A change to any of them converts again."""
    import inspect

    import tensorflow as tf

    parts = [model.to_json(), RT.weights_digest(model), inspect.getsource(RT.convert)]
    parts += [RT.CONVERSION, tf.__version__, str(size)]
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    path = RT.cache_dir() / "tests" / f"{key}-{digest}.tflite"
    if not path.is_file():
        RT._write(path, RT.convert(model, size))
    return path


def _family(key: str, pixels: np.ndarray) -> Family:
    if key == "simple-cnn":
        model = get_backbone(key).build("none", 32)
        widths, x = {key: int(model.output_shape[-1])}, pixels[:, ::2, ::2]  # 32 px
    else:
        (model, widths), x = _lite_family(int(key[-1])), pixels
    fast = RT.FastModel(_converted(key, model, x.shape[1])).predict_on_batch(x)
    return Family(widths, x, np.asarray(model(x, training=False)), fast)


@pytest.fixture(scope="module")
def families(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Family]:
    """Every fast backbone's family, converted once (:func:`_converted`)."""
    pixels = _pixels(_images(tmp_path_factory.mktemp("faces")), SIZE)
    return {k: _family(k, pixels) for k in [*(f"lite{i}" for i in LITE), "simple-cnn"]}


def _family_of(name: str) -> str:
    return "simple-cnn" if name == "simple-cnn" else "lite" + name.split("-")[1][-1]


def _columns(fam: Family, name: str, out: np.ndarray) -> np.ndarray:
    at = 0
    for n, width in fam.widths.items():
        if n == name:
            return out[:, at : at + width]
        at += width
    raise KeyError(name)


def test_every_fast_backbone_is_in_a_family() -> None:
    names = [n for i in LITE for n in (f"efficientnet-lite{i}{v}" for v in VARIANTS)]
    assert sorted([*names, "simple-cnn"]) == FAST


@pytest.mark.parametrize("name", FAST)
def test_fast_features_equal_keras_within_the_tolerance(
    name: str, families: dict[str, Family]
) -> None:
    fam = families[_family_of(name)]
    assert fam.fast.shape == fam.keras.shape and fam.keras.shape[1] == sum(fam.widths.values())
    assert fam.keras.shape[0] == 4
    fast, keras = _columns(fam, name, fam.fast), _columns(fam, name, fam.keras)
    assert np.isfinite(keras).all() and np.abs(keras).max() > 0.01  # not all zeros
    np.testing.assert_allclose(fast, keras, atol=RT.ATOL, rtol=RT.RTOL)


def test_the_family_network_gives_the_registered_backbones_features(
    families: dict[str, Family],
) -> None:
    """What the family check converts is what the registered builders build (Lite0; Lite1
    and Lite2 come from the same builders, by index)."""
    fam = families["lite0"]
    for name in list(fam.widths)[:2]:  # the third is the registered -gram-quad network itself
        net = get_backbone(name).build("imagenet", SIZE)
        own = np.asarray(net(fam.pixels, training=False))
        np.testing.assert_allclose(_columns(fam, name, fam.keras), own, rtol=1e-5, atol=1e-6)


def test_a_backbone_without_a_fast_path_runs_on_keras() -> None:
    bb = get_backbone("mobilenetv3small")  # ImageNet weights are a download: never converted
    assert not bb.fast
    model = RT.load(bb, "none", 32, RT.Runtime.FAST)
    assert not isinstance(model, RT.FastModel) and model.input_shape == (None, 32, 32, 3)


def _predict(root: Path, out: Path, *extra: str) -> dict[str, float]:
    args = ["predict", "--root", str(root), "--backbone", "simple-cnn", "--weights", "none",
            "--folds", "2", "--out", str(out), "--json", *extra]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return {e["sha256"]: e["prob_fake"] for e in json.loads(out.read_text())["predictions"]}


def test_runtime_flag_picks_the_runtime_and_both_share_one_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLEANER_CACHE", str(tmp_path / "cache"))
    converted = tmp_path / "cache" / "fastrt"
    root = make_root(tmp_path / "R", 8, size=40)
    assert runner.invoke(app, ["scan", "--root", str(root)]).exit_code == 0

    keras = _predict(root, tmp_path / "k.json", "--runtime", "keras")
    assert not converted.exists()  # Keras ran: nothing converted
    caches = list((root / ".cleaner" / "cache" / "embeddings").iterdir())
    for d in caches:  # drop the features, keep the folders (their names are the keys)
        for shard in d.glob("shard-*.npz"):
            shard.unlink()
    fast = _predict(root, tmp_path / "f.json", "--runtime", "fast")
    assert sorted(p.suffix for p in converted.iterdir()) == [".tflite", ".weights-sha256"]
    # the same cache folders: the key does not name the runtime
    assert sorted(caches) == sorted((root / ".cleaner" / "cache" / "embeddings").iterdir())
    assert fast.keys() == keras.keys() and len(fast) == 16
    for sha, p in keras.items():
        assert abs(fast[sha] - p) <= 1e-3


def test_auto_is_fast_on_a_cpu_keras_with_a_gpu_and_a_bad_name_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(RT, "_gpus", lambda: 0)
    assert RT.resolve(RT.Runtime.AUTO) is RT.Runtime.FAST
    monkeypatch.setattr(RT, "_gpus", lambda: 1)
    assert RT.resolve(RT.Runtime.AUTO) is RT.Runtime.KERAS
    assert RT.resolve(RT.Runtime.FAST) is RT.Runtime.FAST  # forced
    monkeypatch.setenv(RT.RUNTIME_ENV, "keras")
    assert RT.requested() is RT.Runtime.KERAS
    monkeypatch.setenv(RT.RUNTIME_ENV, "turbo")
    with pytest.raises(CleanerError, match="runtime must be one of auto, keras, fast"):
        RT.requested()


def test_without_an_interpreter_it_falls_back_to_keras_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(RT, "interpreter_class", lambda: None)
    with caplog.at_level(logging.WARNING, logger="cleaner"):
        assert RT.resolve(RT.Runtime.FAST) is RT.Runtime.KERAS
        assert RT.resolve(RT.Runtime.FAST) is RT.Runtime.KERAS  # said once, not twice
    assert [r.getMessage() for r in caplog.records] == [
        "no TensorFlow Lite interpreter is importable: running on Keras"
    ]
    assert RT.resolve(RT.Runtime.AUTO) is RT.Runtime.KERAS
    root = make_root(tmp_path / "R", 8, size=40)
    assert runner.invoke(app, ["scan", "--root", str(root)]).exit_code == 0
    assert len(_predict(root, tmp_path / "p.json", "--runtime", "fast")) == 16


PROB_ATOL = 1e-3
"""How far a saved classifier's prob_fake on the fast runtime may be from Keras' (the features
within :data:`cleaner.models.runtime.ATOL` / ``RTOL``; measured: bench/README.md)."""


def _predict_dir(folder: Path, model: Path, out: Path, *extra: str) -> dict[str, float]:
    args = ["predict-dir", str(folder), "--model", str(model), "--out", str(out), *extra]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return {row["image"]: row["prob_fake"] for row in json.loads(out.read_text())}


def test_a_saved_frozen_backbone_and_head_runs_fast_with_the_same_probabilities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`train --epochs 0` on a fast backbone (the -quad one: its head averages the region
    rows): predict-dir, predict --model and serve's predictor run its backbone's converted
    file; a model whose backbone is not the registered one runs Keras, saying so once."""
    from cleaner.models import saved
    from cleaner.web.predictor import KerasPredictor

    calls: list[int] = []
    run = saved.FrozenHead.predict_on_batch
    monkeypatch.setattr(saved.FrozenHead, "predict_on_batch",
                        lambda self, x: calls.append(len(x)) or run(self, x))  # fmt: skip
    root = make_root(tmp_path / "R", 6, size=72)
    model = tmp_path / "m.keras"
    args = ["--backbone", "efficientnet-lite0-gram-quad", "--image-size", str(SIZE)]
    r = runner.invoke(app, ["train", "--root", str(root), *args, "--epochs", "0",
                            "--out", str(model)])  # fmt: skip
    assert r.exit_code == 0, r.output
    folder = root / "fake_images"
    keras = _predict_dir(folder, model, tmp_path / "k.json", "--runtime", "keras")
    assert calls == []
    fast = _predict_dir(folder, model, tmp_path / "f.json", "--runtime", "fast")
    assert sum(calls) == 6
    assert fast.keys() == keras.keys() and len(fast) == 6 and len(set(fast.values())) > 1
    assert max(abs(fast[k] - keras[k]) for k in fast) <= PROB_ATOL
    # predict --model: fast by default on a machine without a GPU
    monkeypatch.setattr(RT, "_gpus", lambda: 0)
    assert _predict_model(root, model, tmp_path) == pytest.approx(keras, abs=PROB_ATOL)
    assert sum(calls) == 18  # real and fake

    served = KerasPredictor(model)  # serve's, on the runtime the command chose
    one = sorted(folder.iterdir())[0]
    assert abs(served.predict_bytes(one.read_bytes()) - keras[one.name]) <= PROB_ATOL
    assert sum(calls) == 19 and served.load().fast
    assert isinstance(served.load().factory(), saved.FrozenHead)  # what a Ray actor loads

    # the backbone changed by training (a weight nudged): not the registered one, Keras
    m = saved.load_model(model)
    w = m.layers[1].weights[0]
    w.assign(w.numpy() * 1.01)
    assert saved.fast_head(model, m) == (
        "its backbone is not efficientnet-lite0-gram-quad with imagenet weights (fine-tuned?)"
    )
    with caplog.at_level(logging.WARNING, logger="cleaner"):
        assert saved._runner(model, m, RT.Runtime.FAST) is m
    assert [r.getMessage() for r in caplog.records if r.name == "cleaner"] == [
        "model m.keras runs on Keras: its backbone is not efficientnet-lite0-gram-quad with "
        "imagenet weights (fine-tuned?)"
    ]


def _predict_model(root: Path, model: Path, tmp_path: Path) -> dict[str, float]:
    """`predict --model` over ROOT: prob_fake of the fake folder's images by file name."""
    assert runner.invoke(app, ["scan", "--root", str(root)]).exit_code == 0
    out = tmp_path / "pm.json"
    r = runner.invoke(app, ["predict", "--root", str(root), "--model", str(model), "--out",
                            str(out), "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())["predictions"]
    return {Path(e["path"]).name: e["prob_fake"] for e in rows if "fake" in e["path"]}
