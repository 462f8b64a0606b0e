"""``R/.cleaner/journal/<run>.jsonl`` as a reader sees it: where each journaled move put a
file. The journal (:mod:`cleaner.journal`) writes these files, holds the lock and recovers
them; this module only reads them, and tolerates a torn last line after a crash.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cleaner.dataset import STATE_DIR
from cleaner.state import state_path

JOURNAL_DIR = "journal"
SUFFIX = ".jsonl"
"""Format version 1: one JSON object a line, ``{"op": "begin"|"intent"|"done"|...}``."""


def journal_dir(root: str | os.PathLike[str]) -> Path:
    """``R/.cleaner/journal`` (ROOT resolved: the lock and the journal key on the real path)."""
    return state_path(root, JOURNAL_DIR)


def run_path(root: str | os.PathLike[str], run_id: str) -> Path:
    """The journal file of run ``run_id``."""
    return journal_dir(root) / f"{run_id}{SUFFIX}"


def run_relpath(run_id: str) -> str:
    """The same, relative to ROOT (as plans record it)."""
    return f"{STATE_DIR}/{JOURNAL_DIR}/{run_id}{SUFFIX}"


def run_files(root: str | os.PathLike[str]) -> list[Path]:
    """Every run's journal file, by name; a symlink among them is never read or appended to
    (recovery would write through it, outside ROOT)."""
    d = journal_dir(root)
    return sorted(p for p in d.glob(f"*{SUFFIX}") if not p.is_symlink()) if d.is_dir() else []


def journal_moves(root: Path) -> dict[str, dict[str, str]]:
    """Where each journaled move put a file: dst -> {"src", "sha256", "reason", "run",
    "command"}, the latest move to each dst winning (read-only; the journal's lines are
    ``{"op": "begin"|"intent"|"done"|...}`` JSON, see :mod:`cleaner.journal`)."""
    out: dict[str, dict[str, str]] = {}
    for path in sorted(run_files(root), key=lambda p: p.stat().st_mtime_ns):
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
