"""`cleaner dedupe` (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from cleaner.cli._common import fail


def dedupe() -> None:
    """Not built yet."""
    raise fail("'cleaner dedupe' is not built yet")


def register(app: typer.Typer) -> None:
    app.command("dedupe")(dedupe)
