"""`cleaner audit`: properties that leak the label without the picture; provenance; equalize."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
    print_json,
    use_engine,
)
from cleaner.dataset import Workspace

if TYPE_CHECKING:
    from cleaner.audit import AuditResult


@cli_errors
def audit(
    root: RootOption = DEFAULT_ROOT,
    json_out: JsonOption = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Also write the audit (audit.json's content) here."),
    ] = None,
    equalize_out: Annotated[
        Path | None,
        typer.Option(
            "--equalize",
            help="Write a new dataset OUT (absent or empty, outside ROOT) in which both classes "
            "share one form: one JPEG quality, one square size, no metadata, content-hash names.",
        ),
    ] = None,
    equalize_size: Annotated[
        int | None,
        typer.Option(
            "--equalize-size",
            help="Side of the equalized squares (default: the median of the short sides, at "
            "least 16).",
        ),
    ] = None,
    equalize_quality: Annotated[
        int, typer.Option("--equalize-quality", help="JPEG quality of the equalized copy.")
    ] = 92,
    predictions_out: Annotated[
        Path | None,
        typer.Option(
            "--predictions-out",
            help="Write the provenance proof (a generator named by the metadata) as a "
            "predictions file for `cleaner separate`.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", min=1, help="Worker processes (default: one per CPU)."),
    ] = None,
    engine: EngineOption = None,
    ray_address: RayAddressOption = None,
) -> None:
    """Find what lets a detector tell ROOT's folders apart without looking at the pictures.

    Reads every file's form (container and extension, size and aspect, JPEG quality from the
    quantisation tables, chroma subsampling, progressive, colour mode and alpha, ICC, EXIF
    camera and software, PNG text chunks, XMP, C2PA, words in the file name) from headers and
    metadata only, in parallel, cached by sha256. Scores each property alone (AUC, out-of-fold
    for categories) and all together (gradient-boosted trees, out-of-fold on folds grouped by
    duplicates.json, AUC with a bootstrap interval), and says in one line whether there is a
    shortcut (AUC >= 0.7) and which properties make it. Writes ROOT/.cleaner/audit.json, which
    `cleaner report` shows and `cleaner train` warns from. Broken files are listed, never fatal.

    Provenance: only exact signatures are proof of fake (a WebUI `parameters` line 'Steps: N,
    Sampler: ...', a ComfyUI `prompt` / `workflow` graph, a C2PA manifest that validates with
    trainedAlgorithmicMedia, a known generator named as whole words in Software), never a
    substring; camera EXIF is weak evidence of real and never written as a vote. A remote
    manifest named by a file is listed, never fetched.

    Examples:

        cleaner audit --root data

        cleaner audit --root data --json | jq .shortcut

        cleaner audit --root data --predictions-out preds/provenance.json &&
        cleaner separate --root data --predictions preds/*.json

        cleaner audit --root data --equalize data_equalized && cleaner audit --root data_equalized

        cleaner demo /tmp/biased --bias format && cleaner audit --root /tmp/biased
    """
    use_engine(engine, ray_address)
    from cleaner.audit import check_outputs, run_audit
    from cleaner.audit.equalize import check_unused

    check_unused(equalize_out, side=equalize_size, quality=equalize_quality)

    ws = Workspace.open(root)
    check_outputs(ws, out=out, predictions_out=predictions_out)
    if equalize_out is not None:
        from cleaner.audit.equalize import check_args

        check_args(ws, equalize_out, side=equalize_size, quality=equalize_quality)

    progress = False if json_out else None
    result = run_audit(ws, workers=workers, progress=progress, out=out)
    extra: dict[str, Any] = {}
    if predictions_out is not None:
        from cleaner.audit.provenance import write_provenance

        path = write_provenance(predictions_out, result.evidence)
        extra["predictions_out"] = str(path)
    if equalize_out is not None:
        from cleaner.audit.equalize import equalize

        eq = equalize(
            ws, result.files, equalize_out, side=equalize_size,
            quality=equalize_quality, workers=workers, progress=progress,
        )  # fmt: skip
        extra["equalized"] = {
            "out": str(eq.out), "side": eq.side, "quality": eq.quality,
            "written": eq.written, "skipped": eq.skipped, "csv": str(eq.csv),
        }  # fmt: skip
    if json_out:
        print_json({**result.summary(), "audit_json": str(result.audit_json), **extra})
        return
    _print(result, extra)


def _print(result: AuditResult, extra: dict[str, Any]) -> None:
    from cleaner.audit.scores import typical

    s = result.shortcut
    table = Table(title=f"cleaner audit: {result.root} ({s.files} images, {s.folds} folds)")
    for col, just in (("property", "left"), ("power", "right"), ("95% interval", "right"),
                      ("real: quartiles or commonest", "left"), ("fake", "left"),
                      ("named", "left")):  # fmt: skip
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for p in result.properties:
        d = asdict(p)
        table.add_row(
            p.name + (" (info)" if p.kind == "informational" else ""),
            f"{p.power:.3f}", f"{p.low:.3f}-{p.high:.3f}",
            typical(d, "real"), typical(d, "fake"), "yes" if p.named else "",
        )  # fmt: skip
    console.print(table)
    console.print(s.verdict)
    proofs = [e for e in result.evidence if e.strength == "proof"]
    weak = [e for e in result.evidence if e.strength == "weak"]
    info = [e for e in result.evidence if e.strength == "info"]
    contra = sum(1 for e in proofs if e.contradicts)
    console.print(
        f"provenance: {len(proofs)} files name a generator ({contra} of them in the real "
        f"folder); {len(weak)} carry camera EXIF (weak evidence, never a vote)"
    )
    for e in proofs[:10]:
        if e.contradicts:
            console.print(f"  {e.path}: {e.why}")
    for e in info[:10]:
        console.print(f"  {e.path}: {e.why}")
    if result.hostile:
        console.print(f"{len(result.hostile)} files could not be audited:")
        for h in result.hostile[:20]:
            console.print(f"  {h['path']}: {h['status']}: {h['reason']}")
    console.print(f"audit: {result.audit_json} ({result.read} files read, "
                  f"{len(result.files) - result.read} from the cache)")  # fmt: skip
    if "predictions_out" in extra:
        console.print(
            f"predictions: {extra['predictions_out']} ({len(proofs)} hard labels); use it with "
            f"cleaner separate --root {result.root} --predictions {extra['predictions_out']} ..."
        )
    if "equalized" in extra:
        eq = extra["equalized"]
        console.print(
            f"equalized: {eq['written']} images in {eq['out']} ({eq['side']} px squares, JPEG "
            f"quality {eq['quality']}, no metadata); origins in {eq['csv']}"
        )


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)
