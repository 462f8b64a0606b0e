"""The docs: the generated command reference is current, and README.md stays a first screen
whose links lead somewhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GEN = REPO / "docs" / "gen_reference.py"


def _run_generator(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "37", "FORCE_COLOR": "1"}
    return subprocess.run(
        [sys.executable, str(GEN), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_reference_matches_every_commands_help() -> None:
    """docs/reference.md is exactly what the generator renders from the Typer app now (a
    hostile terminal width and FORCE_COLOR in the environment must not change it)."""
    done = _run_generator("--check")
    assert done.returncode == 0, done.stderr + "\nrun: .venv/bin/python docs/gen_reference.py"


def test_reference_covers_every_command_and_detects_staleness(tmp_path: Path) -> None:
    """Every command of the app has its section, and an edited page is reported stale."""
    import typer

    from cleaner.cli import app

    text = (REPO / "docs" / "reference.md").read_text(encoding="utf-8")
    group: Any = typer.main.get_command(app)
    commands = group.list_commands(group.make_context("cleaner", [], resilient_parsing=True))
    assert {"scan", "separate", "undo", "dedupe", "predict", "train", "audit"} <= set(commands)
    for name in commands:
        assert f"\n## cleaner {name}" in text, name
        assert f"Usage: cleaner {name} [OPTIONS]" in text, name
    edited = tmp_path / "reference.md"
    edited.write_text(text.replace("--apply", "--apply-not", 1), encoding="utf-8")
    stale = _run_generator("--check", "--path", str(edited))
    assert stale.returncode == 1 and "stale" in stale.stderr


def test_readme_is_a_first_screen_with_working_links() -> None:
    """README.md is at most 300 lines, shows the report, and every relative link exists."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    assert "docs/screenshots/report.png" in readme
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert local, "the README links into docs/"
    missing = [t for t in local if not (REPO / t).exists()]
    assert not missing, missing
