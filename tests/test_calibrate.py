"""`cleaner predict-dir --calibrate`: a few labelled images of the target set the threshold;
prob_fake stays as the model gives it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.models.calibrate import best_cut, fit_threshold
from tests.models_helpers import colour_model

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return colour_model(tmp_path_factory.mktemp("m") / "colour.keras", size=32)


def _shifted_folder(d: Path, n: int, seed: int) -> dict[str, str]:
    """Images the colour model ranks right but all above 0.5: reals slightly red (red - blue
    5..15, prob_fake 0.73..0.95), fakes redder (25..35). Returns name -> true label."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True)
    truth: dict[str, str] = {}
    for i in range(n):
        fake = i % 2 == 1
        gap = rng.uniform(25, 35) if fake else rng.uniform(5, 15)
        base = rng.uniform(60, 120)
        px = np.zeros((40, 40, 3), np.uint8)
        px[..., 0], px[..., 1], px[..., 2] = round(base + gap), round(base), round(base)
        Image.fromarray(px).save(d / f"{i + 1}.png")
        truth[f"{i + 1}.png"] = "fake" if fake else "real"
    return truth


def test_calibrate_moves_the_threshold_not_the_probabilities(tmp_path: Path, model: Path) -> None:
    truth = _shifted_folder(tmp_path / "target", 60, seed=3)
    plain = tmp_path / "plain.json"
    res = runner.invoke(app, ["predict-dir", str(tmp_path / "target"), "-m", str(model),
                              "--out", str(plain)])  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = json.loads(plain.read_text())
    acc_plain = np.mean([r["prediction"] == truth[r["image"]] for r in rows])
    assert acc_plain < 0.6  # at 0.5 nearly everything is called fake

    labelled = sorted(truth, key=lambda n: int(n.split(".")[0]))[:20]
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps([{"image": n, "label": truth[n]} for n in labelled]))
    out = tmp_path / "cal.json"
    res = runner.invoke(app, ["predict-dir", str(tmp_path / "target"), "-m", str(model),
                              "--out", str(out), "--calibrate", str(labels)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "threshold" in res.stdout and "labelled images" in res.stdout
    cal_rows = json.loads(out.read_text())
    assert [r["prob_fake"] for r in cal_rows] == [r["prob_fake"] for r in rows]
    unlabelled = [r for r in cal_rows if r["image"] not in labelled]
    acc = np.mean([r["prediction"] == truth[r["image"]] for r in unlabelled])
    assert acc > 0.95
    res = runner.invoke(app, ["predict-dir", str(tmp_path / "target"), "-m", str(model),
                              "--out", str(out), "--calibrate", str(labels), "--json"])  # fmt: skip
    cal = json.loads(res.stdout)["calibration"]
    assert cal["labelled_used"] == 20 and cal["labelled_real"] == 10
    assert 0.5 < cal["threshold"] < 1.0
    assert json.loads(res.stdout)["threshold"] == pytest.approx(cal["threshold"], abs=1e-6)


def test_calibrate_refuses_too_few_or_bad_labels(tmp_path: Path, model: Path) -> None:
    truth = _shifted_folder(tmp_path / "target", 12, seed=4)
    labels = tmp_path / "few.json"
    labels.write_text(json.dumps({n: lab for n, lab in list(truth.items())[:4]}))
    never = tmp_path / "p.json"
    res = runner.invoke(app, ["predict-dir", str(tmp_path / "target"), "-m", str(model),
                              "--calibrate", str(labels), "--out", str(never)])  # fmt: skip
    assert res.exit_code == 1 and "4 labelled images" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    labels.write_text(json.dumps([{"image": "1.png", "label": "maybe"}]))
    res = runner.invoke(app, ["predict-dir", str(tmp_path / "target"), "-m", str(model),
                              "--calibrate", str(labels)])  # fmt: skip
    assert res.exit_code == 1 and "'maybe'" in res.stderr
    res = runner.invoke(app, ["predict-dir", str(tmp_path / "target"), "-m", str(model),
                              "--calibrate", str(tmp_path / "none.json")])  # fmt: skip
    assert res.exit_code == 1 and "does not exist" in res.stderr
    assert not (tmp_path / "p.json").exists()


def test_fit_threshold_rules() -> None:
    rng = np.random.default_rng(0)
    # logits: reals around 1, fakes around 3 (all above 0.5): Platt's cut falls between
    z = np.concatenate([rng.normal(1, 0.5, 40), rng.normal(3, 0.5, 40)])
    y = np.array([False] * 40 + [True] * 40)
    t, acc, rule = fit_threshold(1 / (1 + np.exp(-z)), y)
    assert rule == "platt" and 0.75 < t < 0.92 and acc > 0.9
    # ranked backwards: the best cut instead, and the rule says so
    t, acc, rule = fit_threshold(1 / (1 + np.exp(z)), y)
    assert rule.startswith("best cut") and acc >= 0.5
    # the best cut of a wide plateau is its middle
    t, acc = best_cut([0.01, 0.02, 0.3, 0.4, 0.5, 0.6, 0.9, 0.95], [False] * 6 + [True] * 2)
    assert acc == 1.0 and 0.6 < t < 0.9
