"""`cleaner undo` (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from cleaner.cli._common import fail


def undo() -> None:
    """Not built yet."""
    raise fail("'cleaner undo' is not built yet")


def register(app: typer.Typer) -> None:
    app.command("undo")(undo)
