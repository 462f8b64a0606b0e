"""`cleaner scan` (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from cleaner.cli._common import fail


def scan() -> None:
    """Not built yet."""
    raise fail("'cleaner scan' is not built yet")


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)
