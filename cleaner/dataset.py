"""ROOT and its class folders: aliases, walking, and confinement of every path to ROOT.

This is the one place that knows the layout of the contract:

    ROOT/real_images/ ...   (or an alias: real, REAL, training_real)
    ROOT/fake_images/ ...   (or an alias: fake, FAKE, ai, training_fake)
    ROOT/quarantine/<reason>/...
    ROOT/.cleaner/          (state: manifest, journal, lock, plans, caches)

Paths inside cleaner are ROOT-relative, ``/``-separated strings (``real_images/a/b.jpg``).
Anything that comes from outside (a predictions file, a browser, a plan) goes through
:func:`resolve_inside` before it touches the disk.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cleaner.choices import Label, values
from cleaner.errors import CleanerError, DatasetError, PathEscapeError

LABELS: tuple[Label, Label] = (Label.REAL, Label.FAKE)
"""The two classes, in the order of the predictions format's ``classes``."""

CLASS_ALIASES: dict[str, tuple[str, ...]] = {
    Label.REAL: ("real_images", "real", "REAL", "training_real"),
    Label.FAKE: ("fake_images", "fake", "FAKE", "ai", "training_fake"),
}
"""Folder names recognised for each class, the preferred (created) name first."""

STATE_DIR = ".cleaner"
QUARANTINE_DIR = "quarantine"
OUTPUTS_DIR = "preds"
"""``.cleaner/preds/``: where ``make clean-data`` keeps the predictions files it writes (its
``PREDS_DIR``). No state module writes there: an output flag may name a file in it (a new one,
or an earlier output of the same kind, which :func:`check_output` tells by its first bytes)."""
RESERVED_TOP = frozenset({STATE_DIR, QUARANTINE_DIR})


def other_label(label: str) -> str:
    """The class a relabeling would move an image of ``label`` to."""
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; expected one of {values(Label)}")
    return Label(label).other


@dataclass(frozen=True)
class FileEntry:
    """One file found under a class folder."""

    relpath: str
    """ROOT-relative, ``/``-separated."""
    label: str
    """``real`` or ``fake``, from the class folder it sits in."""
    abspath: Path
    """Where to read it (inside ROOT)."""
    escapes_root: bool = False
    """A symlink whose target lies outside ROOT: listed, never read."""
    link_target: str | None = None
    """For a symlinked file whose target lies inside ROOT: the target, ROOT-relative."""
    problem: str = ""
    """Why this entry is a folder that could not be listed (``relpath`` ends with ``/``)."""
    folder_link: bool = False
    """A symlink to a folder inside ROOT that the walk does not enter (another class folder,
    ``.cleaner/``, ``quarantine/``, or a folder holding this one); ``link_target`` names it."""


