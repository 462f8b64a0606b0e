"""`cleaner report` (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from cleaner.cli._common import fail


def report() -> None:
    """Not built yet."""
    raise fail("'cleaner report' is not built yet")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
