"""``R/.cleaner/plans/<run-id>.json``: the plans ``cleaner separate`` writes (``cleaner.plan.v1``)
and the review decisions ``cleaner serve`` takes on their items (``R/.cleaner/review/``).

Two readings of one file: :func:`read_doc` for the stage that wrote it (the whole document,
checked to be a plan, to mark it applied or undone), and :func:`read_plan` for the readers (the
report, the review queue, evaluate): typed items with stable ids, tolerant of files that are
older or richer than expected (every key is kept in ``raw``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleaner.atomic import atomic_write_text
from cleaner.choices import Label
from cleaner.dataset import STATE_DIR
from cleaner.errors import CleanerError
from cleaner.state import load_json, state_path

PLAN_FORMAT = "cleaner.plan.v1"
"""The format version, written as each plan's ``format``."""
PLANS_DIR = "plans"
REVIEW_DIR = "review"
"""``R/.cleaner/review/<run-id>.json``: decisions taken in ``cleaner serve`` on a plan's items."""
FIX = "rerun the command that wrote it"


def plans_dir(root: str | os.PathLike[str]) -> Path:
    return state_path(root, PLANS_DIR)


def plan_path(root: str | os.PathLike[str], run_id: str) -> Path:
    return plans_dir(root) / f"{run_id}.json"


def plan_relpath(path: Path) -> str:
    """A plan file's path relative to ROOT (as the journal records it)."""
    return f"{STATE_DIR}/{PLANS_DIR}/{path.name}"


def write(root: str | os.PathLike[str], plan: Mapping[str, Any]) -> Path:
    """Write a plan atomically to ``R/.cleaner/plans/<run-id>.json``."""
    path = plan_path(root, str(plan["run_id"]))
    atomic_write_text(path, json.dumps(plan, indent=1, ensure_ascii=False) + "\n", is_json=True)
    return path


def read_doc(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A plan file as its writer wrote it, checked to be a plan."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CleanerError(f"plan {p} cannot be read ({e}); run `cleaner separate` again") from None
    if not isinstance(doc, dict) or doc.get("format") != PLAN_FORMAT:
        raise CleanerError(f"{p} is not a {PLAN_FORMAT} plan; run `cleaner separate` again")
    return doc


def applied_docs(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Applied plans as written, in the order they were made (files that do not parse are
    passed over)."""
    d = plans_dir(root)
    plans: list[dict[str, Any]] = []
    for p in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("applied"):
            plans.append(doc)
    plans.sort(key=lambda d: (str(d.get("created", "")), str(d.get("run_id", ""))))
    return plans


@dataclass(frozen=True)
class PlanItem:
    """One proposed move or review item of a plan, with a stable id the browser may send back."""

    item_id: str
    """``m<i>`` for the i-th move, ``r<i>`` for the i-th review item: never a path."""
    kind: str
    """``move`` or ``review``."""
    path: str
    sha256: str
    from_label: str
    to_label: str
    dst: str
    evidence: tuple[tuple[str, float], ...]
    """(prediction file, prob_fake) for every file that covered the image."""
    why: str = ""
    confidence: float = 0.0
    """Mean probability of ``to_label`` over the evidence (or the plan's own figure)."""
    moved: bool | None = None
    """After ``separate --apply``: whether this move happened (None before, or unknown)."""
    rank: int | None = None
    """A review item's place in the plan's review order (1: likeliest misfiled), when the plan
    ranks its review list (``separate --review-budget``)."""


@dataclass
class Plan:
    """A ``cleaner.plan.v1`` file, read leniently."""

    path: Path
    run_id: str
    created: str
    rule: str
    min_confidence: float | None
    prediction_files: list[str]
    applied: bool
    moves: list[PlanItem] = field(default_factory=list)
    review: list[PlanItem] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    guard_why: str = ""
    """Why ``--apply`` refused the plan (the max-fraction guard), when it did."""

    def item(self, item_id: str) -> PlanItem | None:
        for it in (*self.moves, *self.review):
            if it.item_id == item_id:
                return it
        return None


def _evidence(raw: Any) -> tuple[tuple[str, float], ...]:
    out: list[tuple[str, float]] = []
    if isinstance(raw, Mapping):  # {"file": prob}
        raw = [{"file": k, "prob_fake": v} for k, v in raw.items()]
    if isinstance(raw, list):
        for e in raw:
            if not isinstance(e, Mapping):
                continue
            p = e.get("prob_fake")
            if isinstance(p, (int, float)):
                out.append((str(e.get("file", e.get("name", "?"))), float(p)))
    return tuple(out)


def confidence_of(to_label: str, evidence: Iterable[tuple[str, float]]) -> float:
    """Mean probability of ``to_label`` over the evidence (0 without evidence)."""
    probs = [p if to_label == Label.FAKE else 1.0 - p for _, p in evidence]
    return sum(probs) / len(probs) if probs else 0.0


def _item(kind: str, i: int, raw: Mapping[str, Any]) -> PlanItem:
    ev = _evidence(raw.get("evidence"))
    to_label = str(raw.get("to_label", ""))
    conf = raw.get("confidence", raw.get("mean_prob_other"))
    return PlanItem(
        item_id=f"{kind[0]}{i}",
        kind=kind,
        path=str(raw.get("path", "")),
        sha256=str(raw.get("sha256") or ""),
        from_label=str(raw.get("from_label", "")),
        to_label=to_label,
        dst=str(raw.get("dst") or ""),
        evidence=ev,
        why=str(raw.get("why") or raw.get("why_not") or raw.get("reason") or ""),
        confidence=float(conf) if isinstance(conf, (int, float)) else confidence_of(to_label, ev),
        moved=raw.get("moved") if isinstance(raw.get("moved"), bool) else None,
        rank=rank
        if isinstance(rank := raw.get("rank"), int) and not isinstance(rank, bool)
        else None,
    )


def review_order(items: Iterable[PlanItem]) -> list[PlanItem]:
    """Items in the order a person should look at them: the plan's rank (likeliest misfiled
    first, :mod:`cleaner.review`) where it has one, then (older plans) the highest mean
    probability of the other class; the report and ``cleaner serve``'s queue both use it."""
    return sorted(
        items,
        key=lambda i: (i.rank is None, i.rank if i.rank is not None else 0, -i.confidence, i.path),
    )


def read_plan(path: Path) -> Plan:
    """One plan file. Raises :class:`CleanerError` when it is not a plan."""
    doc = load_json(path, fix=FIX)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("moves", []), list):
        raise CleanerError(f"{path} is not a {PLAN_FORMAT} file; rerun `cleaner separate`")
    files = doc.get("prediction_files", doc.get("predictions", doc.get("files", [])))
    if isinstance(files, Mapping):
        files = list(files)
    mc = doc.get("min_confidence")
    guard = doc.get("guard")
    return Plan(
        path=path,
        run_id=str(doc.get("run_id") or path.stem),
        created=str(doc.get("created", "")),
        rule=str(doc.get("rule", "")),
        min_confidence=float(mc) if isinstance(mc, (int, float)) else None,
        prediction_files=[
            str(f.get("file") or f.get("path") or f.get("name") or "?")
            if isinstance(f, Mapping)
            else str(f)
            for f in (files if isinstance(files, list) else [])
        ],
        applied=bool(doc.get("applied", False)),
        moves=[
            _item("move", i, m)
            for i, m in enumerate(doc.get("moves") or [])
            if isinstance(m, Mapping)
        ],
        review=[
            _item("review", i, m)
            for i, m in enumerate(doc.get("review") or [])
            if isinstance(m, Mapping)
        ],
        raw=dict(doc),
        guard_why=str(guard.get("why") or "") if isinstance(guard, Mapping) else "",
    )


def plan_files(root: Path) -> list[Path]:
    """Plan files, oldest first (by ``created`` order of names, then mtime)."""
    d = plans_dir(root)
    if not d.is_dir():
        return []
    files = [p for p in d.glob("*.json") if p.is_file() and not p.name.startswith(".")]
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))