@dataclass(frozen=True)
class Workspace:
    """ROOT, opened once per command: the handle every step below the CLI takes.

    Why one handle: ROOT used to be a bare path that every layer re-opened (three opens and two
    crash recoveries in one ``separate --apply``). The CLI opens it once with :meth:`open`
    (resolve, refuse a symlinked ``.cleaner``, find the class folders); the steps read what they
    need from it, and :attr:`memo` keeps what one command has already read (the scan's rows,
    whether the journal was recovered) so no step reads it twice. Every state write still
    re-checks ``.cleaner`` (:meth:`state_path`), so a folder swapped mid-run is refused.
    """

    root: Path
    """Absolute, resolved."""
    class_dirs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """label -> the alias folders present under ROOT, in alias order (may be empty)."""
    outside_links: tuple[str, ...] = ()
    """Class-folder names that are symlinks leading out of ROOT: not used (confinement), and
    reported so a user who linked a big folder in learns why it is not scanned."""
    given: Path | None = field(default=None, compare=False)
    """ROOT as the user spelled it (links not resolved, maybe relative): shown back in the
    commands a page suggests, and an absolute path a predictions file writes with that
    spelling is still inside ROOT."""
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """What this command has read or done once: ``rows`` (the scan's manifest rows), and
    ``recovered`` (the :class:`~cleaner.journal.RecoveryReport` of the one recovery)."""

    @property
    def shown(self) -> str:
        """ROOT as the user typed it (:attr:`given`), else resolved: for the commands and fixes
        a message suggests, so they read as the user's own command line."""
        return str(self.given or self.root)

    def __fspath__(self) -> str:
        """A workspace is its ROOT folder to ``os.fspath`` and to path functions."""
        return str(self.root)

    @classmethod
    def open(cls, root: str | os.PathLike[str], *, require_classes: bool = True) -> Workspace:
        """Open ROOT; see :func:`open_dataset`."""
        return open_dataset(root, require_classes=require_classes)

    @classmethod
    def of(
        cls, where: Workspace | str | os.PathLike[str], *, require_classes: bool = True
    ) -> Workspace:
        """``where`` itself when it is an open workspace, else ROOT opened: the package's
        entry points (``scan``, ``dedupe``, ``run_audit``...) take either, so a script may pass
        a path while the CLI passes the workspace it opened once."""
        if isinstance(where, Workspace):
            return where
        return open_dataset(where, require_classes=require_classes)

    def state_path(self, *parts: str) -> Path:
        """``ROOT/.cleaner/<parts...>``, re-checked on every call (see :func:`state_path`)."""
        return state_path(self.root, *parts)

    def to_relpath(self, path: Path) -> str:
        """``path`` (inside ROOT) as a ROOT-relative ``/`` path."""
        return Path(path).relative_to(self.root).as_posix()

    def linked_folder(self, relpath: str) -> str | None:
        """The first folder of ``relpath`` below its class folder that is a symlink
        (ROOT-relative), or None. A file moved into or out of such a folder lands where the link
        leads (perhaps the other class), not where the path says: the mover refuses such moves."""
        parts = relpath.split("/")[:-1]
        for i in range(2, len(parts) + 1):
            if os.path.islink(os.path.join(self.root, *parts[:i])):
                return "/".join(parts[:i])
        return None

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def quarantine_dir(self) -> Path:
        return self.root / QUARANTINE_DIR

    def class_dir(self, label: str) -> str:
        """The folder (ROOT-relative) that moves *into* ``label`` go to.

        The first alias present, or the preferred name (``real_images``/``fake_images``) when
        the dataset has none yet (the contract: "a dataset with none gets real_images/ and
        fake_images/").
        """
        present = self.class_dirs.get(label, ())
        return present[0] if present else CLASS_ALIASES[label][0]

    def label_of(self, relpath: str) -> str | None:
        """The class of a ROOT-relative path, from its first component; None outside the classes."""
        top = PurePosixPath(relpath).parts[0] if relpath else ""
        for label, dirs in self.class_dirs.items():
            if top in dirs:
                return label
        for label, aliases in CLASS_ALIASES.items():
            if top in aliases:
                return label
        return None

    def moved_path(self, relpath: str, to_label: str) -> str:
        """``relpath`` re-rooted under ``to_label``'s class folder, keeping the path below the
        class folder (``real_images/x/a.jpg`` -> ``fake_images/x/a.jpg``)."""
        parts = PurePosixPath(relpath).parts
        if len(parts) < 2:
            raise PathEscapeError(f"{relpath!r} is not inside a class folder")
        return str(PurePosixPath(self.class_dir(to_label), *parts[1:]))

    def resolve(self, relpath: str) -> Path:
        """Shorthand for :func:`resolve_inside` on this dataset's ROOT."""
        return resolve_inside(self.root, relpath)

    def walk(self) -> Iterator[FileEntry]:
        """Every file below the class folders, sorted, see :func:`walk_class_dir`."""
        for label in LABELS:
            for d in self.class_dirs.get(label, ()):
                yield from walk_class_dir(self, d, label)


