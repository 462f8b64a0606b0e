"""`cleaner evaluate DIR` (hidden): planted versus found on a demo dataset, for `make demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cleaner.cli._common import JsonOption, cli_errors, console, emit_json


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * float(v):.1f}%"


@cli_errors
def evaluate(
    demo_dir: Annotated[Path, typer.Argument(metavar="DIR", help="A folder made by cleaner demo.")],
    metrics: Annotated[
        Path | None,
        typer.Option("--metrics", help="M.metrics.json of the retrained model (final accuracy)."),
    ] = None,
    predictions: Annotated[
        Path | None,
        typer.Option("--predictions", help="predict-dir's predictions.json of unseen images."),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="True labels of those images: [{image, label}]."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Compare what the chain found in DIR with DIR/ground_truth.json.

    Examples:

        cleaner evaluate data/demo --metrics data/demo-model.metrics.json

        cleaner evaluate data/demo --json
    """
    from cleaner.evaluate import evaluate as run

    r = run(demo_dir, metrics=metrics, predictions=predictions, labels=labels)
    if emit_json(r, json_out):
        return
    rl, dd, co, md = r["relabeling"], r["dedupe"], r["corrupt"], r["model"]
    t = Table(title=f"planted versus found in {demo_dir}")
    for col in ("problem", "planted", "found", "right", "precision", "recall"):
        t.add_column(col, justify="left" if col == "problem" else "right")
    t.add_row(
        "label errors (separate)",
        str(rl["planted"]),
        str(rl["moves"]),
        str(rl["right"]),
        _pct(rl["precision"]),
        _pct(rl["recall"]),
    )
    est = rl.get("estimated")
    if est is not None:
        n_est = "?" if est["noise_rate"] is None else f"~{est['noise_rate'] * rl['images']:.0f}"
        wrong = est["expected_wrong_moves"]
        right = "" if est["precision"] is None else f"~{rl['moves'] - wrong:.0f}"
        t.add_row(
            "  estimated before moving",
            n_est,
            str(rl["moves"]),
            right,
            _pct(est["precision"]),
            _pct(est["recall"]),
        )
    t.add_row(
        "duplicate pairs (dedupe)" + ("" if dd["ran"] else " [not run]"),
        str(dd["planted_pairs"]),
        str(dd["found_pairs"]),
        str(dd["right_pairs"]),
        _pct(dd["precision"]),
        _pct(dd["recall"]),
    )
    t.add_row(
        "corrupt files (scan)",
        str(co["planted"]),
        str(co["manifest_not_ok"]),
        str(co["reported"]),
        "",
        _pct(co["recall"]),
    )
    console.print(t)
    console.print(
        f"label noise in the class folders: {_pct(rl['noise_before'])} planted -> "
        f"{_pct(rl['noise_after'])} after cleaning ({rl['review']} left for review)"
    )
    if md is not None:
        auc = "n/a" if md["roc_auc"] is None else f"{md['roc_auc']:.3f}"
        console.print(
            f"final model ({md['backbone']}): test accuracy {_pct(md['accuracy'])}, "
            f"ROC-AUC {auc} on {md['test_images']} held-out images"
        )
    un = r["unseen"]
    if un is not None:
        console.print(
            f"predict-dir on unseen images: {un['right']}/{un['predicted']} right "
            f"({_pct(un['accuracy'])}) of {un['images']}"
        )


def register(app: typer.Typer) -> None:
    app.command("evaluate", hidden=True)(evaluate)