def list_plans(root: Path, problems: list[str] | None = None) -> list[Plan]:
    """Every plan, oldest first; the last is the latest. With ``problems``, a plan file that
    does not parse is skipped and its error appended there (else it raises)."""
    plans = []
    for path in plan_files(root):
        try:
            plans.append(read_plan(path))
        except CleanerError as e:
            if problems is None:
                raise
            problems.append(str(e))
    plans.sort(key=lambda p: (p.created, p.path.stat().st_mtime_ns if p.path.exists() else 0))
    return plans


def latest_plan(root: Path) -> Plan | None:
    plans = list_plans(root)
    return plans[-1] if plans else None


def find_plan(root: Path, run_id: str) -> Plan | None:
    """The plan with ``run_id`` (plan files that do not parse are passed over)."""
    for p in list_plans(root, []):
        if p.run_id == run_id:
            return p
    return None


# --------------------------------------------------------------------------- review decisions


def decisions_path(root: Path, run_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return state_path(root, REVIEW_DIR, f"{safe}.json")


def read_decisions(root: Path, run_id: str) -> dict[str, dict[str, Any]]:
    """item id -> {"decision": "accepted"|"rejected", "at", "journal_run", "dst"}."""
    p = decisions_path(root, run_id)
    if not p.is_file():
        return {}
    doc = load_json(p, fix=FIX)
    items = doc.get("items", {}) if isinstance(doc, Mapping) else {}
    return {str(k): dict(v) for k, v in items.items() if isinstance(v, Mapping)}


def write_decisions(root: Path, run_id: str, items: Mapping[str, Mapping[str, Any]]) -> Path:
    """Atomically rewrite the decisions file of a plan."""
    p = decisions_path(root, run_id)
    atomic_write_text(
        p, json.dumps({"run_id": run_id, "items": items}, indent=1, sort_keys=True), is_json=True
    )
    return p