def find_class_dirs(root: Path) -> dict[str, tuple[str, ...]]:
    """label -> alias folders present directly under ``root`` (real directories or symlinks to
    directories inside ROOT)."""
    found: dict[str, tuple[str, ...]] = {}
    for label, aliases in CLASS_ALIASES.items():
        present: list[str] = []
        for name in aliases:
            p = root / name
            # on case-insensitive file systems REAL and real are one folder: keep the first
            if (
                p.is_dir()
                and _inside(root, p)
                and not any(os.path.samefile(p, root / q) for q in present)
            ):
                present.append(name)
        found[label] = tuple(present)
    return found


def open_dataset(root: str | os.PathLike[str], *, require_classes: bool = True) -> Workspace:
    """Open ROOT. Raises :class:`DatasetError` (one clear line) when it is missing, or when
    ``require_classes`` and it holds no class folder."""
    p = Path(root)
    if not p.exists():
        raise DatasetError(
            f"root {str(root)!r} does not exist; pass --root with your dataset folder"
        )
    if not p.is_dir():
        raise DatasetError(
            f"root {str(root)!r} is not a folder; pass --root with your dataset folder"
        )
    given = Path(root)
    p = p.resolve()
    state_path(p)  # ROOT/.cleaner a symlink or a file: refused before any command starts
    class_dirs = find_class_dirs(p)
    _refuse_aliased_classes(p, class_dirs)
    outside = tuple(
        name
        for aliases in CLASS_ALIASES.values()
        for name in aliases
        if (p / name).is_symlink() and (p / name).is_dir() and not _inside(p, p / name)
    )
    if require_classes and not any(class_dirs.values()):
        names = ", ".join(CLASS_ALIASES[Label.REAL][:1] + CLASS_ALIASES[Label.FAKE][:1])
        if outside:
            raise DatasetError(
                f"the class folder(s) {', '.join(outside)} under {str(root)!r} are symlinks "
                "leading out of ROOT, which cleaner never follows; move or copy the images "
                "inside ROOT (or use ROOT = the folder that holds them)"
            )
        raise DatasetError(
            f"no class folder under {str(root)!r}; expected {names} (or an alias: "
            f"{'/'.join(CLASS_ALIASES[Label.REAL][1:])}, {'/'.join(CLASS_ALIASES[Label.FAKE][1:])})"
        )
    return Workspace(root=p, class_dirs=class_dirs, outside_links=outside, given=given)


def _refuse_aliased_classes(root: Path, class_dirs: dict[str, tuple[str, ...]]) -> None:
    """One folder cannot be both classes: a class folder that is (a symlink to) the other
    class's folder, or to a folder holding it, would list each file under both labels, and
    dedupe would quarantine every one of them."""
    real = [
        (label, name, _realpath(root / name)) for label, ds in class_dirs.items() for name in ds
    ]
    for la, na, pa in real:
        for lb, nb, pb in real:
            if la != lb and pb.is_relative_to(pa):
                how = "the same folder as" if pa == pb else "a folder that holds"
                raise DatasetError(
                    f"class folder {na}/ ({la}) is {how} {nb}/ ({lb}) under {str(root)!r} "
                    f"(through a symlink); a file cannot be both real and fake: make {na} and "
                    f"{nb} separate folders (remove the link)"
                )


def _inside(root: Path, path: Path) -> bool:
    """True when ``path`` (symlinks resolved) lies inside ``root`` (already resolved)."""
    try:
        return Path(os.path.realpath(path)).is_relative_to(root)
    except OSError:
        return False


def _realpath(p: Path) -> Path:
    return Path(os.path.realpath(p))


def _no_go_zones(ws: Workspace, class_dir: str) -> tuple[list[Path], list[Path]]:
    """(folders a walk of ``class_dir`` must not enter, folders it must not enter an ancestor of):
    the other class folders and ROOT's state and quarantine folders."""
    root = ws.root
    own = _realpath(root / class_dir)
    zones = [_realpath(root / STATE_DIR), _realpath(root / QUARANTINE_DIR)]
    for aliases in CLASS_ALIASES.values():
        for name in aliases:
            p = root / name
            if name != class_dir and p.is_dir():
                rp = _realpath(p)
                if rp != own:
                    zones.append(rp)
    return zones, [*zones, own, root]


