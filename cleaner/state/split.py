"""``R/.cleaner/split.csv``: ``cleaner train``'s train/val/test split, one row per image.

Written by :func:`cleaner.split.make_split` (no TensorFlow), read back by the next training (a
file keeps its split, matched by sha256), by dedupe (a duplicate group across splits is
leakage) and by the report. Columns: ``path, sha256, label, split, group``; extra columns a
later version adds are kept in each row's ``extra`` and written back after these.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cleaner.atomic import atomic_write_text
from cleaner.dataset import state_path
from cleaner.errors import CleanerError
from cleaner.state import WsLike

FILE = "split.csv"
COLUMNS = ("path", "sha256", "label", "split", "group")
"""Format version 1: these columns, in this order (the header names them)."""
SPLITS = ("train", "val", "test")


def path(ws: WsLike) -> Path:
    return state_path(ws, FILE)


@dataclass(frozen=True)
class SplitRow:
    """One image's place in the split."""

    path: str
    sha256: str
    label: str
    split: str
    group: str
    extra: Mapping[str, str] = field(default_factory=dict, compare=False)
    """Columns this version does not know, as read (written back after the known ones)."""

    @classmethod
    def from_json(cls, r: Mapping[str, str | None]) -> SplitRow:
        """One ``csv.DictReader`` row (missing columns read as empty)."""
        extra = {str(k): v or "" for k, v in r.items() if k not in COLUMNS and k is not None}
        return cls(**{k: r.get(k) or "" for k in COLUMNS}, extra=extra)

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "sha256": self.sha256, "label": self.label,
                "split": self.split, "group": self.group, **self.extra}  # fmt: skip


def read(ws: WsLike, *, fix: str = "delete it or pass --resplit") -> list[SplitRow] | None:
    """The rows as written (missing columns read as empty); None when there is no file. A file
    that does not parse is an error naming it and ``fix``."""
    p = path(ws)
    if not p.is_file():
        return None
    try:
        with open(p, newline="", encoding="utf-8") as f:
            return [SplitRow.from_json(r) for r in csv.DictReader(f)]
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise CleanerError(f"cannot read {p} ({e}); {fix}") from e


def write(ws: WsLike, rows: Sequence[SplitRow]) -> Path:
    """Write the split atomically (temp file + rename)."""
    p = path(ws)
    buf = io.StringIO()
    extra = list(dict.fromkeys(k for r in rows for k in r.extra))
    w = csv.DictWriter(buf, fieldnames=[*COLUMNS, *extra], lineterminator="\n", restval="")
    w.writeheader()
    for r in rows:
        w.writerow(r.to_json())
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
