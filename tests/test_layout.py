"""The layout rules the code keeps: each state file named and parsed by one module (its
``cleaner/state/`` module), one ``read_plan``, the import contracts kept, no TensorFlow behind
the commands that need no model."""

from __future__ import annotations

import ast
import re
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
    "review": "state/review.py",
    "journal": "state/runs.py",
    ".jsonl": "state/runs.py",
    "audit.json": "state/audit.py",
    "audit_cache.json": "state/audit.py",
}
"""Each file (or folder) under ``R/.cleaner/`` and the one module that may name it in code
(the journal, :mod:`cleaner.journal`, writes and replays its runs at the paths
``state/runs.py`` gives, and reads them back through it)."""


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


PARSERS = {"json.load", "json.loads", "csv.reader", "csv.DictReader"}
"""Calls that parse a file's text: outside ``cleaner/state/`` none may parse a state file."""
STATE_WORDS = re.compile(
    r"plan|journal|jsonl|record|run_path|run_files|audit|duplicates|split_file|split\.csv|"
    r"SplitRow|read_split|metrics|manifest|decision|review|verdict|state_path|STATE_DIR|"
    r"\.cleaner",
    re.IGNORECASE,
)
"""Words of the code that reads a state file: its name, its path function, its records (the
journal's lines are ``records``; the ``review`` decisions ``cleaner serve`` takes on a plan)."""


CACHES = {"hashing.py": "pixel_digests"}
"""module -> function that reads a cache under ``R/.cleaner/cache/`` (the pixel digests): a
cache its own stage writes, reads and rebuilds when damaged, not a state file another stage
reads; allowed where it is."""


def _docstrings(tree: ast.AST) -> set[int]:
    return {
        id(n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
    }


def _words(node: ast.AST, docs: set[int]) -> set[str]:
    """The names, attributes, parameters and string literals (not docstrings) under ``node``."""
    out: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
        elif isinstance(n, ast.arg):
            out.add(n.arg)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs:
            out.add(n.value)
    return out


def state_parsers(source: str) -> list[str]:
    """``line: function`` of each call that parses text (json.load(s), csv readers) inside a
    function whose code speaks of a state file (its name, path function or records): a state
    file parsed outside its ``cleaner/state/`` module."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    found: list[str] = []
    scopes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for fn in scopes:
        calls = [
            n for n in ast.walk(fn) if isinstance(n, ast.Call) and ast.unparse(n.func) in PARSERS
        ]
        if not calls:
            continue
        hits = sorted(w for w in _words(fn, docs) if STATE_WORDS.search(w))
        if hits:
            found += [f"{c.lineno}: {fn.name} ({', '.join(hits[:4])})" for c in calls]
    return found


def test_the_parse_check_finds_a_state_file_read_elsewhere() -> None:
    """The check below is not vacuous: a journal line, an audit.json, a plan and serve's review
    decisions read by hand are found; a predictions file read by its own module is not."""
    journal = (
        "def moves(root):\n"
        "    for line in run_path(root, 'x').read_text().splitlines():\n"
        "        rec = json.loads(line)\n"
    )
    audit = "def last(p):\n    return json.load(open(p / '.cleaner' / 'audit.json'))\n"
    plan = "def read_plan(path):\n    return json.loads(path.read_text())\n"
    review = "def accepted(p):\n    return json.loads(review_file.path(p, 'r').read_text())\n"
    other = "def read_predictions(p):\n    return json.loads(p.read_text())\n"
    assert state_parsers(journal) and state_parsers(audit) and state_parsers(plan)
    assert state_parsers(review)
    assert not state_parsers(other)


def test_state_files_are_parsed_only_in_their_state_module() -> None:
    """Journal lines, ``audit.json``, plans and every other state file: parsed in
    ``cleaner/state/`` only (the writer and the readers share its dataclasses)."""
    state = PACKAGE / "state"
    offenders = [
        f"{p.relative_to(PACKAGE)}:{hit}"
        for p in sorted(PACKAGE.rglob("*.py"))
        if not p.is_relative_to(state)
        for hit in state_parsers(p.read_text(encoding="utf-8"))
        if hit.split(": ")[1].split(" ")[0] != CACHES.get(str(p.relative_to(PACKAGE)))
    ]
    assert not offenders, f"state files parsed outside cleaner/state/: {offenders}"


def test_one_read_plan() -> None:
    """One function named ``read_plan`` in the package, in ``state/plans.py`` (there were two:
    one returned a dict, one a ``Plan``)."""
    defs = [
        f"{p.relative_to(PACKAGE)}:{n.lineno}"
        for p in sorted(PACKAGE.rglob("*.py"))
        for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "read_plan"
    ]
    assert [d.split(":")[0] for d in defs] == ["state/plans.py"], defs


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
