"""Relabeling plans: predictions files + the dataset -> a plan file -> (with ``--apply``) moves.

Why a plan file: every decision is written down with its evidence (each file's probability)
before anything moves, in ``R/.cleaner/plans/<run-id>.json`` (format ``cleaner.plan.v1``), so
a person can read what would happen and why, and the journal of an applied run points back to
it. A dry run writes the plan and changes nothing else under ROOT.

Why the guard: a plan that would move more than ``max_fraction`` (default 0.15) of a class
says more about the model than about the labels, so it is written but not applied.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cleaner.choices import Label
from cleaner.consensus import (
    DEFAULT_FLOOR,
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_RULE,
    DEFAULT_TARGET_PRECISION,
    MOVE,
    REVIEW,
    Choice,
    Decision,
    Evidence,
    ImageVotes,
    SelfTest,
    check_params,
    check_target,
    checked,
    choose,
    decide,
)
from cleaner.dataset import LABELS, Workspace
from cleaner.errors import CleanerError
from cleaner.estimate_check import Check, PlantedRun
from cleaner.guard import fraction_guard
from cleaner.journal import (
    AppliedRun,
    Move,
    RecoveryReport,
    UndoResult,
    new_run_id,
    pending_recovery,
    writing,
)
from cleaner.journal import undo as journal_undo
from cleaner.moves import MoveOutcome, MovePlan, execute, results_by_source
from cleaner.noise import MoveEstimate
from cleaner.predictions import MatchResult, match_entries, read_predictions
from cleaner.review import DEFAULT_REVIEW_BUDGET, Ranked, ReviewList
from cleaner.review import rank as review_rank
from cleaner.state import plans as plans_file
from cleaner.state.manifest import ManifestRow
from cleaner.state.plans import PLAN_FORMAT
from cleaner.state.runs import run_relpath

DEFAULT_MAX_FRACTION = 0.15


@dataclass
class SeparateResult:
    """What :func:`separate` did: the plan (as written), where, and the run if applied."""

    plan: dict[str, Any]
    plan_path: Path
    matches: list[MatchResult]
    warnings: list[str]
    outcome: MoveOutcome | None = None
    """What the move executor did (a dry run too)."""

    @property
    def applied(self) -> AppliedRun | None:
        """The journaled run; None on a dry run."""
        return self.outcome.run if self.outcome is not None else None

    @property
    def recovery(self) -> RecoveryReport:
        return self.outcome.recovery if self.outcome is not None else RecoveryReport()

    @property
    def guard_ok(self) -> bool:
        return bool(self.plan["guard"]["ok"])

    def summary(self) -> dict[str, Any]:
        """The machine-readable summary (``cleaner separate --json``)."""
        p = self.plan
        out: dict[str, Any] = {
            "run_id": p["run_id"],
            "plan": str(self.plan_path),
            "rule": p["rule"],
            "min_confidence": p["min_confidence"],
            "target_precision": p.get("target_precision"),
            "threshold": p.get("threshold"),
            "estimate": {k: v for k, v in p.get("estimate", {}).items() if k != "thresholds"},
            "max_fraction": p["max_fraction"],
            "counts": p["counts"],
            "guard": p["guard"],
            "predictions": p["predictions"],
            "warnings": self.warnings,
            "applied": p["applied"],
            "moves": len(p["moves"]),
            "review": len(p["review"]),
            "review_budget": p.get("review_budget"),
        }
        if self.applied is not None:
            out["moved"] = len(self.applied.moved)
            out["skipped"] = [{"path": r.src, "why": r.why} for r in self.applied.skipped]
        if self.outcome is not None:
            out["run"] = self.outcome.summary()
        if self.recovery:
            out["recovered"] = {
                "runs": self.recovery.runs,
                "completed": self.recovery.completed,
                "rolled_back": self.recovery.rolled_back,
                "problems": self.recovery.problems,
            }
        return out


def _decision_record(d: Decision, dst: str | None) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "path": d.path,
        "sha256": d.sha256,
        "from_label": d.from_label,
        "to_label": d.to_label,
        "dst": dst,
        "mean_prob_other": round(d.mean_other, 6),
        "evidence": [{"file": e.file, "prob_fake": e.prob_fake} for e in d.evidence],
    }
    if d.action == REVIEW:
        rec["why"] = d.why
    return rec


def _guard(
    moves: Sequence[Decision], totals: dict[str, int], max_fraction: float, plan_path: Path
) -> dict[str, Any]:
    """Per class: the fraction of its files the plan moves out, and whether all are allowed."""
    out = Counter(d.from_label for d in moves)

    def explain(label: str, n_out: int, total: int, frac: float, needed: float) -> str:
        return (
            f"the plan would move {n_out} of {total} {label} images ({frac:.0%}), more than "
            f"--max-fraction {max_fraction:g}: a plan that large says more about the model "
            f"than about the labels; nothing was moved. Read {plan_path} and pass "
            f"--max-fraction {needed:.2f} to apply it anyway"
        )

    return fraction_guard(out, totals, LABELS, max_fraction, explain)


def build_plan(
    ws: Workspace,
    prediction_files: Sequence[str | os.PathLike[str]],
    *,
    rule: str = DEFAULT_RULE,
    min_confidence: float | None = None,
    max_fraction: float = DEFAULT_MAX_FRACTION,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    review_budget: int = DEFAULT_REVIEW_BUDGET,
    run_id: str | None = None,
    progress: bool | None = None,
) -> tuple[dict[str, Any], list[MatchResult], list[str], list[Move]]:
    """Read and validate every predictions file (a bad one refuses the lot before anything is
    looked at), match them to ROOT's files, apply the rule. Returns the plan document, the
    per-file match results, warnings, and the moves the plan would make.

    ``target_precision`` (0: off): the rule's threshold is the lowest from ``min_confidence``
    (default :data:`DEFAULT_FLOOR`) up whose moves' estimated precision reaches it
    (:func:`cleaner.consensus.choose`); off, ``min_confidence`` (default 0.9) is the threshold
    and the estimate is only reported."""
    from cleaner.manifest import ok_rows

    floor = _floor(min_confidence, target_precision)
    check_params(rule, floor)
    check_target(target_precision)
    if not 0.0 < max_fraction <= 1.0:
        raise CleanerError(f"--max-fraction {max_fraction:g} is outside (0, 1]; default 0.15")
    check_budget(review_budget)
    if not prediction_files:
        raise CleanerError("no predictions file given; pass --predictions F1.json [F2.json ...]")
    files, warnings = _unique_files(prediction_files)
    pfs = [read_predictions(f, ws=ws) for f in files]
    rows = ok_rows(ws, progress=progress)
    matches = [match_entries(pf, rows) for pf in pfs]
    warnings += _match_warnings(matches, len(rows), ws)
    images = _votes(rows, matches)
    levels = len({tuple(e.prob_fake for e in im.evidence) for im in images})
    if target_precision and images and levels < MIN_LEVELS:
        warnings.append(
            f"the predictions give {levels} distinct probabilities (hard labels?): the move "
            "precision cannot be estimated from them, so the fixed --min-confidence "
            f"{_floor(min_confidence, 0.0):g} applies instead of --target-precision"
        )
        target_precision = 0.0
        floor = _floor(min_confidence, target_precision)
    outcome = _decide(images, matches, rule, target_precision, floor, levels)
    rid = run_id or new_run_id()
    move_ds = [d for d in outcome.decisions if d.action == MOVE]
    moves = [
        Move(
            src=d.path,
            dst=ws.moved_path(d.path, d.to_label),
            sha256=d.sha256,
            reason=f"{d.from_label}->{d.to_label}",
        )
        for d in move_ds
    ]
    totals: dict[str, int] = {label: sum(1 for r in rows if r.label == label) for label in LABELS}
    settings = {
        "rule": rule, "min_confidence": floor, "target_precision": target_precision or None,
        "max_fraction": max_fraction,
    }  # fmt: skip
    plan = _plan_doc(
        ws, rid, settings, outcome, moves, totals, matches, images, warnings, review_budget
    )
    return plan, matches, warnings, moves


def _unique_files(
    prediction_files: Sequence[str | os.PathLike[str]],
) -> tuple[list[Path], list[str]]:
    """The predictions files, each once (by real path), and a warning for each repeat."""
    warnings: list[str] = []
    seen: set[str] = set()
    files: list[Path] = []
    for f in prediction_files:
        key = os.path.realpath(f)
        if key in seen:
            warnings.append(f"{f} was given twice; its votes count once")
            continue
        seen.add(key)
        files.append(Path(f))
    return files, warnings


def _match_warnings(matches: Sequence[MatchResult], n_rows: int, ws: Workspace) -> list[str]:
    """What a user should know about each predictions file before trusting its votes."""
    warnings: list[str] = []
    for m in matches:
        pf = m.file
        if pf.out_of_fold is False:
            warnings.append(
                f"{pf.name} is not out-of-fold: a model that trained on these labels hides the "
                "errors it memorised; write it with `cleaner predict --folds K`"
            )
        elif pf.out_of_fold is None:
            warnings.append(
                f"{pf.name} does not say whether it is out-of-fold ({pf.format}); trust it only "
                "if its model never trained on these images"
            )
        if pf.entries and all(e.hard for e in pf.entries):
            warnings.append(
                f"{pf.name} gives classes, not probabilities: each of its votes counts as "
                "certain (probability 0 or 1), so --min-confidence cannot filter them"
            )
        if pf.entries and not m.matched:
            warnings.append(
                f"{pf.name} matched none of the {n_rows} files under {ws.root} "
                f"({len(pf.entries)} entries): is it for another dataset?"
            )
        elif m.unmatched + m.stale + m.ambiguous:
            warnings.append(
                f"{pf.name}: {m.unmatched} entries match no file, {m.stale} changed since "
                f"predicted, {m.ambiguous} ambiguous (not used)"
            )
    return warnings


def _votes(rows: Sequence[ManifestRow], matches: Sequence[MatchResult]) -> list[ImageVotes]:
    """Each file with at least one vote, and its votes."""
    images = []
    for row in rows:
        ev = tuple(Evidence(m.file.name, m.probs[row.path]) for m in matches if row.path in m.probs)
        if ev:
            images.append(ImageVotes(row.path, row.sha256, row.label, ev))
    return images


@dataclass
class _Outcome:
    """The rule's decisions and what the voters' evidence can vouch for."""

    decisions: list[Decision]
    choice: Choice | None = None
    estimate: MoveEstimate | None = None
    check: Check | None = None
    p_misfiled: dict[str, float] | None = None


def _decide(
    images: list[ImageVotes],
    matches: Sequence[MatchResult],
    rule: str,
    target_precision: float,
    floor: float,
    levels: int,
) -> _Outcome:
    """The decisions: at the lowest threshold whose estimated precision reaches the target
    (checked on the planted run), or at the fixed floor with the estimate only reported."""
    planted, missing = planted_run(images, matches)
    if target_precision and images:
        choice = choose(
            images, rule=rule, target=target_precision, floor=floor, planted=planted,
            missing=missing,
        )  # fmt: skip
        tried = choice.at(choice.threshold)
        return _Outcome(
            list(choice.decisions), choice, tried.estimate if tried is not None else None,
            choice.check, choice.p_misfiled,
        )  # fmt: skip
    out = _Outcome(list(decide(images, rule=rule, min_confidence=floor)))
    if levels >= MIN_LEVELS:  # hard labels get no estimate (see MIN_LEVELS)
        st = SelfTest(images, rule)
        out.estimate = st.of(out.decisions, floor)
        out.check = checked(st, planted, missing)
        out.p_misfiled = st.p_misfiled() if out.check.vouched else None
    return out


def _plan_doc(
    ws: Workspace,
    rid: str,
    settings: dict[str, Any],
    outcome: _Outcome,
    moves: list[Move],
    totals: dict[str, int],
    matches: Sequence[MatchResult],
    images: Sequence[ImageVotes],
    warnings: list[str],
    review_budget: int,
) -> dict[str, Any]:
    """The plan document (``cleaner.plan.v1``) as :func:`separate` writes it."""
    choice = outcome.choice
    plan_path = plans_file.plan_path(ws, rid)
    move_ds = [d for d in outcome.decisions if d.action == MOVE]
    review_list = _review_list(outcome.decisions, outcome.p_misfiled, review_budget)
    by_path = {d.path: d for d in outcome.decisions}
    review = [by_path[r.path] for r in review_list.listed]
    return {
        "format": PLAN_FORMAT,
        "run_id": rid,
        "created": _now(),
        "root": str(ws.root),
        "rule": settings["rule"],
        "min_confidence": settings["min_confidence"],
        "target_precision": settings["target_precision"],
        "threshold": settings["min_confidence"] if choice is None else choice.threshold,
        "estimate": _estimate_doc(outcome.estimate, choice, outcome.check),
        "max_fraction": settings["max_fraction"],
        "prediction_files": [m.file.name for m in matches],
        "predictions": [{**m.summary(), "model": m.file.model} for m in matches],
        "counts": {
            "files": totals,
            "covered": len(images),
            "moves": {
                f"{a}->{b}": sum(1 for d in move_ds if d.from_label == a)
                for a, b in ((Label.REAL, Label.FAKE), (Label.FAKE, Label.REAL))
            },
            "review": len(review),
            "review_candidates": len(review_list.order),
        },
        "review_budget": review_list.summary(),
        "guard": _guard(move_ds, totals, settings["max_fraction"], plan_path),
        "warnings": warnings,
        "applied": False,
        "moves": [_decision_record(d, mv.dst) for d, mv in zip(move_ds, moves, strict=True)],
        "review": [
            _decision_record(d, None) | _rank_fields(r, k)
            for k, (d, r) in enumerate(zip(review, review_list.listed, strict=True), start=1)
        ],
        "review_below_budget": [
            {"path": r.path} | _rank_fields(r, k)
            for k, r in enumerate(review_list.below, start=len(review) + 1)
        ],
    }


def _review_list(
    decisions: Sequence[Decision], p_mis: dict[str, float] | None, budget: int
) -> ReviewList:
    """The review candidates ranked by their probability of being misfiled (:mod:`cleaner.
    review`), with the misfiled files expected among the rest (neither moved nor candidates)."""
    cands = [
        (
            d.path,
            [e.prob_fake if d.from_label == Label.REAL else 1 - e.prob_fake for e in d.evidence],
        )
        for d in decisions
        if d.action == REVIEW
    ]
    rest = None
    if p_mis is not None:
        rest = sum(p_mis[d.path] for d in decisions if d.action not in (MOVE, REVIEW))
    return review_rank(cands, p_mis, budget, expected_unlisted=rest)


def _rank_fields(r: Ranked, k: int) -> dict[str, Any]:
    p = None if r.p_misfiled is None else round(r.p_misfiled, 4)
    return {"rank": k, "p_misfiled": p}


MIN_LEVELS = 20
"""Fewer distinct probability tuples than this and the estimate is not attempted: a noise
model cannot tell label noise from a flat calibration on two or three values."""


def check_budget(budget: int) -> None:
    """A review budget is a number of files, 0 or more."""
    if budget < 0:
        raise CleanerError(
            f"--review-budget {budget}: give the number of files to list for review (0 or "
            f"more; default {DEFAULT_REVIEW_BUDGET})"
        )


def _floor(min_confidence: float | None, target_precision: float) -> float:
    """The rule's threshold (fixed) or the lowest one tried (with a target precision)."""
    if min_confidence is not None:
        return min_confidence
    return DEFAULT_FLOOR if target_precision else DEFAULT_MIN_CONFIDENCE


