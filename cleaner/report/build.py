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
from cleaner.dataset import (
    LABELS,
    QUARANTINE_DIR,
    Workspace,
    check_output,
    check_relpath,
    confine_output,
)
from cleaner.errors import CleanerError, PathEscapeError
from cleaner.hashing import file_sha256
from cleaner.report import robustness, state
from cleaner.report.thumbs import ThumbJob, make_thumbs, thumb_dir, thumb_name
from cleaner.state import audit as audit_file
from cleaner.state import duplicates as duplicates_file
from cleaner.state import metrics as metrics_file
from cleaner.state import plans as plans_file
from cleaner.state import review as review_file
from cleaner.state import runs as runs_file
from cleaner.state import split as split_file

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
    ("pairs", "Fakes beside their real source"),
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

    def __init__(self, ws: Workspace, files_dir: Path, page_dir: Path, by_sha: dict[str, str]):
        self.root = ws.root
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


def _item_json(it: plans_file.PlanItem, status: str) -> dict[str, Any]:
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
    plan: plans_file.Plan, decisions: Mapping[str, review_file.Decision], th: _Thumbs
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    moves: list[dict[str, Any]] = []
    review: list[dict[str, Any]] = []
    for items, out, default in ((plan.moves, moves, "proposed"), (plan.review, review, "review")):
        for it in plans_file.review_order(items):
            d = decisions.get(it.item_id)
            status = str(d.verdict) if d is not None else default
            if it.kind == "move" and plan.applied and d is None:
                status = "skipped" if it.moved is False else "applied"
            j = _item_json(it, status)
            th.attach(j, it.sha256, it.path, it.dst, d.dst or "" if d is not None else "")
            out.append(j)
    return moves, review


def _journal_runs(ws: Workspace, last: int = 30) -> list[dict[str, Any]]:
    """The latest journaled runs, newest first, each with what undid it (if anything)."""
    try:
        runs = runs_file.list_runs(ws)
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


def _member_json(
    m: duplicates_file.DuplicateMember,
    kept: str,
    split: tuple[Mapping[str, str], Mapping[str, str]] | None,
    labels: Mapping[str, str],
) -> dict[str, Any]:
    mj: dict[str, Any] = {
        "path": m.path,
        "label": m.label or labels.get(m.path, ""),
        "sha256": m.sha256,
        "distance": m.distance,
        "kept": m.path == kept,
    }
    if m.match and m.match != "kept":
        mj["match"] = m.match  # how dedupe confirmed it: bytes, pixels, phash...
    if m.score is not None and m.path != kept:
        mj["score"] = round(m.score, 3)  # the verification that confirmed it
    # dedupe records each member's split (split.csv or train/val/test sub-folders)
    if m.split:
        mj["split"] = m.split
    elif split is not None:
        mj["split"] = split[0].get(m.path) or split[1].get(m.sha256, "")
    return mj


def _groups(
    dup: duplicates_file.Duplicates,
    split: tuple[Mapping[str, str], Mapping[str, str]] | None,
    labels: Mapping[str, str],
    th: _Thumbs,
) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for g in dup.groups:
        kept = g.kept
        members = []
        for m in g.members:
            mj = _member_json(m, kept, split, labels)
            th.attach(mj, m.sha256, m.path)
            members.append(mj)
        members.sort(
            key=lambda m: (
                not m["kept"],
                m["distance"] if isinstance(m["distance"], (int, float)) else 1e9,
                m["path"],
            )
        )
        splits = sorted({m.get("split", "") for m in members} - {""})
        groups.append(
            {
                "kept": kept,
                "conflict": g.conflict,
                "splits": splits,
                "leak": duplicates_file.leaking(splits),
                "members": members,
                "review_only": g.review_only,
            }
        )
    groups.sort(key=lambda g: (not g["conflict"], -len(g["members"]), g["kept"]))
    return groups


PAIRS_SHOWN = 200
"""Pairs shown with their difference map (each decodes both images once)."""


