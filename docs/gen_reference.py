"""Render ``cleaner --help`` and every command's ``--help`` into docs/reference.md.

The command reference is generated from the Typer app, never written by hand:

    .venv/bin/python docs/gen_reference.py           # rewrite docs/reference.md
    .venv/bin/python docs/gen_reference.py --check   # exit 1 when docs/reference.md is stale
    .venv/bin/python docs/gen_reference.py --check --path FILE   # compare another copy

The help is made deterministic before Typer and Rich are imported: a fixed width (``COLUMNS``,
``TERMINAL_WIDTH``), no colours (``NO_COLOR``, ``TERM=dumb``, no ``FORCE_COLOR``), no terminal.
tests/test_docs.py runs ``--check``, so a changed flag or help text fails the suite until the
page is regenerated.
"""

from __future__ import annotations

import os
import sys

WIDTH = 100
_ENV = {
    "COLUMNS": str(WIDTH),
    "TERMINAL_WIDTH": str(WIDTH),
    "LINES": "50",
    "NO_COLOR": "1",
    "TERM": "dumb",
    "_TYPER_FORCE_DISABLE_TERMINAL": "1",
}
for _name in ("FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS", "CLICOLOR_FORCE"):
    os.environ.pop(_name, None)
os.environ.update(_ENV)

import contextlib  # noqa: E402  (the environment above must be set before Typer/Rich load)
import io  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import typer  # noqa: E402

from cleaner.cli import app  # noqa: E402

REFERENCE = Path(__file__).resolve().parent / "reference.md"
HEADER = """# Command reference

Generated from the Typer app by `docs/gen_reference.py` (do not edit by hand: run
`.venv/bin/python docs/gen_reference.py` after changing a command; `tests/test_docs.py` fails
while this page is stale). Each block is exactly what `cleaner COMMAND --help` prints in a
{width}-column terminal. The pages under [Commands](commands/index.md) explain each command with
examples.
"""


def help_text(args: list[str]) -> str:
    """What ``cleaner ARGS --help`` prints, as plain text with trailing spaces removed."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
        typer.main.get_command(app).main([*args, "--help"], prog_name="cleaner")
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()).strip("\n")


def command_names() -> list[tuple[str, bool]]:
    """Every command of the app, in the order `cleaner --help` lists them, and whether hidden."""
    group: Any = typer.main.get_command(app)
    ctx = group.make_context("cleaner", [], resilient_parsing=True)
    return [(n, bool(group.get_command(ctx, n).hidden)) for n in group.list_commands(ctx)]


def render() -> str:
    """The whole reference page."""
    parts = [HEADER.format(width=WIDTH), "## cleaner\n", "```text", help_text([]), "```\n"]
    for name, hidden in command_names():
        note = " (hidden: not listed by `cleaner --help`)" if hidden else ""
        parts += [f"## cleaner {name}{note}\n", "```text", help_text([name]), "```\n"]
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    """``[--check] [--path FILE]``: write the page (default docs/reference.md), or compare."""
    path = Path(argv[argv.index("--path") + 1]) if "--path" in argv else REFERENCE
    text = render()
    if "--check" in argv:
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        if old != text:
            print(f"{path} is stale: run .venv/bin/python docs/gen_reference.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
