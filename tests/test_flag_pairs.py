"""Flags that only act together, or only with another flag: a combination that would leave one
of them silently ignored is refused whole (exit 1, one line naming the flags and the fix,
nothing written), before any work; where the Makefile passes the flag always, a warning line.
Every case runs through the CLI and stops before a model or TensorFlow would load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cleaner.engine import configure, using
from cleaner.errors import CleanerError
from cleaner.models.config import TrainConfig, predict_config
from tests.hostile_helpers import cli, one_line_error, tree

# the command line (split on spaces, then {root} and {tmp} filled in), words the refusal holds
CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "evaluate --predictions alone": (
        "evaluate {root} --predictions {tmp}/p.json",
        ("--predictions", "--labels"),
    ),
    "evaluate --labels alone": (
        "evaluate {root} --labels {tmp}/l.json",
        ("--labels", "--predictions"),
    ),
    "scan --ray-address, engine local": (
        "scan --root {root} --ray-address auto",
        ("--ray-address", "--engine ray"),
    ),
    "dedupe --engine local --ray-address": (
        "dedupe --root {root} --engine local --ray-address ray://h:10001",
        ("--ray-address", "--engine ray"),
    ),
    "audit --equalize-size without --equalize": (
        "audit --root {root} --equalize-size 64",
        ("--equalize-size", "--equalize OUT"),
    ),
    "audit --equalize-quality without --equalize": (
        "audit --root {root} --equalize-quality 80",
        ("--equalize-quality", "--equalize OUT"),
    ),
    "predict --model with out-of-fold flags": (
        "predict --root {root} --model {tmp}/m.keras --mirror --seed 3 --out {tmp}/p.json",
        ("--mirror", "--seed", "--backbone"),
    ),
    "predict --epochs without --finetune": (
        "predict --root {root} --backbone spectrum --epochs 5 --out {tmp}/p.json",
        ("--epochs 5", "--finetune"),
    ),
    "predict --finetune with frozen-head flags": (
        "predict --root {root} --backbone simple-cnn --weights none --finetune --head logreg-cv "
        "--no-prune --out {tmp}/p.json",
        ("--head", "--no-prune", "--finetune"),
    ),
    "predict --finetune with --no-planted": (
        "predict --root {root} --backbone simple-cnn --weights none --finetune --no-planted "
        "--out {tmp}/p.json",
        ("--no-planted", "--finetune"),
    ),
    "predict --pca-dim with --head-features full": (
        "predict --root {root} --backbone spectrum --head-features full --pca-dim 8 "
        "--out {tmp}/p.json",
        ("--pca-dim 8", "--head-features"),
    ),
    "predict --weights on a backbone without a network": (
        "predict --root {root} --backbone spectrum --weights imagenet --out {tmp}/p.json",
        ("--weights imagenet", "spectrum"),
    ),
    "train --no-augment with --augment crops": (
        "train --root {root} --out {tmp}/m.keras --no-augment --augment crops",
        ("--no-augment", "--augment crops"),
    ),
    "train --fine-tune-layers with --epochs 0": (
        "train --root {root} --out {tmp}/m.keras --epochs 0 --fine-tune-layers 5",
        ("--fine-tune-layers", "--epochs 0"),
    ),
    "train --fine-tune-lr with --weights none": (
        "train --root {root} --out {tmp}/m.keras --weights none --fine-tune-lr 0.001",
        ("--fine-tune-lr", "--weights none"),
    ),
    "train --head dense with --weights none": (
        "train --root {root} --out {tmp}/m.keras --weights none --head dense",
        ("--head dense", "--weights none"),
    ),
    "train --head-features with --head-epochs 0": (
        "train --root {root} --out {tmp}/m.keras --head-epochs 0 --head-features pca",
        ("--head-features", "--head-epochs 0"),
    ),
    "train --pca-dim with --head-features full": (
        "train --root {root} --out {tmp}/m.keras --head-features full --pca-dim 8",
        ("--pca-dim 8", "--head-features"),
    ),
    "train --patience with nothing that stops early": (
        "train --root {root} --out {tmp}/m.keras --epochs 0 --patience 5",
        ("--patience", "phase 2"),
    ),
    "train --robust-views with --augment crops": (
        "train --root {root} --out {tmp}/m.keras --augment crops --robust-views 4",
        ("--robust-views", "--augment crops"),
    ),
    "train a backbone without a network": (
        "train --root {root} --out {tmp}/m.keras --backbone spectrum",
        ("--backbone spectrum", "no network"),
    ),
}


def _files(top: Path) -> set[str]:
    return {str(p.relative_to(top)) for p in top.rglob("*")}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CLEANER_ENGINE", "CLEANER_RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("case", list(CASES))
def test_a_flag_the_request_would_ignore_is_refused_whole(
    case: str, tmp_path: Path, clean_env: None
) -> None:
    argv, words = CASES[case]
    root = tree(
        tmp_path / "R",
        "real_images/a.png",
        "real_images/b.png",
        "fake_images/c.png",
        "fake_images/d.png",
    )
    (root / "ground_truth.json").write_text("{}")  # evaluate's DIR
    for name in ("p.json", "l.json"):
        (tmp_path / name).write_text("[]")
    before = _files(tmp_path)
    args = [a.format(root=root, tmp=tmp_path) for a in argv.split()]
    code, _, err = cli(*args)
    one_line_error(code, err, *words)
    assert _files(tmp_path) == before  # nothing written: no manifest, no state, no output


def test_the_combinations_the_makefile_and_docs_use_still_pass(clean_env: None) -> None:
    """Defaults never count as given (the Makefile passes --head-epochs 20, --folds, ...), and
    the documented pairs stay valid: --epochs with --finetune, --pca-dim with pca."""
    TrainConfig(out=Path("m.keras"), head_epochs=20, epochs=10)
    TrainConfig(out=Path("m.keras"), weights="none", head_epochs=20, augment="crops")
    TrainConfig(out=Path("m.keras"), augment="robust", head_views=4, epochs=0)
    predict_config("p.json", backbone="simple-cnn", weights="none", finetune=True, epochs=4)
    predict_config("p.json", backbone="spectrum", folds=5, head_features="pca", pca_dim=6)
    with pytest.raises(CleanerError, match="--mirror"):
        predict_config("p.json", model="m.keras", mirror=True)


def test_head_epochs_the_head_ignores_is_a_warning_not_a_refusal() -> None:
    """make retrain passes --head-epochs always: a value the chosen head ignores warns."""
    assert TrainConfig(out=Path("m.keras")).warnings == []
    assert TrainConfig(out=Path("m.keras"), head="dense", head_epochs=5).warnings == []
    (line,) = TrainConfig(out=Path("m.keras"), head_epochs=5).warnings
    assert "--head-epochs 5" in line and "--head logreg" in line
    (line,) = TrainConfig(out=Path("m.keras"), weights="none", head_epochs=5).warnings
    assert "--weights none" in line


def test_ray_address_goes_with_the_ray_engine_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> None:
    """CLEANER_ENGINE=ray (the Makefile's ENGINE=ray) makes --ray-address valid without
    --engine; the local engine named in the environment refuses it."""
    pytest.importorskip("ray")
    with using("local"):  # restores the process's engine after
        monkeypatch.setenv("CLEANER_ENGINE", "ray")
        assert configure(None, "ray://h:10001").address == "ray://h:10001"
        monkeypatch.setenv("CLEANER_ENGINE", "local")
        with pytest.raises(CleanerError, match="--ray-address ray://h:10001"):
            configure(None, "ray://h:10001")


def test_a_ray_address_in_the_environment_the_local_engine_ignores_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> None:
    """make RAY_ADDRESS=auto without ENGINE=ray exports CLEANER_RAY_ADDRESS alone: the command
    runs (locally, as before) and says once, on stderr, that the address is unused."""
    root = tree(tmp_path / "R", "real_images/a.png", "fake_images/b.png")
    monkeypatch.setenv("CLEANER_RAY_ADDRESS", "ray://h:10001")
    code, out, err = cli("scan", "--root", str(root), "--json")
    assert code == 0, err
    assert json.loads(out)["counts"]  # the scan ran, its JSON alone on stdout
    (line,) = [x for x in err.splitlines() if x.strip()]
    assert line.startswith("warning: CLEANER_RAY_ADDRESS=ray://h:10001") and "--engine ray" in line
