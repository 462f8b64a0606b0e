"""What the report reads that is not a state file: the quarantine folder's contents.

State files (plans, duplicates, split, journal runs, metrics) are read through
:mod:`cleaner.state`."""

from __future__ import annotations

import os
from pathlib import Path

from cleaner.dataset import Workspace


def quarantined_files(ws: Workspace) -> list[tuple[str, str]]:
    """(ROOT-relative path, reason folder) for every file under ``R/quarantine/``."""
    root = ws.root
    q = ws.quarantine_dir
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
