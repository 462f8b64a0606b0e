"""``cleaner audit``: properties that leak the label without the picture; provenance; equalize.

A detector learns whatever separates the folders. When the real images are JPEG photos of one
size and the fakes PNG files of another, it can learn the container or the size instead of the
picture, score well on its own split and fail elsewhere. The audit reads every file's form
(:mod:`.properties`, headers and metadata only, in parallel through :mod:`cleaner.engine`,
cached by sha256), scores how well each property and all of them together tell the folders
apart (:mod:`.scores`), lists the metadata that settles a label (:mod:`.provenance`) and
writes ``R/.cleaner/audit.json`` (:mod:`.store`). :mod:`.equalize` writes a copy of the
dataset in which both classes share one form.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from cleaner import engine, images
from cleaner.audit import properties, scores
from cleaner.audit.provenance import Evidence, evidence_of
from cleaner.dataset import FileEntry, Workspace, check_output
from cleaner.errors import CleanerError
from cleaner.state import audit as store


@dataclass
class FileAudit:
    path: str
    label: str
    props: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.props.get("status") == images.OK


@dataclass
class AuditResult:
    root: Path
    files: list[FileAudit]
    properties: list[scores.PropertyScore]
    shortcut: scores.ShortcutScore
    evidence: list[Evidence]
    read: int = 0
    """Files read this run (the rest came from the cache)."""
    audit_json: Path | None = None
    hostile: list[dict[str, str]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The JSON-able summary (what ``audit.json`` and ``--json`` hold)."""
        counts = {c: sum(1 for f in self.files if f.label == c) for c in ("real", "fake")}
        return {
            "root": str(self.root),
            "generated": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "files": len(self.files),
            "audited": sum(1 for f in self.files if f.ok),
            "read": self.read,
            "cached": len(self.files) - self.read,
            "classes": counts,
            "threshold": scores.THRESHOLD,
            "shortcut": asdict(self.shortcut),
            "properties": [asdict(p) for p in self.properties],
            "provenance": [{**asdict(e), "contradicts": e.contradicts} for e in self.evidence],
            "hostile": self.hostile,
        }


def _stat(e: FileEntry) -> tuple[int, int]:
    try:
        st = e.abspath.stat()
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


def read_all(
    ds: Workspace, *, workers: int | None = None, progress: bool | None = None
) -> tuple[list[FileAudit], int]:
    """Every file's properties (unchanged files from the cache, the rest read in parallel);
    returns (files, how many were read)."""
    entries = list(ds.walk())
    props, seen = store.read_cache(ds, properties.PROPS_VERSION)
    got: dict[int, dict[str, Any]] = {}
    todo: list[int] = []
    stats: dict[int, tuple[int, int]] = {}
    for i, e in enumerate(entries):
        if e.escapes_root:
            got[i] = {"status": "outside-root", "reason": "symlink leading out of ROOT; not read"}
            continue
        if e.folder_link:
            why = f"symlink to the folder {e.link_target}/, not followed (its files count there)"
            got[i] = {"status": "symlink", "reason": why}
            continue
        stats[i] = _stat(e)
        hint = seen.get(e.relpath)
        if (
            hint is not None
            and hint[:2] == stats[i]
            and properties.valid(props.get(hint[2]), hint[2])
        ):
            got[i] = props[hint[2]]
        else:
            todo.append(i)
    paths = [str(entries[i].abspath) for i in todo]
    batches = engine.map_batches(
        properties.read_batch, paths, batch_size=256, workers=workers,
        desc="audit", progress=progress, on_crash=properties.crashed,
    )  # fmt: skip
    for i, p in zip(todo, (p for b in batches for p in b), strict=True):
        got[i] = p
        if p.get("sha256"):
            props[p["sha256"]] = p
    if todo:
        new_seen = {
            e.relpath: (*stats[i], str(got[i]["sha256"]))
            for i, e in enumerate(entries)
            if i in stats and got[i].get("sha256")
        }
        live = {sha for *_, sha in new_seen.values()}  # files gone since: dropped, not kept
        kept = {sha: p for sha, p in props.items() if sha in live}
        store.write_cache(ds, properties.PROPS_VERSION, (kept, new_seen))
    files = [FileAudit(e.relpath, e.label, got[i]) for i, e in enumerate(entries)]
    return files, len(todo)


def property_table(files: list[FileAudit]) -> dict[str, list[Any]]:
    """Column per property over ``files`` (all ok), derived ones included."""
    t: dict[str, list[Any]] = {}
    for f in files:
        p = f.props
        w, h = int(p["width"]), int(p["height"])
        row = {
            "width": w, "height": h, "aspect": round(w / h, 4), "megapixels": w * h / 1e6,
            "jpeg_quality": p["jpeg_quality"], "bytes_per_pixel": p["bytes"] / (w * h),
            "format": p["format"], "ext": PurePosixPath(f.path).suffix.lower(),
            "subsampling": p["subsampling"], "progressive": p["progressive"], "mode": p["mode"],
            "alpha": p["alpha"], "icc": p["icc"], "exif": p["exif"], "camera": p["camera"],
            "software": p["software"], "png_text": ",".join(p["png_text"]), "xmp": p["xmp"],
            "c2pa": f"{p['c2pa']} {p['c2pa_source']}".strip(),
            scores.TOKENS: properties.name_tokens(f.path),
        }  # fmt: skip
        for k, v in row.items():
            t.setdefault(k, []).append(v)
    return t


