"""THE mover: the only code in cleaner that moves files.

Why it looks like this: people run cleaner on their only copy of a dataset, so a move must
never overwrite, must be recorded before it happens, must survive a crash at any instant and
must be reversible.

- **Write-ahead journal**: ``R/.cleaner/journal/<run-id>.jsonl``, append-only JSON lines. For
  each batch the intents (``src``, actual ``dst``, ``sha256``) are written and fsync'd *before*
  any of the batch's moves, then the moves run, and the
  ``done`` records are written and fsync'd. Two fsyncs per batch, not per file, keep 100,000
  moves fast.
- **No overwrite, even in a race**: ``renameat2(RENAME_NOREPLACE)`` (Linux; ``renamex_np
  (RENAME_EXCL)`` on macOS), falling back to ``link`` + ``unlink`` where the file system lacks
  it. Both fail with ``FileExistsError`` when the destination exists; there is no
  check-then-rename window. A name collision gets a suffix (``a.jpg`` -> ``a~1.jpg``).
- **A lock on ROOT**: ``fcntl.flock`` on ``R/.cleaner/lock``; a second writer gets one line.
- **Recovery** at the start of every writing command: an intent without ``done`` is completed
  or rolled back by looking at the disk (after a crash between ``link`` and ``unlink`` both
  names exist: same inode means ours, so the source name is dropped) and checked by sha256.
- **Undo** of a run (the latest by default) back to the exact original paths, itself journaled;
  a file whose sha256 changed since is left alone and reported.

Directories created for moves are left in place (never delete; empty folders are harmless).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import json
import os
import posixpath
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from cleaner.atomic import fsync_dir
from cleaner.dataset import (
    STATE_DIR,
    Workspace,
    check_relpath,
    resolve_inside,
    state_path,
)
from cleaner.errors import CleanerError, LockedError, PathEscapeError
from cleaner.hashing import file_sha256
from cleaner.state import WsLike
from cleaner.state.runs import INDEXED as _INDEXED
from cleaner.state.runs import Record, RunInfo, journal_dir, list_runs, run_files, run_path
from cleaner.state.runs import first_record as _first_record
from cleaner.state.runs import last_record as _last_record
from cleaner.state.runs import read_records as _read_records

LOCK_FILE = "lock"
BATCH_SIZE = 512
"""Moves per fsync group: large enough that fsyncs cost little per move, small enough that a
crash leaves few intents to recover."""

_DELAY_ENV = "CLEANER_TEST_MOVE_DELAY"
"""Seconds to sleep between the steps of each move: only for the crash tests, which SIGKILL a
real subprocess and need the kill to land between steps."""
_BATCH_ENV = "CLEANER_TEST_BATCH_SIZE"
"""Overrides :data:`BATCH_SIZE` (the crash tests use small batches so kills land in all
phases of a batch)."""
_METHOD_ENV = "CLEANER_MOVE_METHOD"
"""``link`` forces the link+unlink fallback (tests cover both code paths)."""


# --------------------------------------------------------------------------- public records


@dataclass(frozen=True)
class Move:
    """One wanted move, ROOT-relative paths. ``dst`` is the wanted destination: a collision gets
    a suffix. ``sha256`` (when known) must still match the file, or the move is skipped."""

    src: str
    dst: str
    sha256: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class MoveResult:
    """What happened to one :class:`Move`."""

    src: str
    wanted: str
    dst: str | None
    """Where the file is now (``None`` when it was not moved)."""
    status: str
    """``moved`` or ``skipped``."""
    sha256: str | None = None
    why: str = ""


@dataclass(frozen=True)
class RecoveryReport:
    """What :func:`recover` found in journals left unfinished by a crash."""

    runs: list[str] = field(default_factory=list)
    completed: int = 0
    rolled_back: int = 0
    problems: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.runs)

    def message(self) -> str:
        """The one line every command that recovers prints (on stderr)."""
        return (
            f"recovered interrupted run(s) {', '.join(self.runs)}: {self.completed} moves "
            f"completed, {self.rolled_back} rolled back"
            + (f"; problems: {'; '.join(self.problems)}" if self.problems else "")
        )


@dataclass(frozen=True)
class AppliedRun:
    """A journaled run of moves."""

    run_id: str
    command: str
    results: list[MoveResult]
    recovery: RecoveryReport = field(default_factory=RecoveryReport)

    @property
    def moved(self) -> list[MoveResult]:
        return [r for r in self.results if r.status == "moved"]

    @property
    def skipped(self) -> list[MoveResult]:
        return [r for r in self.results if r.status != "moved"]


@dataclass(frozen=True)
class UndoResult:
    """An undo: ``run_id`` is the undo's own journal, ``undone_run`` the run it reversed."""

    run_id: str
    undone_run: str
    restored: list[MoveResult]
    left: list[MoveResult]
    recovery: RecoveryReport = field(default_factory=RecoveryReport)

    def summary(self) -> dict[str, Any]:
        """What ``cleaner undo --json`` prints."""
        return {
            "undone_run": self.undone_run,
            "run_id": self.run_id,
            "restored": len(self.restored),
            "left": [{"path": r.src, "original": r.wanted, "why": r.why} for r in self.left],
            "recovered": self.recovery.runs,
            "problems": self.recovery.problems,
        }


