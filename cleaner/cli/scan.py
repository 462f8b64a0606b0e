"""`cleaner scan`: check every file under the class folders, write the manifest, print a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cleaner.cli._common import (
    DEFAULT_ROOT,
    JsonOption,
    RootOption,
    cli_errors,
    console,
    print_json,
)


@cli_errors
def scan(
    root: RootOption = DEFAULT_ROOT,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", min=1, help="Worker processes (default: one per CPU)."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Check every file under ROOT's class folders and write ROOT/.cleaner/manifest.csv.

    Each file is read once (sha256 and a full decode of the same bytes), in parallel. A rescan
    reads only files whose size or mtime changed. Unreadable files get a status and a reason in
    the manifest and do not fail the command (exit 0); a missing ROOT or one without class
    folders exits 1.

    Examples:

        cleaner scan --root data

        cleaner scan --root ~/datasets/faces --workers 4

        cleaner scan --root data --json | jq .counts
    """
    from cleaner.manifest import STATUS_MEANINGS
    from cleaner.manifest import scan as run_scan

    result = run_scan(root, workers=workers, progress=False if json_out else None)
    if json_out:
        print_json(result.summary())
        return
    counts = result.counts()
    statuses = ["ok", *sorted({s for c in counts.values() for s in c if s != "ok"})]
    table = Table(title=f"cleaner scan: {_short(result.root)}")
    table.add_column("class")
    table.add_column("folders")
    for s in statuses:
        table.add_column(s, justify="right")
    table.add_column("total", justify="right")
    for label, c in counts.items():
        folders = ", ".join(result.class_dirs.get(label, ())) or "-"
        table.add_row(label, folders, *(str(c.get(s, 0)) for s in statuses), str(sum(c.values())))
    table.add_row(
        "all",
        "",
        *(str(sum(c.get(s, 0) for c in counts.values())) for s in statuses),
        str(len(result.rows)),
        style="bold",
    )
    console.print(table)
    bad = len(result.rows) - sum(counts[label].get("ok", 0) for label in counts)
    console.print(
        f"{len(result.rows)} files, {bad} not usable; read {result.read}, "
        f"reused {result.reused} unchanged, in {result.seconds:.2f}s -> {result.manifest_path}"
    )
    for s in statuses[1:]:
        console.print(f"  {s}: {STATUS_MEANINGS.get(s, '')}")
    if bad:
        console.print("the manifest's status and reason columns say which file and why")


def _short(p: Path) -> str:
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)
