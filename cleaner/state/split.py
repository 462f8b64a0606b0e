"""``R/.cleaner/split.csv``: ``cleaner train``'s train/val/test split, one row per image.

Written by :func:`cleaner.split.make_split` (no TensorFlow), read back by the next training (a
file keeps its split, matched by sha256), by dedupe (a duplicate group across splits is
leakage) and by the report. Columns: ``path, sha256, label, split, group``; extra columns a
later version adds are ignored by this reader.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cleaner.atomic import atomic_write_text
from cleaner.errors import CleanerError
from cleaner.state import state_path

FILE = "split.csv"
COLUMNS = ("path", "sha256", "label", "split", "group")
"""Format version 1: these columns, in this order (the header names them)."""
SPLITS = ("train", "val", "test")


def path(root: str | os.PathLike[str]) -> Path:
    return state_path(root, FILE)


@dataclass(frozen=True)
class SplitRow:
    """One image's place in the split."""

    path: str
    sha256: str
    label: str
    split: str
    group: str


def read(
    root: str | os.PathLike[str], *, fix: str = "delete it or pass --resplit"
) -> list[SplitRow] | None:
    """The rows as written (missing columns read as empty); None when there is no file. A file
    that does not parse is an error naming it and ``fix``."""
    p = path(root)
    if not p.is_file():
        return None
    try:
        with open(p, newline="", encoding="utf-8") as f:
            return [SplitRow(**{k: r.get(k) or "" for k in COLUMNS}) for r in csv.DictReader(f)]
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise CleanerError(f"cannot read {p} ({e}); {fix}") from e


def write(root: str | os.PathLike[str], rows: Sequence[SplitRow]) -> Path:
    """Write the split atomically (temp file + rename)."""
    p = path(root)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([r.path, r.sha256, r.label, r.split, r.group])
    atomic_write_text(p, buf.getvalue())
    return p


def lookup(rows: Sequence[SplitRow] | None) -> tuple[dict[str, str], dict[str, str]]:
    """(path -> split, sha256 -> split) of the rows that name a split."""
    by_path: dict[str, str] = {}
    by_sha: dict[str, str] = {}
    for r in rows or ():
        s = r.split.strip()
        if not s:
            continue
        if r.path:
            by_path[r.path] = s
        if r.sha256:
            by_sha.setdefault(r.sha256, s)
    return by_path, by_sha
