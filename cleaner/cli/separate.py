"""`cleaner separate` (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from cleaner.cli._common import fail


def separate() -> None:
    """Not built yet."""
    raise fail("'cleaner separate' is not built yet")


def register(app: typer.Typer) -> None:
    app.command("separate")(separate)