def _may_enter(target: Path, zones: list[Path], ancestors_of: list[Path]) -> bool:
    """A symlinked folder is followed only when it leads to none of the no-go zones and to no
    folder that contains one of them (or ROOT, or the class folder itself)."""
    if any(target.is_relative_to(z) for z in zones):
        return False
    return not any(a.is_relative_to(target) for a in ancestors_of)


def walk_class_dir(ws: Workspace, class_dir: str, label: str) -> Iterator[FileEntry]:
    """Files below ``ROOT/class_dir``, sorted by path, without ever leaving ROOT.

    Symlinked folders are followed only when they resolve inside ROOT, outside the other class
    folders and ROOT's ``.cleaner/`` and ``quarantine/``, and not to a folder that holds the
    class folder (a link to ROOT would list every class twice); each real folder is entered once
    (symlink loops end). A linked folder not followed is yielded as one entry
    (``folder_link=True``, its ``link_target``), so scan gives it a row. Symlinked files and
    folders that lead outside are yielded with ``escapes_root=True`` so they can be reported,
    never read. Folders named ``.cleaner`` are skipped at any depth.
    """
    root = _realpath(ws.root)
    cut = len(str(root)) + 1
    start = root / class_dir
    zones, ancestors_of = _no_go_zones(ws, class_dir)
    seen: set[tuple[int, int]] = set()
    stack = [start]
    out: list[FileEntry] = []
    while stack:
        d = stack.pop()
        try:
            st = d.stat()
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        try:
            entries = list(os.scandir(d))
        except OSError as err:  # reported, never skipped silently: its files are not counted
            rel = str(d)[cut:].replace(os.sep, "/") + "/"
            why = f"folder cannot be listed: {err.strerror or err}"
            out.append(FileEntry(rel, label, d, problem=why))
            continue
        for e in entries:
            p = Path(e.path)
            rel = e.path[cut:].replace(os.sep, "/")
            try:
                is_link = e.is_symlink()
                is_dir = e.is_dir(follow_symlinks=True)
            except OSError:
                is_link, is_dir = True, False
            if is_link and not _inside(root, p):
                out.append(FileEntry(rel, label, p, escapes_root=True))  # a file or a folder
                continue
            if is_dir:
                if e.name == STATE_DIR:
                    continue
                if is_link and not _may_enter(_realpath(p), zones, ancestors_of):
                    target = _realpath(p).relative_to(root).as_posix() or "."
                    out.append(FileEntry(rel, label, p, link_target=target, folder_link=True))
                    continue
                if not is_link and _realpath(p) in zones:
                    continue
                stack.append(p)
            elif is_link and not p.exists():
                out.append(FileEntry(rel, label, p, escapes_root=False))  # dangling: reported
            elif is_link:
                target = _realpath(p).relative_to(root).as_posix()
                out.append(FileEntry(rel, label, p, link_target=target))
            else:
                out.append(FileEntry(rel, label, p))
    out.sort(key=lambda f: f.relpath)
    yield from out


def state_path(root: str | os.PathLike[str], *parts: str) -> Path:
    """``ROOT/.cleaner/<parts...>``: THE resolver of cleaner's own state paths (every writer).

    Why: a ``.cleaner`` (or a folder or file inside it) that is a symlink would send the lock,
    the manifest, the journal or a plan outside ROOT, and a ``.cleaner`` that is a file would
    fail with a traceback. Each existing component is checked with ``lstat`` (no symlink
    followed), so the returned path, once created, lies inside ROOT. Raises
    :class:`PathEscapeError` or :class:`CleanerError` with the fix.
    """
    base = Path(os.path.realpath(root)) / STATE_DIR
    for part in parts:
        if part in ("", ".", "..") or "/" in part or "\x00" in part:
            raise PathEscapeError(f"state path {part!r} is not a plain name inside {base}")
    p = base
    for i, part in enumerate(("", *parts)):
        p = p / part if part else p
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            break  # the rest is created below ROOT/.cleaner by the writer
        except OSError as e:
            raise CleanerError(
                f"cannot read {p}: {e.strerror or e}; check its permissions"
            ) from None
        if stat.S_ISLNK(st.st_mode):
            raise PathEscapeError(
                f"{p} is a symlink (to {os.readlink(p)}); cleaner writes its state only inside "
                f"ROOT and never through a link: remove the link (rm {p}) and rerun"
            )
        if (i == 0 or i < len(parts)) and not stat.S_ISDIR(st.st_mode):
            raise CleanerError(
                f"{p} is a file, not a folder; cleaner keeps its state there: move the file "
                "aside (mv it to another name) and rerun"
            )
    return base.joinpath(*parts)


