"""Every option that names a file for cleaner to read refuses a FIFO, a device and a folder at
once (exit 1, one line naming the path and the fix): one that opened a FIFO with no writer
would wait forever, so the commands run in a child under a timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile_helpers import one_line_error, tree

REPO = Path(__file__).resolve().parents[1]

_CHILD = """
import json, sys
from typer.testing import CliRunner
from cleaner.cli import app
runner = CliRunner()
for argv in json.loads(sys.argv[1]):
    print("running", *argv, flush=True)
    r = runner.invoke(app, argv)
    print(json.dumps([r.exit_code, r.stderr]), flush=True)
"""


def _run_all(commands: list[list[str]]) -> list[tuple[int, str]]:
    """Each command through the CLI, all in one child (one interpreter start); a command that
    blocks fails the test, naming itself, instead of hanging it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        r = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps(commands)],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""
        pytest.fail(f"blocked: {out.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stdout.splitlines() if not x.startswith("running ")]
    return [(int(c), str(err)) for c, err in map(json.loads, lines)]


@pytest.fixture
def places(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A small ROOT, a demo-like DIR (ground truth, no runs) and a folder of unlabelled images."""
    root = tree(tmp_path / "root", "real_images/a.png", "fake_images/b.png")
    demo = tree(tmp_path / "demo", "real_images/c.png", "fake_images/d.png")
    (demo / "ground_truth.json").write_text("{}")
    unlabelled = tree(tmp_path / "unlabelled", "1.png", "2.png")
    return root, demo, unlabelled


def _commands(bad: str, tmp: Path, places: tuple[Path, Path, Path]) -> list[list[str]]:
    root, demo, unlabelled = places
    model = tmp / "m.keras"
    model.write_bytes(b"PK not really a model")
    out = str(tmp / "out.json")
    return [
        ["report", "--root", str(root), "--out", str(tmp / "r.html"), "--no-rescan",
         "--model-metrics", bad],
        ["evaluate", str(demo), "--metrics", bad],
        ["evaluate", str(demo), "--predictions", bad, "--labels", bad],
        ["serve", "--model", bad, "--root", str(root)],
        ["predict", "--root", str(root), "--model", bad, "--out", out],
        ["predict", "--root", str(root), "--backbone", "efficientnetb0", "--weights", bad,
         "--out", out],
        ["predict-dir", str(unlabelled), "--model", bad, "--out", out],
        ["predict-dir", str(unlabelled), "--model", str(model), "--calibrate", bad, "--out", out],
        ["train", "--root", str(root), "--out", str(tmp / "t.keras"), "--weights", bad],
        ["separate", "--root", str(root), "--predictions", bad],
    ]  # fmt: skip


def _state(*roots: Path) -> dict[str, bytes]:
    return {
        str(p): p.read_bytes() if p.is_file() else b"" for r in roots for p in sorted(r.rglob("*"))
    }


def _not_files(tmp: Path) -> list[Path]:
    """A FIFO with no writer, a device and a folder, each named like a JSON file."""
    fifo, folder = tmp / "metrics.json", tmp / "folder.json"
    os.mkfifo(fifo)
    folder.mkdir()
    return [fifo, folder, *[p for p in (Path("/dev/null"),) if p.exists()]]


def test_every_input_option_refuses_what_is_not_a_regular_file(
    tmp_path: Path, places: tuple[Path, Path, Path]
) -> None:
    before = _state(*places)
    cases = [
        (bad, argv)
        for bad in _not_files(tmp_path)
        for argv in _commands(str(bad), tmp_path, places)
    ]
    results = _run_all([argv for _, argv in cases])
    for (bad, argv), (code, err) in zip(cases, results, strict=True):
        assert str(bad) in err, (argv, err)
        one_line_error(code, err, "is not a regular file")
    assert _state(*places) == before  # refused before anything was written
