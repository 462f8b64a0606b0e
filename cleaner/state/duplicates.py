"""``R/.cleaner/duplicates.json``: the duplicate groups ``cleaner dedupe`` found.

One frozen dataclass per level (:class:`Duplicates`, :class:`DuplicateGroup`,
:class:`DuplicateMember`, :class:`SourcePair`), each with ``from_json``/``to_json``: dedupe
writes through them, and every reader (the folds and the split, the report, ``cleaner
evaluate``, serve's conflicts page) reads them. The contract's keys (``method``,
``max_distance``, ``groups`` of ``kept``, ``conflict`` and ``members`` with ``path``,
``label``, ``sha256``, ``distance``) and dedupe's own (``id``, ``match``, ``score``, sizes,
``split``, ``review_only``, ``pairs``) are typed; every other key (statistics, review,
calibration, whatever a later version adds) is kept in ``extra`` and written back. The two rules
a group is judged by live here once: :func:`conflicting` (a label conflict) and
:func:`leaking` (split leakage). Also here: the one union-find over duplicate groups, used by
dedupe (pairs -> groups), the folds and the train split (groups -> one id per image).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleaner.atomic import atomic_write_text
from cleaner.dataset import state_path
from cleaner.errors import CleanerError
from cleaner.state import WsLike, load_json

FILE = "duplicates.json"
FORMAT = "cleaner.duplicates.v1"
"""Written as the file's ``format``; a file without one (older cleaner) reads the same."""
FIX = "run cleaner dedupe again or delete it"


def path(ws: WsLike) -> Path:
    return state_path(ws, FILE)


def conflicting(labels: Iterable[str]) -> bool:
    """A label conflict: one picture in more than one class."""
    return len({lab for lab in labels if lab}) > 1


def leaking(splits: Iterable[str | None]) -> bool:
    """Split leakage: one picture in more than one of train/val/test."""
    return len({s for s in splits if s}) > 1


def _extra(doc: Mapping[str, Any], own: Iterable[str]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in own}


