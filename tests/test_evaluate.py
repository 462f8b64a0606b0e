"""`cleaner evaluate` sets what separate estimated before moving beside what was found."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.manifest import ok_rows
from tests.relabel_helpers import write_v1

runner = CliRunner()


def test_label_error_row_shows_estimated_against_found(tmp_path: Path) -> None:
    root = tmp_path / "d"
    small = ["--n", "300", "--exact", "0", "--near", "0", "--corrupt", "0", "--min-size", "32",
             "--max-size", "40"]  # fmt: skip
    assert runner.invoke(app, ["demo", str(root), "--seed", "3", *small]).exit_code == 0
    assert runner.invoke(app, ["scan", "--root", str(root)]).exit_code == 0
    truth = json.loads((root / "ground_truth.json").read_text())
    errors = {e["path"]: e["true_label"] for e in truth["label_errors"]}
    # a voter that mostly knows the true class (the planted errors included)
    rng = np.random.default_rng(0)
    rows = ok_rows(root)
    labels = {r.path: r.label for r in rows}
    probs = {}
    for r in rows:
        sign = 1.0 if errors.get(r.path, r.label) == "fake" else -1.0
        probs[r.path] = float(1 / (1 + np.exp(-(sign * 3.0 + rng.normal(0, 1.5)))))
    f = write_v1(tmp_path / "v.json", root, probs, labels, planted=probs)
    res = runner.invoke(
        app, ["separate", "--root", str(root), "-p", str(f), "--apply", "--max-fraction", "0.3"]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["evaluate", str(root), "--json"])
    assert res.exit_code == 0, res.output
    rl = json.loads(res.stdout)["relabeling"]
    est = rl["estimated"]
    assert rl["moves"] > 0 and est["target_precision"] == 0.9
    assert est["precision"] >= 0.9 and rl["precision"] >= est["precision"] - 0.05
    # on 300 images the noise is found low (about half the planted 30 here): cautious, never high
    assert 0.3 * rl["planted"] <= est["noise_rate"] * rl["images"] <= 1.2 * rl["planted"]
    res = runner.invoke(app, ["evaluate", str(root)])
    assert res.exit_code == 0 and "estimated before moving" in res.stdout
