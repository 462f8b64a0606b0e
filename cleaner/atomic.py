"""Atomic writes of cleaner's own state and outputs (manifest, caches, plans, predictions,
duplicates.json): a reader, or a crash, sees the old file or the new one, never half of it.

Never used for dataset images: those move only through :mod:`cleaner.journal`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """fsync a folder so a rename inside it survives a power cut (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _new_temp(path: Path) -> Path:
    """A new, empty temporary file beside ``path``, created with mode 0666 less the umask (as
    any file a user's program creates; ``mkstemp`` would make it 0600 whatever the umask, and
    the state a team shares, or an equalized dataset, would be readable by its owner only)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")  # pragma: no cover


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` fills a temporary file in ``path``'s folder; it is fsync'd, renamed over
    ``path`` and the folder fsync'd. On any failure the temporary file is removed. The file's
    mode is 0666 less the umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp(path)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


_SURROGATE = re.compile("[\ud800-\udfff]")


def atomic_write_text(path: Path, text: str, *, is_json: bool | None = None) -> None:
    """:func:`atomic_write` of a UTF-8 text.

    A file name that is not UTF-8 reaches Python as surrogate escapes, which UTF-8 cannot
    encode. In a JSON text they become JSON ``\\udcXX`` escapes (the file stays UTF-8 and
    ``json.loads`` gives back the same name: they can only sit inside JSON strings); in a page
    for people (``.html``, ``.md``) a visible ``\\udcff``; anywhere else (CSV) the name's own
    bytes, read back with ``errors="surrogateescape"`` into the same name.

    ``is_json``: the text is JSON whatever the file's suffix (a user's ``--out F.JSON`` or
    ``preds.txt``); None: JSON when the suffix is ``.json`` (any case)."""
    errors = "strict"
    if is_json is None:
        is_json = path.suffix.lower() == ".json"
    if not text.isascii() and _SURROGATE.search(text):
        if is_json:
            text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
        elif path.suffix.lower() in (".html", ".htm", ".md"):
            errors = "backslashreplace"
        else:
            errors = "surrogateescape"

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8", errors=errors)

    atomic_write(path, write)