# --------------------------------------------------------------------------- paths and lock


def _workspace(where: WsLike) -> Workspace:
    """``where`` as a workspace: itself, or a bare one for a path (ROOT resolved; no class
    folders needed: the journal only needs where ROOT is)."""
    if isinstance(where, Workspace):
        return where
    return Workspace(root=Path(os.path.realpath(where)))


_held: dict[str, tuple[int, int]] = {}
"""realpath(root) -> (fd, depth): the lock is re-entrant within a process (flock on a second
descriptor of the same file would block ourselves)."""


def _drop_inherited_locks() -> None:
    """In a forked child (a worker of the process pool): close the inherited lock descriptors.

    ``flock`` belongs to the open file, which a fork shares: a child that kept the descriptor
    would hold ROOT's lock after its parent died (``kill -9`` during a scan), and every later
    writer would be refused for a dead pid. Closing (never unlocking, which would release the
    parent's lock too) leaves the lock to the parent alone."""
    for fd, _ in _held.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_locks)


@contextlib.contextmanager
def write_lock(ws: WsLike) -> Iterator[None]:
    """Hold the write lock on ROOT (``R/.cleaner/lock``) for the block; re-entrant.

    A second process gets :class:`LockedError` at once (one line), never a wait that looks
    like a hang.
    """
    import fcntl

    key = os.path.realpath(ws)
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _held[key]
            _held[key] = (fd, depth - 1)
        return
    path = state_path(key, LOCK_FILE)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a lock file that is a symlink is never followed (and truncated) elsewhere
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as e:
        raise CleanerError(
            f"cannot open the lock file {path}: {e.strerror or e}; cleaner keeps its state in "
            f"{path.parent}, which must be a writable folder inside ROOT"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = ""
        with contextlib.suppress(OSError):
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            who = f" ({holder})" if holder else ""
            raise LockedError(
                f"another cleaner command is writing to {key}{who}; wait for it to finish "
                f"(lock file {path})"
            ) from None
        raise
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {_now()}\n".encode(), 0)
    _held[key] = (fd, 1)
    try:
        yield
    finally:
        fd, depth = _held[key]
        if depth > 1:  # pragma: no cover - unbalanced use
            _held[key] = (fd, depth - 1)
        else:
            del _held[key]
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


@contextlib.contextmanager
def writing(ws: Workspace) -> Iterator[RecoveryReport]:
    """Hold ROOT's write lock for the block; recover a crashed run once per command.

    Why once: every writing step used to take the lock and run recovery itself (twice in one
    ``separate --apply``). The first ``writing`` on a workspace recovers and yields its report;
    a later one (same command, lock re-entered) yields an empty report.
    """
    with write_lock(ws.root):
        if "recovered" in ws.memo:
            yield RecoveryReport()
            return
        rep = recover(ws)
        ws.memo["recovered"] = rep
        yield rep


# --------------------------------------------------------------------------- no-clobber move


def _load_rename_noreplace() -> Callable[[bytes, bytes], int] | None:
    """``renameat2(..., RENAME_NOREPLACE)`` (Linux) or ``renamex_np(..., RENAME_EXCL)`` (macOS)
    from libc, or None."""
    try:
        # CDLL(None): the libc already loaded into this process (find_library runs ldconfig)
        name = None if sys.platform.startswith("linux") else ctypes.util.find_library("c")
        libc = ctypes.CDLL(name, use_errno=True)
    except OSError:  # pragma: no cover
        return None
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        fn = libc.renameat2
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        fn.restype = ctypes.c_int
        at_fdcwd, noreplace = -100, 1

        def linux(src: bytes, dst: bytes) -> int:
            return int(fn(at_fdcwd, src, at_fdcwd, dst, noreplace))

        return linux
    if sys.platform == "darwin" and hasattr(libc, "renamex_np"):  # pragma: no cover
        fnm = libc.renamex_np
        fnm.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        fnm.restype = ctypes.c_int

        def darwin(src: bytes, dst: bytes) -> int:
            return int(fnm(src, dst, 0x4))

        return darwin
    return None  # pragma: no cover


_rename_noreplace = _load_rename_noreplace()
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP}


