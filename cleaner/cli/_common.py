"""What every command shares: the --root option, one-line errors, the console, JSON output."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from cleaner.errors import CleanerError

P = ParamSpec("P")
R = TypeVar("R")

console = Console(highlight=False)
"""Human output (tables, summaries) on stdout."""
err_console = Console(stderr=True, highlight=False)

RootOption = Annotated[
    Path,
    typer.Option(
        "--root", "-r", help="Dataset folder holding the class folders.", show_default=True
    ),
]
DEFAULT_ROOT = Path("data")

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the summary as one JSON object instead of tables.")
]


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` as one line on stderr; return the Exit(1) to raise."""
    line = " ".join(str(message).split())
    print(f"error: {line}", file=sys.stderr)
    return typer.Exit(code=1)


def cli_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a :class:`CleanerError` into one line on stderr and exit code 1 (the contract)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CleanerError as e:
            raise fail(str(e)) from None

    return wrapper


def print_json(obj: Any) -> None:
    """One JSON object on stdout, for scripts."""
    sys.stdout.write(json.dumps(obj, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
