"""`cleaner dedupe`: exact and near-duplicate groups, label conflicts, split leakage, quarantine."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cleaner.choices import HashMethod
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

SHOW_GROUPS = 20


@cli_errors
def dedupe(
    root: RootOption = DEFAULT_ROOT,
    method: Annotated[
        HashMethod, typer.Option("--method", "-m", help="Perceptual hash (imagehash's).")
    ] = HashMethod.PHASH,
    max_distance: Annotated[
        int | None,
        typer.Option(
            "--max-distance",
            "-d",
            min=0,
            max=32,
            help="Hamming radius in bits of 64 (default 10, chosen on faces140k: "
            "bench/README.md, Dedupe).",
        ),
    ] = None,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply",
            help="Move every copy but the kept one to ROOT/quarantine/duplicates/ (journaled).",
        ),
    ] = False,
    max_fraction: Annotated[
        float,
        typer.Option(
            "--max-fraction",
            min=0.0,
            max=1.0,
            help="--apply refuses a plan that would quarantine more than this fraction of a "
            "class (it is written, exit 1); default 0.1.",
        ),
    ] = 0.1,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", min=1, help="Worker processes (default: one per CPU)."),
    ] = None,
    engine: EngineOption = None,
    ray_address: RayAddressOption = None,
    json_out: JsonOption = False,
) -> None:
    """Find exact and near-duplicate images and write ROOT/.cleaner/duplicates.json.

    Exact copies (same bytes, or same decoded pixels) and near copies (resized, recompressed,
    brightened, mirrored, cropped by a few percent) are grouped. Each candidate pair within
    --max-distance bits is confirmed by an independent check of the aligned pixels, with what
    this dataset's images share removed (below 0.9 its fine detail must agree too: look-alikes
    are not copies), against a threshold calibrated on the dataset's own random pairs and its
    nearest non-copy neighbours (expected false pairs reported). A copy joins a group only by
    matching the kept copy directly; groups of more than 20 copies and pairs just short of the
    threshold are listed for review and never moved. The kept copy has the most pixels, then
    the largest file, then the first path. A fake that is a real photo with a local change (a
    pasted or inpainted region) is a pair: both kept, listed under `pairs`, kept in one fold and
    split. The same picture in both classes is a label conflict: listed for review, never moved.
    A group spanning train/val/test is split leakage. Without --apply nothing moves; with
    --apply the other copies of a same-class group go to quarantine/duplicates/<their path>, and
    `cleaner undo` brings them back. Hashes are cached
    by sha256 under ROOT/.cleaner/cache/, so a rerun only hashes new files.

    Examples:

        cleaner dedupe --root data

        cleaner dedupe --root data --max-distance 6 --method dhash

        cleaner dedupe --root /shared/faces --engine ray   # hashing on Ray Data

        cleaner dedupe --root data --apply && cleaner undo --root data

        cleaner dedupe --root data --apply --max-fraction 0.3

        cleaner dedupe --root data --json | jq .conflicts
    """
    use_engine(engine, ray_address)
    from cleaner.dedupe import dedupe as run_dedupe

    result = run_dedupe(
        Workspace.open(root),
        method=method,
        max_distance=max_distance,
        apply=apply,
        max_fraction=max_fraction,
        workers=workers,
        progress=False if json_out else None,
    )
    if emit_json(result, json_out):
        return
    s = result.summary()
    table = Table(title=f"cleaner dedupe: {result.root}")
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_row("files (ok)", str(s["files"]))
    table.add_row("hashed now / from cache", f"{s['hashed']} / {s['reused_from_cache']}")
    table.add_row("duplicate groups", str(s["groups"]))
    table.add_row("redundant copies", str(s["redundant"]))
    table.add_row("  to quarantine (not held for review)", str(s["to_quarantine"]))
    table.add_row("groups held for review (conflicts, > 20 copies)", str(s["review_groups"]))
    table.add_row("pairs just below the threshold (review)", str(s["review_pairs"]))
    if s["threshold"] is not None:
        table.add_row("verification threshold (calibrated)", f"{s['threshold']:.3f}")
    table.add_row("expected false pairs", f"{s['expected_false_pairs']:.2g}")
    for kind, n in s["matches"].items():
        table.add_row(f"  matched by {kind}", str(n))
    table.add_row(
        "label conflicts (review)", str(s["conflicts"]), style="bold" if s["conflicts"] else None
    )
    table.add_row("pairs (a fake beside its real source: kept)", str(s["pairs"]))
    table.add_row("groups across splits", str(s["leaking_groups"]))
    if s["unreadable"]:
        table.add_row("not decodable at hashing", str(s["unreadable"]))
    console.print(table)
    if result.groups:
        gt = Table(
            title=f"groups (first {SHOW_GROUPS})" if len(result.groups) > SHOW_GROUPS else "groups"
        )
        for col in ("#", "kept", "copies", "labels", "max distance", "flags"):
            gt.add_column(col, overflow="fold")
        for g in result.groups[:SHOW_GROUPS]:
            flags = ("conflict " if g.conflict else "") + ("leakage" if g.leaks else "")
            gt.add_row(
                str(g.id),
                g.kept,
                str(len(g.redundant)),
                "/".join(sorted({m.label for m in g.members})),
                str(max(m.distance for m in g.members)),
                flags.strip(),
            )
        console.print(gt)
    console.print(f"groups written to {result.output}")
    console.print(s["paired"])
    if result.weak_evidence:
        err_console.print(
            "warning: copies and other images are hard to tell apart in this dataset (calibrated "
            f"threshold {s['threshold']:.3f}); {s['review_pairs']} pairs just below it are "
            f"listed for review in {result.output}"
        )
    if apply and result.outcome is not None:
        console.print(f"quarantine/duplicates/: {result.outcome.line()}")
        for line in result.skipped:
            console.print(f"  skipped {line}")
    elif result.quarantine:
        console.print(
            f"dry run: {len(result.quarantine)} copies would move to quarantine/duplicates/; "
            "rerun with --apply"
        )
        if not s["guard"].get("ok", True):
            err_console.print(f"warning: --apply would refuse this plan: {s['guard']['why']}")


def register(app: typer.Typer) -> None:
    app.command("dedupe")(dedupe)