def _source_pairs(dup: duplicates_file.Duplicates, page: _Page) -> list[dict[str, Any]]:
    """``pairs`` of duplicates.json (a fake and the real photo it was made from), each with
    both thumbnails and the difference map after alignment (a PNG data URL)."""
    import base64

    from cleaner.pairs import diff_png, measure

    out: list[dict[str, Any]] = []
    for p in dup.pairs[:PAIRS_SHOWN]:
        if not p.real or not p.fake:
            continue
        item: dict[str, Any] = {"real": p.real, "fake": p.fake}
        item.update({k: p.extra.get(k) for k in ("score", "peak", "box", "share")})
        real, fake = ({"path": p.real}, {"path": p.fake})
        page.th.attach(real, p.real_sha256, real["path"])
        page.th.attach(fake, p.fake_sha256, fake["path"])
        item["real_item"], item["fake_item"] = real, fake
        loc = measure(page.ws.root / real["path"], page.ws.root / fake["path"])
        if loc is not None:
            item["diff"] = "data:image/png;base64," + base64.b64encode(diff_png(loc)).decode()
        out.append(item)
    return out


def _review_pairs(
    dup: duplicates_file.Duplicates, labels: Mapping[str, str], th: _Thumbs
) -> list[dict[str, Any]]:
    """The pairs dedupe held back (evidence just below its calibrated threshold), each shown
    as a two-member group with its score; never quarantined."""
    cal = dup.extra.get("calibration")
    t = cal.get("threshold") if isinstance(cal, Mapping) else None
    out: list[dict[str, Any]] = []
    review_pairs = dup.extra.get("review_pairs")
    for r in review_pairs if isinstance(review_pairs, list) else []:
        if not isinstance(r, Mapping) or not isinstance(r.get("score"), (int, float)):
            continue
        members = []
        for key in ("a", "b"):
            path = str(r.get(key, ""))
            mj: dict[str, Any] = {"path": path, "label": labels.get(path, ""), "sha256": ""}
            mj.update({"distance": "", "kept": key == "a"})
            if key == "b":
                mj["score"] = round(float(r["score"]), 3)
            th.attach(mj, "", path)
            members.append(mj)
        why = f"score {float(r['score']):.3f}" + (f" below the threshold {t:.3f}" if t else "")
        out.append(
            {"kept": members[0]["path"], "conflict": False, "splits": [], "leak": False,
             "members": members, "review_only": why}
        )  # fmt: skip
    return out


def _training(metrics_path: Path, files_dir: Path, page_dir: Path) -> dict[str, Any]:
    metrics = metrics_file.read_metrics(metrics_path)
    m = metrics.to_json()  # every figure is shown, the typed ones first
    scalars: list[tuple[str, str]] = []
    skip = {"confusion_matrix", "confusion_labels", "classification_report", "plots", "versions",
            "history", "phases", "format", "output", "preprocessing", "launder",
            "by_source"}  # fmt: skip
    if metrics.accuracy is not None:
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
    for name, p in metrics_file.metrics_plots(metrics_path, metrics).items():
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
        "tables": robustness.tables(m),
    }


def _audit(
    ws: Workspace, r_arg: str, missing: dict[str, str], problems: dict[str, str]
) -> dict[str, Any] | None:
    """The audit section's data from ``audit.json`` (None: absent or unreadable)."""
    from cleaner.report.audit import audit_view

    try:
        doc = audit_file.read(ws)
    except CleanerError as e:
        problems["audit"] = str(e)
        doc = None
    if doc is not None:
        try:
            return audit_view(doc)
        except audit_file.DAMAGE as e:  # a field of the wrong type: the page says so
            problems["audit"] = audit_file.damaged(ws, e)
    missing["audit"] = f"cleaner audit {r_arg}"
    return None


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


@dataclass
class _Page:
    """What the sections fill in: the template's context, and per section what is missing
    (the command that makes it) or broken (the error naming the file)."""

    ws: Workspace
    r_arg: str
    th: _Thumbs
    ctx: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)


