"""The layout rules the code keeps: each state file named by one module, the import contracts
kept, no TensorFlow behind the commands that need no model."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cleaner"

OWNERS = {
    "manifest.csv": "state/manifest.py",
    "duplicates.json": "state/duplicates.py",
    "split.csv": "state/split.py",
    ".metrics.json": "state/metrics.py",
    "plans": "state/plans.py",
    "review": "state/plans.py",
    "journal": "state/runs.py",
    ".jsonl": "state/runs.py",
    "audit.json": "audit/store.py",
}
"""Each file (or folder) under ``R/.cleaner/`` and the one module that may name it in code
(the journal, :mod:`cleaner.journal`, writes and replays its runs at the paths
``state/runs.py`` gives)."""


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """String literals of a module's code; documentation (a string standing alone as a
    statement: module, class, function and attribute docstrings) is left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {
        id(n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
    }
    return [
        (n.lineno, n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
    ]


def _names(value: str, name: str, *, owner: bool = False) -> bool:
    """Whether a literal names the state file ``name``: the whole literal, or a path ending in
    it (``.cleaner/split.csv``), not a word of a message. A folder's bare name (``plans``) is
    also a JSON key or a URL elsewhere, so outside its owner only a path into the state folder
    (``.cleaner/plans``) counts."""
    if " " in value:
        return False
    if "." not in name and not owner:
        return f".cleaner/{name}" in value
    return value == name or value.endswith("/" + name) or (name[0] == "." and value.endswith(name))


@pytest.mark.parametrize("name", sorted(OWNERS))
def test_each_state_file_is_named_by_one_module(name: str) -> None:
    owner = PACKAGE / OWNERS[name]
    offenders = [
        f"{p.relative_to(PACKAGE)}:{ln}: {s!r}"
        for p in sorted(PACKAGE.rglob("*.py"))
        if p != owner
        for ln, s in _code_strings(p)
        if _names(s, name)
    ]
    assert not offenders, f"{name} is {OWNERS[name]}'s; also named in: {offenders}"
    assert any(_names(s, name, owner=True) for _, s in _code_strings(owner)), (
        f"{owner} does not name {name}"
    )


def test_the_import_contracts_hold() -> None:
    """``lint-imports`` (make lint) over pyproject.toml's contracts: the layers, no cycle in any
    package, TensorFlow only under models/, Flask only under web/, Ray only in the engine."""
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    r = subprocess.run(
        [exe, "--no-cache"],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_commands_without_a_model_never_import_tensorflow() -> None:
    code = (
        "import sys\n"
        "from cleaner.cli import app\n"
        "import cleaner.state.duplicates, cleaner.state.split, cleaner.split, cleaner.plans\n"
        "import cleaner.models.backbones, cleaner.models.saved, cleaner.web\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