def _folds(ws: Workspace, ok: list[FileAudit], y: np.ndarray) -> np.ndarray | None:
    """Grouped, stratified folds (duplicates.json groups kept whole), or None if too few."""
    from cleaner.models.folds import assign_folds, group_ids
    from cleaner.state.duplicates import member_keys

    groups = group_ids([f.path for f in ok], [f.props["sha256"] for f in ok], member_keys(ws))
    per_class = min(len(np.unique(groups[y == c])) for c in (0, 1))
    k = min(scores.FOLDS, per_class)
    return assign_folds(y, groups, k) if k >= 2 else None


def score(
    ws: Workspace, files: list[FileAudit]
) -> tuple[list[scores.PropertyScore], scores.ShortcutScore]:
    """Per-property scores and the out-of-fold shortcut classifier over the ok files."""
    ok = [f for f in files if f.ok]
    y = np.array([1 if f.label == "fake" else 0 for f in ok], dtype=np.int64)
    folds = _folds(ws, ok, y) if len(ok) else None
    if folds is None:
        line = "too few files to audit: need at least 2 readable images (or groups) per class"
        return [], scores.ShortcutScore(0.5, 0.5, 0.5, 0, len(ok), line, False, [])
    table = property_table(ok)
    props = scores.property_scores(table, y, folds)
    x, is_cat, _ = scores.feature_matrix(table)
    prob = scores.oof_classifier(x, is_cat, y, folds)
    a = scores.auc(prob, y)
    low, high = scores.bootstrap_interval(prob, y)
    named = [p.name for p in props if p.named]
    flag, line = scores.verdict(a, low, high, named)
    k = len(np.unique(folds))
    return props, scores.ShortcutScore(a, low, high, k, len(ok), line, flag, named)


def check_outputs(
    ws: Workspace,
    *,
    out: str | os.PathLike[str] | None = None,
    predictions_out: str | os.PathLike[str] | None = None,
) -> None:
    """``--out`` and ``--predictions-out``, checked before anything is read (never inside a
    class, quarantine or state file of ROOT, never over a file cleaner did not write)."""
    if out is not None:
        check_output(out, flag="--out", ws=ws)
    if predictions_out is not None:
        check_output(predictions_out, flag="--predictions-out", ws=ws)


def run_audit(
    ws: Workspace | str | os.PathLike[str],
    *,
    workers: int | None = None,
    progress: bool | None = None,
    out: str | os.PathLike[str] | None = None,
) -> AuditResult:
    """Audit ROOT and write ``R/.cleaner/audit.json`` (and ``out`` when given)."""
    ws = Workspace.of(ws)
    check_outputs(ws, out=out)
    files, read = read_all(ws, workers=workers, progress=progress)
    props, shortcut = score(ws, files)
    evidence = [e for f in files if f.ok for e in evidence_of(f.path, f.label, f.props)]
    hostile = [
        {"path": f.path, "label": f.label, "status": str(f.props.get("status")),
         "reason": str(f.props.get("reason", ""))}
        for f in files if not f.ok
    ]  # fmt: skip
    result = AuditResult(ws.root, files, props, shortcut, evidence, read, None, hostile)
    doc = store.Audit.from_json(result.summary())
    result.audit_json = store.write(ws, doc)
    if out is not None:
        store.write(ws, doc, Path(out))
    return result


def shortcut_warning(ws: Workspace | str | os.PathLike[str]) -> str:
    """One line for ``cleaner train`` when ROOT's last audit found a shortcut, or when its
    ``audit.json`` is damaged (then ignored: the audit is optional and a warning must never
    stop training); '' when there is no audit or it found none."""
    try:
        ws = Workspace.of(ws)
        doc = store.read(ws)
        return _shortcut_line(ws.root, doc) if doc is not None else ""
    except CleanerError as e:
        return f"{e} (ignored; training goes on)"
    except store.DAMAGE as e:
        return f"{store.damaged(ws, e)} (ignored; training goes on)"


def _shortcut_line(root_shown: Path, doc: store.Audit) -> str:
    s = doc.shortcut
    if not s.get("shortcut"):
        return ""
    named = ", ".join(str(n) for n in s.get("named") or []) or "several properties together"
    return (
        f"the audit of {root_shown} ({doc.generated or '?'}) found a shortcut: "
        f"AUC {float(s.get('auc', 0)):.3f} [{float(s.get('low', 0)):.3f}, "
        f"{float(s.get('high', 0)):.3f}] from the files' form alone ({named}); the detector may "
        f"learn that instead of the pictures and fail elsewhere. See `cleaner audit --root "
        f"{root_shown}`; `--equalize OUT` writes a copy without it"
    )
