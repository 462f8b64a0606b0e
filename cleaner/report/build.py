"""``cleaner report``: one self-contained HTML page about a dataset's problems.

The page is built from the state files the other stages wrote (manifest, plans, review
decisions, duplicates, split, quarantine, training metrics); each missing one leaves its section
in place with the command that produces it. Lists (moves, duplicate groups, files) travel as JSON
inside the page and are shown in pages of ``page_size`` by a small inline script, with
``loading="lazy"`` thumbnails, so a 50,000-image dataset gives a page a browser opens at once.
Nothing is loaded from the network: the CSS and script are inline, thumbnails and plots sit in
``<out stem>_files/`` beside the page.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from cleaner.atomic import atomic_write_text
from cleaner.dataset import LABELS, QUARANTINE_DIR, check_relpath, open_dataset
from cleaner.errors import CleanerError, PathEscapeError
from cleaner.hashing import file_sha256
from cleaner.report import state
from cleaner.report.thumbs import ThumbJob, make_thumbs, thumb_dir, thumb_name

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_PAGE_SIZE = 48
HEADLINE = ("accuracy", "precision", "recall", "f1", "roc_auc", "backbone", "image_size")
"""The training figures shown first (the rest are one click away)."""

SECTIONS: tuple[tuple[str, str], ...] = (
    ("summary", "Dataset summary"),
    ("moves", "Relabeling: proposed and applied moves"),
    ("review", "Review list"),
    ("duplicates", "Duplicate groups"),
    ("conflicts", "Label conflicts"),
    ("leakage", "Split leakage"),
    ("quarantine", "Quarantined files"),
    ("unreadable", "Unreadable files"),
    ("training", "Last training"),
    ("audit", "Shortcuts and provenance"),
)
"""Section id -> title, in page order (tests and the screenshot script rely on the ids)."""


@dataclass
class ReportResult:
    """What :func:`build_report` wrote and found."""

    out: Path
    files_dir: Path
    counts: dict[str, int] = field(default_factory=dict)
    """section id -> number of items shown."""
    missing: dict[str, str] = field(default_factory=dict)
    """section id -> the command that produces its state file."""
    problems: dict[str, str] = field(default_factory=dict)
    """section id -> a state file that exists but could not be read (shown on the page)."""
    thumbs_made: int = 0
    thumbs_cached: int = 0
    thumbs_failed: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "files_dir": str(self.files_dir),
            "sections": {
                sid: {
                    "items": self.counts.get(sid, 0),
                    "missing": self.missing.get(sid),
                    "problem": self.problems.get(sid),
                }
                for sid, _ in SECTIONS
            },
            "thumbs": {
                "made": self.thumbs_made,
                "cached": self.thumbs_cached,
                "failed": self.thumbs_failed,
            },
        }


# --------------------------------------------------------------------------- thumbnails


class _Thumbs:
    """Collects the images the page shows and turns them into cached thumbnail jobs."""

    def __init__(self, root: Path, files_dir: Path, page_dir: Path, by_sha: dict[str, str]):
        self.root = root
        self.dir = thumb_dir(files_dir)
        self.page_dir = page_dir
        self.by_sha = by_sha
        self.jobs: dict[str, ThumbJob] = {}
        self.refs: list[dict[str, Any]] = []

    def _abs(self, rel: str) -> str | None:
        if not rel:
            return None
        try:
            p = self.root.joinpath(*check_relpath(rel).parts)
        except PathEscapeError:
            return None  # a state file naming a path outside ROOT is never read
        real = os.path.realpath(p)
        if not Path(real).is_relative_to(self.root) or not os.path.isfile(real):
            return None
        return str(p)

    def attach(self, item: dict[str, Any], sha256: str, *paths: str) -> None:
        """Give ``item`` a ``thumb`` URL (relative to the page) for the image with ``sha256``,
        found at one of ``paths`` (ROOT-relative) or wherever the manifest saw those bytes."""
        rels = [p for p in paths if p]
        if sha256 and sha256 in self.by_sha:
            rels.append(self.by_sha[sha256])
        for rel in paths:
            if rel:  # where dedupe --apply puts a copy: quarantine/<reason>/<same path>
                rels += [f"{QUARANTINE_DIR}/{d.name}/{rel}" for d in self._qdirs()]
        cands = tuple(dict.fromkeys(a for a in (self._abs(r) for r in rels) if a))
        if not sha256:
            if not cands:
                item["thumb_error"] = "file not found"
                return
            try:
                sha256 = file_sha256(cands[0])
            except OSError as e:
                item["thumb_error"] = f"cannot read: {e.strerror or e}"
                return
        dst = self.dir / thumb_name(sha256)
        if not dst.exists() and not cands:
            item["thumb_error"] = "file not found (moved or removed since)"
            return
        self.jobs.setdefault(str(dst), ThumbJob(cands, sha256, str(dst)))
        item["thumb"] = Path(os.path.relpath(dst, self.page_dir)).as_posix()
        self.refs.append(item)

    _qcache: list[Path] | None = None

    def _qdirs(self) -> list[Path]:
        if self._qcache is None:
            q = self.root / QUARANTINE_DIR
            self._qcache = sorted(p for p in q.iterdir() if p.is_dir()) if q.is_dir() else []
        return self._qcache

    def make(self, workers: int | None, progress: bool | None) -> tuple[int, int, int]:
        self.dir.mkdir(parents=True, exist_ok=True)
        failures, stats = make_thumbs(list(self.jobs.values()), workers=workers, progress=progress)
        for item in self.refs:
            dst = str(self.page_dir / item["thumb"])
            reason = failures.get(os.path.normpath(dst))
            if reason is not None:
                del item["thumb"]
                item["thumb_error"] = reason
        return stats.made, stats.cached, stats.failed


# --------------------------------------------------------------------------- sections


def _summary(rows: Sequence[Any] | None, quarantined: Sequence[tuple[str, str]]) -> dict[str, Any]:
    if rows is None:
        return {}
    statuses = sorted({r.status for r in rows}, key=lambda s: (s != "ok", s))
    table = []
    for label in LABELS:
        c = Counter(r.status for r in rows if r.label == label)
        table.append(
            {"label": label, "counts": [c.get(s, 0) for s in statuses], "total": sum(c.values())}
        )
    totals = Counter(r.status for r in rows)
    formats = Counter(r.format or "?" for r in rows if r.status == "ok")
    return {
        "statuses": statuses,
        "table": table,
        "totals": [totals.get(s, 0) for s in statuses],
        "total": len(rows),
        "formats": sorted(formats.items(), key=lambda kv: -kv[1]),
        "bytes": sum(r.bytes for r in rows),
        "quarantine": sorted(Counter(reason for _, reason in quarantined).items()),
    }


def _item_json(it: state.PlanItem, status: str) -> dict[str, Any]:
    return {
        "id": it.item_id,
        "path": it.path,
        "sha256": it.sha256,
        "from": it.from_label,
        "to": it.to_label,
        "dst": it.dst,
        "confidence": round(it.confidence, 4),
        "evidence": [[Path(f).name, round(p, 4)] for f, p in it.evidence],
        "why": it.why,
        "state": status,
    }


def _plan_items(
    plan: state.Plan, decisions: Mapping[str, Mapping[str, Any]], th: _Thumbs
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    moves: list[dict[str, Any]] = []
    review: list[dict[str, Any]] = []
    for items, out, default in ((plan.moves, moves, "proposed"), (plan.review, review, "review")):
        for it in sorted(items, key=lambda i: (-i.confidence, i.path)):
            d = decisions.get(it.item_id, {})
            status = str(d.get("decision") or default)
            if it.kind == "move" and plan.applied and not d:
                status = "skipped" if it.moved is False else "applied"
            j = _item_json(it, status)
            th.attach(j, it.sha256, it.path, it.dst, str(d.get("dst", "")))
            out.append(j)
    return moves, review


def _journal_runs(root: Path, last: int = 30) -> list[dict[str, Any]]:
    """The latest journaled runs, newest first, each with what undid it (if anything)."""
    from cleaner.journal import list_runs

    try:
        runs = list_runs(root)
    except (OSError, ValueError, CleanerError):
        return []
    undone_by = {r.undoes: r.run_id for r in runs if r.kind == "undo" and r.undoes}
    return [
        {
            "run_id": r.run_id,
            "kind": r.kind,
            "command": r.command,
            "created": r.created,
            "moved": r.moved,
            "finished": r.finished,
            "undone_by": undone_by.get(r.run_id, ""),
            "undoes": r.undoes or "",
        }
        for r in reversed(runs[-last:])
    ]


def _groups(
    dup: Mapping[str, Any], split: Mapping[str, str] | None, labels: Mapping[str, str], th: _Thumbs
) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for g in dup.get("groups") or []:
        if not isinstance(g, Mapping):
            continue
        kept = str(g.get("kept", ""))
        members = []
        for m in g.get("members") or []:
            if not isinstance(m, Mapping):
                continue
            path = str(m.get("path", ""))
            sha = str(m.get("sha256") or "")
            mj: dict[str, Any] = {
                "path": path,
                "label": str(m.get("label") or labels.get(path, "")),
                "sha256": sha,
                "distance": m.get("distance", ""),
                "kept": path == kept,
            }
            if isinstance(m.get("match"), str) and m.get("match") != "kept":
                mj["match"] = m["match"]  # how dedupe confirmed it: bytes, pixels, phash...
            # dedupe records each member's split (split.csv or train/val/test sub-folders)
            known = m.get("split")
            if isinstance(known, str) and known:
                mj["split"] = known
            elif split is not None:
                mj["split"] = split.get(path) or split.get("sha256:" + sha, "")
            th.attach(mj, sha, path)
            members.append(mj)
        members.sort(
            key=lambda m: (
                not m["kept"],
                m["distance"] if isinstance(m["distance"], (int, float)) else 1e9,
                m["path"],
            )
        )
        splits = sorted({m.get("split", "") for m in members} - {""})
        conflict = bool(g.get("conflict", len({m["label"] for m in members}) > 1))
        groups.append(
            {
                "kept": kept,
                "conflict": conflict,
                "splits": splits,
                "leak": len(splits) > 1,
                "members": members,
            }
        )
    groups.sort(key=lambda g: (not g["conflict"], -len(g["members"]), g["kept"]))
    return groups


def _training(metrics_path: Path, files_dir: Path, page_dir: Path) -> dict[str, Any]:
    m = state.read_metrics(metrics_path)
    scalars: list[tuple[str, str]] = []
    skip = {"confusion_matrix", "confusion_labels", "classification_report", "plots", "versions",
            "history", "phases", "format", "output", "preprocessing"}  # fmt: skip
    if isinstance(m.get("accuracy"), (int, float)):
        skip.add("test")  # its headline figures are repeated at the top level

    def add(prefix: str, obj: Mapping[str, Any]) -> None:
        for k, v in obj.items():
            if k in skip:
                continue
            name = f"{prefix}{k}"
            if isinstance(v, (bool, str)):
                scalars.append((name, str(v)))
            elif isinstance(v, float):
                scalars.append((name, f"{v:.4f}"))
            elif isinstance(v, int):
                scalars.append((name, str(v)))
            elif isinstance(v, Mapping) and not prefix:
                add(f"{k}.", v)

    add("", m)
    cm = m.get("confusion_matrix")
    report = m.get("classification_report")
    for v in m.values():  # nested under "test" or similar
        if isinstance(v, Mapping):
            cm = cm if cm is not None else v.get("confusion_matrix")
            report = report if report is not None else v.get("classification_report")
    raw_classes = m.get("classes")
    test = m.get("test")
    if not isinstance(raw_classes, list) and isinstance(test, Mapping):
        raw_classes = test.get("confusion_labels")
    classes: list[Any] = raw_classes if isinstance(raw_classes, list) else list(LABELS)
    cm_rows = None
    if isinstance(cm, list) and all(isinstance(r, list) for r in cm):
        cm_rows = [
            {"label": str(classes[i]) if i < len(classes) else str(i), "cells": r}
            for i, r in enumerate(cm)
        ]
    plots: list[dict[str, str]] = []
    pdir = files_dir / "training"
    for name, p in state.metrics_plots(metrics_path, m).items():
        pdir.mkdir(parents=True, exist_ok=True)
        dst = pdir / p.name
        shutil.copyfile(p, dst)
        plots.append({"name": name, "src": Path(os.path.relpath(dst, page_dir)).as_posix()})
    plots.sort(
        key=lambda p: (not any(k in p["name"].lower() for k in ("roc", "confusion")), p["name"])
    )
    raw_versions = m.get("versions")
    versions: Mapping[str, Any] = raw_versions if isinstance(raw_versions, Mapping) else {}
    values = dict(scalars)
    headline = [(k, values[k]) for k in HEADLINE if k in values]
    return {
        "path": str(metrics_path),
        "headline": headline,
        "scalars": scalars,
        "classes": [str(c) for c in classes],
        "confusion": cm_rows,
        "report": report if isinstance(report, str) else _report_text(report),
        "plots": plots,
        "versions": sorted((str(k), str(v)) for k, v in versions.items()),
    }


def _audit(
    root: Path, r_arg: str, missing: dict[str, str], problems: dict[str, str]
) -> dict[str, Any] | None:
    """The audit section's data from ``audit.json`` (None: absent or unreadable)."""
    from cleaner.audit.store import read_audit
    from cleaner.report.audit import audit_view

    try:
        doc = read_audit(root)
    except CleanerError as e:
        problems["audit"] = str(e)
        doc = None
    if doc is None:
        missing["audit"] = f"cleaner audit {r_arg}"
        return None
    return audit_view(doc)


