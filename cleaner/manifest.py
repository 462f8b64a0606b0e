"""``cleaner scan``: every file under the class folders -> one manifest row, incrementally.

Each file is read once: the same bytes give its sha256 and go through the one decoder
(:func:`cleaner.images.probe`), in parallel batches (:func:`cleaner.engine.map_batches`). The rows
go to ``ROOT/.cleaner/manifest.csv``, written atomically (a temporary file, fsync, ``os.replace``)
so a crash never leaves half a manifest. A rescan reuses the row of every file whose size and
mtime did not change, which makes it cheap to call before every stage (:func:`ok_rows`).

Nothing here follows a symlink out of ROOT: such a file gets its row with status
``outside-root`` and is never opened.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cleaner import images
from cleaner.dataset import LABELS, FileEntry, Workspace
from cleaner.engine import map_batches
from cleaner.errors import CleanerError
from cleaner.hashing import file_sha256
from cleaner.state.manifest import (
    ManifestRow,
    manifest_path,
    read_manifest,
    read_rows,
    write_manifest,
)

if TYPE_CHECKING:
    from cleaner.journal import AppliedRun, Move
    from cleaner.moves import MoveOutcome


# statuses that belong to the file system rather than to the decoder (see cleaner.images for
# the decoder's: ok, empty, not-an-image, corrupt, truncated, too-large, unsupported, unreadable)
OUTSIDE_ROOT = "outside-root"
NOT_A_FILE = images.NOT_A_FILE
SYMLINK = "symlink"
UNLISTABLE = "unlistable"

STATUS_MEANINGS: dict[str, str] = {
    images.OK: "decodes fully; usable by every stage",
    images.EMPTY: "0 bytes",
    images.NOT_AN_IMAGE: "no known image signature (text, HTML, archive, ...)",
    images.CORRUPT: "an image signature, but the header or pixel data does not decode",
    images.TRUNCATED: "the pixel data ends early (interrupted download or copy)",
    images.TOO_LARGE: "declares more pixels than the limit (decompression-bomb guard)",
    images.UNSUPPORTED: "a real image in a format or mode this Pillow cannot decode",
    images.UNREADABLE: "the file cannot be read (permissions, I/O error, dangling symlink)",
    OUTSIDE_ROOT: "a symlink whose target lies outside ROOT: listed, never read",
    NOT_A_FILE: "a FIFO, socket or device file: listed, never opened",
    SYMLINK: "a symlink to another file of the class folders (column target): that file is "
    "the image, used once under its own name; the link is never read or moved",
    UNLISTABLE: "a folder (path ends with /) that cannot be listed (permissions): its files "
    "are not scanned",
}
"""Every status a manifest row can carry, with what it means (docs/formats.md, ``scan --help``)."""

SMALL_SCAN = 200
"""Fewer files to read than this: checked in this process unless ``workers`` is given."""

MAX_FILE_BYTES = images.MAX_FILE_BYTES
"""Files larger than this are hashed in chunks but not decoded (status ``too-large``)."""


@dataclass
class ScanResult:
    """What a scan found. ``read`` counts the files opened this time, ``reused`` the rows kept
    from the previous manifest because size and mtime were unchanged."""

    root: Path
    manifest_path: Path
    rows: list[ManifestRow]
    read: int = 0
    reused: int = 0
    seconds: float = 0.0
    class_dirs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    outside_links: tuple[str, ...] = ()
    """Class-folder names under ROOT that are symlinks out of ROOT (not scanned)."""

    def ok_rows(self) -> list[ManifestRow]:
        return [r for r in self.rows if r.ok]

    def counts(self) -> dict[str, dict[str, int]]:
        """label -> status -> number of files (every label present, ``ok`` always listed)."""
        out: dict[str, dict[str, int]] = {}
        for label in LABELS:
            c = Counter(r.status for r in self.rows if r.label == label)
            out[label] = {images.OK: c.pop(images.OK, 0), **dict(sorted(c.items()))}
        return out

    def summary(self) -> dict[str, object]:
        """The machine-readable summary ``cleaner scan --json`` prints."""
        return {
            "root": str(self.root),
            "manifest": str(self.manifest_path),
            "files": len(self.rows),
            "ok": sum(1 for r in self.rows if r.ok),
            "read": self.read,
            "reused": self.reused,
            "seconds": round(self.seconds, 3),
            "class_dirs": {k: list(v) for k, v in self.class_dirs.items()},
            "outside_links": list(self.outside_links),
            "counts": self.counts(),
        }


# --------------------------------------------------------------------------- the batch function


def check_file(abspath: str, relpath: str) -> tuple[object, ...]:
    """Read one file once: sha256 of the bytes, then a full decode of the same bytes.

    Returns the row's fields after ``path`` and ``label`` (a tuple, cheap to pickle). Never
    raises: every failure becomes a status and a reason.
    """
    got = images.read_regular(abspath, MAX_FILE_BYTES)
    if got.data is None:
        return (got.sha256, got.size, 0, 0, "", got.status, got.reason, got.mtime_ns, "", 0)
    data = got.data
    digest = hashlib.sha256(data).hexdigest()
    try:
        info = images.probe(data, name=relpath)
    except Exception as e:  # the decoder promises not to raise; a run never stops on one file
        info = images.ImageInfo(status=images.CORRUPT, reason=f"decoder error: {e!r}"[:300])
    return (
        digest,
        len(data),
        info.width,
        info.height,
        info.format,
        info.status,
        info.reason,
        got.mtime_ns,
        info.mode,
        info.frames,
    )


def crashed_file(item: tuple[str, str], error: BaseException) -> tuple[object, ...]:
    """The row fields of a file whose decode killed the worker process (a decoder crash or the
    OOM killer): hashed here, in the parent, and reported ``corrupt``."""
    abspath, _ = item
    try:
        st = os.stat(abspath)
        digest = file_sha256(abspath)
    except OSError as e:
        return ("", 0, 0, 0, "", images.UNREADABLE, f"cannot read: {e.strerror or e}", 0, "", 0)
    reason = f"the decoder crashed on this file (worker process died: {error})"[:300]
    return (digest, st.st_size, 0, 0, "", images.CORRUPT, reason, st.st_mtime_ns, "", 0)


def check_batch(batch: Sequence[tuple[str, str]]) -> list[tuple[object, ...]]:
    """Pure batch function for the engine: ``(abspath, relpath)`` -> :func:`check_file` fields."""
    return [check_file(a, r) for a, r in batch]


# --------------------------------------------------------------------------- scan


def _row(entry: FileEntry, fields_: tuple[object, ...], target: str = "") -> ManifestRow:
    (sha, size, w, h, fmt, status, reason, mtime, mode, frames) = fields_
    return ManifestRow(
        path=entry.relpath,
        label=entry.label,
        sha256=str(sha),
        bytes=int(size),  # type: ignore[call-overload]
        width=int(w),  # type: ignore[call-overload]
        height=int(h),  # type: ignore[call-overload]
        format=str(fmt),
        status=str(status),
        reason=str(reason),
        mtime_ns=int(mtime),  # type: ignore[call-overload]
        mode=str(mode),
        frames=int(frames),  # type: ignore[call-overload]
        target=target,
    )


def _previous(ws: Workspace) -> dict[str, ManifestRow]:
    """Rows of the last manifest by path; empty when there is none or it does not parse."""
    try:
        return {r.path: r for r in read_rows(manifest_path(ws))}
    except (OSError, ValueError, KeyError, CleanerError):
        return {}


# statuses worth re-reading even when size and mtime are unchanged (permissions can change
# without touching mtime; a decode limit may have been raised)
_RETRY = frozenset({images.UNREADABLE, NOT_A_FILE})
_NOT_READ = frozenset({OUTSIDE_ROOT, SYMLINK, UNLISTABLE})


def _unread_row(entry: FileEntry, files: set[str]) -> ManifestRow | None:
    """The row of an entry that is never read (a folder that cannot be listed, a link), or
    None for a file to read."""

    def row(status: str, reason: str, target: str = "") -> ManifestRow:
        return ManifestRow(
            path=entry.relpath, label=entry.label, sha256="", bytes=0, width=0, height=0,
            format="", status=status, target=target, reason=reason,
        )  # fmt: skip

    if entry.problem:
        return row(UNLISTABLE, entry.problem)
    if entry.folder_link:
        return row(
            SYMLINK,
            f"symlink to the folder {entry.link_target}/, which is another class "
            "folder, cleaner's state or quarantine, or holds this folder: not followed "
            "(its files count where they are), and no file is moved into or out of it",
            entry.link_target or "",
        )
    if entry.link_target is not None and entry.link_target in files:
        return row(
            SYMLINK,
            f"symlink to {entry.link_target}: the same image, used under that name",
            entry.link_target,
        )
    if entry.escapes_root:
        target = _readlink(entry.abspath) + ("/" if entry.abspath.is_dir() else "")
        return row(OUTSIDE_ROOT, f"symlink to {target} (outside ROOT): not followed")
    return None


def _unchanged(entry: FileEntry, old: ManifestRow | None) -> bool:
    """The file's size, mtime and class are those of its previous row (and that row is not
    worth a retry): the row is reused without reading the file."""
    if old is None or old.status in _RETRY:
        return False
    try:
        st = entry.abspath.stat()
    except OSError:
        return False
    return st.st_size == old.bytes and st.st_mtime_ns == old.mtime_ns and old.label == entry.label


def scan(
    ws: Workspace | str | os.PathLike[str],
    *,
    workers: int | None = None,
    progress: bool | None = None,
    batch_size: int = 32,
) -> ScanResult:
    """Scan ROOT's class folders and write ``ROOT/.cleaner/manifest.csv``.

    Incremental: a file whose size and mtime match its previous row is not read again. The
    rows are kept on the workspace (``ws.memo["rows"]``): the steps after the scan in the same
    command read them there, not from the file again.
    """
    t0 = time.perf_counter()
    ws = Workspace.of(ws)
    previous = _previous(ws)
    rows: dict[str, ManifestRow] = {}
    todo: list[FileEntry] = []
    entries = list(ws.walk())
    files = {e.relpath for e in entries if e.link_target is None and not e.problem}
    for entry in entries:
        fixed = _unread_row(entry, files)
        old = previous.get(entry.relpath)
        if fixed is not None:
            rows[entry.relpath] = fixed
        elif old is not None and _unchanged(entry, old):
            rows[entry.relpath] = old
        else:
            todo.append(entry)
    reused = len(rows) - sum(1 for r in rows.values() if r.status in _NOT_READ)
    rows.update(_read_rows(todo, workers=workers, progress=progress, batch_size=batch_size))
    ordered = [rows[k] for k in sorted(rows)]
    path = manifest_path(ws)
    if todo or len(ordered) != len(previous) or ordered != [previous.get(r.path) for r in ordered]:
        write_manifest(ws.root, ordered)
    ws.memo["rows"] = ordered
    return ScanResult(
        root=ws.root,
        manifest_path=path,
        rows=ordered,
        read=len(todo),
        reused=reused,
        seconds=time.perf_counter() - t0,
        class_dirs=dict(ws.class_dirs),
        outside_links=ws.outside_links,
    )


def _read_rows(
    todo: list[FileEntry], *, workers: int | None, progress: bool | None, batch_size: int
) -> dict[str, ManifestRow]:
    """Read (decode, hash) the files to scan, in parallel batches."""
    items = [(str(e.abspath), e.relpath) for e in todo]
    if workers is None and len(items) < SMALL_SCAN:
        workers = 1  # starting a pool costs more than decoding a few hundred files
    rows: dict[str, ManifestRow] = {}
    done = 0
    for out in map_batches(
        check_batch,
        items,
        batch_size=batch_size,
        workers=workers,
        desc="scan",
        progress=progress,
        on_crash=crashed_file,
    ):
        for fields_ in out:
            entry = todo[done]
            rows[entry.relpath] = _row(entry, fields_, entry.link_target or "")
            done += 1
    return rows


def _readlink(p: Path) -> str:
    try:
        return os.readlink(p)
    except OSError:
        return "?"


def ok_rows(
    ws: Workspace | str | os.PathLike[str],
    *,
    rescan: bool = True,
    workers: int | None = None,
    progress: bool | None = None,
) -> list[ManifestRow]:
    """The files every stage works on: rows with status ``ok``, sorted by path.

    ``rescan=True`` (the default) first runs an incremental :func:`scan`, so the list matches the
    disk (cheap when nothing changed); ``rescan=False`` trusts the manifest as written. Either
    way, rows this command's scan already produced are reused.
    """
    ws = Workspace.of(ws)
    if "rows" in ws.memo:  # this command has scanned already
        rows = ws.memo["rows"]
    elif rescan:
        rows = scan(ws, workers=workers, progress=progress).rows
    else:
        rows = read_manifest(ws)
    return [r for r in rows if r.ok]


# --------------------------------------------------------------------------- quarantine

QUARANTINE_STATUSES = frozenset(
    {images.EMPTY, images.NOT_AN_IMAGE, images.CORRUPT, images.TRUNCATED, images.TOO_LARGE}
)
"""Statuses ``scan --quarantine`` moves aside. Not ``unsupported`` (a real image another Pillow
build can decode), ``unreadable`` (cannot be hashed, so cannot be journaled safely),
``outside-root`` or ``not-a-file`` (nothing inside ROOT to move)."""

QUARANTINE_SUBDIR = "unreadable"


def quarantine_moves(rows: Sequence[ManifestRow]) -> list[Move]:
    """The moves that put broken files in ``quarantine/unreadable/<their path>``."""
    from cleaner.journal import Move

    return [
        Move(
            src=r.path,
            dst=f"quarantine/{QUARANTINE_SUBDIR}/{r.path}",
            sha256=r.sha256 or None,
            reason=f"{r.status}: {r.reason}"[:300],
        )
        for r in rows
        if r.status in QUARANTINE_STATUSES
    ]


@dataclass
class QuarantineResult:
    moves: list[Move]
    outcome: MoveOutcome | None = None
    """What the move executor did (None when there was nothing to move)."""

    @property
    def applied(self) -> AppliedRun | None:
        """The journaled run; ``None`` on a dry run or when nothing was to move."""
        o = self.outcome
        return o.run if o is not None and o.applied and self.moves else None

    def summary(self) -> dict[str, object]:
        """The ``quarantine`` object of ``cleaner scan --quarantine --json``."""
        out: dict[str, object] = {
            "applied": self.applied is not None,
            "moves": [{"src": m.src, "dst": m.dst, "reason": m.reason} for m in self.moves],
        }
        if self.applied is not None:
            out["run_id"] = self.applied.run_id
            out["moved"] = [{"src": r.src, "dst": r.dst} for r in self.applied.moved]
            out["skipped"] = [{"src": r.src, "why": r.why} for r in self.applied.skipped]
        if self.outcome is not None:
            out["run"] = self.outcome.summary()
        return out


def quarantine_unreadable(
    ws: Workspace | str | os.PathLike[str],
    rows: Sequence[ManifestRow],
    *,
    apply: bool = False,
    progress: bool | None = None,
) -> QuarantineResult:
    """Move the broken files of ``rows`` to ``quarantine/unreadable/`` through the journal
    (undoable with ``cleaner undo``); a dry run unless ``apply``. The stage proposes a
    :class:`~cleaner.moves.MovePlan` (no document of its own); the move executor applies it.
    After applying, the manifest is rescanned so it no longer lists them."""
    from cleaner.moves import MovePlan, execute

    moves = quarantine_moves(rows)
    if not moves:
        return QuarantineResult(moves=moves)
    ws = Workspace.of(ws, require_classes=False)
    proposal = MovePlan("scan --quarantine --apply", moves)
    outcome = execute(ws, proposal, apply=apply, progress=progress)
    if apply:
        scan(ws, progress=progress)
    return QuarantineResult(moves=moves, outcome=outcome)
