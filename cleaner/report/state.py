"""Read what the other stages left under ``R/.cleaner/`` (and beside the model) for the report
and the review queue, tolerating files that are missing, older or richer than expected.

Every reader returns plain data or None; none of them raises for a missing file, because a
missing state file is a normal step of the pipeline (the report then says which command makes
it). A file that exists but does not parse raises :class:`~cleaner.errors.CleanerError` naming it.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleaner.atomic import atomic_write_text
from cleaner.dataset import QUARANTINE_DIR, STATE_DIR, state_path
from cleaner.errors import CleanerError

PLAN_FORMAT = "cleaner.plan.v1"
PLANS_DIR = "plans"
DUPLICATES_NAME = "duplicates.json"
SPLIT_NAME = "split.csv"
REVIEW_DIR = "review"
"""``R/.cleaner/review/<run-id>.json``: decisions taken in ``cleaner serve`` on a plan's items."""


def state_dir(root: Path) -> Path:
    return root / STATE_DIR


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CleanerError(
            f"{path} does not parse as JSON ({e}); rerun the command that wrote it"
        ) from e


# --------------------------------------------------------------------------- plans


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
    probs = [p if to_label == "fake" else 1.0 - p for _, p in evidence]
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
    )


def read_plan(path: Path) -> Plan:
    """One plan file. Raises :class:`CleanerError` when it is not a plan."""
    doc = _load_json(path)
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
    d = state_dir(root) / PLANS_DIR
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
    doc = _load_json(p)
    items = doc.get("items", {}) if isinstance(doc, Mapping) else {}
    return {str(k): dict(v) for k, v in items.items() if isinstance(v, Mapping)}


def write_decisions(root: Path, run_id: str, items: Mapping[str, Mapping[str, Any]]) -> Path:
    """Atomically rewrite the decisions file of a plan."""
    p = decisions_path(root, run_id)
    atomic_write_text(p, json.dumps({"run_id": run_id, "items": items}, indent=1, sort_keys=True))
    return p


# --------------------------------------------------------------------------- duplicates, split


def read_duplicates(root: Path) -> dict[str, Any] | None:
    p = state_dir(root) / DUPLICATES_NAME
    if not p.is_file():
        return None
    doc = _load_json(p)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("groups", []), list):
        raise CleanerError(f"{p} has no 'groups' list; rerun `cleaner dedupe`")
    return dict(doc)


def read_split(root: Path) -> dict[str, str] | None:
    """path and sha256 -> split (train|val|test), from ``split.csv``; None when absent."""
    p = state_dir(root) / SPLIT_NAME
    if not p.is_file():
        return None
    out: dict[str, str] = {}
    try:
        with open(p, newline="", encoding="utf-8") as f:
            for rec in csv.DictReader(f):
                s = rec.get("split") or ""
                if rec.get("path"):
                    out[rec["path"]] = s
                if rec.get("sha256"):
                    out.setdefault("sha256:" + rec["sha256"], s)
    except (OSError, csv.Error) as e:
        raise CleanerError(f"{p} does not parse ({e}); rerun `cleaner train`") from e
    return out


# --------------------------------------------------------------------------- quarantine


def quarantined_files(root: Path) -> list[tuple[str, str]]:
    """(ROOT-relative path, reason folder) for every file under ``R/quarantine/``."""
    q = root / QUARANTINE_DIR
    out: list[tuple[str, str]] = []
    if not q.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(q):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            parts = rel.split("/")
            out.append((rel, parts[1] if len(parts) > 2 else "unsorted"))
    return out


