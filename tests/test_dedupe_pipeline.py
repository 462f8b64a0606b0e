"""`make clean-data` and dedupe: the duplicate groups exist before `predict` runs (so its folds
keep them together), `predict` says when there are none, and the --max-fraction guard stops the
pipeline before anything is quarantined. Runs the real Makefile with a venv whose `cleaner`
logs each call and runs this checkout (spectrum backbone: no model download, ~1 minute)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_dedupe_guard import many_copies, tree

REPO = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("make") is None, reason="needs make"),
]


def logging_venv(tmp: Path, log: Path) -> Path:
    """A venv folder for the Makefile: ``bin/cleaner`` appends its arguments to ``log`` and runs
    this checkout's cleaner; ``bin/python`` is this interpreter."""
    venv = tmp / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    cli = venv / "bin" / "cleaner"
    cli.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{log}"\n'
        f'PYTHONPATH="{REPO}" exec "{sys.executable}" -m cleaner "$@"\n'
    )
    cli.chmod(0o755)
    (venv / ".installed").touch()
    os.utime(venv / ".installed", (4e9, 4e9))  # newer than pyproject.toml: no install
    return venv


def test_clean_data_groups_before_predict_and_guard_stops_it(tmp_path: Path) -> None:
    root = tmp_path / "data"
    many_copies(root)
    before = tree(root)
    log = tmp_path / "calls.log"
    venv = logging_venv(tmp_path, log)
    res = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "clean-data",
            f"ROOT={root}",
            f"VENV={venv}",
            "BACKBONES=spectrum",
            "FOLDS=2",
            "MIN_CONFIDENCE=0.999999",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    calls = [
        line.split()[0] + (" --apply" * ("--apply" in line))
        for line in log.read_text().splitlines()
    ]
    # the groups are found (dry run) before predicting, and predict found them
    assert calls.index("dedupe") < calls.index("predict"), calls
    assert "no duplicate groups to respect" not in res.stderr
    # the guard: the pipeline stops at dedupe --apply, nothing quarantined
    assert res.returncode != 0
    assert calls[-1] == "dedupe --apply", calls
    assert "--max-fraction 0.25 to apply it anyway" in res.stderr
    assert tree(root) == before and not (root / "quarantine").exists()
    assert not (root / ".cleaner/stamps/clean-data").exists()


def test_predict_says_when_it_has_no_groups(tmp_path: Path) -> None:
    root = tmp_path / "data"
    many_copies(root, copied=0)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    base = [sys.executable, "-m", "cleaner"]
    subprocess.run(
        [*base, "scan", "--root", str(root), "--json"], env=env, check=True, capture_output=True
    )
    args = [*base, "predict", "--root", str(root), "--backbone", "spectrum", "--folds", "2"]
    res = subprocess.run(
        [*args, "--out", str(tmp_path / "p.json"), "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    notes = [line for line in res.stderr.splitlines() if "no duplicate groups to respect" in line]
    assert len(notes) == 1 and "cleaner dedupe --root" in notes[0]
