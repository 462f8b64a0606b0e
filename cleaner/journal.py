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
    linked_folder,
    resolve_inside,
    state_path,
)
from cleaner.errors import CleanerError, LockedError, PathEscapeError
from cleaner.hashing import file_sha256
from cleaner.state.runs import INDEXED as _INDEXED
from cleaner.state.runs import RunInfo, journal_dir, list_runs, run_files, run_path
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
def write_lock(root: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the write lock on ROOT (``R/.cleaner/lock``) for the block; re-entrant.

    A second process gets :class:`LockedError` at once (one line), never a wait that looks
    like a hang.
    """
    import fcntl

    key = os.path.realpath(root)
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
        rep = recover(ws.root)
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

    def write(self, rec: dict[str, Any]) -> None:
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


def _journal_paths(root: str | os.PathLike[str]) -> list[Path]:
    return run_files(root)


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


def _recover_intent(root: Path, rec: dict[str, Any]) -> tuple[str, str]:
    """Decide one unfinished intent from the disk: ('done'|'rollback'|'problem', why)."""
    src = root / rec["src"]
    dst = root / rec["dst"]
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


def _unfinished(root: Path) -> list[Path]:
    """Journals without an ``end`` or ``abort`` record: a crash (or a live writer) left them."""
    return [
        p for p in _journal_paths(root) if (_last_record(p) or {}).get("op") not in ("end", "abort")
    ]


def pending_recovery(root: str | os.PathLike[str]) -> list[str]:
    """Run ids a crash left unfinished (recovered by the next writing command)."""
    return [p.stem for p in _unfinished(Path(os.path.realpath(root)))]


def recover(root: str | os.PathLike[str]) -> RecoveryReport:
    """Complete or roll back every unfinished journal under ROOT (a crash left it), under the
    write lock. Called at the start of every command that writes; cheap when nothing is left.
    """
    rootp = Path(os.path.realpath(root))
    if not _unfinished(rootp):
        return RecoveryReport()
    runs: list[str] = []
    completed = rolled = 0
    problems: list[str] = []
    with write_lock(rootp):
        for p in _unfinished(rootp):  # again, under the lock: a writer may have just ended
            damaged: list[str] = []
            recs = _read_records(p, damaged)
            problems += [f"ignored damaged journal line: {d}" for d in damaged]
            j = _Journal(p)
            try:
                for i, rec in sorted(_pending_intents(recs).items()):
                    outcome, why = _recover_intent(rootp, rec)
                    j.write({"op": outcome, "i": i, "why": why, "recovered": True})
                    if outcome == "done":
                        completed += 1
                    elif outcome == "rollback":
                        rolled += 1
                    else:
                        problems.append(f"{p.stem}: {why}")
                    j.sync()
                j.write({"op": "abort", "time": _now(), "why": "interrupted; recovered"})
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


def _next_seq(root: Path) -> int:
    seqs = [r.seq for r in list_runs(root)]
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

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folders: set[str] = set()

    def check(self, rel: str) -> None:
        folder = rel.rpartition("/")[0]
        if folder and folder not in self.folders:
            resolve_inside(self.root, folder)
            link = linked_folder(self.root, rel)
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


def _run_moves(
    root: Path,
    moves: Sequence[Move],
    norm: Sequence[tuple[str, str]],
    *,
    command: str,
    run_id: str,
    kind: str,
    undoes: str | None,
    of: Sequence[int] | None,
    suffix: bool,
    verify: bool,
    progress: bool | None,
    extra: dict[str, Any] | None = None,
    end_fields: Callable[[list[MoveResult]], dict[str, Any]] | None = None,
) -> list[MoveResult]:
    """The journaled move loop shared by :func:`apply_moves` and :func:`undo`; ``norm`` holds
    each move's (src, dst) checked and normalised by :func:`_validate_moves`.

    Planning (per batch, before the write-ahead fsync) only looks at names: a name an earlier
    move of this run empties counts as free, a name an earlier move fills counts as taken, so
    swaps and chains across classes plan right at any batch size (a plan that proves wrong
    at move time meets the no-clobber rename, never a file). Each file is hashed just before
    its own move, under the lock, and that hash is the one the journal keeps.
    """
    delay = float(os.environ.get(_DELAY_ENV, "0") or 0)
    batch_size = max(1, int(os.environ.get(_BATCH_ENV) or BATCH_SIZE))
    mover = _Mover(delay)
    results: list[MoveResult | None] = [None] * len(moves)
    jpath = run_path(root, run_id)
    if jpath.exists():
        raise CleanerError(f"run id {run_id!r} already has a journal ({jpath}); use a new run id")
    j = _Journal(jpath)
    begin: dict[str, Any] = {
        "op": "begin",
        "run": run_id,
        "seq": _next_seq(root),
        "kind": kind,
        "command": command,
        "created": _now(),
        "pid": os.getpid(),
        "moves": len(moves),
    }
    if undoes:
        begin["undoes"] = undoes
    if extra:
        begin.update(extra)
    j.write(begin)
    j.sync()
    show = sys.stderr.isatty() if progress is None else progress
    claimed: set[str] = set()  # names an earlier move of this run fills
    freed: set[str] = set()  # names an earlier move of this run empties
    made: set[str] = set()  # destination folders known to exist
    pinned = _link_targets(root)
    confine = _Confine(root)
    rs = str(root)

    def exists(rel: str) -> bool:
        return rel in claimed or (rel not in freed and os.path.lexists(os.path.join(rs, rel)))

    def intent(k: int, src: str, dst: str, sha: str | None, reason: str) -> None:
        rec: dict[str, Any] = {"op": "intent", "i": k, "src": src, "dst": dst, "sha256": sha}
        if reason:
            rec["reason"] = reason
        if of is not None:
            rec["of"] = of[k]
        j.write(rec)

    def skipped(k: int, why: str, sha: str | None, *, journaled_intent: bool) -> None:
        m = moves[k]
        results[k] = MoveResult(m.src, m.dst, None, "skipped", sha, why)
        if journaled_intent:
            j.write({"op": "fail", "i": k, "why": why})
        else:
            j.write({"op": "skip", "src": m.src, "dst": m.dst, "why": why})

    def plan(k: int) -> _Prepared | None:
        m = moves[k]
        src, want = norm[k]
        try:  # a symlinked folder along either path must not lead out of ROOT
            confine.check(src)
            confine.check(want)
        except PathEscapeError as e:
            skipped(k, str(e), m.sha256, journaled_intent=False)
            return None
        if not exists(src):
            skipped(k, f"{m.src} no longer exists", m.sha256, journaled_intent=False)
            return None
        if src not in claimed and os.path.islink(os.path.join(rs, src)):
            why = f"{m.src} is a symlink; cleaner moves files, never links (a moved link dangles)"
            skipped(k, why, m.sha256, journaled_intent=False)
            return None
        if src in pinned:
            why = (
                f"{m.src} is the target of the symlink {pinned[src]}, which would dangle; "
                "replace the link by a copy (or remove it) and rerun"
            )
            skipped(k, why, m.sha256, journaled_intent=False)
            return None
        dst = want
        n = 0
        while suffix and exists(dst):
            n += 1
            dst = _with_suffix(want, n)
        if exists(dst):
            why = f"{m.dst} is occupied by another file; {m.src} left in place"
            skipped(k, why, m.sha256, journaled_intent=False)
            return None
        claimed.add(dst)
        claimed.discard(src)
        freed.add(src)
        freed.discard(dst)
        intent(k, src, dst, m.sha256, m.reason)
        return _Prepared(k, m, src, dst, m.sha256)

    def failed(pr: _Prepared, why: str, sha: str | None) -> None:
        skipped(pr.index, why, sha, journaled_intent=True)
        claimed.discard(pr.dst)
        freed.discard(pr.src)  # it stays where it was

    def move_one(pr: _Prepared) -> bool:
        src_abs = os.path.join(rs, pr.src)
        sha = pr.sha
        if verify or sha is None:  # hashed now, under the lock: the moved content's sha256
            sha = _sha_or_none(Path(src_abs))
            if sha is None:
                failed(pr, f"{pr.move.src} cannot be read", None)
                return False
            if pr.sha is not None and sha != pr.sha:
                failed(pr, f"{pr.move.src} changed since it was planned (sha256 differs)", sha)
                return False
        folder = pr.dst.rpartition("/")[0]
        if folder and folder not in made:
            try:
                os.makedirs(os.path.join(rs, folder), exist_ok=True)
                made.add(folder)
            except OSError as e:  # e.g. a file where the folder should be
                failed(pr, f"folder {folder} cannot be created: {e.strerror or e}", sha)
                return False
        for attempt in range(1000):
            try:
                mover.move(Path(src_abs), Path(os.path.join(rs, pr.dst)))
            except FileExistsError:
                # the name was taken after we chose it: next suffix, and a new intent on disk
                # before trying it
                if not suffix or attempt == 999:
                    why = f"{pr.move.dst} appeared meanwhile; {pr.move.src} left in place"
                    failed(pr, why, sha)
                    return False
                want = norm[pr.index][1]
                n = 1
                while exists(_with_suffix(want, n)) or os.path.lexists(
                    os.path.join(rs, _with_suffix(want, n))
                ):
                    n += 1
                claimed.discard(pr.dst)
                pr.dst = _with_suffix(want, n)
                claimed.add(pr.dst)
                intent(pr.index, pr.src, pr.dst, pr.sha, pr.move.reason)
                j.sync()
                continue
            except OSError as e:
                failed(pr, f"{pr.move.src} could not be moved: {e.strerror or e}", sha)
                return False
            pr.sha = sha
            results[pr.index] = MoveResult(
                pr.move.src, pr.move.dst, pr.dst, "moved", sha, pr.move.reason
            )
            return True
        return False  # pragma: no cover - the loop returns

    bar = tqdm(total=len(moves), desc=command, unit="file", disable=not show, leave=False)
    try:
        for start in range(0, len(moves), batch_size):
            batch = [
                pr
                for k in range(start, min(start + batch_size, len(moves)))
                if (pr := plan(k)) is not None
            ]
            j.sync()  # the write-ahead: intents are on disk before any of their moves
            done: list[_Prepared] = []
            for pr in batch:
                if delay:
                    time.sleep(delay)
                intended = pr.sha
                if move_one(pr):
                    done.append(pr)
                    pr.move_sha_differs = pr.sha != intended
                if delay:
                    time.sleep(delay)
            # No fsync of the touched folders here: on ext4/XFS the journal's fsync below commits
            # the renames with it; elsewhere a 'done' whose rename a power cut lost is harmless,
            # because undo and recovery look at the disk (by sha256), never trust the record.
            for pr in done:
                rec: dict[str, Any] = {"op": "done", "i": pr.index}
                if pr.move_sha_differs:
                    rec["sha256"] = pr.sha
                j.write(rec)
            j.sync()
            bar.update(min(start + batch_size, len(moves)) - start)
        n_moved = sum(1 for r in results if r is not None and r.status == "moved")
        more = end_fields([r for r in results if r is not None]) if end_fields else {}
        j.write({"op": "end", "time": _now(), "moved": n_moved, **more})
    finally:
        bar.close()
        j.close()
    return [r for r in results if r is not None]


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
    root: str | os.PathLike[str],
    moves: Sequence[Move],
    *,
    command: str,
    run_id: str | None = None,
    progress: bool | None = None,
    verify: bool = True,
    extra: dict[str, Any] | None = None,
) -> AppliedRun:
    """Move files inside ROOT, journaled, never overwriting; returns what happened to each.

    Takes the ROOT lock and recovers any unfinished journal first. ``verify`` re-hashes each
    source so a file changed since it was planned (``Move.sha256`` differs) is skipped, and so
    the journal holds every file's sha256 for recovery and undo. Paths are checked before
    anything moves: one that leaves ROOT or names ``.cleaner/`` refuses the whole list.
    ``extra`` adds keys to the journal's ``begin`` record (e.g. the plan file).
    """
    rootp = Path(os.path.realpath(root))
    norm = _validate_moves(moves)
    rid = run_id or new_run_id()
    with write_lock(rootp):
        rep = recover(rootp)
        if not moves:
            return AppliedRun(rid, command, [], rep)
        results = _run_moves(
            rootp,
            moves,
            norm,
            command=command,
            run_id=rid,
            kind="apply",
            undoes=None,
            of=None,
            suffix=True,
            verify=verify,
            progress=progress,
            extra=extra,
        )
    return AppliedRun(rid, command, results, rep)


# --------------------------------------------------------------------------- undo


def _link_targets(root: Path) -> dict[str, str]:
    """target -> symlink, for the symlinks inside ROOT that the last scan listed: moving a
    target would leave its link dangling, so the mover leaves it (see ``cleaner.manifest``)."""
    from cleaner.state.manifest import link_targets

    return link_targets(root)


def _undone_indices(root: Path, run_id: str) -> set[int]:
    """Indices of ``run_id``'s moves already reversed by (possibly interrupted) undo runs."""
    out: set[int] = set()
    for p in _journal_paths(root):
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


def _pick_run(root: Path, runs: list[RunInfo], run_id: str | None) -> RunInfo:
    applied = [r for r in runs if r.kind == "apply"]
    undone = {r.undoes for r in runs if r.kind == "undo" and r.finished and r.complete}
    if run_id is None:
        todo = [r for r in applied if r.run_id not in undone and not _moved_nothing(r)]
        if not todo:
            raise CleanerError(
                f"no applied run to undo under {root}: "
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
        raise CleanerError(f"no run {run_id!r} under {root}; recent applied runs: {known}")
    if named[0].kind != "apply":
        raise CleanerError(
            f"run {run_id!r} is itself an undo (of {named[0].undoes}); name an applied run"
        )
    if _moved_nothing(named[0]):
        raise CleanerError(f"run {run_id!r} moved no file; there is nothing to undo")
    return named[0]


def _undo_moves(
    root: Path, run_id: str, recs: list[dict[str, Any]]
) -> tuple[list[Move], list[int], list[MoveResult]]:
    """The moves that put back what is still out of place, latest first, and what cannot be."""
    already = _undone_indices(root, run_id)
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


def _undo_marker(root: Path, target: str) -> str:
    """An empty undo journal that records ``target`` as wholly undone."""
    uid = new_run_id()
    j = _Journal(run_path(root, uid))
    try:
        j.write(
            {
                "op": "begin",
                "run": uid,
                "seq": _next_seq(root),
                "kind": "undo",
                "undoes": target,
                "command": f"undo {target}",
                "created": _now(),
                "moves": 0,
            }
        )
        j.write({"op": "end", "time": _now(), "moved": 0, "complete": True})
    finally:
        j.close()
    return uid


def undo(
    root: str | os.PathLike[str], run_id: str | None = None, *, progress: bool | None = None
) -> UndoResult:
    """Reverse an applied run (the latest not wholly undone, or ``run_id``) to the exact
    original paths. A file whose sha256 changed since, that is gone, or whose original path is
    taken by a file of no undo move is left alone and reported; the run then stays open, so
    ``undo`` again retries what is left. Undo moves go in passes until none unblocks another
    (names repeated across classes, swaps), each pass a journaled run itself, so a crash during
    it is recovered like any other, and running ``undo`` again finishes it.
    """
    rootp = Path(os.path.realpath(root))
    jdir = journal_dir(rootp)
    if not jdir.is_dir():
        what = "no applied run to undo" if run_id is None else f"no run {run_id!r}"
        raise CleanerError(
            f"{what} under {rootp}: the journal folder {jdir} is missing, so undo has no record "
            "of any run there (nothing was applied, or the journal was deleted: then earlier "
            "moves cannot be undone automatically)"
        )
    with write_lock(rootp):
        rep = recover(rootp)
        target = _pick_run(rootp, list_runs(rootp), run_id)
        damaged: list[str] = []
        recs = _read_records(run_path(rootp, target.run_id), damaged)
        restored: list[MoveResult] = []
        left: list[MoveResult] = []
        uid = ""
        recorded = False
        for _ in range(50):  # each pass restores at least one file, or the loop ends
            moves, of, gone = _undo_moves(rootp, target.run_id, recs)
            if not moves:
                left = gone
                break
            uid = new_run_id()
            results = _run_moves(
                rootp,
                moves,
                _validate_moves(moves),
                command=f"undo {target.run_id}",
                run_id=uid,
                kind="undo",
                undoes=target.run_id,
                of=of,
                suffix=False,
                verify=True,
                progress=progress,
                # the run is undone when a pass leaves nothing out of place
                end_fields=functools.partial(_complete, bool(gone)),
            )
            moved = [r for r in results if r.status == "moved"]
            restored += moved
            stuck = [r for r in results if r.status != "moved"]
            recorded = not gone and not stuck
            if not moved or not any(w in r.why for r in stuck for w in _RETRY):
                left = gone + stuck
                break
        if not left and not recorded:  # all back, no pass said so: record the run as undone
            marker = _undo_marker(rootp, target.run_id)
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
        for r in left
    ]
    notes = [f"ignored damaged journal line: {d}" for d in damaged]
    if any(n not in rep.problems for n in notes):
        extra = [n for n in notes if n not in rep.problems]
        rep = RecoveryReport(rep.runs, rep.completed, rep.rolled_back, [*rep.problems, *extra])
    return UndoResult(uid, target.run_id, restored, left, rep)
