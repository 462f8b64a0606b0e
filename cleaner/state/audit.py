"""The audit's two files under ``R/.cleaner/``: ``audit.json`` and the properties cache.

- ``audit.json`` (:data:`FORMAT`): the last audit's summary, one :class:`Audit`, written by
  ``cleaner audit`` and read by ``cleaner report`` and ``cleaner train`` (its shortcut warning).
- ``audit_cache.json``: sha256 -> one file's properties (they depend on the bytes only), and
  path -> (size, mtime_ns, sha256) of the last audit, so an unchanged file is not even opened.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleaner.atomic import atomic_write_text
from cleaner.dataset import state_path
from cleaner.errors import CleanerError
from cleaner.state import WsLike, load_json

FILE = "audit.json"
FORMAT = "cleaner.audit.v1"
CACHE_FILE = "audit_cache.json"
CACHE_FORMAT = "cleaner.audit-cache.v1"
FIX = "run `cleaner audit` again"


def path(ws: WsLike) -> Path:
    return state_path(ws, FILE)


def cache_path(ws: WsLike) -> Path:
    return state_path(ws, CACHE_FILE)


@dataclass(frozen=True)
class Audit:
    """``audit.json``: when it was made, the shortcut verdict (``shortcut``: auc, low, high,
    verdict, named...), one entry per property, the provenance evidence and the files that
    could not be audited; every other key (root, files, classes, threshold...) in ``extra``."""

    generated: str = ""
    shortcut: dict[str, Any] = field(default_factory=dict)
    properties: tuple[dict[str, Any], ...] = ()
    provenance: tuple[dict[str, Any], ...] = ()
    hostile: tuple[dict[str, Any], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    OWN = ("format", "generated", "shortcut", "properties", "provenance", "hostile")

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Audit:
        """The summary; TypeError naming the first key of the wrong type."""
        for key, kind in (("shortcut", dict), ("properties", list), ("provenance", list),
                          ("hostile", list)):  # fmt: skip
            if not isinstance(doc.get(key, kind()), kind):
                raise TypeError(f"{key!r} is not a {kind.__name__}")
        return cls(
            generated=str(doc.get("generated") or ""),
            shortcut=dict(doc.get("shortcut") or {}),
            properties=tuple(doc.get("properties") or ()),
            provenance=tuple(doc.get("provenance") or ()),
            hostile=tuple(doc.get("hostile") or ()),
            extra={k: v for k, v in doc.items() if k not in cls.OWN},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            **self.extra,
            "generated": self.generated,
            "shortcut": dict(self.shortcut),
            "properties": list(self.properties),
            "provenance": list(self.provenance),
            "hostile": list(self.hostile),
        }


def write(ws: WsLike, audit: Audit, out: Path | None = None) -> Path:
    """Write the audit summary to ``R/.cleaner/audit.json`` (or ``out``) atomically."""
    target = out if out is not None else path(ws)
    atomic_write_text(target, json.dumps(audit.to_json(), indent=1) + "\n", is_json=True)
    return target


def read(ws: WsLike) -> Audit | None:
    """The last audit of ROOT, or None when there is none. A damaged file is an error naming it."""
    p = path(ws)
    if not p.is_file():
        return None
    doc = load_json(p, fix=FIX)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CleanerError(f"{p} is not a {FORMAT} file; {FIX}")
    try:
        return Audit.from_json(doc)
    except TypeError as e:
        raise CleanerError(f"{p} is damaged ({e}); {FIX}") from e


DAMAGE = (KeyError, TypeError, ValueError, IndexError, AttributeError, ArithmeticError)
"""What a damaged ``audit.json`` (a field missing or of the wrong type) raises in a reader."""


def damaged(ws: WsLike, error: BaseException) -> str:
    """The line for an ``audit.json`` whose fields a reader could not use."""
    return f"{path(ws)} is damaged ({type(error).__name__}: {error}); {FIX}"[:400]


# ------------------------------------------------------------------------------ the cache

Cache = tuple[dict[str, dict[str, Any]], dict[str, tuple[int, int, str]]]
"""(sha256 -> properties, path -> (bytes, mtime_ns, sha256))."""


def read_cache(ws: WsLike, version: int) -> Cache:
    """The cache, or empty when it is absent, damaged or of another version (a cache is only
    a shortcut: it is rebuilt, never trusted blindly). A damaged path entry is dropped alone
    (its file is read again); the properties are checked by their reader
    (:func:`cleaner.audit.properties.valid`) before use."""
    p = cache_path(ws)
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


def write_cache(ws: WsLike, version: int, cache: Cache) -> None:
    props, seen = cache
    doc = {"format": CACHE_FORMAT, "version": version, "props": props, "paths": seen}
    atomic_write_text(cache_path(ws), json.dumps(doc, separators=(",", ":")) + "\n", is_json=True)
