"""`cleaner report`: one self-contained HTML page to look at a dataset's problems."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cleaner.cli._common import (
    DEFAULT_ROOT,
    EngineOption,
    JsonOption,
    RayAddressOption,
    RootOption,
    cli_errors,
    console,
    emit_json,
    err_console,
    use_engine,
)
from cleaner.dataset import Workspace


@cli_errors
def report(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The HTML page to write (thumbnails go beside it).")
    ] = Path("report.html"),
    root: RootOption = DEFAULT_ROOT,
    model_metrics: Annotated[
        Path | None,
        typer.Option(
            "--model-metrics",
            help="M.metrics.json of the training to show (default: the newest one recorded "
            "under ROOT/.cleaner/).",
        ),
    ] = None,
    page_size: Annotated[
        int, typer.Option("--page-size", min=1, help="Items per page in the page's long lists.")
    ] = 48,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", min=1, help="Thumbnail processes (default: one per CPU)."),
    ] = None,
    rescan: Annotated[
        bool,
        typer.Option(
            "--rescan/--no-rescan",
            help="Refresh the manifest first (incremental: only changed files are read).",
        ),
    ] = True,
    engine: EngineOption = None,
    ray_address: RayAddressOption = None,
    json_out: JsonOption = False,
) -> None:
    """Write one HTML page about ROOT: the dataset summary per class and status, the latest
    plan's proposed and applied moves (thumbnails, every prediction file's probability, ordered
    by confidence), its review list, duplicate groups side by side with distances and the kept
    copy marked, label conflicts, split leakage, quarantined and unreadable files with reasons,
    and the last training's metrics, confusion matrix and ROC plot.

    Nothing is loaded from the network: thumbnails (cached by sha256, so a rerun makes only new
    ones) and plots are written to OUT's `<stem>_files/` folder. A section whose state file is
    missing names the command that produces it. Never moves a file, never imports TensorFlow.

    Examples:

        cleaner report --root data --out report.html

        cleaner report --root data --out out/report.html --model-metrics models/M.metrics.json

        cleaner report --root data --out report.html --json | jq .sections
    """
    use_engine(engine, ray_address)
    from cleaner.report import SECTIONS, build_report

    result = build_report(
        Workspace.open(root, require_classes=False),
        out,
        model_metrics=model_metrics,
        page_size=page_size,
        workers=workers,
        progress=False if json_out else None,
        rescan=rescan,
    )
    if emit_json(result, json_out):
        return
    table = Table(title=f"cleaner report: {result.out}")
    table.add_column("section")
    table.add_column("items", justify="right")
    table.add_column("state")
    for sid, title in SECTIONS:
        miss = result.missing.get(sid)
        state = f"run: {miss}" if miss else "damaged: see below" if sid in result.problems else "ok"
        table.add_row(title, str(result.counts.get(sid, 0)), state)
    console.print(table)
    for problem in result.problems.values():
        err_console.print(f"warning: {problem}", soft_wrap=True)
    console.print(
        f"thumbnails: {result.thumbs_made} made, {result.thumbs_cached} cached, "
        f"{result.thumbs_failed} could not be made -> {result.files_dir}"
    )
    console.print(f"open {result.out}")


def register(app: typer.Typer) -> None:
    app.command(
        "report",
        short_help="One HTML page about ROOT: moves, reviews, duplicates, quarantine, training.",
    )(report)
