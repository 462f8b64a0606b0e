"""`cleaner predict` and `cleaner predict-dir` through the CLI on tiny generated datasets."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.dataset import Workspace
from cleaner.hashing import file_sha256
from cleaner.models.planted import planted_mask
from cleaner.predictions import FORMAT_V1, read_predictions
from tests.models_helpers import colour_model, make_image, make_root

runner = CliRunner()


def _run(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return colour_model(tmp_path_factory.mktemp("m") / "colour.keras", size=32)


def _check_v1(out: Path, root: Path, *, out_of_fold: bool) -> dict:  # type: ignore[type-arg]
    doc = json.loads(out.read_text())
    assert doc["format"] == FORMAT_V1 and doc["out_of_fold"] is out_of_fold
    assert doc["classes"] == ["real", "fake"]
    pf = read_predictions(out, ws=Workspace.open(root))  # the relabeling area's validating reader
    assert len(pf.entries) == len(doc["predictions"])
    for e in doc["predictions"]:
        assert e["sha256"] == file_sha256(root / e["path"])
        assert e["label"] == ("fake" if e["path"].startswith("fake_images/") else "real")
        assert 0.0 <= e["prob_fake"] <= 1.0
    return doc  # type: ignore[no-any-return]


def test_predict_with_a_saved_model(tmp_path: Path, model: Path) -> None:
    root = make_root(tmp_path / "R", 5, size=40)
    (root / "real_images" / "broken.png").write_bytes(b"not an image at all")
    out = tmp_path / "preds" / "colour.json"
    code, stdout, stderr = _run(
        "predict", "--root", str(root), "--model", str(model), "--out", str(out), "--json"
    )
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["images"] == 10 and summary["predicted"] == 10
    doc = _check_v1(out, root, out_of_fold=False)
    assert doc["model"]["sha256"] == file_sha256(model)
    paths = {e["path"] for e in doc["predictions"]}
    assert "real_images/broken.png" not in paths and len(paths) == 10
    # the hand-set model says red = fake: every image is on its side of 0.5
    for e in doc["predictions"]:
        assert (e["prob_fake"] > 0.5) == (e["label"] == "fake")


@pytest.mark.parametrize(("backbone", "extra"), [("spectrum", []), ("simple-cnn", [])])
def test_predict_out_of_fold_with_a_backbone(
    tmp_path: Path, backbone: str, extra: list[str]
) -> None:
    root = make_root(tmp_path / "R", 8, size=48)
    out = tmp_path / f"{backbone}.json"
    code, stdout, stderr = _run(
        "predict",
        "--root",
        str(root),
        "--backbone",
        backbone,
        "--folds",
        "4",
        "--out",
        str(out),
        "--json",
        *extra,
    )
    assert code == 0, stderr
    doc = _check_v1(out, root, out_of_fold=True)
    assert doc["model"]["backbone"] == backbone and doc["model"]["folds"] == 4
    assert len(doc["predictions"]) == 16
    folds = [e["fold"] for e in doc["predictions"]]
    assert set(folds) == {0, 1, 2, 3}
    summary = json.loads(stdout)
    assert summary["computed"] == 16
    assert doc["model"]["mirror_augment"] is False
    assert len(doc["model"]["pruned"]) == 4 and doc["model"]["head_c"] > 0
    # the planted run for separate's check: every image's probability, 10% of each folder
    # swapped (1 of 8), chosen by content, so every voter swaps the same images
    assert all(0 <= e["planted_prob_fake"] <= 1 for e in doc["predictions"])
    swapped = [e for e in doc["predictions"] if e.get("planted")]
    assert sorted(e["label"] for e in swapped) == ["fake", "real"]
    assert doc["model"]["planted"]["swapped"] == 2
    shas = [e["sha256"] for e in doc["predictions"]]
    labels = [e["label"] == "fake" for e in doc["predictions"]]
    assert [e.get("planted", False) for e in doc["predictions"]] == list(planted_mask(labels, shas))
    # a second run reads the embedding cache: the backbone runs on nothing
    code, stdout, _ = _run(
        "predict",
        "--root",
        str(root),
        "--backbone",
        backbone,
        "--folds",
        "4",
        "--out",
        str(out),
        "--json",
    )
    assert code == 0 and json.loads(stdout)["computed"] == 0
    assert json.loads(out.read_text())["predictions"] == doc["predictions"]


def test_spectrum_folds_separate_the_generated_fakes(tmp_path: Path) -> None:
    root = make_root(tmp_path / "R", 12, size=48)
    code, stdout, stderr = _run(
        "predict",
        "--root",
        str(root),
        "--backbone",
        "spectrum",
        "--folds",
        "3",
        "--out",
        str(tmp_path / "s.json"),
        "--json",
    )
    assert code == 0, stderr
    assert json.loads(stdout)["auc"] > 0.9


def test_predict_keeps_duplicate_groups_in_one_fold(tmp_path: Path) -> None:
    root = make_root(tmp_path / "R", 8, size=48)
    state = root / ".cleaner"
    state.mkdir(exist_ok=True)
    members = ["real_images/r000.png", "real_images/r001.png", "fake_images/f002.png"]
    group = {
        "kept": members[0],
        "conflict": True,
        "members": [
            {"path": p, "label": p.split("_")[0], "sha256": file_sha256(root / p), "distance": 0}
            for p in members
        ],
    }
    (state / "duplicates.json").write_text(
        json.dumps({"method": "phash", "max_distance": 8, "groups": [group]})
    )
    out = tmp_path / "p.json"
    # the fold assignment is this test's: the heads' pruning and the planted run (other tests')
    # come after it and cannot move an image to another fold
    heads = ["--no-prune", "--no-planted"]
    for seed in ("0", "1", "2"):
        code, _, stderr = _run(
            "predict",
            "--root",
            str(root),
            "--backbone",
            "spectrum",
            "--folds",
            "4",
            "--seed",
            seed,
            *heads,
            "--out",
            str(out),
        )
        assert code == 0, stderr
        fold = {e["path"]: e["fold"] for e in json.loads(out.read_text())["predictions"]}
        assert len({fold[p] for p in members}) == 1


def test_usage_errors_are_one_line(tmp_path: Path, model: Path) -> None:
    root = make_root(tmp_path / "R", 2, size=40)
    out = str(tmp_path / "x.json")
    code, _, err = _run("predict", "--root", str(root), "--out", out)
    assert code == 1 and "exactly one of --model" in err
    code, _, err = _run(
        "predict",
        "--root",
        str(root),
        "--model",
        str(model),
        "--backbone",
        "spectrum",
        "--out",
        out,
    )
    assert code == 1
    code, _, err = _run(
        "predict", "--root", str(root), "--model", str(tmp_path / "no.keras"), "--out", out
    )
    assert code == 1 and "does not exist" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.keras"
    bad.write_text("nope")
    code, _, err = _run("predict", "--root", str(root), "--model", str(bad), "--out", out)
    assert code == 1 and "cannot load model" in err
    code, _, err = _run("predict", "--root", str(root), "--backbone", "nope", "--out", out)
    assert code == 1 and "choose one of" in err
    code, _, err = _run(
        "predict", "--root", str(tmp_path / "missing"), "--backbone", "spectrum", "--out", out
    )
    assert code == 1 and "does not exist" in err
    assert not Path(out).exists()


def test_predict_config_refuses_frozen_only_flags_with_finetune(tmp_path: Path) -> None:
    """OOFConfig, built by the CLI, refuses --mirror with --finetune (the folds already train
    on flips): one line, exit 1, no file."""
    root = make_root(tmp_path / "R", 2, size=40)
    out = tmp_path / "x.json"
    code, _, err = _run("predict", "--root", str(root), "--backbone", "efficientnet-lite0",
                        "--finetune", "--mirror", "--out", str(out))  # fmt: skip
    assert code == 1 and "--mirror is for frozen heads" in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    ("flag", "value", "choices"),
    [("--crop", "foo", ("center", "resize")), ("--head", "svm", ("logreg", "logreg-cv"))],
)
def test_fixed_choices_are_usage_errors(
    tmp_path: Path, flag: str, value: str, choices: tuple[str, ...]
) -> None:
    """`predict --crop foo` ended in a ValueError traceback; now Typer refuses it (exit 2),
    naming the choices, before any work, and --help lists them."""
    root = make_root(tmp_path / "R", 2, size=40)
    out = tmp_path / "x.json"
    r = runner.invoke(
        app, ["predict", "--root", str(root), "--backbone", "spectrum", "--out", str(out),
              flag, value],
    )  # fmt: skip
    said = " ".join(r.output.replace("│", " ").split())
    assert r.exit_code == 2 and f"'{value}' is not one of" in said, said
    assert all(f"'{c}'" in said for c in choices)
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert not out.exists()
    wide = {"COLUMNS": "200", "TERMINAL_WIDTH": "200"}  # a metavar is not wrapped mid-word
    helptext = " ".join(runner.invoke(app, ["predict", "--help"], env=wide).output.split())
    assert "|".join(choices) in helptext


def test_download_failure_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import keras.src.backend.config as kconfig
    import keras.src.utils.file_utils as file_utils

    def no_network(url: str, *a: object, **kw: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(kconfig, "keras_home", lambda: str(tmp_path / "keras"))
    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    root = make_root(tmp_path / "R", 3, size=40)
    code, _, err = _run(
        "predict",
        "--root",
        str(root),
        "--backbone",
        "efficientnetb0",
        "--weights",
        "imagenet",
        "--image-size",
        "32",
        "--folds",
        "2",
        "--out",
        str(tmp_path / "x.json"),
    )
    assert code == 1
    line = err.strip()
    assert len(line.splitlines()) == 1 and line.startswith("error: downloading")
    assert "failed" in line and "--weights PATH" in line and "efficientnet-lite0" in line


def test_predict_dir_numeric_order_and_bad_files(tmp_path: Path, model: Path) -> None:
    import numpy as np

    d = tmp_path / "test_images"
    d.mkdir()
    rng = np.random.default_rng(5)
    for n, fake in ((10, True), (2, False), (1, True), (33, False)):
        make_image(rng, 40, fake).save(d / f"{n}.png")
    (d / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)  # corrupt
    (d / "notes.txt").write_text("not an image")
    (d / ".hidden.png").write_bytes(b"")
    out = tmp_path / "predictions.json"
    code, stdout, stderr = _run("predict-dir", str(d), "--model", str(model), "--out", str(out))
    assert code == 0, stderr
    rows = json.loads(out.read_text())
    assert [r["image"] for r in rows] == ["1.png", "2.png", "10.png", "33.png"]
    assert [r["index"] for r in rows] == [1, 2, 10, 33]
    assert [r["prediction"] for r in rows] == ["fake", "real", "fake", "real"]
    assert all(set(r) == {"index", "image", "prediction", "prob_fake"} for r in rows)
    assert "3.png" in stdout and "notes.txt" in stdout  # reported, not fatal
    code, stdout, _ = _run(
        "predict-dir", str(d), "--model", str(model), "--out", str(out), "--json"
    )
    skipped = {s["image"] for s in json.loads(stdout)["skipped"]}
    assert skipped == {"3.png", "notes.txt"}


def test_predict_dir_missing_folder(tmp_path: Path, model: Path) -> None:
    code, _, err = _run("predict-dir", str(tmp_path / "nope"), "--model", str(model))
    assert code == 1 and "is not a folder" in err


def test_no_tensorflow_for_help() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from cleaner.cli import app; import cleaner.cli.predict; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_finetune_folds_with_a_tiny_network(tmp_path: Path) -> None:
    root = make_root(tmp_path / "R", 6, size=40)
    out = tmp_path / "ft.json"
    code, _, stderr = _run(
        "predict",
        "--root",
        str(root),
        "--backbone",
        "simple-cnn",
        "--finetune",
        "--folds",
        "2",
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--out",
        str(out),
        "--json",
    )
    assert code == 0, stderr
    doc = _check_v1(out, root, out_of_fold=True)
    assert doc["model"]["head"] == "finetune" and len(doc["predictions"]) == 12
    assert {e["fold"] for e in doc["predictions"]} == {0, 1}
    code, _, err = _run(
        "predict", "--root", str(root), "--backbone", "spectrum", "--finetune", "--out", str(out)
    )
    assert code == 1 and "needs a network" in err


def test_predict_dir_stderr_carries_no_tensorflow_noise(tmp_path: Path, model: Path) -> None:
    """In a fresh process (where TensorFlow's import prints absl/oneDNN INFO lines whatever
    TF_CPP_MIN_LOG_LEVEL says) the command's stderr holds none of them; a line that is not
    known noise still gets through."""
    import os
    import subprocess
    import sys

    import numpy as np

    from cleaner.models import TF_NOISE

    d = tmp_path / "imgs"
    d.mkdir()
    make_image(np.random.default_rng(1), 40, True).save(d / "1.png")
    cli = [sys.executable, "-c", "from cleaner.cli import app; app()"]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    r = subprocess.run(
        [*cli, "predict-dir", str(d), "--model", str(model), "--out", str(tmp_path / "p.json")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert not [line for line in r.stderr.splitlines() if any(n in line for n in TF_NOISE)]
    assert "1 of 1" in r.stdout
    # an import that writes one noise line and one real one: only the real one comes through
    fake = tmp_path / "fake_tf" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "import os\n"
        f"os.write(2, b'I0000 port.cc:153] {TF_NOISE[1]}. (noise)\\n')\n"
        "os.write(2, b'W0000 a real warning\\n')\n"
    )
    env["PYTHONPATH"] = os.pathsep.join([str(fake.parent), *sys.path])
    code = "from cleaner.models import quiet_tensorflow; quiet_tensorflow()"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == ["W0000 a real warning"]


def test_predict_repeats_record_every_assignment(tmp_path: Path, model: Path) -> None:
    root = make_root(tmp_path / "R", 8, size=48)
    out = tmp_path / "rep.json"
    # the planted run (test_predict_out_of_fold_with_a_backbone's) would fit every head again
    args = ["predict", "--root", str(root), "--backbone", "spectrum", "--folds", "4"]
    args += ["--no-planted"]
    code, stdout, stderr = _run(*args, "--repeats", "3", "--out", str(out), "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["computed"] == 16  # the backbone runs once for all three
    doc = _check_v1(out, root, out_of_fold=True)
    assert doc["model"]["repeats"] == 3 and doc["model"]["name"].endswith("-4fold-x3")
    assert len(doc["model"]["pruned"]) == 12
    for e in doc["predictions"]:
        assert len(e["folds"]) == 3 and e["folds"][0] == e["fold"]
    assert len({tuple(e["folds"]) for e in doc["predictions"]}) > 4  # the splits differ
    # --seed 1 alone is the second assignment of --seed 0 --repeats 3
    one = tmp_path / "seed1.json"
    assert _run(*args, "--seed", "1", "--out", str(one), "--json")[0] == 0
    seed1 = {e["path"]: e["fold"] for e in json.loads(one.read_text())["predictions"]}
    assert all(seed1[e["path"]] == e["folds"][1] for e in doc["predictions"])
    assert "folds" not in json.loads(one.read_text())["predictions"][0]
    code, _, err = _run(*args, "--repeats", "2", "--finetune", "--out", str(out))
    assert code == 1 and "--repeats is for frozen heads" in err
    code, _, err = _run(
        "predict", "--root", str(root), "--model", str(model), "--repeats", "2", "--out", str(out)
    )
    assert code == 1 and "--repeats" in err
    assert _run(*args, "--repeats", "0", "--out", str(out))[0] == 2  # Typer's bound: usage
    from cleaner.errors import CleanerError
    from cleaner.models.config import OOFConfig

    with pytest.raises(CleanerError, match="--repeats 0: give 1 or more"):  # scripts meet it too
        OOFConfig("spectrum", out, folds=4, repeats=0)