def _estimate_doc(
    est: MoveEstimate | None, choice: Choice | None, chk: Check | None
) -> dict[str, Any]:
    """The plan's ``estimate`` (:mod:`cleaner.noise`): what the self-test expects of the plan's
    moves, with a target precision also the model and every threshold tried, and the check of
    the estimate (:mod:`cleaner.estimate_check`). When no threshold reaches the target nothing
    moves: the estimate is of those zero moves. When the check does not vouch for the model,
    no precision is estimated (null); the model's own figure is kept as ``unchecked_precision``."""
    if est is None and choice is None:
        return {}
    if est is None and choice is not None:  # nothing moves; the noise is still estimated
        noise = choice.tried[0].estimate.noise_rate if choice.tried else 0.0
        est = MoveEstimate(0, None, 0.0, 0.0, noise)
    assert est is not None
    vouched = chk is None or chk.vouched
    doc: dict[str, Any] = {
        k: v for k, v in _vouched(est.as_dict(), vouched).items() if k != "moves"
    }
    if chk is not None:
        doc["check"] = chk.as_dict()
    if choice is not None:
        doc["model"] = choice.model.as_dict()
        doc["noise_by_folder"] = {
            "real_images": round(choice.noise[False], 4),
            "fake_images": round(choice.noise[True], 4),
        }
        doc["reached"] = choice.threshold is not None
        doc["thresholds"] = [
            {"threshold": t.threshold, **_vouched(t.estimate.as_dict(), vouched)}
            for t in choice.tried
        ]
    return doc