JSON_OUTPUT = (b"{", b"[")
"""How the JSON files cleaner writes begin (see :func:`check_output`'s ``own``)."""


def confine_output(
    ws: Workspace,
    out: str | os.PathLike[str],
    flag: str = "--out",
    *,
    replaceable: tuple[str, ...] = (),
) -> Path:
    """Refuse an output path (a file or a folder cleaner would write) that lies where ROOT's
    data or state is: ROOT itself, a class folder (any alias, present or not, or a symlink to
    it), ``quarantine/``, and cleaner's state in ``.cleaner/``: a sub-folder of it (journal,
    plans, caches) or an existing entry, unless its name ends with one of ``replaceable`` (an
    earlier output of the same kind: a report page, a model; no state file is named so). A
    new name directly in ``.cleaner/``, and a file in ``.cleaner/preds/`` (:data:`OUTPUTS_DIR`),
    are allowed. The path is judged with its symlinks
    resolved. Returns ``out``'s resolved path."""
    rootp = ws.root
    real = _realpath(Path(out))
    if real == rootp or rootp.is_relative_to(real):
        raise CleanerError(f"{flag} {str(out)!r} is ROOT {rootp} or holds it; name a file")
    zones = [rootp / QUARANTINE_DIR]
    zones += [rootp / n for aliases in CLASS_ALIASES.values() for n in aliases]
    for z in list(zones):
        if z.is_dir():
            zones.append(_realpath(z))
    for z in zones:
        if real.is_relative_to(z):
            raise CleanerError(
                f"{flag} {str(out)!r} is inside {z.name}/ of ROOT {rootp}, a class or quarantine "
                "folder whose files are the dataset; write it outside them (e.g. "
                f"{rootp.parent / Path(out).name})"
            )
    state = rootp / STATE_DIR
    if real.is_relative_to(state):
        rel = real.relative_to(state).parts
        if len(rel) == 2 and rel[0] == OUTPUTS_DIR:
            return real
        taken = os.path.lexists(real) and not real.name.endswith(replaceable or ("\0",))
        if len(rel) != 1 or taken:
            raise CleanerError(
                f"{flag} {str(out)!r} is cleaner's own state in {state} (its files and folders "
                "are the manifest, lock, journal, plans and caches); write it elsewhere"
            )
    return real


