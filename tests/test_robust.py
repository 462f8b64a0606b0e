"""`cleaner train --augment robust` (K cached robust views for a frozen head) and `--launder`
(the test split re-encoded as images travel), through the CLI on tiny generated images."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cleaner.choices import Launder
from cleaner.cli import app
from cleaner.models import augment, launder
from cleaner.models.views import view_source
from tests.train_helpers import make_dataset

runner = CliRunner()

LITE = ["--backbone", "efficientnet-lite0-gram", "--image-size", "32", "--epochs", "0"]


def _train(root: Path, out: Path, *extra: str) -> dict:  # type: ignore[type-arg]
    res = runner.invoke(app, ["train", "--root", str(root), "--out", str(out), *extra, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(out.with_suffix(".metrics.json").read_text())  # type: ignore[no-any-return]


def test_robust_head_views_are_cached_and_launder_scores_every_condition(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", 14, size=40)
    m = _train(root, tmp_path / "a.keras", *LITE, "--launder", "--robust-views", "2")
    # the default (auto): a head on frozen features trains on robust views too
    assert m["augmentation"]["mode"] == "auto" and m["augmentation"]["robust"]["jpeg_p"] == 0.5
    views = m["phases"]["head"]["robust_views"]
    n_train = m["split"]["train"]["images"]
    assert views["views"] == 2 and views["computed"] == 2 * n_train and views["cached"] == 0
    assert views["rows"] == 3 * n_train  # the clean rows and two views of each
    lau = m["launder"]
    assert set(lau["conditions"]) == {c.value for c in Launder}
    n_test = m["split"]["test"]["images"]
    for row in lau["conditions"].values():
        assert row["images"] == n_test and 0.0 <= row["accuracy"] <= 1.0
        assert row["roc_auc"] is not None and row["auc_drop"] == pytest.approx(
            m["roc_auc"] - row["roc_auc"], abs=1e-4
        )
    worst = min(lau["conditions"].items(), key=lambda kv: kv[1]["roc_auc"])
    assert lau["worst"]["condition"] == worst[0]
    assert lau["features_from"].startswith("embedding cache")
    assert lau["backbone_runs"] == len(Launder) * n_test
    # the checkerboard fakes do not survive a 0.5x resize or a blur: that condition costs AUC
    assert lau["conditions"]["resize0.5"]["roc_auc"] < m["roc_auc"]

    # a second model on the same split: every view and laundered image comes from the cache
    m2 = _train(root, tmp_path / "b.keras", *LITE, "--launder", "--robust-views", "2")
    assert m2["phases"]["head"]["robust_views"]["computed"] == 0
    assert m2["launder"]["backbone_runs"] == 0
    assert m2["launder"]["conditions"] == lau["conditions"]

    # the laundered figures are the model's own on the laundered pixels
    from cleaner.models.inputs import predict_paths
    from cleaner.models.saved import load_model

    split = [line.split(",") for line in (root / ".cleaner" / "split.csv").read_text().splitlines()]
    head = split[0]
    test = [dict(zip(head, r, strict=True)) for r in split[1:]]
    test = [r for r in test if r["split"] == "test"]
    model = load_model(tmp_path / "a.keras")
    out, _ = predict_paths(model, [root / r["path"] for r in test], 32,
                           view=launder.view_name(Launder.JPEG50))  # fmt: skip
    y = np.array([r["label"] == "fake" for r in test])
    acc = float(np.mean((out[:, 0] >= 0.5) == y))
    assert acc == pytest.approx(lau["conditions"]["jpeg50"]["accuracy"], abs=1e-9)


def test_augment_modes_and_the_old_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """How the CLI reads --augment (the training itself is the tests above and below)."""
    import cleaner.models.train as train_module
    from cleaner.errors import CleanerError

    seen: list[object] = []

    def fake_train(ws: object, cfg: train_module.TrainConfig, **_: object) -> None:
        seen.append(cfg.augment)
        raise CleanerError("stopped by the test")

    monkeypatch.setattr(train_module, "train", fake_train)
    root = make_dataset(tmp_path / "ds", 2, size=16)
    base = ["train", "--root", str(root), "--out", str(tmp_path / "m.keras")]
    for extra, want in (
        ([], "auto"),
        (["--no-augment"], "none"),
        (["--augment", "crops"], "crops"),
        (["--augment"], "robust"),  # bare, last, as typed before
        (["--augment", "--epochs", "1"], "robust"),  # bare, before another option
        (["--augment=none"], "none"),
    ):
        res = runner.invoke(app, [*base, *extra])
        assert res.exit_code == 1 and "stopped by the test" in res.stderr, res.output
        assert seen[-1] == want, extra
    res = runner.invoke(app, [*base, "--augment", "blurry"])
    assert res.exit_code == 2 and "blurry" in res.output
    assert augment.mode(True) == "crops" and augment.mode(False) == "none"


def test_fine_tuned_model_is_laundered_through_the_model(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", 12, size=40)
    m = _train(root, tmp_path / "s.keras", "--backbone", "simple-cnn", "--weights", "none",
               "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--launder")  # fmt: skip
    assert m["augmentation"]["mode"] == "auto" and m["launder"]["features_from"] == "model"
    assert set(m["launder"]["conditions"]) == {c.value for c in Launder}


def test_views_are_deterministic_and_change_the_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    px = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    path = tmp_path / "a.png"
    Image.fromarray(px).save(path)
    strong = augment.Robust(1.0, 1.0, 1.0)
    v0, v1 = augment.view_name(0, strong), augment.view_name(1, strong)
    assert view_source(path, v0, 32) == view_source(path, v0, 32)
    assert view_source(path, v0, 32) != view_source(path, v1, 32)
    assert augment.parse_view(v0) == strong
    for c in Launder:
        im = np.asarray(Image.open(io.BytesIO(view_source(path, launder.view_name(c), 32))))
        assert im.shape[2] == 3
        if c in (Launder.HALF, Launder.CHAIN):
            assert im.shape[:2] == (32, 32)
        else:
            assert im.shape[:2] == (64, 64) and not np.array_equal(im, px)