def _vouched(d: dict[str, Any], vouched: bool) -> dict[str, Any]:
    """An estimate's figures as the plan states them: unchanged when the check vouched for
    the model; otherwise no precision, recall or wrong moves (the model's precision kept as
    ``unchecked_precision``)."""
    if vouched:
        return d
    return d | {
        "estimated_precision": None,
        "estimated_recall": None,
        "expected_wrong_moves": None,
        "unchecked_precision": d["estimated_precision"],
    }


def planted_run(
    images: Sequence[ImageVotes], matches: Sequence[MatchResult]
) -> tuple[PlantedRun | None, str]:
    """Every covered image's planted run from its files (:mod:`cleaner.models.planted`), or
    None and why there is none: a file without one, or files that swapped different images."""
    by_name = {m.file.name: m for m in matches}
    probs: list[tuple[float, ...]] = []
    swapped: list[bool] = []
    for im in images:
        runs = [by_name[e.file].planted.get(im.path) for e in im.evidence]
        for e, r in zip(im.evidence, runs, strict=True):
            if r is None:
                return None, (
                    f"{e.file} has no planted run for {im.path}: write it with this version's "
                    "`cleaner predict` (its planted run), or use --target-precision 0"
                )
        flags = {bool(r[1]) for r in runs if r is not None}
        if len(flags) > 1:
            return None, (
                f"the predictions files' planted runs swapped {im.path} in one and not in "
                "another: predict them again with the same version of cleaner"
            )
        probs.append(tuple(r[0] for r in runs if r is not None))
        swapped.append(flags.pop() if flags else False)
    return PlantedRun(probs, np.array(swapped, bool)), ""