def journal_moves(root: Path) -> dict[str, dict[str, str]]:
    """Where each journaled move put a file: dst -> {"src", "sha256", "reason", "run",
    "command"}, the latest move to each dst winning (read-only; the journal's lines are
    ``{"op": "begin"|"intent"|"done"|...}`` JSON, see :mod:`cleaner.journal`)."""
    from cleaner.journal import journal_dir

    out: dict[str, dict[str, str]] = {}
    d = journal_dir(root)
    if not d.is_dir():
        return out
    for path in sorted(d.glob("*.jsonl"), key=lambda p: p.stat().st_mtime_ns):
        intents: dict[int, dict[str, Any]] = {}
        run, command = path.stem, ""
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a torn last line after a crash
            if not isinstance(rec, dict):
                continue
            op = rec.get("op")
            if op == "begin":
                run, command = str(rec.get("run", run)), str(rec.get("command", ""))
            elif op == "intent" and isinstance(rec.get("i"), int):
                intents[rec["i"]] = rec
            elif op == "done" and rec.get("i") in intents:
                it = intents[rec["i"]]
                out[str(it.get("dst", ""))] = {
                    "src": str(it.get("src", "")),
                    "sha256": str(it.get("sha256") or ""),
                    "reason": str(it.get("reason") or ""),
                    "run": run,
                    "command": command,
                }
    return out


# --------------------------------------------------------------------------- training metrics


def find_metrics(root: Path, explicit: Path | None) -> Path | None:
    """The metrics file to show: ``explicit``, else the newest of: the one a pointer file under
    ``R/.cleaner/`` names, any ``*.metrics.json`` under ``R/.cleaner/``, and any
    ``models/*.metrics.json`` (where ``make retrain`` writes) whose training used this ROOT's
    split file. None when there is none."""
    if explicit is not None:
        if not explicit.is_file():
            raise CleanerError(
                f"metrics file {explicit} does not exist; pass the M.metrics.json that "
                "`cleaner train --out M.keras` wrote beside M.keras"
            )
        return explicit
    candidates: list[Path] = []
    sd = state_dir(root)
    for pointer in ("last_training.json", "train.json", "training.json"):
        p = sd / pointer
        if p.is_file():
            try:
                doc = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            for key in ("metrics", "metrics_path", "metrics_file"):
                v = doc.get(key) if isinstance(doc, Mapping) else None
                if isinstance(v, str) and Path(v).is_file():
                    candidates.append(Path(v))
    if sd.is_dir():
        candidates += [p for p in sd.rglob("*.metrics.json") if p.is_file()]
    # `make retrain` writes models/<root>.keras + .metrics.json under the working folder; such a
    # file is this ROOT's when its split file (recorded by `cleaner train`) is this ROOT's
    split_csv = os.path.realpath(sd / SPLIT_NAME)
    for p in sorted(Path("models").glob("*.metrics.json")) if Path("models").is_dir() else []:
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        split = doc.get("split") if isinstance(doc, Mapping) else None
        f = split.get("file") if isinstance(split, Mapping) else None
        if isinstance(f, str) and os.path.realpath(f) == split_csv:
            candidates.append(p)
    if not candidates:
        return None
    return max(candidates, key=lambda p: p.stat().st_mtime_ns)


def read_metrics(path: Path) -> dict[str, Any]:
    doc = _load_json(path)
    if not isinstance(doc, Mapping):
        raise CleanerError(f"{path} is not a metrics object; rerun `cleaner train`")
    return dict(doc)


def metrics_plots(path: Path, metrics: Mapping[str, Any]) -> dict[str, Path]:
    """name -> PNG beside the metrics file: the paths it lists under ``plots``, else every
    ``<stem>*.png`` beside it (``M.metrics.json`` -> ``M*.png``)."""
    out: dict[str, Path] = {}
    listed = metrics.get("plots")
    if isinstance(listed, Mapping):
        for name, rel in listed.items():
            p = Path(str(rel))
            p = p if p.is_absolute() else path.parent / p
            if p.is_file():
                out[str(name)] = p
    elif isinstance(listed, list):
        for rel in listed:
            p = Path(str(rel))
            p = p if p.is_absolute() else path.parent / p
            if p.is_file():
                stem = path.name.removesuffix(".metrics.json")
                out[p.stem.removeprefix(stem).strip("._-") or p.stem] = p
    if not out:
        stem = path.name.removesuffix(".metrics.json")
        for p in sorted(path.parent.glob(f"{stem}*.png")):
            out[p.stem.removeprefix(stem).strip("._-") or p.stem] = p
    return out
