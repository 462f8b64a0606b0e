"""`cleaner scan`: check every file under the class folders, write the manifest, print a summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
    fail,
    print_json,
    use_engine,
)
from cleaner.dataset import Workspace

if TYPE_CHECKING:
    from cleaner.manifest import QuarantineResult


@cli_errors
def scan(
    root: RootOption = DEFAULT_ROOT,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", min=1, help="Worker processes (default: one per CPU)."),
    ] = None,
    quarantine: Annotated[
        bool,
        typer.Option(
            "--quarantine",
            help="Also move broken files (empty, not-an-image, corrupt, truncated, too-large) "
            "to quarantine/unreadable/ (a dry run unless --apply).",
        ),
    ] = False,
    apply: Annotated[
        bool, typer.Option("--apply", help="With --quarantine: really move (journaled).")
    ] = False,
    engine: EngineOption = None,
    ray_address: RayAddressOption = None,
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

        cleaner scan --root /shared/faces --engine ray --ray-address auto   # on a Ray cluster

        cleaner scan --root data --json | jq .counts

        cleaner scan --root data --quarantine            # list what would move

        cleaner scan --root data --quarantine --apply    # move it (undo: cleaner undo)
    """
    use_engine(engine, ray_address)
    from cleaner.manifest import STATUS_MEANINGS
    from cleaner.manifest import scan as run_scan

    if apply and not quarantine:
        raise fail("--apply only makes sense with --quarantine; add --quarantine")
    ws = Workspace.open(root)
    result = run_scan(ws, workers=workers, progress=False if json_out else None)
    if quarantine:
        from cleaner.manifest import quarantine_unreadable

        q = quarantine_unreadable(
            ws, result.rows, apply=apply, progress=False if json_out else None
        )
        if json_out:
            print_json({**result.summary(), "quarantine": q.summary()})
            return
    if emit_json(result, json_out):
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
    for name in result.outside_links:
        console.print(f"not scanned: {name}/ is a symlink out of ROOT (cleaner never follows one)")
    for s in statuses[1:]:
        console.print(f"  {s}: {STATUS_MEANINGS.get(s, '')}")
    if bad:
        console.print("the manifest's status and reason columns say which file and why")
    if quarantine:
        _print_quarantine(q)


def _print_quarantine(q: QuarantineResult) -> None:
    if not q.moves:
        console.print("nothing to quarantine: no broken file")
        return
    table = Table(title="quarantine" + ("" if q.applied else " (dry run: add --apply to move)"))
    table.add_column("file")
    table.add_column("to")
    table.add_column("why")
    for m in q.moves:
        table.add_row(m.src, m.dst, m.reason)
    console.print(table)
    if q.applied is None:
        console.print(f"{len(q.moves)} file(s) would move; nothing was changed")
        return
    if q.outcome is not None:
        console.print(q.outcome.line())
    for r in q.applied.skipped:
        console.print(f"  skipped {r.src}: {r.why}")


def _short(p: Path) -> str:
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)