def build_report(
    ws: Workspace | str | os.PathLike[str],
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

    The phases: :func:`_check_out`, :func:`_manifest_rows`, then one function per section
    (:func:`_section_files`, :func:`_section_plans`, :func:`_section_duplicates`,
    :func:`_section_quarantine`, :func:`_section_training`), thumbnails, :func:`_render`.
    """
    ws = Workspace.of(ws, require_classes=False)
    r_arg = f"--root {ws.shown}"
    outp, files_dir = _check_out(ws, out)
    outp.parent.mkdir(parents=True, exist_ok=True)
    result = ReportResult(out=outp, files_dir=files_dir)
    rows = _manifest_rows(ws, rescan=rescan, workers=workers, progress=progress)
    by_sha = {r.sha256: r.path for r in rows or [] if r.sha256 and r.status == "ok"}
    page = _Page(ws, r_arg, _Thumbs(ws, files_dir, outp.parent, by_sha))
    page.ctx.update({"sections": SECTIONS, "page_size": max(1, page_size)})
    quarantined = state.quarantined_files(ws)
    _section_files(page, rows, quarantined)
    _section_plans(page)
    page.ctx["runs"] = _journal_runs(ws)  # every run that moved files, and its undo
    _section_duplicates(page, {r.path: r.label for r in rows or []})
    _section_quarantine(page, quarantined)
    _section_training(page, model_metrics, files_dir, outp.parent)
    page.ctx["audit"] = _audit(ws, page.r_arg, page.missing, page.problems)
    made = page.th.make(workers, progress)
    result.thumbs_made, result.thumbs_cached, result.thumbs_failed = made
    ctx = page.ctx
    ctx["counts"] = result.counts = {
        "summary": len(rows or []),
        "moves": len(ctx["moves"]),
        "review": len(ctx["review"]),
        "duplicates": len(ctx["groups"]),
        "conflicts": len(ctx["conflicts"]),
        "pairs": ctx["pairs_total"],
        "leakage": len(ctx["leaks"]),
        "quarantine": len(ctx["quarantine"]),
        "unreadable": len(ctx["unreadable"]),
        "training": 1 if ctx["training"] else 0,
        "audit": ctx["audit"]["count"] if ctx["audit"] else 0,
    }
    result.problems, result.missing = page.problems, page.missing
    _render(page, outp)
    return result


def _check_out(ws: Workspace, out: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The page's path and its files folder: an ``.html`` path, not a folder, and not inside a
    class or quarantine folder (its thumbnails would be scanned as images)."""
    rootp = ws.root
    outp = Path(out)
    if outp.suffix.lower() not in (".html", ".htm"):
        raise CleanerError(f"--out {str(out)!r} must end in .html (e.g. --out report.html)")
    outp = outp.resolve()
    if outp.is_dir():
        raise CleanerError(f"--out {str(out)!r} is a folder; name the page, e.g. {out}/report.html")
    files_dir = outp.parent / f"{outp.stem}_files"
    try:
        confine_output(ws, outp, replaceable=(".html", ".htm"))
        confine_output(ws, files_dir, replaceable=("_files",))
    except CleanerError:
        raise CleanerError(
            f"--out {str(out)!r} is inside a class or quarantine folder of ROOT (or names its "
            "state), where its thumbnails would be scanned as images; write it elsewhere (e.g. "
            f"{rootp / '.cleaner' / 'report.html'})"
        ) from None
    check_output(outp, own=(b"<",))
    return outp, files_dir


def _manifest_rows(
    ws: Workspace, *, rescan: bool, workers: int | None, progress: bool | None
) -> list[Any] | None:
    """The manifest's rows, after an incremental rescan (only changed files are read, so the
    page matches the disk after moves and quarantines); None without a manifest (the page
    then says to run ``cleaner scan``)."""
    from cleaner.manifest import manifest_path, read_manifest, scan

    if not manifest_path(ws).is_file():
        return None
    try:
        if rescan:
            return list(scan(ws, workers=workers, progress=progress).rows)
        return list(read_manifest(ws))
    except CleanerError:
        return None


def _section_files(page: _Page, rows: list[Any] | None, quarantined: list[tuple[str, str]]) -> None:
    """The summary and the unreadable files."""
    page.ctx["summary"] = _summary(rows, quarantined)
    bad: list[dict[str, Any]] = []
    if rows is None:
        page.missing["summary"] = page.missing["unreadable"] = f"cleaner scan {page.r_arg}"
    else:
        bad = [{"path": r.path, "label": r.label, "status": r.status, "reason": r.reason}
               for r in rows if r.status != "ok"]  # fmt: skip
        bad.sort(key=lambda b: (b["status"], b["path"]))
    page.ctx["unreadable"] = bad


def _section_plans(page: _Page) -> None:
    """The latest plan's moves and review items (with serve's decisions), older plans."""
    ctx = page.ctx
    plan_problems: list[str] = []
    plans = plans_file.list_plans(page.ws, plan_problems)
    if plan_problems:
        page.problems["moves"] = "; ".join(plan_problems)
    plan = plans[-1] if plans else None
    ctx["plan"] = plan
    ctx["older_plans"] = list(reversed(plans[:-1]))
    moves: list[dict[str, Any]] = []
    review: list[dict[str, Any]] = []
    if plan is None:
        page.missing["moves"] = page.missing["review"] = (
            f"cleaner separate --predictions F1.json [F2.json ...] {page.r_arg}"
        )
    else:
        try:
            decisions = review_file.read(page.ws, plan.run_id).items
        except CleanerError as e:
            page.problems["review"] = str(e)
            decisions = {}
        moves, review = _plan_items(plan, decisions, page.th)
    ctx["moves"], ctx["review"] = moves, review
    ctx["move_states"] = sorted(Counter(m["state"] for m in moves).items())


def _section_duplicates(page: _Page, labels: Mapping[str, str]) -> None:
    """Duplicate groups, label conflicts and split leakage."""
    ctx, r_arg = page.ctx, page.r_arg
    dup = split = None
    ctx["dup_review"] = []
    try:
        dup = duplicates_file.read(page.ws)
    except CleanerError as e:
        page.problems["duplicates"] = str(e)
    try:
        split_rows = split_file.read(page.ws, fix="rerun `cleaner train`")
        split = split_file.lookup(split_rows) if split_rows is not None else None
    except CleanerError as e:
        page.problems["leakage"] = str(e)
    groups: list[dict[str, Any]] = []
    if dup is None:
        page.missing["duplicates"] = page.missing["conflicts"] = f"cleaner dedupe {r_arg}"
        page.missing["leakage"] = (
            f"cleaner dedupe {r_arg} (and cleaner train {r_arg} for the split)"
        )
    else:
        groups = _groups(dup, split, labels, page.th)
        ctx["dup_review"] = _review_pairs(dup, labels, page.th)
        has_splits = any(m.get("split") for g in groups for m in g["members"])
        if split is None and not has_splits:
            page.missing["leakage"] = f"cleaner train {r_arg} --out M.keras (it writes the split)"
    ctx["dup"] = dup.to_json() if dup is not None else {}
    ctx["groups"] = groups
    ctx["dup_files"] = sum(len(g["members"]) for g in groups)
    ctx["conflicts"] = [g for g in groups if g["conflict"]]
    ctx["pairs"] = _source_pairs(dup, page) if dup is not None else []
    ctx["pairs_total"] = len(dup.pairs) if dup is not None else 0
    if dup is None:
        page.missing["pairs"] = f"cleaner dedupe {r_arg}"
    ctx["leaks"] = [g for g in groups if g["leak"]]
    ctx["has_split"] = split is not None


def _section_quarantine(page: _Page, quarantined: list[tuple[str, str]]) -> None:
    """Files under quarantine/, with where and why the journal says they came from."""
    qitems: list[dict[str, Any]] = []
    moved_by = runs_file.journal_moves(page.ws) if quarantined else {}
    for rel, reason in quarantined:
        qj: dict[str, Any] = {"path": rel, "reason": reason}
        how = moved_by.get(rel)
        if how is not None:  # the journal says where it came from and why
            qj.update(src=how.src, why=how.reason, run=how.run)
        page.th.attach(qj, how.sha256 if how else "", rel)
        qitems.append(qj)
    page.ctx["quarantine"] = qitems


def _section_training(
    page: _Page, model_metrics: str | os.PathLike[str] | None, files_dir: Path, page_dir: Path
) -> None:
    """The last training's test figures and plots (``--model-metrics``, or found)."""
    r_arg = page.r_arg
    mpath = metrics_file.find_metrics(page.ws, Path(model_metrics) if model_metrics else None)
    page.ctx["training"] = None
    if mpath is None:
        page.missing["training"] = (
            f"cleaner train {r_arg} --out M.keras, then --model-metrics M.metrics.json"
        )
        return
    try:
        page.ctx["training"] = _training(mpath, files_dir, page_dir)
    except (CleanerError, OSError) as e:
        page.problems["training"] = str(e)
        page.missing["training"] = f"cleaner train {r_arg} --out M.keras"


def _render(page: _Page, outp: Path) -> None:
    """The page, written atomically."""
    ctx = page.ctx
    ctx["missing"] = page.missing
    ctx["problems"] = page.problems
    ctx["root"] = str(page.ws.root)
    ctx["generated"] = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    ctx["css"] = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    ctx["js"] = (TEMPLATES / "report.js").read_text(encoding="utf-8")
    atomic_write_text(outp, _env().get_template("report.html.j2").render(**ctx))


def iter_thumb_srcs(items: Iterable[Mapping[str, Any]]) -> Iterable[str]:
    """Every ``thumb`` URL in a list of items or groups (tests, the screenshot script)."""
    for it in items:
        if "thumb" in it:
            yield str(it["thumb"])
        for m in it.get("members", ()):
            if "thumb" in m:
                yield str(m["thumb"])