class _Mover:
    """Moves one file without ever replacing an existing one; remembers per run whether the
    file system supports the atomic call."""

    def __init__(self, delay: float = 0.0) -> None:
        self.atomic = _rename_noreplace is not None and os.environ.get(_METHOD_ENV) != "link"
        self.delay = delay

    def move(self, src: Path, dst: Path) -> None:
        """Raises FileExistsError when ``dst`` exists (also when it appeared a moment ago)."""
        if self.atomic and _rename_noreplace is not None:
            if _rename_noreplace(os.fsencode(src), os.fsencode(dst)) == 0:
                return
            err = ctypes.get_errno()
            if err == errno.EEXIST:
                raise FileExistsError(err, os.strerror(err), str(dst))
            if err not in _UNSUPPORTED:
                raise OSError(err, os.strerror(err), str(src))
            self.atomic = False  # this file system lacks it: link + unlink from now on
        os.link(src, dst, follow_symlinks=False)  # FileExistsError if dst exists
        if self.delay:
            time.sleep(self.delay)  # a crash here leaves both names: recovery decides
        try:
            os.unlink(src)
        except OSError:
            # could not drop the old name: take back the new one (same inode, nothing lost)
            if os.path.samefile(src, dst):
                os.unlink(dst)
            raise


# --------------------------------------------------------------------------- journal files


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def new_run_id() -> str:
    """A fresh run id: UTC time (sortable, readable) and a random tail (unique)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


class _Journal:
    """An append-only journal file; ``sync()`` flushes and fsyncs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        new = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        # a torn last line (crash mid-write) must not swallow the next record
        if not new and path.stat().st_size:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
        else:
            torn = False
        self.f: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if torn:
            self.f.write("\n")
        if new:
            self.sync()
            fsync_dir(path.parent)

    def write(self, record: Record) -> None:
        """Append one record (the shape every reader parses, :class:`Record`) as a line."""
        rec = record.to_json()
        line = json.dumps(rec, ensure_ascii=False, separators=(",", ":"))
        if not line.isascii():
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:
                # a name that is not UTF-8 (os gives it as surrogate escapes): \udcff in JSON
                # is reversible (json.loads gives the same str, os.fsencode the same bytes)
                line = json.dumps(rec, separators=(",", ":"))
        self.f.write(line + "\n")

    def sync(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.sync()
        self.f.close()


def _journal_paths(ws: WsLike) -> list[Path]:
    return run_files(ws)


def _pending_intents(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Index -> the last intent of that index with no outcome record after it."""
    pending: dict[int, dict[str, Any]] = {}
    for r in records:
        op = r.get("op")
        if op == "intent":
            pending[r["i"]] = r
        elif op in _INDEXED:
            pending.pop(r["i"], None)
    return pending


def _moves_done(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The intents that reached ``done``, in the order they were done; the sha256 is the one
    hashed at move time when the ``done`` record carries it (the moved content's)."""
    last: dict[int, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for r in records:
        op = r.get("op")
        if op == "intent":
            last[r["i"]] = r
        elif op == "done" and r["i"] in last:
            rec = last.pop(r["i"])
            if "sha256" in r:
                rec = {**rec, "sha256": r["sha256"]}
            out.append(rec)
    return out


# --------------------------------------------------------------------------- recovery


def _sha_or_none(p: Path) -> str | None:
    try:
        return file_sha256(p)
    except OSError:
        return None


def _recover_intent(ws: Workspace, rec: dict[str, Any]) -> tuple[str, str]:
    """Decide one unfinished intent from the disk: ('done'|'rollback'|'problem', why)."""
    src = ws.root / rec["src"]
    dst = ws.root / rec["dst"]
    sha = rec.get("sha256")
    has_src, has_dst = os.path.lexists(src), os.path.lexists(dst)
    if has_src and not has_dst:
        return "rollback", "the move had not happened"
    if has_src and has_dst:
        try:
            same = os.path.samefile(src, dst)
        except OSError:
            same = False
        if same:  # crash between link and unlink: the new name is ours, drop the old one
            if sha is not None and _sha_or_none(dst) != sha:
                return "problem", f"{rec['dst']} and {rec['src']} differ from the journal's sha256"
            os.unlink(src)
            return "done", "completed (both names existed)"
        return "rollback", f"{rec['dst']} belongs to another file; {rec['src']} left in place"
    if has_dst:
        if sha is None or _sha_or_none(dst) == sha:
            return "done", "the move had happened"
        return "problem", (
            f"{rec['src']} is gone and {rec['dst']} holds other content (sha256 differs); "
            "left as is"
        )
    return "problem", f"neither {rec['src']} nor {rec['dst']} exists; left as is"


def _unfinished(ws: Workspace) -> list[Path]:
    """Journals without an ``end`` or ``abort`` record: a crash (or a live writer) left them."""
    return [
        p for p in _journal_paths(ws) if (_last_record(p) or {}).get("op") not in ("end", "abort")
    ]


def pending_recovery(ws: WsLike) -> list[str]:
    """Run ids a crash left unfinished (recovered by the next writing command)."""
    return [p.stem for p in _unfinished(_workspace(ws))]


def recover(ws: WsLike) -> RecoveryReport:
    """Complete or roll back every unfinished journal under ROOT (a crash left it), under the
    write lock. Called at the start of every command that writes; cheap when nothing is left.
    """
    w = _workspace(ws)
    if not _unfinished(w):
        return RecoveryReport()
    runs: list[str] = []
    completed = rolled = 0
    problems: list[str] = []
    with write_lock(w):
        for p in _unfinished(w):  # again, under the lock: a writer may have just ended
            damaged: list[str] = []
            recs = _read_records(p, damaged)
            problems += [f"ignored damaged journal line: {d}" for d in damaged]
            j = _Journal(p)
            try:
                for i, rec in sorted(_pending_intents(recs).items()):
                    outcome, why = _recover_intent(w, rec)
                    j.write(Record(outcome, i=i, extra={"why": why, "recovered": True}))
                    if outcome == "done":
                        completed += 1
                    elif outcome == "rollback":
                        rolled += 1
                    else:
                        problems.append(f"{p.stem}: {why}")
                    j.sync()
                j.write(Record("abort", extra={"time": _now(), "why": "interrupted; recovered"}))
            finally:
                j.close()
            runs.append(p.stem)
    return RecoveryReport(runs=runs, completed=completed, rolled_back=rolled, problems=problems)


# --------------------------------------------------------------------------- applying moves


def _with_suffix(rel: str, n: int) -> str:
    """``x/a.jpg`` -> ``x/a~n.jpg``."""
    folder, _, name = rel.rpartition("/")
    stem, ext = posixpath.splitext(name)
    return f"{folder}/{stem}~{n}{ext}" if folder else f"{stem}~{n}{ext}"


def _next_seq(ws: Workspace) -> int:
    seqs = [r.seq for r in list_runs(ws)]
    return (max(seqs) if seqs else 0) + 1


@dataclass
class _Prepared:
    index: int
    move: Move
    src: str
    dst: str
    sha: str | None
    move_sha_differs: bool = False


class _Confine:
    """:func:`resolve_inside` with a per-folder cache: a run of 100,000 moves resolves each
    folder once, and a file itself only when it is a symlink."""

    def __init__(self, ws: Workspace) -> None:
        self.root = ws.root
        self.folders: set[str] = set()

    def check(self, rel: str) -> None:
        folder = rel.rpartition("/")[0]
        if folder and folder not in self.folders:
            resolve_inside(self.root, folder)
            link = Workspace(self.root).linked_folder(rel)
            if link is not None:
                target = os.path.relpath(os.path.realpath(os.path.join(self.root, link)), self.root)
                raise PathEscapeError(
                    f"{rel} lies in the linked folder {link} (a symlink to {target}); a file "
                    "moved through a folder link lands where the link leads, not where the plan "
                    "says, so cleaner never moves into or out of one: replace the link by a real "
                    "folder, or move the file by hand"
                )
            self.folders.add(folder)
        if os.path.islink(os.path.join(self.root, rel)):
            resolve_inside(self.root, rel)


@dataclass(frozen=True)
class _RunSpec:
    """What kind of run a :class:`_MoveRun` is: an apply (a taken name gets a suffix) or an undo
    pass (exact original names; ``of`` maps each move to the index it reverses)."""

    command: str
    run_id: str
    kind: str = "apply"
    undoes: str | None = None
    of: Sequence[int] | None = None
    suffix: bool = True
    verify: bool = True
    extra: dict[str, Any] | None = None
    end_fields: Callable[[list[MoveResult]], dict[str, Any]] | None = None
    """Extra keys of the ``end`` record, from the results (an undo says ``complete``)."""


class _MoveRun:
    """One journaled run of moves, in named steps (like a package manager's uninstall
    transaction): :meth:`begin` opens the journal, then per batch :meth:`prepare` decides each
    destination and journals the intent, :meth:`sync` makes the intents durable *before* any of
    the batch's moves, :meth:`move` moves each file, :meth:`record` journals what was done, and
    :meth:`finish` writes the ``end`` record.

    Why a class: the steps share the run's bookkeeping (names an earlier move of this run fills
    or empties, folders already made, the journal file); as closures of one long function they
    could not be read or tested one at a time.

    Planning only looks at names: a name an earlier move of this run empties counts as free, a
    name an earlier move fills counts as taken, so swaps and chains across classes plan right
    at any batch size (a plan that proves wrong at move time meets the no-clobber rename, never
    a file). Each file is hashed just before its own move, under the lock, and that hash is the
    one the journal keeps.
    """

    def __init__(
        self,
        ws: Workspace,
        moves: Sequence[Move],
        norm: Sequence[tuple[str, str]],
        spec: _RunSpec,
    ) -> None:
        self.ws, self.rs = ws, str(ws.root)
        self.moves, self.norm, self.spec = moves, norm, spec
        self.delay = float(os.environ.get(_DELAY_ENV, "0") or 0)
        self.batch_size = max(1, int(os.environ.get(_BATCH_ENV) or BATCH_SIZE))
        self.mover = _Mover(self.delay)
        self.results: list[MoveResult | None] = [None] * len(moves)
        self.claimed: set[str] = set()  # names an earlier move of this run fills
        self.freed: set[str] = set()  # names an earlier move of this run empties
        self.made: set[str] = set()  # destination folders known to exist
        self.pinned = _link_targets(ws)
        self.confine = _Confine(ws)
        self.j: _Journal | None = None

    # ------------------------------------------------------------------ the steps

    def begin(self) -> None:
        """Open a new journal and write (fsync'd) its ``begin`` record: a crash from here on
        leaves a journal that the next writing command recovers."""
        s = self.spec
        jpath = run_path(self.ws.root, s.run_id)
        if jpath.exists():
            raise CleanerError(
                f"run id {s.run_id!r} already has a journal ({jpath}); use a new run id"
            )
        fields: dict[str, Any] = {
            "run": s.run_id,
            "seq": _next_seq(self.ws),
            "kind": s.kind,
            "command": s.command,
            "created": _now(),
            "pid": os.getpid(),
            "moves": len(self.moves),
        }
        if s.undoes:
            fields["undoes"] = s.undoes
        fields.update(s.extra or {})
        self.j = _Journal(jpath)
        self.j.write(Record("begin", extra=fields))
        self.j.sync()

    def prepare(self, k: int) -> _Prepared | None:
        """Move ``k``'s destination (a suffix when the name is taken and the run allows one),
        its intent written to the journal; None, with a ``skip`` record, when it cannot move."""
        m = self.moves[k]
        src, want = self.norm[k]
        why = self._refusal(k, src, want)
        dst = want
        n = 0
        while not why and self.spec.suffix and self._exists(dst):
            n += 1
            dst = _with_suffix(want, n)
        if not why and self._exists(dst):
            why = f"{m.dst} is occupied by another file; {m.src} left in place"
        if why:
            self._skip(k, why, m.sha256, journaled_intent=False)
            return None
        self.claimed.add(dst)
        self.claimed.discard(src)
        self.freed.add(src)
        self.freed.discard(dst)
        self._intent(k, src, dst, m.sha256, m.reason)
        return _Prepared(k, m, src, dst, m.sha256)

    def sync(self) -> None:
        """fsync the journal: the write-ahead point of a batch."""
        assert self.j is not None
        self.j.sync()

    def move(self, pr: _Prepared) -> bool:
        """Move one prepared file: re-hash it (it must still be what was planned), make its
        folder, then the no-clobber rename; a name taken meanwhile gets the next suffix and a
        new intent on disk before it is tried."""
        sha = self._verified_sha(pr)
        if sha is None or not self._make_folder(pr, sha):
            return False
        for attempt in range(1000):
            try:
                self.mover.move(Path(self.rs, pr.src), Path(self.rs, pr.dst))
            except FileExistsError:
                if not self.spec.suffix or attempt == 999:
                    why = f"{pr.move.dst} appeared meanwhile; {pr.move.src} left in place"
                    self._fail(pr, why, sha)
                    return False
                self._next_name(pr)
                continue
            except OSError as e:
                self._fail(pr, f"{pr.move.src} could not be moved: {e.strerror or e}", sha)
                return False
            pr.sha = sha
            m = pr.move
            self.results[pr.index] = MoveResult(m.src, m.dst, pr.dst, "moved", sha, m.reason)
            return True
        return False  # pragma: no cover - the loop returns

    def record(self, done: Sequence[_Prepared]) -> None:
        """Journal the batch's ``done`` records (with the sha256 hashed at move time when it
        differs from the planned one), then fsync.

        No fsync of the touched folders: on ext4/XFS the journal's fsync commits the renames
        with it; elsewhere a ``done`` whose rename a power cut lost is harmless, because undo
        and recovery look at the disk (by sha256), never trust the record."""
        assert self.j is not None
        for pr in done:  # the sha256 only where it differs from the intent's
            self.j.write(Record("done", i=pr.index, sha256=pr.sha if pr.move_sha_differs else None))
        self.j.sync()

    def finish(self) -> list[MoveResult]:
        """Write the ``end`` record (a journal with one is never recovered) and return what
        happened to each move."""
        assert self.j is not None
        results = [r for r in self.results if r is not None]
        n_moved = sum(1 for r in results if r.status == "moved")
        more = self.spec.end_fields(results) if self.spec.end_fields else {}
        self.j.write(Record("end", extra={"time": _now(), "moved": n_moved, **more}))
        return results

    def run(self, progress: bool | None) -> list[MoveResult]:
        """All the steps, batch after batch; the journal is closed (and fsync'd) whatever
        happens."""
        show = sys.stderr.isatty() if progress is None else progress
        total = len(self.moves)
        bar = tqdm(total=total, desc=self.spec.command, unit="file", disable=not show, leave=False)
        try:
            self.begin()
            for start in range(0, total, self.batch_size):
                stop = min(start + self.batch_size, total)
                self._batch(range(start, stop))
                bar.update(stop - start)
            return self.finish()
        finally:
            bar.close()
            if self.j is not None:
                self.j.close()

    def _batch(self, ks: range) -> None:
        """prepare -> sync (write-ahead) -> move each -> record."""
        batch = [pr for k in ks if (pr := self.prepare(k)) is not None]
        self.sync()
        done: list[_Prepared] = []
        for pr in batch:
            self._pause()
            intended = pr.sha
            if self.move(pr):
                done.append(pr)
                pr.move_sha_differs = pr.sha != intended
            self._pause()
        self.record(done)

    # ------------------------------------------------------------------ helpers of the steps

    def _pause(self) -> None:
        if self.delay:  # only the crash tests set it
            time.sleep(self.delay)

    def _exists(self, rel: str) -> bool:
        """The name as this run leaves it: filled or emptied by an earlier move, else the disk."""
        if rel in self.claimed:
            return True
        return rel not in self.freed and os.path.lexists(os.path.join(self.rs, rel))

    def _refusal(self, k: int, src: str, want: str) -> str:
        """Why move ``k`` cannot run at all ("" when it can): a path through a folder link or
        out of ROOT, a source that is gone, a symlink, or the target of a listed link."""
        m = self.moves[k]
        try:  # a symlinked folder along either path must not lead out of ROOT
            self.confine.check(src)
            self.confine.check(want)
        except PathEscapeError as e:
            return str(e)
        if not self._exists(src):
            return f"{m.src} no longer exists"
        if src not in self.claimed and os.path.islink(os.path.join(self.rs, src)):
            return f"{m.src} is a symlink; cleaner moves files, never links (a moved link dangles)"
        if src in self.pinned:
            return (
                f"{m.src} is the target of the symlink {self.pinned[src]}, which would dangle; "
                "replace the link by a copy (or remove it) and rerun"
            )
        return ""

    def _intent(self, k: int, src: str, dst: str, sha: str | None, reason: str) -> None:
        assert self.j is not None
        extra: dict[str, Any] = {"reason": reason} if reason else {}
        if self.spec.of is not None:
            extra["of"] = self.spec.of[k]
        self.j.write(Record("intent", i=k, src=src, dst=dst, sha256=sha, extra=extra))

    def _skip(self, k: int, why: str, sha: str | None, *, journaled_intent: bool) -> None:
        """Record move ``k`` as skipped: a ``fail`` closes a journaled intent, a ``skip`` notes
        a move that never got one."""
        assert self.j is not None
        m = self.moves[k]
        self.results[k] = MoveResult(m.src, m.dst, None, "skipped", sha, why)
        if journaled_intent:
            self.j.write(Record("fail", i=k, extra={"why": why}))
        else:
            self.j.write(Record("skip", src=m.src, dst=m.dst, extra={"why": why}))

    def _fail(self, pr: _Prepared, why: str, sha: str | None) -> None:
        self._skip(pr.index, why, sha, journaled_intent=True)
        self.claimed.discard(pr.dst)
        self.freed.discard(pr.src)  # it stays where it was

    def _verified_sha(self, pr: _Prepared) -> str | None:
        """The file's sha256 hashed now, under the lock (the moved content's), or the planned
        one when the run does not verify; None (move failed) when it is unreadable or changed."""
        if not self.spec.verify and pr.sha is not None:
            return pr.sha
        sha = _sha_or_none(Path(self.rs, pr.src))
        if sha is None:
            self._fail(pr, f"{pr.move.src} cannot be read", None)
        elif pr.sha is not None and sha != pr.sha:
            self._fail(pr, f"{pr.move.src} changed since it was planned (sha256 differs)", sha)
            return None
        return sha

    def _make_folder(self, pr: _Prepared, sha: str) -> bool:
        folder = pr.dst.rpartition("/")[0]
        if not folder or folder in self.made:
            return True
        try:
            os.makedirs(os.path.join(self.rs, folder), exist_ok=True)
        except OSError as e:  # e.g. a file where the folder should be
            self._fail(pr, f"folder {folder} cannot be created: {e.strerror or e}", sha)
            return False
        self.made.add(folder)
        return True

    def _next_name(self, pr: _Prepared) -> None:
        """The name was taken after it was chosen: the next free suffix, journaled (and
        fsync'd) before it is tried."""
        want = self.norm[pr.index][1]
        n = 1
        while self._exists(_with_suffix(want, n)) or os.path.lexists(
            os.path.join(self.rs, _with_suffix(want, n))
        ):
            n += 1
        self.claimed.discard(pr.dst)
        pr.dst = _with_suffix(want, n)
        self.claimed.add(pr.dst)
        self._intent(pr.index, pr.src, pr.dst, pr.sha, pr.move.reason)
        self.sync()


def _run_moves(
    ws: Workspace,
    moves: Sequence[Move],
    norm: Sequence[tuple[str, str]],
    spec: _RunSpec,
    progress: bool | None,
) -> list[MoveResult]:
    """The journaled move loop shared by :func:`apply_moves` and :func:`undo` (see
    :class:`_MoveRun`); ``norm`` holds each move's (src, dst) checked by :func:`_validate_moves`."""
    return _MoveRun(ws, moves, norm, spec).run(progress)


def _validate_moves(moves: Sequence[Move]) -> list[tuple[str, str]]:
    """Each move's (src, dst) normalised; refuses the whole list when one leaves ROOT, names
    ``.cleaner/`` or a source appears twice."""
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for m in moves:
        # names found on disk: a backslash in them is a character, never a separator
        src = str(check_relpath(m.src, backslash_is_separator=False))
        dst = str(check_relpath(m.dst, backslash_is_separator=False))
        for rel, name in ((src, m.src), (dst, m.dst)):
            if rel.split("/", 1)[0] == STATE_DIR:
                raise PathEscapeError(f"path {name!r} is inside {STATE_DIR}/, cleaner's own state")
        if src in seen:
            raise CleanerError(f"the move list names {m.src!r} twice; each file moves once per run")
        seen.add(src)
        out.append((src, dst))
    return out


def apply_moves(
    ws: WsLike,
    moves: Sequence[Move],
    *,
    command: str,
    run_id: str | None = None,
    progress: bool | None = None,
    verify: bool = True,
    extra: dict[str, Any] | None = None,
) -> AppliedRun:
    """Move files inside ROOT, journaled, never overwriting; returns what happened to each.

    Takes the ROOT lock and recovers any unfinished journal first (once per workspace: see
    :func:`writing`). ``verify`` re-hashes each source so a file changed since it was planned
    (``Move.sha256`` differs) is skipped, and so the journal holds every file's sha256 for
    recovery and undo. Paths are checked before anything moves: one that leaves ROOT or names
    ``.cleaner/`` refuses the whole list. ``extra`` adds keys to the journal's ``begin`` record
    (e.g. the plan file). Stages do not call this directly: they propose a
    :class:`cleaner.moves.MovePlan` and :func:`cleaner.moves.execute` applies it.
    """
    w = _workspace(ws)
    norm = _validate_moves(moves)
    rid = run_id or new_run_id()
    with writing(w) as rep:
        if not moves:
            return AppliedRun(rid, command, [], rep)
        spec = _RunSpec(command, rid, verify=verify, extra=extra)
        results = _run_moves(w, moves, norm, spec, progress)
    return AppliedRun(rid, command, results, rep)


# --------------------------------------------------------------------------- undo


def _link_targets(ws: Workspace) -> dict[str, str]:
    """target -> symlink, for the symlinks inside ROOT that the last scan listed: moving a
    target would leave its link dangling, so the mover leaves it (see ``cleaner.manifest``)."""
    from cleaner.state.manifest import link_targets

    return link_targets(ws)  # the command's scan rows when it has scanned: no second read


def _undone_indices(ws: Workspace, run_id: str) -> set[int]:
    """Indices of ``run_id``'s moves already reversed by (possibly interrupted) undo runs."""
    out: set[int] = set()
    for p in _journal_paths(ws):
        if _first_record(p).get("undoes") != run_id:
            continue
        for rec in _moves_done(_read_records(p)):
            if "of" in rec:
                out.add(int(rec["of"]))
    return out


_RETRY = ("is occupied by another file", "appeared meanwhile")
"""Why-texts of an undo move that another undo move of the same run may have unblocked."""


def _moved_nothing(r: RunInfo) -> bool:
    """A finished run whose every move was skipped (an accept the mover refused, a plan whose
    files all changed): there is nothing to undo, so it is never "the last run" of undo."""
    return r.finished and r.moved == 0


def _pick_run(ws: Workspace, runs: list[RunInfo], run_id: str | None) -> RunInfo:
    applied = [r for r in runs if r.kind == "apply"]
    undone = {r.undoes for r in runs if r.kind == "undo" and r.finished and r.complete}
    if run_id is None:
        todo = [r for r in applied if r.run_id not in undone and not _moved_nothing(r)]
        if not todo:
            raise CleanerError(
                f"no applied run to undo under {ws.root}: "
                + (
                    f"all {len(applied)} applied runs are undone already or moved no file"
                    if applied
                    else "nothing has been applied there yet"
                )
            )
        return todo[-1]
    named = [r for r in runs if r.run_id == run_id]
    if not named:
        known = ", ".join(r.run_id for r in applied[-5:]) or "none"
        raise CleanerError(f"no run {run_id!r} under {ws.root}; recent applied runs: {known}")
    if named[0].kind != "apply":
        raise CleanerError(
            f"run {run_id!r} is itself an undo (of {named[0].undoes}); name an applied run"
        )
    if _moved_nothing(named[0]):
        raise CleanerError(f"run {run_id!r} moved no file; there is nothing to undo")
    return named[0]


def _undo_moves(
    ws: Workspace, run_id: str, recs: list[dict[str, Any]]
) -> tuple[list[Move], list[int], list[MoveResult]]:
    """The moves that put back what is still out of place, latest first, and what cannot be."""
    root = ws.root
    already = _undone_indices(ws, run_id)
    done = [r for r in _moves_done(recs) if r["i"] not in already]
    done.reverse()  # last moved, first restored: chains inside a run unwind in order
    moves: list[Move] = []
    of: list[int] = []
    left: list[MoveResult] = []
    for r in done:
        src, dst, sha = str(r["src"]), str(r["dst"]), r.get("sha256")
        if not os.path.lexists(root / dst):
            if os.path.lexists(root / src) and sha and _sha_or_none(root / src) == sha:
                continue  # already back where it was
            why = f"{dst} no longer exists (moved by a later run? undo that one first)"
            left.append(MoveResult(dst, src, None, "skipped", sha, why))
            continue
        moves.append(Move(src=dst, dst=src, sha256=sha, reason="undo"))
        of.append(r["i"])
    return moves, of, left


def _complete(gone: bool, results: list[MoveResult]) -> dict[str, Any]:
    """The ``end`` fields of an undo pass: the run is undone when a pass leaves nothing out."""
    return {"complete": not gone and all(r.status == "moved" for r in results)}


def _undo_marker(ws: Workspace, target: str) -> str:
    """An empty undo journal that records ``target`` as wholly undone."""
    uid = new_run_id()
    j = _Journal(run_path(ws.root, uid))
    try:
        begin = {"run": uid, "seq": _next_seq(ws), "kind": "undo", "undoes": target,
                 "command": f"undo {target}", "created": _now(), "moves": 0}  # fmt: skip
        j.write(Record("begin", extra=begin))
        j.write(Record("end", extra={"time": _now(), "moved": 0, "complete": True}))
    finally:
        j.close()
    return uid


@dataclass
class _UndoPasses:
    """What the passes of one undo did: restored files, files left, the last pass's journal."""

    restored: list[MoveResult] = field(default_factory=list)
    left: list[MoveResult] = field(default_factory=list)
    run_id: str = ""
    recorded: bool = False
    """A pass's ``end`` record already says the run is wholly undone."""


def _undo_passes(
    ws: Workspace, target: str, recs: list[dict[str, Any]], progress: bool | None
) -> _UndoPasses:
    """Undo moves in passes until none unblocks another (names repeated across classes,
    swaps): each pass is a journaled run of its own, recovered like any other after a crash."""
    out = _UndoPasses()
    for _ in range(50):  # each pass restores at least one file, or the loop ends
        moves, of, gone = _undo_moves(ws, target, recs)
        if not moves:
            out.left = gone
            break
        out.run_id = new_run_id()
        spec = _RunSpec(
            f"undo {target}",
            out.run_id,
            kind="undo",
            undoes=target,
            of=of,
            suffix=False,
            # the run is undone when a pass leaves nothing out of place
            end_fields=functools.partial(_complete, bool(gone)),
        )
        results = _run_moves(ws, moves, _validate_moves(moves), spec, progress)
        moved = [r for r in results if r.status == "moved"]
        out.restored += moved
        stuck = [r for r in results if r.status != "moved"]
        out.recorded = not gone and not stuck
        if not moved or not any(w in r.why for r in stuck for w in _RETRY):
            out.left = gone + stuck
            break
    return out


def undo(ws: WsLike, run_id: str | None = None, *, progress: bool | None = None) -> UndoResult:
    """Reverse an applied run (the latest not wholly undone, or ``run_id``) to the exact
    original paths. A file whose sha256 changed since, that is gone, or whose original path is
    taken by a file of no undo move is left alone and reported; the run then stays open, so
    ``undo`` again retries what is left. Undo moves go in passes (:func:`_undo_passes`), each a
    journaled run itself, so a crash during it is recovered like any other, and running
    ``undo`` again finishes it.
    """
    w = _workspace(ws)
    jdir = journal_dir(w.root)
    if not jdir.is_dir():
        what = "no applied run to undo" if run_id is None else f"no run {run_id!r}"
        raise CleanerError(
            f"{what} under {w.root}: the journal folder {jdir} is missing, so undo has no record "
            "of any run there (nothing was applied, or the journal was deleted: then earlier "
            "moves cannot be undone automatically)"
        )
    with writing(w) as rep:
        target = _pick_run(w, list_runs(w), run_id)
        damaged: list[str] = []
        recs = _read_records(run_path(w.root, target.run_id), damaged)
        passes = _undo_passes(w, target.run_id, recs, progress)
        uid = passes.run_id
        if not passes.left and not passes.recorded:  # all back, no pass said so: record it
            marker = _undo_marker(w, target.run_id)
            uid = uid or marker
    left = [
        MoveResult(
            r.src,
            r.wanted,
            None,
            "skipped",
            r.sha256,
            r.why.replace("changed since it was planned", "changed since the run"),
        )
        for r in passes.left
    ]
    notes = [f"ignored damaged journal line: {d}" for d in damaged]
    if any(n not in rep.problems for n in notes):
        extra = [n for n in notes if n not in rep.problems]
        rep = RecoveryReport(rep.runs, rep.completed, rep.rolled_back, [*rep.problems, *extra])
    return UndoResult(uid, target.run_id, passes.restored, left, rep)
