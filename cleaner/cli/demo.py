"""`cleaner demo` (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from cleaner.cli._common import fail


def demo() -> None:
    """Not built yet."""
    raise fail("'cleaner demo' is not built yet")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