def _report_text(report: Any) -> str:
    """sklearn's classification report (text, or its ``output_dict`` form) as aligned text."""
    if not isinstance(report, Mapping) or not report:
        return ""
    cols = ("precision", "recall", "f1-score", "support")
    lines = [f"{'':>14}" + "".join(f"{c:>11}" for c in cols)]
    for name, row in report.items():
        if isinstance(row, Mapping):
            cells = []
            for c in cols:
                v = row.get(c)
                if not isinstance(v, (int, float)):
                    cells.append(f"{'':>11}")
                else:
                    cells.append(f"{v:>11.0f}" if c == "support" else f"{v:>11.3f}")
            lines.append(f"{str(name)[:14]:>14}" + "".join(cells))
        elif isinstance(row, (int, float)):
            lines.append(f"{str(name)[:14]:>14}" + f"{'':>11}{'':>11}{row:>11.3f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- page


def _json_script(obj: Any) -> str:
    """JSON safe to put inside ``<script type="application/json">`` (no ``</script>``)."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["json_script"] = _json_script
    return env


def build_report(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model_metrics: str | os.PathLike[str] | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    workers: int | None = None,
    progress: bool | None = None,
    rescan: bool = True,
) -> ReportResult:
    """Write the report page ``out`` and its ``<stem>_files/`` folder; returns what it holds.

    ``rescan``: refresh the manifest first (incremental :func:`cleaner.manifest.scan`) when
    there is one. Raises :class:`CleanerError` when ROOT is missing, ``out`` is not an ``.html``
    path in a writable folder, or a state file exists but does not parse.
    """
    ds = open_dataset(root, require_classes=False)
    rootp = ds.root
    outp = Path(out)
    if outp.suffix.lower() not in (".html", ".htm"):
        raise CleanerError(f"--out {str(out)!r} must end in .html (e.g. --out report.html)")
    outp = outp.resolve()
    if outp.is_dir():
        raise CleanerError(f"--out {str(out)!r} is a folder; name the page, e.g. {out}/report.html")
    files_dir = outp.parent / f"{outp.stem}_files"
    if files_dir.is_relative_to(rootp):
        rel = files_dir.relative_to(rootp).as_posix()
        if ds.label_of(rel) is not None or rel.split("/")[0] == QUARANTINE_DIR:
            raise CleanerError(
                f"--out {str(out)!r} is inside a class or quarantine folder of ROOT, where its "
                f"thumbnails would be scanned as images; write it elsewhere (e.g. "
                f"{rootp / '.cleaner' / 'report.html'})"
            )
    outp.parent.mkdir(parents=True, exist_ok=True)
    result = ReportResult(out=outp, files_dir=files_dir)

    from cleaner.manifest import manifest_path, read_manifest, scan

    rows: list[Any] | None = None
    if manifest_path(rootp).is_file():
        # an incremental rescan (only changed files are read) so the page matches the disk
        # after moves and quarantines; without a manifest the page says to run `cleaner scan`
        try:
            rows = (
                scan(rootp, workers=workers, progress=progress).rows
                if rescan
                else read_manifest(rootp)
            )
        except CleanerError:
            rows = None
    by_sha = {r.sha256: r.path for r in rows or [] if r.sha256 and r.status == "ok"}
    labels = {r.path: r.label for r in rows or []}
    th = _Thumbs(rootp, files_dir, outp.parent, by_sha)
    quarantined = state.quarantined_files(rootp)
    ctx: dict[str, Any] = {"sections": SECTIONS, "page_size": max(1, page_size)}
    missing: dict[str, str] = {}
    problems: dict[str, str] = {}
    r_arg = f"--root {root}"

    # summary and unreadable files
    ctx["summary"] = _summary(rows, quarantined)
    bad: list[dict[str, Any]] = []
    if rows is None:
        missing["summary"] = missing["unreadable"] = f"cleaner scan {r_arg}"
    else:
        bad = [{"path": r.path, "label": r.label, "status": r.status, "reason": r.reason}
               for r in rows if r.status != "ok"]  # fmt: skip
        bad.sort(key=lambda b: (b["status"], b["path"]))
    ctx["unreadable"] = bad

    # plans
    plan_problems: list[str] = []
    plans = state.list_plans(rootp, plan_problems)
    if plan_problems:
        problems["moves"] = "; ".join(plan_problems)
    plan = plans[-1] if plans else None
    ctx["plan"] = plan
    ctx["older_plans"] = list(reversed(plans[:-1]))
    moves: list[dict[str, Any]] = []
    review: list[dict[str, Any]] = []
    if plan is None:
        missing["moves"] = missing["review"] = (
            f"cleaner separate --predictions F1.json [F2.json ...] {r_arg}"
        )
    else:
        try:
            decisions = state.read_decisions(rootp, plan.run_id)
        except CleanerError as e:
            problems["review"] = str(e)
            decisions = {}
        moves, review = _plan_items(plan, decisions, th)
    ctx["moves"], ctx["review"] = moves, review
    ctx["move_states"] = sorted(Counter(m["state"] for m in moves).items())

    # the journal: every run that moved files (separate, dedupe, serve accepts, undos)
    ctx["runs"] = _journal_runs(rootp)

    # duplicates, conflicts, leakage
    dup = split = None
    try:
        dup = state.read_duplicates(rootp)
    except CleanerError as e:
        problems["duplicates"] = str(e)
    try:
        split = state.read_split(rootp)
    except CleanerError as e:
        problems["leakage"] = str(e)
    groups: list[dict[str, Any]] = []
    if dup is None:
        missing["duplicates"] = missing["conflicts"] = f"cleaner dedupe {r_arg}"
        missing["leakage"] = f"cleaner dedupe {r_arg} (and cleaner train {r_arg} for the split)"
    else:
        groups = _groups(dup, split, labels, th)
        has_splits = any(m.get("split") for g in groups for m in g["members"])
        if split is None and not has_splits:
            missing["leakage"] = f"cleaner train {r_arg} --out M.keras (it writes the split)"
    ctx["dup"] = dup or {}
    ctx["groups"] = groups
    ctx["dup_files"] = sum(len(g["members"]) for g in groups)
    ctx["conflicts"] = [g for g in groups if g["conflict"]]
    ctx["leaks"] = [g for g in groups if g["leak"]]
    ctx["has_split"] = split is not None

    # quarantine
    qitems: list[dict[str, Any]] = []
    moved_by = state.journal_moves(rootp) if quarantined else {}
    for rel, reason in quarantined:
        qj: dict[str, Any] = {"path": rel, "reason": reason}
        how = moved_by.get(rel)
        if how is not None:  # the journal says where it came from and why
            qj.update(src=how["src"], why=how["reason"], run=how["run"])
        th.attach(qj, how["sha256"] if how else "", rel)
        qitems.append(qj)
    ctx["quarantine"] = qitems

    # training
    mpath = state.find_metrics(rootp, Path(model_metrics) if model_metrics else None)
    if mpath is None:
        missing["training"] = (
            f"cleaner train {r_arg} --out M.keras, then --model-metrics M.metrics.json"
        )
        ctx["training"] = None
    else:
        try:
            ctx["training"] = _training(mpath, files_dir, outp.parent)
        except (CleanerError, OSError) as e:
            problems["training"] = str(e)
            missing["training"] = f"cleaner train {r_arg} --out M.keras"
            ctx["training"] = None

    ctx["audit"] = _audit(rootp, r_arg, missing, problems)

    result.thumbs_made, result.thumbs_cached, result.thumbs_failed = th.make(workers, progress)
    ctx["missing"] = missing
    ctx["problems"] = problems
    result.problems = problems
    ctx["root"] = str(rootp)
    ctx["generated"] = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    ctx["counts"] = result.counts = {
        "summary": len(rows or []),
        "moves": len(moves),
        "review": len(review),
        "duplicates": len(groups),
        "conflicts": len(ctx["conflicts"]),
        "leakage": len(ctx["leaks"]),
        "quarantine": len(qitems),
        "unreadable": len(bad),
        "training": 1 if ctx["training"] else 0,
        "audit": ctx["audit"]["count"] if ctx["audit"] else 0,
    }
    result.missing = missing
    env = _env()
    ctx["css"] = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    ctx["js"] = (TEMPLATES / "report.js").read_text(encoding="utf-8")
    page = env.get_template("report.html.j2").render(**ctx)
    atomic_write_text(outp, page)
    return result


def iter_thumb_srcs(items: Iterable[Mapping[str, Any]]) -> Iterable[str]:
    """Every ``thumb`` URL in a list of items or groups (tests, the screenshot script)."""
    for it in items:
        if "thumb" in it:
            yield str(it["thumb"])
        for m in it.get("members", ()):
            if "thumb" in m:
                yield str(m["thumb"])