def _now() -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_plan(ws: Workspace, plan: dict[str, Any]) -> Path:
    """Write a plan atomically to ``R/.cleaner/plans/<run-id>.json``."""
    return plans_file.write(ws, plan)


def separate(
    ws: Workspace | str | os.PathLike[str],
    prediction_files: Sequence[str | os.PathLike[str]],
    *,
    rule: str = DEFAULT_RULE,
    min_confidence: float | None = None,
    max_fraction: float = DEFAULT_MAX_FRACTION,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    review_budget: int = DEFAULT_REVIEW_BUDGET,
    apply: bool = False,
    progress: bool | None = None,
) -> SeparateResult:
    """`cleaner separate`: propose the plan as a :class:`~cleaner.moves.MovePlan`; the move
    executor writes it and, with ``apply``, checks the guard and moves.

    With ``apply`` the whole command holds the ROOT lock and first recovers any run a crash
    left unfinished (before the plan is built from the files); a dry run touches nothing but
    ``R/.cleaner/`` (it does not recover either, it says a recovery is pending).
    """
    # a bad flag is answered before the dataset is read
    check_params(rule, _floor(min_confidence, target_precision))
    check_target(target_precision)
    check_budget(review_budget)
    ws = Workspace.of(ws)
    with writing(ws) if apply else contextlib.nullcontext():
        plan, matches, warnings, moves = build_plan(
            ws,
            prediction_files,
            rule=rule,
            min_confidence=min_confidence,
            max_fraction=max_fraction,
            target_precision=target_precision,
            review_budget=review_budget,
            progress=progress,
        )
        if not apply and pending_recovery(ws):
            warnings.append(
                "a run was interrupted (crash); the next --apply or `cleaner undo` recovers it"
            )
        proposal = MovePlan(
            "separate",
            list(moves),
            review=plan["review"],
            guard=plan["guard"],
            document=plan,
            write=lambda doc: write_plan(ws, doc),
            record=_record_run,
            run_id=plan["run_id"],
            journal={"plan": plans_file.plan_relpath(plans_file.plan_path(ws, plan["run_id"]))},
        )
        result = SeparateResult(plan, plans_file.plan_path(ws, plan["run_id"]), matches, warnings)
        result.outcome = execute(ws, proposal, apply=apply, progress=progress)
        if result.outcome.document_path is not None:
            result.plan_path = result.outcome.document_path
        return result