def _opt_int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@dataclass(frozen=True)
class DuplicateMember:
    path: str
    label: str
    sha256: str
    distance: int = 0
    match: str = ""
    """How it matches the kept copy: kept, bytes, pixels, near, mirror or crop."""
    score: float | None = None
    """Verification score of its match to the kept image."""
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    split: str | None = None
    """train/val/test when dedupe knew it (split.csv or a sub-folder)."""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    OWN = ("path", "label", "sha256", "distance", "match", "score", "width", "height", "bytes",
           "split")  # fmt: skip

    @classmethod
    def from_json(cls, m: Mapping[str, Any]) -> DuplicateMember:
        score, split = m.get("score"), m.get("split")
        return cls(
            path=str(m.get("path", "")),
            label=str(m.get("label", "")),
            sha256=str(m.get("sha256") or ""),
            distance=int(m.get("distance") or 0),
            match=str(m.get("match") or ""),
            score=float(score) if isinstance(score, (int, float)) else None,
            width=_opt_int(m.get("width")),
            height=_opt_int(m.get("height")),
            bytes=_opt_int(m.get("bytes")),
            split=split if isinstance(split, str) and split else None,
            extra=_extra(m, cls.OWN),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {} if self.score is None else {"score": round(self.score, 4)}
        d.update(path=self.path, label=self.label, sha256=self.sha256, distance=self.distance)
        if self.match:
            d["match"] = self.match
        sizes = {"width": self.width, "height": self.height, "bytes": self.bytes}
        d.update((k, v) for k, v in sizes.items() if v is not None)
        if self.split is not None:
            d["split"] = self.split
        return {**d, **self.extra}


@dataclass(frozen=True)
class DuplicateGroup:
    kept: str
    members: tuple[DuplicateMember, ...]
    conflict: bool = False
    """As written; a file without it gets :func:`conflicting` over the members' labels."""
    id: int | None = None
    review_only: str = ""
    """Why the group is listed for review and never quarantined ("" when it may be)."""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    OWN = ("id", "kept", "conflict", "members", "review_only", "splits", "leakage")

    @property
    def splits(self) -> list[str]:
        return sorted({m.split for m in self.members if m.split})

    @property
    def leaks(self) -> bool:
        return leaking(self.splits)

    def keys(self) -> list[tuple[str, str]]:
        """(path, sha256) of every member, the kept one included."""
        return [(m.path, m.sha256) for m in self.members]

    @classmethod
    def from_json(cls, g: Mapping[str, Any]) -> DuplicateGroup:
        members = tuple(DuplicateMember.from_json(m) for m in g["members"])
        conflict = g.get("conflict")
        return cls(
            kept=str(g.get("kept", "")),
            members=members,
            conflict=bool(conflict)
            if conflict is not None
            else conflicting(m.label for m in members),
            id=_opt_int(g.get("id")),
            review_only=str(g.get("review_only") or ""),
            extra=_extra(g, cls.OWN),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {} if self.id is None else {"id": self.id}
        d.update(kept=self.kept, conflict=self.conflict)
        d["members"] = [m.to_json() for m in self.members]
        if self.review_only:
            d["review_only"] = self.review_only
        if self.splits:
            d["splits"] = self.splits
            d["leakage"] = self.leaks
        return {**d, **self.extra}


@dataclass(frozen=True)
class SourcePair:
    """A fake and the real photo it was made from (``pairs``): not duplicates, but one fold and
    one split, like a group. Its score, peak, box and share are in ``extra``."""

    real: str
    fake: str
    real_sha256: str = ""
    fake_sha256: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    OWN = ("real", "fake", "real_sha256", "fake_sha256")

    def keys(self) -> list[tuple[str, str]]:
        """(path, sha256) of the real and the fake."""
        return [(self.real, self.real_sha256), (self.fake, self.fake_sha256)]

    @classmethod
    def from_json(cls, p: Mapping[str, Any]) -> SourcePair:
        return cls(
            real=str(p["real"]),
            fake=str(p["fake"]),
            real_sha256=str(p.get("real_sha256") or ""),
            fake_sha256=str(p.get("fake_sha256") or ""),
            extra=_extra(p, cls.OWN),
        )

    def to_json(self) -> dict[str, Any]:
        return {"real": self.real, "fake": self.fake, "real_sha256": self.real_sha256,
                "fake_sha256": self.fake_sha256, **self.extra}  # fmt: skip


@dataclass(frozen=True)
class Duplicates:
    method: str
    max_distance: int
    groups: tuple[DuplicateGroup, ...]
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """Every other key: ``review``, ``review_pairs``, ``calibration``, ``stats``, ``created``..."""
    pairs: tuple[SourcePair, ...] = ()
    """A file without ``pairs`` (older cleaner) has none."""

    OWN = ("format", "method", "max_distance", "groups", "pairs")

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Duplicates:
        """Raises ValueError, KeyError, TypeError or AttributeError on a damaged document."""
        for key in ("groups", "pairs"):
            if not isinstance(doc.get(key, []), list):
                raise TypeError(f"{key!r} is not a list")
        return cls(
            method=str(doc.get("method", "")),
            max_distance=int(doc.get("max_distance") or 0),
            groups=tuple(
                DuplicateGroup.from_json(g) for g in doc.get("groups", []) if isinstance(g, Mapping)
            ),
            extra=_extra(doc, cls.OWN),
            pairs=tuple(
                SourcePair.from_json(p) for p in doc.get("pairs", []) if isinstance(p, Mapping)
            ),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "method": self.method,
            "max_distance": self.max_distance,
            "groups": [g.to_json() for g in self.groups],
            "pairs": [p.to_json() for p in self.pairs],
            **self.extra,
        }


def read(ws: WsLike) -> Duplicates | None:
    """The file's groups; None when there is none. A damaged file is an error naming it
    (silently ignoring it would let duplicates leak across folds and splits)."""
    p = path(ws)
    if not p.is_file():
        return None
    doc = load_json(p, fix=FIX)
    try:
        return Duplicates.from_json(doc)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CleanerError(f"{p} is not a valid duplicates file ({e}); {FIX}") from e


def write(ws: WsLike, doc: Duplicates) -> Path:
    """Write the groups (and every extra key) atomically, with the format."""
    p = path(ws)
    text = json.dumps(doc.to_json(), indent=1) + "\n"
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


def member_keys(ws: WsLike | None) -> list[list[tuple[str, str]]]:
    """Every group of ``R/.cleaner/duplicates.json`` as (path, sha256) lists, and every pair
    (a fake and its real source: the real half must not let a model see the fake's content
    from the other side of a fold or split); ``[]`` without the file (or without a ROOT)."""
    doc = read(ws) if ws is not None else None
    if doc is None:
        return []
    return [g.keys() for g in doc.groups] + [p.keys() for p in doc.pairs]
