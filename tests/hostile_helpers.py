"""What the hostile-input tests share: the CLI as a user runs it, and the one-line refusal."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from cleaner.cli import app
from tests.relabel_helpers import png_bytes

runner = CliRunner()


def cli(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, [*args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def one_line_error(code: int, err: str, *words: str) -> None:
    """Refused input: exit 1, one ``error:`` line on stderr, no traceback."""
    assert code == 1, err
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for w in words:
        assert w in lines[0], lines[0]


def put(root: Path, rel: str | bytes, data: bytes) -> Path:
    p = Path(os.fsdecode(os.path.join(os.fsencode(root), os.fsencode(rel))))
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def tree(root: Path, *rels: str) -> Path:
    """``root`` with a distinct tiny PNG at each of ``rels`` (the n-th holds png_bytes(n + 1))."""
    for n, rel in enumerate(rels, 1):
        put(root, rel, png_bytes(n))
    return root
