"""The fast runtime (TensorFlow Lite with XNNPACK): its features equal Keras' within the stated
tolerance for every registered backbone that has a network (on real faces when present), the
CLI's --runtime picks it, one cache serves both, and a machine without it falls back with one
line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.errors import CleanerError
from cleaner.models import embeddings as E
from cleaner.models import runtime as RT
from cleaner.models.backbones import BACKBONES, get_backbone
from tests.models_helpers import make_root

runner = CliRunner()
FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces140k"

IN_SUITE = {
    # name: (weights, image size): the texture statistics of every Lite block with their grid
    # (the most involved graph: Lite's blocks, intermediate maps, Gram matrices, quadrants)
    # and the small CNN; bench/bench_runtime.py checks Lite0 and Lite2-gram on 1,000 faces
    "efficientnet-lite0-gram-quad": ("imagenet", 256),
    "simple-cnn": ("none", 32),
}
FAST = sorted(n for n, b in BACKBONES.items() if b.fast)


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


@pytest.mark.parametrize("name", FAST)
def test_fast_features_equal_keras_within_the_tolerance(name: str, tmp_path: Path) -> None:
    if name not in IN_SUITE:
        pytest.skip(
            f"{name}: a minute or more to build, convert and run twice on a loaded 2-core "
            "machine; bench/bench_runtime.py --backbones NAME --n 8 --rounds 1 checks it"
        )
    weights, size = IN_SUITE[name]
    bb = get_backbone(name)
    spec = E.EmbeddingSpec(bb, weights, size, bb.crop)
    paths = _images(tmp_path)
    fast_model = RT.load(bb, weights, size, RT.Runtime.FAST)
    assert isinstance(fast_model, RT.FastModel)
    fast, errs = E.compute_features(spec, paths, batch_size=3, model=fast_model)
    keras, _ = E.compute_features(spec, paths, batch_size=3, model=bb.build(weights, size))
    assert not any(errs) and fast.shape == keras.shape and fast.shape[0] == len(paths)
    assert np.abs(keras).max() > 0.01  # the features are not all zeros
    np.testing.assert_allclose(fast, keras, atol=RT.ATOL, rtol=RT.RTOL)


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
    assert [p.suffix for p in converted.iterdir()] == [".tflite"]
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
