"""`cleaner predict` (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from cleaner.cli._common import fail


def predict() -> None:
    """Not built yet."""
    raise fail("'cleaner predict' is not built yet")


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
