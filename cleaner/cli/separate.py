"""`cleaner separate`: move images between the class folders by consensus of prediction files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cleaner.choices import Label, Rule
from cleaner.cli._common import (
    DEFAULT_ROOT,
    JsonOption,
    RootOption,
    cli_errors,
    console,
    emit_json,
    err_console,
)
from cleaner.consensus import DEFAULT_MIN_CONFIDENCE, DEFAULT_RULE
from cleaner.errors import CleanerError
from cleaner.plans import DEFAULT_MAX_FRACTION, SeparateResult
from cleaner.plans import separate as run_separate
from cleaner.predictions import FORMAT_V1


@cli_errors
def separate(
    predictions: Annotated[
        list[Path] | None,
        typer.Option(
            "--predictions",
            "-p",
            help=(
                "Predictions files (cleaner.predictions.v1, hard-label lists, {path: label} "
                "objects). One --predictions may be followed by several files, as the shell "
                "expands --predictions preds/*.json; repeating it works too."
            ),
            show_default=False,
        ),
    ] = None,
    more: Annotated[
        list[Path] | None,
        typer.Argument(
            hidden=True, metavar="MORE.json", help="More predictions files (after --predictions)."
        ),
    ] = None,
    root: RootOption = DEFAULT_ROOT,
    rule: Annotated[
        Rule,
        typer.Option(
            "--rule",
            help="How the files' votes combine (see the README for each rule, exactly).",
            show_default=True,
        ),
    ] = DEFAULT_RULE,
    min_confidence: Annotated[
        float,
        typer.Option(
            "--min-confidence",
            help="A file votes to move an image when its probability of the other class is at "
            "least this (0.6 to 1).",
            show_default=True,
        ),
    ] = DEFAULT_MIN_CONFIDENCE,
    max_fraction: Annotated[
        float,
        typer.Option(
            "--max-fraction",
            help="Refuse to apply a plan moving more than this fraction of a class.",
            show_default=True,
        ),
    ] = DEFAULT_MAX_FRACTION,
    apply: Annotated[
        bool, typer.Option("--apply", help="Move the files (default: dry run, plan only).")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Relabel by consensus: move images the prediction files agree are in the wrong class.

    Writes the plan (every decision with each file's probability) to
    ROOT/.cleaner/plans/<run-id>.json and prints a summary. Nothing moves without --apply;
    with it every move is journaled first, never overwrites (a name collision gets a suffix,
    a~1.jpg), keeps the path below the class folder, and `cleaner undo` reverses the run.
    Images on which confident files disagree go to the plan's review list, never moved.

    Examples:

        cleaner separate --root data --predictions preds/*.json

        cleaner separate --root data --predictions a.json b.json c.json --apply

        cleaner separate -p a.json -p b.json --rule mean --min-confidence 0.95 --json
    """
    files = [*(predictions or []), *(more or [])]
    if more and not predictions:
        raise CleanerError(
            f"{more[0]}: prediction files go after --predictions "
            f"(cleaner separate --predictions {' '.join(map(str, more))})"
        )
    result = run_separate(
        root,
        files,
        rule=rule.value,
        min_confidence=min_confidence,
        max_fraction=max_fraction,
        apply=apply,
        progress=False if json_out else None,
    )
    if not emit_json(result, json_out):
        _print(result, apply)


def _print(result: SeparateResult, apply: bool) -> None:
    plan = result.plan
    t = Table(title=f"cleaner separate ({plan['rule']}, min confidence {plan['min_confidence']:g})")
    for col in ("predictions file", "format", "out of fold", "entries", "matched", "not used"):
        t.add_column(col, justify="left" if col in ("predictions file", "format") else "right")
    for m in plan["predictions"]:
        oof = {True: "yes", False: "NO", None: "?"}[m["out_of_fold"]]
        t.add_row(
            m["file"],
            "v1" if m["format"] == FORMAT_V1 else m["format"],
            oof,
            str(m["entries"]),
            str(m["matched"]),
            str(m["unmatched"] + m["stale"] + m["ambiguous"]),
        )
    console.print(t)
    c = plan["counts"]
    g = plan["guard"]
    s = Table(title="plan")
    for col in ("class", "files", "move out", "fraction", "to"):
        s.add_column(col, justify="left" if col in ("class", "to") else "right")
    for a, b in ((Label.REAL, Label.FAKE), (Label.FAKE, Label.REAL)):
        s.add_row(
            a,
            str(c["files"][a]),
            str(c["moves"][f"{a}->{b}"]),
            f"{g['fractions'][a]:.1%}",
            b,
        )
    console.print(s)
    moves = plan["moves"]
    for rec in moves[:10]:
        ev = ", ".join(f"{e['prob_fake']:.2f}" for e in rec["evidence"])
        console.print(
            f"  {rec['path']} -> {rec['dst']}  (prob_fake: {ev})",
            overflow="ellipsis",
            no_wrap=True,
            crop=True,
        )
    if len(moves) > 10:
        console.print(f"  ... and {len(moves) - 10} more in the plan file")
    for rec in plan["review"][:5]:
        console.print(
            f"  review {rec['path']}: {rec['why']}", overflow="ellipsis", no_wrap=True, crop=True
        )
    if len(plan["review"]) > 5:
        console.print(f"  ... and {len(plan['review']) - 5} more for review in the plan file")
    console.print(
        f"{len(moves)} to move, {c['review']} for review, {c['covered']} images covered; "
        f"plan: {result.plan_path}"
    )
    for w in result.warnings:
        err_console.print(f"warning: {w}")
    if result.recovery:
        rec = result.recovery
        err_console.print(rec.message())
    if not apply:
        if not g["ok"]:
            err_console.print(f"warning: --apply would refuse this plan: {g['why']}")
        console.print("dry run: nothing moved; add --apply to move the files")
        return
    run = result.applied
    if run is None:
        return
    if not run.results:
        console.print("nothing to move: the tree is unchanged")
        return
    console.print(
        f"moved {len(run.moved)} files (run {run.run_id}); undo with: cleaner undo --root "
        f"{plan['root']} --run {run.run_id}"
    )
    for r in run.skipped:
        err_console.print(f"skipped {r.src}: {r.why}")


def register(app: typer.Typer) -> None:
    app.command("separate")(separate)