def check_output(
    out: str | os.PathLike[str],
    *,
    flag: str = "--out",
    ws: Workspace | None = None,
    own: tuple[bytes, ...] = JSON_OUTPUT,
    replaceable: tuple[str, ...] = (),
) -> Path:
    """THE check of a file path a user gives an output flag (``--out``, ``--predictions-out``),
    run before any work: with ``ws``, :func:`confine_output`; and never over a file cleaner
    did not write. An existing path must be a regular file that is empty or begins like the
    output (``own``: ``{``/``[`` for JSON, ``<`` for a page, ``PK`` for a model), so an image,
    a CSV or any other user file is never replaced. Returns ``out`` as a Path."""
    if ws is not None:
        confine_output(ws, out, flag, replaceable=replaceable)
    real = _realpath(Path(out))
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return Path(out)
    except OSError as e:
        raise CleanerError(f"{flag} {str(out)!r} cannot be checked: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CleanerError(f"{flag} {str(out)!r} is a folder; name a file in it")
    if not stat.S_ISREG(st.st_mode):
        raise CleanerError(f"{flag} {str(out)!r} is not a regular file; name a new file")
    try:
        with open(real, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise CleanerError(f"{flag} {str(out)!r} cannot be read: {e.strerror or e}") from None
    body = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if head and not body.startswith(own):
        raise CleanerError(
            f"{flag} {str(out)!r} exists and is not a file cleaner writes there (it holds other "
            "data, an image or a user's file), which cleaner never replaces; name a new file"
        )
    return Path(out)


def _file_kind(mode: int) -> str:
    """What a stat mode that is not a regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file"


def check_input(
    path: str | os.PathLike[str],
    what: str,
    fix: str,
    *,
    error: type[CleanerError] = CleanerError,
) -> Path:
    """THE check of a file a user names for cleaner to read (``--model``, ``--model-metrics``,
    ``--metrics``, ``--labels``, ``--calibrate``, ``--weights PATH``, ``--predictions``), run
    before it is opened: it must exist, be a regular file (judged by ``stat``, never by opening
    it: a FIFO with no writer would block forever, a device never end) and be readable.
    Otherwise ``error``: one line naming ``what`` and the path, and ``fix``. Returns ``path``
    as a Path."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise error(f"{what} {p} does not exist; {fix}") from None
    except OSError as e:
        raise error(f"{what} {p} cannot be checked ({e.strerror or e}); {fix}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(
            f"{what} {p} is not a regular file but {_file_kind(st.st_mode)}, which cleaner "
            f"never reads; {fix}"
        )
    if not os.access(p, os.R_OK):
        raise error(f"{what} {p} cannot be read (permission denied); {fix}")
    return p


def check_relpath(relpath: str, *, backslash_is_separator: bool = True) -> PurePosixPath:
    """Reject a path that is absolute, empty, or climbs out with ``..``; returns it normalised.

    Pure: looks at the string only (see :func:`resolve_inside` for symlinks). A backslash is a
    folder separator (paths written on Windows) unless ``backslash_is_separator=False``: for a
    name cleaner found on disk, where ``\\`` is an ordinary character of a POSIX file name and
    converting it would name another file."""
    if not relpath or "\x00" in relpath:
        raise PathEscapeError(f"path {relpath!r} is empty or not a valid path")
    try:  # a lone surrogate (\ud800) names no file: no byte string encodes it
        os.fsencode(relpath)
    except UnicodeEncodeError:
        raise PathEscapeError(
            f"path {relpath!r} holds a character no file name can hold (a lone surrogate); "
            "write the file's real name"
        ) from None
    s = relpath.replace("\\", "/") if backslash_is_separator else relpath
    if s.startswith("/") or (backslash_is_separator and len(s) > 1 and s[1] == ":"):
        raise PathEscapeError(f"path {relpath!r} is absolute; paths must be relative to ROOT")
    parts: list[str] = []
    for part in PurePosixPath(s).parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise PathEscapeError(f"path {relpath!r} leads outside ROOT (..)")
            parts.pop()
            continue
        parts.append(part)
    if not parts:
        raise PathEscapeError(f"path {relpath!r} names ROOT itself, not a file inside it")
    return PurePosixPath(*parts)


def resolve_inside(root: Path, relpath: str) -> Path:
    """The absolute path of ``relpath`` under ``root``, refusing anything that would leave ROOT:
    ``..``, absolute paths, and symlinks (anywhere along the path) whose target is outside.
    A path with a backslash that names a file as written is that file (a POSIX name may hold
    ``\\``); otherwise the backslash is read as a Windows folder separator."""
    literal = "\\" in relpath and os.path.lexists(
        os.path.join(
            os.path.realpath(root), *check_relpath(relpath, backslash_is_separator=False).parts
        )
    )
    rel = check_relpath(relpath, backslash_is_separator=not literal)
    root = Path(os.path.realpath(root))
    p = root.joinpath(*rel.parts)
    if not Path(os.path.realpath(p)).is_relative_to(root):
        raise PathEscapeError(f"path {relpath!r} leads outside ROOT through a symlink")
    return p
