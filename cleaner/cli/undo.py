"""`cleaner undo`: reverse an applied run (the latest by default) to the exact original paths."""

from __future__ import annotations

from typing import Annotated

import typer

from cleaner.cli._common import (
    DEFAULT_ROOT,
    JsonOption,
    RootOption,
    cli_errors,
    console,
    emit_json,
    err_console,
)
from cleaner.dataset import Workspace
from cleaner.plans import undo as run_undo


@cli_errors
def undo(
    root: RootOption = DEFAULT_ROOT,
    run: Annotated[
        str | None,
        typer.Option(
            "--run", help="Run id to undo (default: the latest applied run not yet undone)."
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Reverse an applied run (separate --apply, dedupe --apply): every moved file goes back to
    its exact original path.

    A file whose content changed since the run (sha256 differs), that is gone, or whose
    original path is now taken by another file is left where it is and reported; the run then
    stays open, and `cleaner undo` again retries what is left. Names repeated across the class
    folders and swaps come back whatever the batch boundaries. The undo is journaled too: after
    a crash, run `cleaner undo` again and it finishes. Runs are undone latest first; run ids
    are in the output of the command that applied them and in ROOT/.cleaner/journal/. Without
    that folder (deleted) undo says so: it has no record of earlier runs.

    Examples:

        cleaner undo --root data

        cleaner undo --root data --run 20261123T121530Z-3fa2c1

        cleaner undo --root data --json
    """
    ws = Workspace.open(root, require_classes=False)
    res = run_undo(ws, run, progress=False if json_out else None)
    if emit_json(res, json_out):
        return
    if res.recovery:
        err_console.print(res.recovery.message(), markup=False)
    elif res.recovery.problems:
        err_console.print("; ".join(res.recovery.problems), markup=False)
    console.print(
        f"undid run {res.undone_run}: {len(res.restored)} files back at their original paths"
        + (f", {len(res.left)} left in place (below)" if res.left else "")
    )
    for r in res.left:
        err_console.print(f"left {r.src} (original {r.wanted}): {r.why}", markup=False)
    if res.left:
        console.print(
            f"run {res.undone_run} stays open: fix what is listed, then `cleaner undo --run "
            f"{res.undone_run}` puts back the rest"
        )


def register(app: typer.Typer) -> None:
    app.command(
        "undo",
        short_help="Reverse an applied run: every moved file goes back to its original path.",
    )(undo)
