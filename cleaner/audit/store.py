"""The audit's two files under ``R/.cleaner/``: the properties cache and ``audit.json``.

One module owns both paths, their formats and their (atomic) reads and writes, so the state
layer can take them over as they are.

- ``audit_cache.json``: sha256 -> one file's properties (they depend on the bytes only), and
  path -> (size, mtime_ns, sha256) of the last audit, so an unchanged file is not even opened.
- ``audit.json``: the last audit's summary (:data:`AUDIT_FORMAT`), read by ``cleaner report``
  and ``cleaner train``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cleaner.atomic import atomic_write_text
from cleaner.dataset import state_path
from cleaner.errors import CleanerError

AUDIT_NAME = "audit.json"
AUDIT_FORMAT = "cleaner.audit.v1"
CACHE_NAME = "audit_cache.json"
CACHE_FORMAT = "cleaner.audit-cache.v1"


def audit_path(root: str | os.PathLike[str]) -> Path:
    return state_path(root, AUDIT_NAME)


def cache_path(root: str | os.PathLike[str]) -> Path:
    return state_path(root, CACHE_NAME)


def write_audit(root: str | os.PathLike[str], doc: dict[str, Any], out: Path | None = None) -> Path:
    """Write the audit summary to ``R/.cleaner/audit.json`` (or ``out``) atomically."""
    target = out if out is not None else audit_path(root)
    atomic_write_text(
        target, json.dumps({"format": AUDIT_FORMAT, **doc}, indent=1) + "\n", is_json=True
    )
    return target


def read_audit(root: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The last audit of ROOT, or None when there is none. A damaged file is an error naming it."""
    p = audit_path(root)
    if not p.is_file():
        return None
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CleanerError(f"{p} does not parse ({e}); run `cleaner audit` again") from e
    if not isinstance(doc, dict) or doc.get("format") != AUDIT_FORMAT:
        raise CleanerError(f"{p} is not a {AUDIT_FORMAT} file; run `cleaner audit` again")
    for key, kind in (("shortcut", dict), ("properties", list), ("provenance", list),
                      ("hostile", list)):  # fmt: skip
        if not isinstance(doc.get(key, kind()), kind):
            raise CleanerError(
                f"{p} is damaged ({key!r} is not a {kind.__name__}); run `cleaner audit` again"
            )
    return doc


DAMAGE = (KeyError, TypeError, ValueError, IndexError, AttributeError, ArithmeticError)
"""What a damaged ``audit.json`` (a field missing or of the wrong type) raises in a reader."""


def damaged(root: str | os.PathLike[str], error: BaseException) -> str:
    """The line for an ``audit.json`` whose fields a reader could not use."""
    return (
        f"{audit_path(root)} is damaged ({type(error).__name__}: {error}); "
        "run `cleaner audit` again"
    )[:400]


Cache = tuple[dict[str, dict[str, Any]], dict[str, tuple[int, int, str]]]
"""(sha256 -> properties, path -> (bytes, mtime_ns, sha256))."""


def read_cache(root: str | os.PathLike[str], version: int) -> Cache:
    """The cache, or empty when it is absent, damaged or of another version (a cache is only
    a shortcut: it is rebuilt, never trusted blindly). A damaged path entry is dropped alone
    (its file is read again); the properties are checked by their reader
    (:func:`cleaner.audit.properties.valid`) before use."""
    p = cache_path(root)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        if doc.get("format") != CACHE_FORMAT or doc.get("version") != version:
            return {}, {}
        props = {str(k): v for k, v in doc["props"].items() if isinstance(v, dict)}
        paths = doc["paths"].items()
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return {}, {}
    seen: dict[str, tuple[int, int, str]] = {}
    for k, v in paths:
        if (
            isinstance(v, list)
            and len(v) == 3
            and all(isinstance(x, int) and not isinstance(x, bool) for x in v[:2])
            and isinstance(v[2], str)
        ):
            seen[str(k)] = (v[0], v[1], v[2])
    return props, seen


def write_cache(root: str | os.PathLike[str], version: int, cache: Cache) -> None:
    props, seen = cache
    doc = {"format": CACHE_FORMAT, "version": version, "props": props, "paths": seen}
    atomic_write_text(cache_path(root), json.dumps(doc, separators=(",", ":")) + "\n", is_json=True)
