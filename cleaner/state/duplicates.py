"""``R/.cleaner/duplicates.json``: the duplicate groups ``cleaner dedupe`` found.

The contract's keys (``method``, ``max_distance``, ``groups`` of ``kept``, ``conflict`` and
``members`` with ``path``, ``label``, ``sha256``, ``distance``) are read into frozen dataclasses;
``pairs`` (``real``, ``fake``, their ``real_sha256``/``fake_sha256``) are read too; every other
key (statistics, review, leakage, whatever a later version adds) is kept in ``raw``
untouched, so a reader never drops what it does not know. Also here: the one union-find over
duplicate groups, used by dedupe (pairs -> groups), the folds and the train split (groups ->
one id per image).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleaner.atomic import atomic_write_text
from cleaner.errors import CleanerError
from cleaner.state import load_json, state_path

FILE = "duplicates.json"
FORMAT = "cleaner.duplicates.v1"
"""Written as the file's ``format``; a file without one (older cleaner) reads the same."""
FIX = "run cleaner dedupe again or delete it"


def path(root: str | os.PathLike[str]) -> Path:
    return state_path(root, FILE)


@dataclass(frozen=True)
class DuplicateMember:
    path: str
    label: str
    sha256: str
    distance: int = 0
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class DuplicateGroup:
    kept: str
    members: tuple[DuplicateMember, ...]
    conflict: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def keys(self) -> list[tuple[str, str]]:
        """(path, sha256) of every member, the kept one included."""
        return [(m.path, m.sha256) for m in self.members]


@dataclass(frozen=True)
class SourcePair:
    """A fake and the real photo it was made from (``pairs``): not duplicates, but one fold and
    one split, like a group."""

    real: str
    fake: str
    real_sha256: str = ""
    fake_sha256: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def keys(self) -> list[tuple[str, str]]:
        """(path, sha256) of the real and the fake."""
        return [(self.real, self.real_sha256), (self.fake, self.fake_sha256)]


@dataclass(frozen=True)
class Duplicates:
    method: str
    max_distance: int
    groups: tuple[DuplicateGroup, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)
    pairs: tuple[SourcePair, ...] = ()
    """A file without ``pairs`` (older cleaner) has none."""


def _member(m: Any) -> DuplicateMember:
    return DuplicateMember(
        path=str(m.get("path", "")),
        label=str(m.get("label", "")),
        sha256=str(m.get("sha256") or ""),
        distance=int(m.get("distance") or 0),
        raw=dict(m),
    )


def _group(g: Any) -> DuplicateGroup:
    return DuplicateGroup(
        kept=str(g.get("kept", "")),
        members=tuple(_member(m) for m in g["members"]),
        conflict=bool(g.get("conflict", False)),
        raw=dict(g),
    )


def _pair(p: Any) -> SourcePair:
    return SourcePair(
        real=str(p["real"]),
        fake=str(p["fake"]),
        real_sha256=str(p.get("real_sha256") or ""),
        fake_sha256=str(p.get("fake_sha256") or ""),
        raw=dict(p),
    )


def read(root: str | os.PathLike[str]) -> Duplicates | None:
    """The file's groups; None when there is none. A damaged file is an error naming it
    (silently ignoring it would let duplicates leak across folds and splits)."""
    p = path(root)
    if not p.is_file():
        return None
    doc = load_json(p, fix=FIX)
    try:
        if not isinstance(doc.get("groups", []), list):
            raise TypeError("'groups' is not a list")
        groups = tuple(_group(g) for g in doc.get("groups", []) if isinstance(g, Mapping))
        if not isinstance(doc.get("pairs", []), list):
            raise TypeError("'pairs' is not a list")
        pairs = tuple(_pair(p) for p in doc.get("pairs", []) if isinstance(p, Mapping))
        return Duplicates(
            method=str(doc.get("method", "")),
            max_distance=int(doc.get("max_distance") or 0),
            groups=groups,
            raw=dict(doc),
            pairs=pairs,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CleanerError(f"{p} is not a valid duplicates file ({e}); {FIX}") from e


def write(root: str | os.PathLike[str], doc: Mapping[str, Any]) -> Path:
    """Write ``doc`` (the contract's keys and any others) atomically, with its format."""
    p = path(root)
    text = json.dumps({"format": FORMAT, **doc}, indent=1) + "\n"
    try:
        atomic_write_text(p, text, is_json=True)
    except OSError as e:
        raise CleanerError(f"cannot write {p} ({e.strerror or e}); make {p.parent} writable") from e
    return p


# ------------------------------------------------------------------------- groups of images


class UnionFind:
    """Disjoint sets over 0..n-1, iterative (no recursion), path halving; a set's root is its
    smallest member, so group ids do not depend on the order of the unions."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        p = self.parent
        while p[x] != x:
            p[x] = p[p[x]]
            x = p[x]
        return x

    def union(self, x: int, y: int) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            self.parent[max(rx, ry)] = min(rx, ry)


def group_index(
    paths: Sequence[str], shas: Sequence[str], groups: Iterable[Sequence[tuple[str, str]]]
) -> list[int]:
    """One group index per image (the smallest index in its group): images that share a
    duplicate group (members matched by sha256, then by path) or the same bytes share one;
    every other image is its own group."""
    uf = UnionFind(len(paths))
    by_sha: dict[str, int] = {}
    by_path: dict[str, int] = {}
    for i, (p, s) in enumerate(zip(paths, shas, strict=True)):
        if s in by_sha:
            uf.union(i, by_sha[s])
        by_sha.setdefault(s, i)
        by_path[p] = i
    for g in groups:
        idx = [by_sha.get(s, by_path.get(p, -1)) for p, s in g]
        idx = [i for i in idx if i >= 0]
        for i in idx[1:]:
            uf.union(idx[0], i)
    return [uf.find(i) for i in range(len(paths))]


def member_keys(root: str | os.PathLike[str] | None) -> list[list[tuple[str, str]]]:
    """Every group of ``R/.cleaner/duplicates.json`` as (path, sha256) lists, and every pair
    (a fake and its real source: the real half must not let a model see the fake's content
    from the other side of a fold or split); ``[]`` without the file (or without a ROOT)."""
    doc = read(root) if root is not None else None
    if doc is None:
        return []
    return [g.keys() for g in doc.groups] + [p.keys() for p in doc.pairs]