def _record_run(plan: dict[str, Any], run: AppliedRun) -> None:
    """Patch the plan with what the run did: each move's actual destination, whether it
    moved and why not, and the journal it is recorded in."""
    by_src = results_by_source(run)
    for rec in plan["moves"]:
        r = by_src.get(rec["path"])
        rec["dst"] = r.dst if r is not None and r.dst else rec["dst"]
        rec["moved"] = r is not None and r.status == "moved"
        if r is not None and r.status != "moved":
            rec["why_not"] = r.why
    plan["applied"] = bool(plan["moves"])
    plan["journal"] = run_relpath(plan["run_id"]) if plan["moves"] else None


def score_plan(plan: dict[str, Any], ground_truth: dict[str, Any]) -> dict[str, Any]:
    """Precision and recall of a plan's moves against a demo ``ground_truth.json`` (paths
    relative to the same ROOT): a move is right when the image is a listed label error and the
    move goes to its true label."""
    truth = {str(e["path"]): str(e["true_label"]) for e in ground_truth.get("label_errors", [])}
    moves = plan.get("moves", [])
    right = sum(1 for m in moves if truth.get(m["path"]) == m["to_label"])
    n = len(moves)
    return {
        "moves": n,
        "right": right,
        "label_errors": len(truth),
        "precision": right / n if n else None,
        "recall": right / len(truth) if truth else None,
        "review": len(plan.get("review", [])),
    }


def undo(
    ws: Workspace | str | os.PathLike[str],
    run_id: str | None = None,
    *,
    progress: bool | None = None,
) -> UndoResult:
    """`cleaner undo`: :func:`cleaner.journal.undo`, then mark the run's plan (when the run was
    a ``separate --apply``) with ``undone``, so readers of plans (report, evaluate) know its
    moves no longer stand."""
    res = journal_undo(ws, run_id, progress=progress)
    path = plans_file.plan_path(ws, res.undone_run)
    if path.is_file():
        try:
            plan = plans_file.read_plan(path)
        except CleanerError:
            return res
        if plan.format != PLAN_FORMAT:
            return res
        undone = {
            "by": res.run_id,
            "time": _now(),
            "restored": len(res.restored),
            "left": [{"path": r.src, "why": r.why} for r in res.left],
        }
        plans_file.write(ws, plan.with_extra(undone=undone))
    return res
