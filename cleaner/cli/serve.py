"""`cleaner serve` (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from cleaner.cli._common import fail


def serve() -> None:
    """Not built yet."""
    raise fail("'cleaner serve' is not built yet")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
