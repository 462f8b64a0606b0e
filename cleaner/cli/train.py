"""`cleaner train` (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from cleaner.cli._common import fail


def train() -> None:
    """Not built yet."""
    raise fail("'cleaner train' is not built yet")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
