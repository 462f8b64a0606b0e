"""``R/.cleaner/plans/<run-id>.json``: the plans ``cleaner separate`` writes (``cleaner.plan.v1``);
the review decisions ``cleaner serve`` takes on their items are :mod:`cleaner.state.review`'s.

One typed reading, :class:`Plan` (its :class:`PlanItem` moves and review items, with stable
ids), used by the writer (:func:`write` checks and writes a plan through it) and by every reader
(``cleaner undo`` marking a plan undone, the report, the review queue, evaluate):
:func:`read_plan`, tolerant of files that are older than expected; every key it does not type is
kept in ``extra`` and written back by :meth:`Plan.to_json`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleaner.atomic import atomic_write_text
from cleaner.choices import Label
from cleaner.dataset import STATE_DIR, state_path
from cleaner.errors import CleanerError
from cleaner.state import WsLike, load_json

PLAN_FORMAT = "cleaner.plan.v1"
"""The format version, written as each plan's ``format``."""
PLANS_DIR = "plans"
FIX = "rerun the command that wrote it"


def plans_dir(ws: WsLike) -> Path:
    return state_path(ws, PLANS_DIR)


def plan_path(ws: WsLike, run_id: str) -> Path:
    return plans_dir(ws) / f"{run_id}.json"


def plan_relpath(path: Path) -> str:
    """A plan file's path relative to ROOT (as the journal records it)."""
    return f"{STATE_DIR}/{PLANS_DIR}/{path.name}"


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
    """A review item's reason (``why``), or why a move did not happen (``why_not``)."""
    confidence: float = 0.0
    """Mean probability of ``to_label`` over the evidence (the plan's ``mean_prob_other``)."""
    moved: bool | None = None
    """After ``separate --apply``: whether this move happened (None before, or unknown)."""
    rank: int | None = None
    """A review item's place in the plan's review order (1: likeliest misfiled), when the plan
    ranks its review list (``separate --review-budget``)."""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """The item's other keys (``p_misfiled``...), as written."""

    OWN = ("path", "sha256", "from_label", "to_label", "dst", "mean_prob_other", "confidence",
           "evidence", "why", "why_not", "reason", "moved", "rank")  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """The item as the plan file holds it."""
        d: dict[str, Any] = {
            "path": self.path,
            "sha256": self.sha256,
            "from_label": self.from_label,
            "to_label": self.to_label,
            "dst": self.dst or None,
            "mean_prob_other": self.confidence,
            "evidence": [{"file": f, "prob_fake": p} for f, p in self.evidence],
        }
        if self.why:
            d["why" if self.kind == "review" else "why_not"] = self.why
        if self.rank is not None:
            d["rank"] = self.rank
        if self.moved is not None:
            d["moved"] = self.moved
        return {**d, **self.extra}


@dataclass(frozen=True)
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
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """Every other key (``root``, ``estimate``, ``guard``, ``counts``, ``journal``,
    ``undone``...), as written."""
    format: str = PLAN_FORMAT
    """As written (an older file may have none: ``""``)."""

    OWN = ("format", "run_id", "created", "rule", "min_confidence", "prediction_files",
           "applied", "moves", "review")  # fmt: skip

    @property
    def guard_why(self) -> str:
        """Why ``--apply`` refused the plan (the max-fraction guard), when it did."""
        guard = self.extra.get("guard")
        return str(guard.get("why") or "") if isinstance(guard, Mapping) else ""

    @property
    def undone(self) -> bool:
        """``cleaner undo`` reversed its moves (they no longer stand)."""
        return bool(self.extra.get("undone"))

    def item(self, item_id: str) -> PlanItem | None:
        for it in (*self.moves, *self.review):
            if it.item_id == item_id:
                return it
        return None

    def with_extra(self, **keys: Any) -> Plan:
        """The same plan with ``keys`` set among its other keys (e.g. ``undone``)."""
        return dataclasses.replace(self, extra={**self.extra, **keys})

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], path: Path) -> Plan:
        """Raises :class:`CleanerError` naming ``path`` when ``doc`` is not a plan."""
        if not isinstance(doc, Mapping) or not isinstance(doc.get("moves", []), list):
            raise CleanerError(f"{path} is not a {PLAN_FORMAT} file; rerun `cleaner separate`")
        return _plan(doc, path)

    def to_json(self) -> dict[str, Any]:
        """The plan file's document."""
        return {
            "format": self.format or PLAN_FORMAT,
            "run_id": self.run_id,
            "created": self.created,
            "rule": self.rule,
            "min_confidence": self.min_confidence,
            "prediction_files": list(self.prediction_files),
            "applied": self.applied,
            **self.extra,
            "moves": [m.to_json() for m in self.moves],
            "review": [m.to_json() for m in self.review],
        }


def write(ws: WsLike, plan: Plan | Mapping[str, Any]) -> Path:
    """Write a plan (or a writer's document, read as one) atomically to
    ``R/.cleaner/plans/<run-id>.json``."""
    if not isinstance(plan, Plan):
        plan = Plan.from_json(plan, plan_path(ws, str(plan["run_id"])))
    path = plan_path(ws, plan.run_id)
    doc = plan.to_json()
    atomic_write_text(path, json.dumps(doc, indent=1, ensure_ascii=False) + "\n", is_json=True)
    return path


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
        extra={k: v for k, v in raw.items() if k not in PlanItem.OWN},
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
    return Plan.from_json(load_json(path, fix=FIX), path)


def _plan(doc: Mapping[str, Any], path: Path) -> Plan:
    files = doc.get("prediction_files", doc.get("predictions", doc.get("files", [])))
    if isinstance(files, Mapping):
        files = list(files)
    mc = doc.get("min_confidence")
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
        extra={k: v for k, v in doc.items() if k not in Plan.OWN},
        format=str(doc.get("format") or ""),
    )


def plan_files(ws: WsLike) -> list[Path]:
    """Plan files, oldest first (by ``created`` order of names, then mtime)."""
    d = plans_dir(ws)
    if not d.is_dir():
        return []
    files = [p for p in d.glob("*.json") if p.is_file() and not p.name.startswith(".")]
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))


def list_plans(ws: WsLike, problems: list[str] | None = None) -> list[Plan]:
    """Every plan, oldest first; the last is the latest. With ``problems``, a plan file that
    does not parse is skipped and its error appended there (else it raises)."""
    plans = []
    for path in plan_files(ws):
        try:
            plans.append(read_plan(path))
        except CleanerError as e:
            if problems is None:
                raise
            problems.append(str(e))
    plans.sort(key=lambda p: (p.created, p.path.stat().st_mtime_ns if p.path.exists() else 0))
    return plans


def latest_plan(ws: WsLike) -> Plan | None:
    plans = list_plans(ws)
    return plans[-1] if plans else None


def find_plan(ws: WsLike, run_id: str) -> Plan | None:
    """The plan with ``run_id`` (plan files that do not parse are passed over)."""
    for p in list_plans(ws, []):
        if p.run_id == run_id:
            return p
    return None


def applied_plans(ws: WsLike) -> list[Plan]:
    """Applied plans in the order they were made, an undone run's plan left out (its moves no
    longer stand); files that do not parse are passed over."""
    plans = [p for p in list_plans(ws, []) if p.applied and not p.undone]
    plans.sort(key=lambda p: (p.created, p.run_id))
    return plans
