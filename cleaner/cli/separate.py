"""`cleaner separate`: move images between the class folders by consensus of prediction files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
from cleaner.consensus import (
    DEFAULT_FLOOR,
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_RULE,
    DEFAULT_TARGET_PRECISION,
)
from cleaner.errors import CleanerError
from cleaner.estimate_check import REFUSAL
from cleaner.plans import DEFAULT_MAX_FRACTION, SeparateResult
from cleaner.plans import separate as run_separate
from cleaner.predictions import FORMAT_V1
from cleaner.review import DEFAULT_REVIEW_BUDGET


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
            help="How the files' votes combine (each rule, exactly: docs/commands/separate.md).",
            show_default=True,
        ),
    ] = DEFAULT_RULE,
    min_confidence: Annotated[
        float | None,
        typer.Option(
            "--min-confidence",
            help="A file votes to move an image when its probability of the other class is at "
            "least this (0.6 to 1). With --target-precision the lowest threshold tried "
            f"(default {DEFAULT_FLOOR}); with --target-precision 0 the threshold (default "
            f"{DEFAULT_MIN_CONFIDENCE}).",
            show_default=False,
        ),
    ] = None,
    target_precision: Annotated[
        float,
        typer.Option(
            "--target-precision",
            help="Use the lowest threshold at which the moves' estimated precision (a self-test "
            "on these files and folders) reaches this; none: nothing moves, the candidates go "
            "to review. 0: off (fixed --min-confidence).",
            show_default=True,
        ),
    ] = DEFAULT_TARGET_PRECISION,
    max_fraction: Annotated[
        float,
        typer.Option(
            "--max-fraction",
            help="Refuse to apply a plan moving more than this fraction of a class.",
            show_default=True,
        ),
    ] = DEFAULT_MAX_FRACTION,
    review_budget: Annotated[
        int,
        typer.Option(
            "--review-budget",
            help="List at most this many files for review, the likeliest to be misfiled "
            "first; the plan says how many misfiled files the list and the rest are expected "
            "to hold.",
            show_default=True,
        ),
    ] = DEFAULT_REVIEW_BUDGET,
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

        cleaner separate -p a.json -p b.json --rule mean --target-precision 0.95 --json

        cleaner separate -p a.json --rule mean --target-precision 0 --min-confidence 0.95

    With --target-precision P (default 0.9) a self-test on the files' probabilities (each
    image put alone in the other folder: would the rule move it back?) and a noise model of
    the folders estimate how many of each threshold's moves would be right; the plan and the
    summary show the estimate at every threshold tried. It assumes mislabelled images
    look like the correctly labelled ones of their true class (random swaps do; real errors are
    often harder, so treat it as an upper bound there).
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
        target_precision=target_precision,
        review_budget=review_budget,
        apply=apply,
        progress=False if json_out else None,
    )
    if not emit_json(result, json_out):
        _print(result, apply)


def _print(result: SeparateResult, apply: bool) -> None:
    plan = result.plan
    t = Table(title=f"cleaner separate ({plan['rule']}, {_threshold_title(plan)})")
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
    _print_budget(plan)
    _print_estimate(plan)
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
    if result.outcome is None:
        return
    console.print(result.outcome.line())
    for r in result.outcome.skipped:
        err_console.print(f"skipped {r.src}: {r.why}")


def _print_budget(plan: dict[str, Any]) -> None:
    """One line: the review list against its budget, and the misfiled files expected in it,
    below it and among the files nobody is asked to look at."""
    b = plan.get("review_budget") or {}
    if not b or not b.get("candidates"):
        return
    line = (
        f"review: the {b['listed']} likeliest misfiled of {b['candidates']} candidates "
        f"(--review-budget {b['budget']})"
    )
    if b.get("expected_misfiled_listed") is not None:
        line += (
            f"; expected misfiled: {b['expected_misfiled_listed']:.0f} in the list, "
            f"{b['expected_misfiled_below']:.0f} in the candidates below it, "
            f"{b['expected_misfiled_unlisted']:.0f} among the other files"
        )
    console.print(line)


def _threshold_title(plan: dict[str, Any]) -> str:
    if not plan.get("target_precision"):
        return f"min confidence {plan['min_confidence']:g}"
    t = plan.get("threshold")
    chosen = f"threshold {t:g}" if t is not None else "no threshold reaches it"
    return f"target precision {plan['target_precision']:g}: {chosen}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _print_estimate(plan: dict[str, Any]) -> None:
    """The thresholds tried (near the chosen one) with what the noise model expects of each,
    then one line on the plan's own moves."""
    est = plan.get("estimate") or {}
    if not est:
        return
    rows = est.get("thresholds") or []
    if rows:
        t = Table(title="estimated, per threshold (self-test on these files; see --help)")
        for col in ("threshold", "would move", "est. precision", "est. recall", "exp. wrong"):
            t.add_column(col, justify="right")
        for r in _near(rows, plan.get("threshold")):
            mark = " <" if r["threshold"] == plan.get("threshold") else ""
            t.add_row(
                f"{r['threshold']:g}{mark}",
                str(r["moves"]),
                _pct(r["estimated_precision"]),
                _pct(r["estimated_recall"]),
                _count(r["expected_wrong_moves"]),
            )
        console.print(t)
    n = sum(plan["counts"]["moves"].values())
    line = (
        f"estimate: noise rate {_pct(est['estimated_noise_rate'])}; the plan's {n} moves "
        f"{_pct(est['estimated_precision'])} right (about {_count(est['expected_wrong_moves'])} "
        f"wrong), recall {_pct(est['estimated_recall'])}"
    )
    chk = est.get("check") or {}
    if chk:
        console.print(_check_line(chk))
    if chk and chk["outcome"] != "passed":
        line += "; nothing is estimated or moved by a target precision (the check above)"
    elif plan.get("target_precision") and plan.get("threshold") is None:
        line += (
            f"; no threshold reaches the target precision {plan['target_precision']:g}: "
            "nothing moves, candidates are in the review list"
        )
    console.print(line)


def _count(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _check_line(chk: dict[str, Any]) -> str:
    """The check of the estimate (:mod:`cleaner.estimate_check`) in one line."""
    if chk["outcome"] == "passed":
        return f"check of the estimate: passed, {chk['why']}"
    return f"check of the estimate: {chk['outcome']}, {REFUSAL}: {chk['why']}"


def _near(rows: list[dict[str, Any]], chosen: float | None) -> list[dict[str, Any]]:
    """At most 12 rows: around the chosen threshold, or spread over all when none."""
    if len(rows) <= 12:
        return rows
    ts = [r["threshold"] for r in rows]
    if chosen in ts:
        i = ts.index(chosen)
        return rows[max(0, i - 5) : i + 7]
    step = len(rows) / 12
    return [rows[int(k * step)] for k in range(12)] + ([rows[-1]] if len(rows) % 12 else [])


def register(app: typer.Typer) -> None:
    app.command("separate")(separate)
