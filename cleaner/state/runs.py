"""``R/.cleaner/journal/<run>.jsonl``: the journal's runs, one JSON record a line.

The journal (:mod:`cleaner.journal`) appends these records, holds the lock and recovers them;
this module is the one place that *parses* them: :func:`read_records` (every well-formed record
of a run, a torn last line after a crash ignored, a damaged line listed), :func:`first_record`
and :func:`last_record` (cheap reads of a run's ``begin`` and last record), the typed
:class:`Record` (one line, unknown keys kept in ``extra``), :class:`RunInfo` and
:func:`list_runs` (a run as a reader sees it), and :func:`journal_moves` (where each journaled
move put a file). The journal, the report and ``cleaner undo`` all read runs here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleaner.dataset import STATE_DIR, check_relpath, state_path
from cleaner.errors import PathEscapeError
from cleaner.state import WsLike

JOURNAL_DIR = "journal"
SUFFIX = ".jsonl"
"""Format version 1: one JSON object a line, ``{"op": "begin"|"intent"|"done"|...}``."""
INDEXED = frozenset({"intent", "done", "rollback", "fail", "problem"})
"""The ops that name a move by its index ``i``."""


def journal_dir(ws: WsLike) -> Path:
    """``R/.cleaner/journal`` (ROOT resolved: the lock and the journal key on the real path)."""
    return state_path(ws, JOURNAL_DIR)


def run_path(ws: WsLike, run_id: str) -> Path:
    """The journal file of run ``run_id``."""
    return journal_dir(ws) / f"{run_id}{SUFFIX}"


def run_relpath(run_id: str) -> str:
    """The same, relative to ROOT (as plans record it)."""
    return f"{STATE_DIR}/{JOURNAL_DIR}/{run_id}{SUFFIX}"


def run_files(ws: WsLike) -> list[Path]:
    """Every run's journal file, by name; a symlink among them is never read or appended to
    (recovery would write through it, outside ROOT)."""
    d = journal_dir(ws)
    return sorted(p for p in d.glob(f"*{SUFFIX}") if not p.is_symlink()) if d.is_dir() else []


# ------------------------------------------------------------------------------ one record


def well_formed(rec: object) -> bool:
    """A record every reader can use: a damaged line (``{"op":"intent"}``, ``"i":"x"``, a path
    that is not a string) must never stop recovery, apply or undo with a traceback."""
    if not isinstance(rec, dict):
        return False
    op = rec.get("op")
    if op not in INDEXED:
        return isinstance(op, str)
    i = rec.get("i")
    if not isinstance(i, int) or isinstance(i, bool) or i < 0:
        return False
    if "sha256" in rec and not (rec["sha256"] is None or isinstance(rec["sha256"], str)):
        return False
    if op == "intent":
        for k in ("src", "dst"):
            v = rec.get(k)
            if not isinstance(v, str):
                return False
            try:
                check_relpath(v, backslash_is_separator=False)
            except PathEscapeError:
                return False
        if "of" in rec and (not isinstance(rec["of"], int) or isinstance(rec["of"], bool)):
            return False
    return True


def _parse(line: bytes | str) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


@dataclass(frozen=True)
class Record:
    """One journal line, typed: its ``op``, the move index ``i`` (indexed ops), ``src``,
    ``dst`` and ``sha256`` (an intent's, None when the move's hash was not known, or a done's
    hash at move time); every other key (``run``, ``seq``, ``kind``, ``command``, ``moved``...)
    is kept in ``extra``, in order. The journal (:mod:`cleaner.journal`) writes each line as
    a Record's :meth:`to_json`, and every line reads back as the same Record."""

    op: str
    i: int | None = None
    src: str = ""
    dst: str = ""
    sha256: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    OWN = ("op", "i", "src", "dst", "sha256")

    @classmethod
    def from_json(cls, rec: Mapping[str, Any]) -> Record:
        """A :func:`well_formed` record."""
        i = rec.get("i")
        return cls(
            op=str(rec["op"]),
            i=i if isinstance(i, int) and not isinstance(i, bool) else None,
            src=str(rec.get("src") or ""),
            dst=str(rec.get("dst") or ""),
            sha256=sha if isinstance(sha := rec.get("sha256"), str) else None,
            extra={k: v for k, v in rec.items() if k not in cls.OWN},
        )

    def to_json(self) -> dict[str, Any]:
        """The line's object: ``op``, then ``i``, ``src`` and ``dst`` where set, ``sha256``
        where known (an intent always names it, ``null`` when unknown), then ``extra``."""
        d: dict[str, Any] = {"op": self.op}
        if self.i is not None:
            d["i"] = self.i
        d.update((k, v) for k in ("src", "dst") if (v := getattr(self, k)))
        if self.sha256 is not None or self.op == "intent":
            d["sha256"] = self.sha256
        d.update(self.extra)
        return d


