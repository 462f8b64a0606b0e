"""`cleaner train`: the grouped, reused, seeded split; a tiny real training run through the CLI
(metrics file complete, plots written, model takes 0..255 RGB and gives prob_fake)."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.dataset import Workspace
from cleaner.errors import CleanerError
from cleaner.hashing import file_sha256
from cleaner.split import dataset_samples, make_split, read_split
from tests.train_helpers import make_dataset

runner = CliRunner()

METRIC_KEYS = {
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "confusion_matrix",
    "classification_report",
    "epochs",
    "time",
    "backbone",
    "weights",
    "image_size",
    "data_digest",
    "versions",
    "history",
    "split",
    "dtype_policy",
    "plots",
}


def _split_csv(root: Path) -> list[dict[str, str]]:
    with open(root / ".cleaner" / "split.csv", newline="") as f:
        return list(csv.DictReader(f))


def _write_duplicates(root: Path, groups: list[list[str]]) -> None:
    doc = {
        "method": "phash",
        "max_distance": 8,
        "groups": [
            {
                "kept": g[0],
                "conflict": False,
                "members": [
                    {"path": p, "label": "real", "sha256": file_sha256(root / p), "distance": 0}
                    for p in g
                ],
            }
            for g in groups
        ],
    }
    (root / ".cleaner").mkdir(exist_ok=True)
    (root / ".cleaner" / "duplicates.json").write_text(json.dumps(doc))


def test_split_is_stratified_grouped_and_reused(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", 30, size=24, exact_copies=3)
    # a near-duplicate group of four different files (two of them with exact copies)
    group = [f"real_images/real_{i:03d}.png" for i in (0, 1, 10, 11)]
    _write_duplicates(root, [group])
    rows, reused = make_split(Workspace.open(root), dataset_samples(Workspace.open(root)), seed=3)
    assert not reused
    split_of = {r.path: r.split for r in rows}
    # the group and every byte-identical copy share one split and one group id
    members = [*group, "real_images/copy_000.png", "real_images/copy_001.png"]
    assert len({split_of[p] for p in members}) == 1
    assert len({r.group for r in rows if r.path in members}) == 1
    # 60/20/20 within each class, give or take the group
    per = defaultdict(Counter)
    for r in rows:
        per[r.label][r.split] += 1
    for label, c in per.items():
        n = sum(c.values())
        assert abs(c["train"] - 0.6 * n) <= 6, (label, c)
        assert abs(c["val"] - 0.2 * n) <= 6 and abs(c["test"] - 0.2 * n) <= 6, (label, c)
    on_disk = _split_csv(root)
    assert list(on_disk[0]) == ["path", "sha256", "label", "split", "group"]
    assert len(on_disk) == len(rows) == 63

    # relabel one file the way separate does (a move to the other class), add a new one
    moved = next(r for r in rows if r.path.startswith("real_images/real_02"))
    (root / "fake_images" / Path(moved.path).name).parent.mkdir(exist_ok=True)
    shutil.move(root / moved.path, root / "fake_images" / Path(moved.path).name)
    shutil.copy(root / "real_images/real_000.png", root / "fake_images/new_copy.png")
    rows2, reused2 = make_split(
        Workspace.open(root), dataset_samples(Workspace.open(root)), seed=99
    )  # another seed: ignored
    assert reused2
    by_sha = {r.sha256: r for r in rows2}
    for r in rows:
        assert by_sha[r.sha256].split == r.split
    now = by_sha[moved.sha256]
    assert now.path == "fake_images/" + Path(moved.path).name and now.label == "fake"
    # the new byte copy joins its group's split
    new = next(r for r in rows2 if r.path == "fake_images/new_copy.png")
    assert new.split == split_of["real_images/real_000.png"]
    assert read_split(root) == rows2


def test_split_is_reproducible_from_the_seed(tmp_path: Path) -> None:
    a = make_dataset(tmp_path / "a", 20, size=24, seed=5)
    b = tmp_path / "b"
    shutil.copytree(a, b)
    rows_a, _ = make_split(Workspace.open(a), dataset_samples(Workspace.open(a)), seed=7)
    rows_b, _ = make_split(Workspace.open(b), dataset_samples(Workspace.open(b)), seed=7)
    assert [(r.path, r.split) for r in rows_a] == [(r.path, r.split) for r in rows_b]
    rows_c, _ = make_split(
        Workspace.open(b), dataset_samples(Workspace.open(b)), seed=8, resplit=True
    )
    assert [r.split for r in rows_c] != [r.split for r in rows_a]


def test_a_broken_duplicates_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", 4, size=16)
    (root / ".cleaner").mkdir()
    (root / ".cleaner" / "duplicates.json").write_text("{not json")
    with pytest.raises(CleanerError, match=r"duplicates\.json"):
        make_split(Workspace.open(root), dataset_samples(Workspace.open(root)))


def test_train_cli_writes_model_metrics_and_plots(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", 24, size=40, exact_copies=2)
    out = tmp_path / "m" / "det.keras"
    res = runner.invoke(
        app,
        [
            "train",
            "--root",
            str(root),
            "--out",
            str(out),
            "--backbone",
            "simple-cnn",
            "--weights",
            "none",
            "--image-size",
            "32",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--seed",
            "1",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["model"] == str(out) and out.is_file()
    metrics = json.loads((tmp_path / "m" / "det.metrics.json").read_text())
    assert set(metrics) >= METRIC_KEYS
    n_test = metrics["split"]["test"]["images"]
    assert n_test > 0 and sum(map(sum, metrics["confusion_matrix"])) == n_test
    assert metrics["split"]["train"]["images"] + metrics["split"]["val"]["images"] + n_test == 50
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["roc_auc"] <= 1.0
    assert metrics["epochs"] == {"scratch": len(metrics["history"])} and metrics["history"]
    assert {"real", "fake", "accuracy"} <= set(metrics["classification_report"])
    assert metrics["image_size"] == 32 and metrics["weights"] == "none"
    assert metrics["versions"]["tensorflow"] and len(metrics["data_digest"]) == 64
    for name in metrics["plots"]:
        assert (tmp_path / "m" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(metrics["plots"]) == ["det.confusion.png", "det.curves.png", "det.roc.png"]
    # the split was written and the metrics' test split is the file's test split
    split = _split_csv(root)
    assert sum(1 for r in split if r["split"] == "test") == n_test

    # the model takes raw 0..255 RGB and gives one prob_fake per image
    import keras

    model = keras.models.load_model(out)
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    p = np.asarray(model.predict(x, verbose=0))
    assert p.shape == (3, 1) and ((p >= 0) & (p <= 1)).all()

    # same seed, same data: the same split and the same data digest
    res2 = runner.invoke(
        app,
        ["train", "--root", str(root), "--out", str(tmp_path / "m2.keras"), "--backbone",
         "simple-cnn", "--epochs", "1", "--seed", "1", "--json"],
    )  # fmt: skip
    assert res2.exit_code == 0, res2.output
    m2 = json.loads((tmp_path / "m2.metrics.json").read_text())
    assert m2["data_digest"] == metrics["data_digest"] and m2["split"]["reused"] is True


def test_train_cli_refuses_bad_input_with_one_line(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", 4, size=16)
    res = runner.invoke(app, ["train", "--root", str(root), "--out", str(tmp_path / "m.h5")])
    assert res.exit_code == 1
    assert "must end in .keras" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    shutil.rmtree(root / "fake_images")
    res = runner.invoke(
        app,
        ["train", "--root", str(root), "--out", str(tmp_path / "m.keras"), "--backbone",
         "simple-cnn"],
    )  # fmt: skip
    assert res.exit_code == 1 and "class" in res.stderr
    res = runner.invoke(
        app, ["train", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "m.keras")]
    )
    assert res.exit_code == 1 and "does not exist" in res.stderr


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--epochs", "-1"], "--epochs and --head-epochs must be 0 or more"),
        (["--image-size", "8"], "--image-size 8 is too small; use 16 or more"),
        (["--precision", "fp8"], "--precision 'fp8' is not one of auto, float32"),
        (["--batch-size", "0"], "--batch-size 0: give 1 or more"),
        (["--backbone", "nope"], "unknown backbone 'nope'; choose one of"),
    ],
)
def test_train_config_refuses_a_bad_flag_before_any_work(
    tmp_path: Path, flags: list[str], said: str
) -> None:
    """TrainConfig checks every flag when the CLI builds it: one line naming the flag, exit 1,
    and nothing written (no split, no model)."""
    root = make_dataset(tmp_path / "ds", 2, size=16)
    out = tmp_path / "m.keras"
    res = runner.invoke(app, ["train", "--root", str(root), "--out", str(out), *flags])
    assert res.exit_code == 1 and said in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists() and not (root / ".cleaner" / "split.csv").exists()


@pytest.mark.parametrize("head", ["logreg", "dense"])
def test_transfer_head_on_frozen_features(tmp_path: Path, head: str) -> None:
    """Phase 1 on Lite0's ImageNet texture features (offline weights, 32 px): the exact
    logistic regression (default) or the Adam-trained dense head; the saved model is the head's
    model, and the exact head separates the checkerboard fakes."""
    root = make_dataset(tmp_path / "ds", 30, size=32)
    out = tmp_path / f"{head}.keras"
    res = runner.invoke(
        app,
        ["train", "--root", str(root), "--out", str(out), "--backbone",
         "efficientnet-lite0-gram", "--image-size", "32", "--epochs", "0", "--head", head,
         "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    m = json.loads(out.with_suffix(".metrics.json").read_text())
    phase = m["phases"]["head"]
    assert phase["head"] == head and m["mode"] == "transfer"
    if head == "logreg":
        assert phase["epochs"] == 0 and phase["c"] > 0 and m["history"] == []
    else:
        assert phase["epochs"] >= 1 and len(m["history"]) == phase["epochs"]
    if head == "logreg":
        assert m["roc_auc"] > 0.9
    # the model file reproduces the test figures: prob_fake from 0..255 pixels
    from cleaner.images import load_array
    from cleaner.models.saved import load_model

    split = [r for r in _split_csv(root) if r["split"] == "test"]
    x = np.stack([load_array(root / r["path"], 32, crop="center") for r in split])
    p = np.asarray(load_model(out).predict(x.astype(np.float32), verbose=0))[:, 0]
    acc = float(np.mean((p >= 0.5) == np.array([r["label"] == "fake" for r in split])))
    assert acc == pytest.approx(m["accuracy"], abs=1e-9)


def test_an_unknown_head_is_one_clear_line(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", 4, size=16)
    res = runner.invoke(
        app, ["train", "--root", str(root), "--out", str(tmp_path / "m.keras"), "--head", "svm"]
    )
    assert res.exit_code == 1 and "--head 'svm'" in res.stderr


def test_precision_auto_is_float32_on_a_cpu() -> None:
    """bfloat16 measured slower on both CPUs tried, AMX or not (bench/README): auto stays
    float32 wherever no GPU is visible, and an unknown policy is one clear error."""
    import tensorflow as tf

    from cleaner.models.devices import resolve_precision

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible: auto means mixed_float16 there")
    assert resolve_precision("auto") == "float32"
    assert resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
    with pytest.raises(CleanerError, match="--precision 'fp8'"):
        resolve_precision("fp8")


def test_feature_norm_floors_the_variance_of_dead_features() -> None:
    """A feature that never moves on the training split must not be divided by 1e-7: when
    fine-tuning wakes it up, the standardised value stays of the order of the others."""
    import keras

    from cleaner.models.fit import set_feature_norm
    from cleaner.models.frozen_head import VARIANCE_FLOOR, feature_norm

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (64, 5)).astype(np.float32)
    x[:, 3] = 0.0  # a dead channel
    norm = keras.layers.Normalization()
    set_feature_norm(norm, *feature_norm(x, np.arange(len(x))))
    woken = x[:2].copy()
    woken[:, 3] = 0.5
    out = np.asarray(norm(woken))
    live = [0, 1, 2, 4]
    bound = 0.5 / np.sqrt(VARIANCE_FLOOR * np.median(x[:, live].var(0)))  # ~52, not 5e6
    assert np.isfinite(out).all() and abs(out[0, 3]) == pytest.approx(bound, rel=1e-3)
    # the live features are standardised as before
    np.testing.assert_allclose(np.asarray(norm(x))[:, live].std(0), 1.0, atol=1e-3)
