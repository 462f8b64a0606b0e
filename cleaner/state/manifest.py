"""``R/.cleaner/manifest.csv``: one row per file found under the class folders (``cleaner
scan``, :mod:`cleaner.manifest`), the list every stage works from.

Format version 1: the columns of :class:`ManifestRow` with a header naming them; a reader takes
columns by name, so an older file (fewer columns) or a newer one (more) still reads.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from cleaner import images
from cleaner.atomic import atomic_write
from cleaner.dataset import Workspace, state_path
from cleaner.errors import CleanerError
from cleaner.state import WsLike

FILE = "manifest.csv"


def manifest_path(ws: WsLike) -> Path:
    return state_path(ws, FILE)


path = manifest_path


@dataclass(frozen=True)
class ManifestRow:
    """One file found under a class folder (one line of ``manifest.csv``)."""

    path: str
    """ROOT-relative, ``/``-separated."""
    label: str
    """``real`` or ``fake``, from the class folder the file sits in."""
    sha256: str
    """sha256 of the file's bytes; empty when the file could not be read."""
    bytes: int
    width: int
    height: int
    """Upright size (EXIF orientation applied), as every stage sees the image; 0 when not ok."""
    format: str
    """Format sniffed from the bytes (``JPEG``, ``PNG``, ``WEBP``...), not from the extension."""
    status: str
    """``ok`` or why not (see :data:`cleaner.manifest.STATUS_MEANINGS`)."""
    reason: str = ""
    """One line for people: why the status, or a note on an ok file (extension mismatch)."""
    mtime_ns: int = 0
    mode: str = ""
    """Pillow mode of the file before conversion to RGB (``RGB``, ``L``, ``P``, ``CMYK``...)."""
    frames: int = 0
    """Number of frames (animations are used through their first frame)."""
    target: str = ""
    """For a symlink whose target is inside ROOT: the target, ROOT-relative. The mover never
    moves such a target (its link would dangle), nor a link."""

    @property
    def ok(self) -> bool:
        return self.status == images.OK


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ManifestRow))
_INT_COLUMNS = frozenset({"bytes", "width", "height", "mtime_ns", "frames"})


def write_manifest(ws: WsLike, rows: Sequence[ManifestRow]) -> Path:
    """Write the manifest atomically (tmp + fsync + ``os.replace``); returns its path."""
    path = manifest_path(ws)

    def write(tmp: Path) -> None:
        # surrogateescape: a file name that is not UTF-8 is written as its own bytes, and read
        # back (below) into the same str, which os turns into the same bytes: reversible
        with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(COLUMNS)
            w.writerows([getattr(r, c) for c in COLUMNS] for r in rows)

    atomic_write(path, write)
    return path


def read_rows(path: Path) -> list[ManifestRow]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        missing = [c for c in ("path", "label", "sha256", "status") if c not in header]
        if missing:
            raise CleanerError(
                f"{path} lacks the column(s) {', '.join(missing)}; run `cleaner scan` to rebuild it"
            )
        # columns by position in this file (older or newer manifests may order them otherwise)
        where = [header.index(c) if c in header else -1 for c in COLUMNS]
        ints = [c in _INT_COLUMNS for c in COLUMNS]
        out: list[ManifestRow] = []
        for rec in reader:
            if len(rec) != len(header):
                raise ValueError(f"line {reader.line_num} has {len(rec)} fields, not {len(header)}")
            vals: list[object] = []
            for i, is_int in zip(where, ints, strict=True):
                v = rec[i] if i >= 0 else ""
                vals.append((int(v) if v else 0) if is_int else v)
            out.append(ManifestRow(*vals))  # type: ignore[arg-type]
        return out


def _root_of(ws: WsLike) -> str:
    """ROOT as a user typed it, for the fix in a message."""
    return ws.shown if isinstance(ws, Workspace) else os.fspath(ws)


def read_manifest(ws: WsLike) -> list[ManifestRow]:
    """The rows of ``ROOT/.cleaner/manifest.csv`` as last written (no rescan).

    Raises :class:`CleanerError` when there is none (run ``cleaner scan`` first) or it does not
    parse."""
    path = manifest_path(ws)
    if not path.is_file():
        raise CleanerError(f"no manifest at {path}; run `cleaner scan --root {_root_of(ws)}` first")
    try:
        return read_rows(path)
    except (ValueError, KeyError, csv.Error) as e:
        raise CleanerError(
            f"{path} does not parse ({e}); run `cleaner scan --root {_root_of(ws)}` to rebuild it"
        ) from e


def link_targets(ws: WsLike) -> dict[str, str]:
    """target -> link, for every symlink inside ROOT the manifest lists (empty without one).
    The mover leaves these targets in place: a moved target leaves its link dangling. A
    workspace whose command has scanned already answers from its rows (no second read)."""
    if isinstance(ws, Workspace) and "rows" in ws.memo:
        return {r.target: r.path for r in ws.memo["rows"] if r.target}
    try:
        path = manifest_path(ws)
        if not path.is_file():
            return {}
        return {r.target: r.path for r in read_rows(path) if r.target}
    except (OSError, ValueError, KeyError, csv.Error, CleanerError):
        return {}


def read(ws: WsLike) -> list[ManifestRow]:
    return read_manifest(ws)


def write(ws: WsLike, rows: Sequence[ManifestRow]) -> Path:
    return write_manifest(ws, rows)