def read_records(path: Path, damaged: list[str] | None = None) -> list[dict[str, Any]]:
    """Records of one journal. A torn last line (crash mid-write, never fsync'd, so its moves
    never ran) is ignored; so is any other damaged line (not JSON, or a record missing its
    index or paths), which is listed in ``damaged``: ignoring it is safe, because recovery and
    undo decide every move by looking at the disk, and an intent whose ``done`` is unreadable is
    decided like one a crash left."""
    out: list[dict[str, Any]] = []
    lines = path.read_bytes().split(b"\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        rec = _parse(line)
        if rec is None and n == len(lines):  # a torn last line: the crash case, not damage
            continue
        if well_formed(rec):
            out.append(rec)
        elif damaged is not None:
            damaged.append(f"{path.name} line {n}")
    return out


def last_record(path: Path) -> dict[str, Any] | None:
    """The last complete record, reading only the file's tail (cheap on 100,000-line journals)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4096))
            tail = f.read()
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        rec = _parse(line)
        if well_formed(rec):  # a damaged line after ``end`` does not reopen the run
            return dict(rec)
    return None


def first_record(path: Path) -> dict[str, Any]:
    """The ``begin`` record (the first line), without reading the rest of the journal; ``{}``
    when the first line is not one."""
    try:
        with open(path, "rb") as f:
            rec = _parse(f.readline())
    except OSError:
        return {}
    if not isinstance(rec, dict) or rec.get("op") != "begin":
        return {}
    seq = rec.get("seq", 0)
    if not isinstance(seq, int) or isinstance(seq, bool):
        rec["seq"] = 0
    return rec


# ------------------------------------------------------------------------------ runs


@dataclass(frozen=True)
class RunInfo:
    """One journal as :func:`list_runs` sees it."""

    run_id: str
    seq: int
    kind: str
    """``apply`` or ``undo``."""
    command: str
    created: str
    undoes: str | None
    finished: bool
    """An ``end`` record was written (an ``abort`` means a crash, recovered)."""
    moved: int
    complete: bool = True
    """For an undo: it put back every file of the run (a pass that left files is not)."""


def _run_info(p: Path) -> RunInfo | None:
    b = first_record(p)
    if not b:
        return None
    last = last_record(p) or {}
    finished = last.get("op") == "end"
    if finished and isinstance(last.get("moved"), int):
        moved = int(last["moved"])
    else:
        try:
            moved = sum(1 for r in read_records(p) if r.get("op") == "done")
        except OSError:
            moved = 0
    undoes = b.get("undoes")
    return RunInfo(
        run_id=str(b.get("run", p.stem)),
        seq=int(b.get("seq", 0)),
        kind=str(b.get("kind", "apply")),
        command=str(b.get("command", "")),
        created=str(b.get("created", "")),
        undoes=str(undoes) if undoes is not None else None,
        finished=finished,
        moved=moved,
        complete=finished and last.get("complete", True) is True,
    )


def list_runs(ws: WsLike) -> list[RunInfo]:
    """Every journaled run under ROOT, oldest first (by sequence number). Reads each journal's
    first and last lines only, unless a crash left it without an ``end``."""
    runs = [r for p in run_files(ws) if (r := _run_info(p)) is not None]
    runs.sort(key=lambda r: (r.seq, r.run_id))
    return runs


@dataclass(frozen=True)
class JournaledMove:
    """Where a journaled move put a file, and why (:func:`journal_moves`)."""

    src: str
    sha256: str
    reason: str
    run: str
    command: str


def journal_moves(ws: WsLike) -> dict[str, JournaledMove]:
    """Where each journaled move put a file: dst -> its move, the latest move to each dst
    winning (read-only)."""
    out: dict[str, JournaledMove] = {}
    for path in sorted(run_files(ws), key=lambda p: p.stat().st_mtime_ns):
        intents: dict[int, Record] = {}
        run, command = path.stem, ""
        try:
            records = [Record.from_json(r) for r in read_records(path)]
        except OSError:
            continue
        for rec in records:
            if rec.op == "begin":
                run = str(rec.extra.get("run", run))
                command = str(rec.extra.get("command", ""))
            elif rec.op == "intent" and rec.i is not None:
                intents[rec.i] = rec
            elif rec.op == "done" and rec.i in intents:
                it = intents[rec.i]
                out[it.dst] = JournaledMove(
                    src=it.src,
                    sha256=it.sha256 or "",
                    reason=str(it.extra.get("reason") or ""),
                    run=run,
                    command=command,
                )
    return out
