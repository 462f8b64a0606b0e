"""Choosing the engine (no Ray needed): the environment, the flag, bad values, and that the
local engine stays the default and never imports Ray."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.engine import Engine, EngineConfig, current, using
from tests.models_helpers import make_root

runner = CliRunner()


def test_a_bad_engine_is_one_line_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_root(tmp_path / "r", n_per_class=2)
    monkeypatch.setenv("CLEANER_ENGINE", "spark")
    r = runner.invoke(app, ["scan", "--root", str(root)])
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1 and "CLEANER_ENGINE" in r.stderr and "spark" in r.stderr
    r = runner.invoke(app, ["scan", "--root", str(root), "--engine", "spark"])
    assert r.exit_code == 2  # Typer's own usage error names the choices


def test_the_environment_chooses_until_configured_and_a_block_restores_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import cleaner.engine

    monkeypatch.setattr(cleaner.engine, "_chosen", None)  # as in a fresh process
    monkeypatch.setenv("CLEANER_ENGINE", "RAY")
    monkeypatch.setenv("CLEANER_RAY_ADDRESS", "ray://head:10001")
    assert current() == EngineConfig(Engine.RAY, "ray://head:10001")
    monkeypatch.delenv("CLEANER_ENGINE")
    assert current().kind is Engine.LOCAL
    with using("local"):
        assert current().kind is Engine.LOCAL
    assert current() == EngineConfig(Engine.LOCAL, "ray://head:10001")


def test_the_local_engine_never_imports_ray(tmp_path: Path) -> None:
    root = make_root(tmp_path / "r", n_per_class=3)
    code = (
        "import sys; from typer.testing import CliRunner; from cleaner.cli import app\n"
        f"r = CliRunner().invoke(app, ['scan', '--root', {str(root)!r}, '--workers', '2'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(app, ['dedupe', '--root', " + repr(str(root)) + "])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
