"""``cleaner dedupe``: exact and near-duplicate groups, keep policy, label conflicts, split
leakage, and quarantine of the redundant copies through the journal.

How a pair becomes a duplicate:

1. **Exact bytes**: files with the same sha256 (from the manifest) are one content.
2. **Candidates**: every content's 64-bit hash (:mod:`cleaner.hashing`) is searched against all
   others within ``max_distance`` bits (:mod:`cleaner.hashindex`: multi-index hashing, memory
   linear in N); so are the hashes of its mirror image (finds flipped copies) and of 95 %
   windows of it, centred and in the four corners (finds copies cropped by a few percent).
3. **Confirmation**: a Hamming radius wide enough for recompressed, resized or brightened copies
   also pairs distinct pictures whose hashes happen to agree (aligned faces do), and those false
   pairs grow with the square of N. So each candidate is checked again, independently, on the
   pixels: the Pearson correlation of the two 32 x 32 grey images, as they are or with one of
   them cropped by 5 % at 3 x 3 offsets (mirrored first for a mirror pair), must reach
   ``min_correlation`` (:func:`pair_scores`). Brightness and contrast cancel out in a
   correlation; a different face does not.
4. **Groups** by union-find over the confirmed pairs; the kept copy is the one with the most
   pixels, then the largest file, then the first path. Exact pixel digests (full decode) are
   computed for group members only, to tell byte-different but pixel-identical copies apart.
5. A group whose members sit in different classes is a **label conflict**: ``conflict: true``
   and listed under ``review``. A group whose members sit in different splits (train/val/test
   sub-folders, or ``R/.cleaner/split.csv`` from ``cleaner train``) is **leakage**.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from cleaner.atomic import atomic_write
from cleaner.dataset import QUARANTINE_DIR, STATE_DIR, open_dataset, state_path
from cleaner.errors import CleanerError
from cleaner.hashindex import hamming, iter_pairs
from cleaner.hashing import (
    CROP_KEEP,
    HASH_SIDE,
    METHODS,
    HashTable,
    crop_matrices,
    hash_files,
    pixel_digests,
    resample_matrix,
)

DEFAULT_METHOD = "phash"
DEFAULT_MAX_DISTANCE = 10
"""Hamming radius (bits of 64), chosen on faces140k with generated transforms (README,
bench/bench_dedupe_quality.py): recall 1.0 for half-size, JPEG q40, +30 % brightness and
mirrors, about 0.95 for 5 % crops; the pixel check keeps precision at 1.0 there. A wider radius
buys little crop recall for three times the candidates."""
DEFAULT_MIN_CORRELATION = 0.93
"""Aligned pixel correlation a candidate pair must reach to count as a duplicate (bench)."""
PRECHECK_MIN = 0.80
"""16 x 16 correlation below which a pair is not worth aligning (no true pair measured below)."""

DUPLICATES_FILE = "duplicates.json"
QUARANTINE_SUBDIR = "duplicates"
SPLIT_FILE = "split.csv"

SPLIT_NAMES: dict[str, str] = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}  # fmt: skip
"""Sub-folder names (below the class folder) that say which split a file belongs to."""

# pair kinds, strongest first (the order in which a member's match to the kept copy is named)
BYTES, PIXELS, NEAR, MIRROR, CROP = "bytes", "pixels", "near", "mirror", "crop"


class Row:
    """What the dedupe needs from a manifest row (duck-typed: ``ManifestRow`` fits)."""

    path: str
    label: str
    sha256: str
    bytes: int
    width: int
    height: int


@dataclass
class Member:
    path: str
    label: str
    sha256: str
    distance: int
    match: str
    """How it matches the kept copy: kept, bytes, pixels, near, mirror or crop."""
    width: int = 0
    height: int = 0
    bytes: int = 0
    split: str | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "path": self.path,
            "label": self.label,
            "sha256": self.sha256,
            "distance": self.distance,
            "match": self.match,
            "width": self.width,
            "height": self.height,
            "bytes": self.bytes,
        }
        if self.split is not None:
            d["split"] = self.split
        return d


@dataclass
class Group:
    id: int
    kept: str
    members: list[Member]

    @property
    def conflict(self) -> bool:
        return len({m.label for m in self.members}) > 1

    @property
    def splits(self) -> list[str]:
        return sorted({m.split for m in self.members if m.split is not None})

    @property
    def leaks(self) -> bool:
        return len(self.splits) > 1

    @property
    def redundant(self) -> list[Member]:
        return [m for m in self.members if m.path != self.kept]

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "kept": self.kept,
            "conflict": self.conflict,
            "members": [m.to_json() for m in self.members],
        }
        if self.splits:
            d["splits"] = self.splits
            d["leakage"] = self.leaks
        return d


@dataclass
class DedupeResult:
    root: Path
    method: str
    max_distance: int
    min_correlation: float
    groups: list[Group]
    files: int
    hashed: int
    reused: int
    failed: dict[str, str] = field(default_factory=dict)
    """path -> reason, files that did not decode at hashing time (left out, reported)."""
    candidates: int = 0
    confirmed: int = 0
    seconds: float = 0.0
    output: Path | None = None
    applied: bool = False
    run_id: str | None = None
    moved: int = 0
    skipped: list[str] = field(default_factory=list)

    @property
    def redundant(self) -> int:
        return sum(len(g.redundant) for g in self.groups)

    @property
    def conflicts(self) -> list[Group]:
        return [g for g in self.groups if g.conflict]

    @property
    def leakage(self) -> list[Group]:
        return [g for g in self.groups if g.leaks]

    def matches(self) -> dict[str, int]:
        c = Counter(m.match for g in self.groups for m in g.redundant)
        return {k: c.get(k, 0) for k in (BYTES, PIXELS, NEAR, MIRROR, CROP)}

    def to_json(self) -> dict[str, Any]:
        """``duplicates.json``: the contract's keys, plus review, leakage and statistics."""
        return {
            "method": self.method,
            "max_distance": self.max_distance,
            "groups": [g.to_json() for g in self.groups],
            "min_correlation": self.min_correlation,
            "review": [
                {
                    "group": g.id,
                    "kept": g.kept,
                    "why": "members in different classes: "
                    + ", ".join(f"{m.path} ({m.label})" for m in g.members),
                    "labels": sorted({m.label for m in g.members}),
                }
                for g in self.conflicts
            ],
            "leakage": [
                {
                    "group": g.id,
                    "splits": {s: [m.path for m in g.members if m.split == s] for s in g.splits},
                }
                for g in self.leakage
            ],
            "unreadable": [{"path": p, "reason": r} for p, r in sorted(self.failed.items())],
            "stats": {
                "files": self.files,
                "hashed": self.hashed,
                "reused_from_cache": self.reused,
                "candidate_pairs": self.candidates,
                "confirmed_pairs": self.confirmed,
                "groups": len(self.groups),
                "redundant": self.redundant,
                "conflicts": len(self.conflicts),
                "leaking_groups": len(self.leakage),
                "matches": self.matches(),
            },
        }

    def summary(self) -> dict[str, Any]:
        """What ``cleaner dedupe --json`` prints."""
        return {
            "root": str(self.root),
            "output": str(self.output) if self.output else None,
            "method": self.method,
            "max_distance": self.max_distance,
            "files": self.files,
            "hashed": self.hashed,
            "reused_from_cache": self.reused,
            "unreadable": len(self.failed),
            "groups": len(self.groups),
            "redundant": self.redundant,
            "conflicts": len(self.conflicts),
            "leaking_groups": len(self.leakage),
            "matches": self.matches(),
            "applied": self.applied,
            "run_id": self.run_id,
            "moved": self.moved,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
        }


# ------------------------------------------------------------------------------ the pair search


def _crop_matrices() -> tuple[np.ndarray, ...]:
    """Resampling matrices of a ``CROP_KEEP`` window at offsets 0, half and all of the margin."""
    return crop_matrices()


def _normalise(x: np.ndarray) -> np.ndarray:
    """Rows ``(P, K)`` to zero mean and unit length (a flat row stays all zero)."""
    x = x - x.mean(axis=1, keepdims=True)
    n = np.sqrt((x * x).sum(axis=1, keepdims=True))
    return x / np.where(n > 0, n, 1.0)


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation; identical rows give 1 (also flat ones)."""
    r = (_normalise(a) * _normalise(b)).sum(axis=1)
    return np.where(np.all(a == b, axis=1), 1.0, r)


ALIGN_STEPS = 3
"""Window offsets tried per axis when aligning a candidate pair (0, 1/2, all of the margin).
5 steps were measured too: no crop recall gained at the default threshold, more false pairs."""


@functools.cache
def _align_matrices() -> tuple[np.ndarray, ...]:
    margin = 1.0 - CROP_KEEP
    return tuple(
        resample_matrix(CROP_KEEP, k / (ALIGN_STEPS - 1) * margin).astype(np.float32)
        for k in range(ALIGN_STEPS)
    )


def _crops(x: np.ndarray) -> Iterator[np.ndarray]:
    """The ``ALIGN_STEPS`` x ``ALIGN_STEPS`` shifted ``CROP_KEEP`` crops of square images
    ``(P, S, S)``, flattened, one at a time (memory: a few copies of the chunk)."""
    mats = [m.astype(x.dtype) for m in _align_matrices()]
    for my in mats:
        rows = np.matmul(my, x)
        for mx in mats:
            yield np.matmul(rows, mx.T).reshape(x.shape[0], -1)


def _thumb16(x: np.ndarray) -> np.ndarray:
    p, s = x.shape[0], x.shape[1]
    return x.reshape(p, s // 2, 2, s // 2, 2).mean(axis=(2, 4)).reshape(p, -1)


def _flip_index(side: int) -> np.ndarray:
    """Column order that mirrors a flattened ``side x side`` image left-right."""
    return np.arange(side * side).reshape(side, side)[:, ::-1].ravel()


_SCORE_CHUNK = 16384
"""Pairs scored at once: bounds the float arrays of one chunk to a few tens of MiB."""


def _features(table: HashTable, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised 16 x 16 thumbnails of the whole image and of its central crop (float32)."""
    s = HASH_SIDE
    centre = _crop_matrices()[1].astype(np.float32)
    t = np.empty((ids.size, (s // 2) ** 2), dtype=np.float32)
    c = np.empty_like(t)
    for c0 in range(0, ids.size, _SCORE_CHUNK):
        g = table.grey[ids[c0 : c0 + _SCORE_CHUNK]].reshape(-1, s, s).astype(np.float32)
        t[c0 : c0 + g.shape[0]] = _normalise(_thumb16(g))
        c[c0 : c0 + g.shape[0]] = _normalise(_thumb16(np.matmul(np.matmul(centre, g), centre.T)))
    return t, c


def _rowdot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, y)


def pair_scores(
    table: HashTable,
    a: np.ndarray,
    b: np.ndarray,
    mirror: np.ndarray,
    *,
    accept: float = DEFAULT_MIN_CORRELATION,
) -> np.ndarray:
    """The second, independent check of candidate pairs: how well the pixels agree once aligned.

    Score = the best Pearson correlation between one image's 32 x 32 grey pixels and the other's,
    either as they are or after cropping ``CROP_KEEP`` of one of them at 3 x 3 offsets (a copy
    cropped by a few percent lines up again); ``a`` is mirrored first where ``mirror``. Cheap
    stages first: a 16 x 16 pre-check (whole and central crop) scores pairs that cannot reach
    ``PRECHECK_MIN``; a pair whose unaligned score reaches ``accept`` is not aligned further.
    Identical grey images score 1 (also flat ones).
    """
    s = HASH_SIDE
    out = np.zeros(a.size, dtype=np.float64)
    if a.size == 0:
        return out
    ids, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    pa, pb = inv[: a.size], inv[a.size :]
    t16, c16 = _features(table, ids)
    flip16, flip32 = _flip_index(s // 2), _flip_index(s)
    for c0 in range(0, a.size, _SCORE_CHUNK):
        sl = slice(c0, c0 + _SCORE_CHUNK)
        mi = mirror[sl]
        ta, ca = t16[pa[sl]], c16[pa[sl]]
        if mi.any():
            ta[mi], ca[mi] = ta[mi][:, flip16], ca[mi][:, flip16]
        tb, cb = t16[pb[sl]], c16[pb[sl]]
        score = np.maximum.reduce([_rowdot(ta, tb), _rowdot(ca, tb), _rowdot(ta, cb)])
        score = score.astype(np.float64)
        same = np.flatnonzero(table.hash[a[sl]] == table.hash[b[sl]])
        if same.size:
            eq = np.all(table.grey[a[sl][same]] == table.grey[b[sl][same]], axis=1) & ~mi[same]
            score[same[eq]] = 1.0
        todo = np.flatnonzero((score >= PRECHECK_MIN) & (score < 1.0))
        if todo.size:
            ga = table.grey[a[sl][todo]].astype(np.float32)
            gb = table.grey[b[sl][todo]].astype(np.float32)
            m = mi[todo]
            if m.any():
                ga[m] = ga[m][:, flip32]
            na, nb = _normalise(ga), _normalise(gb)
            best = _rowdot(na, nb)
            rest = np.flatnonzero(best < accept)
            if rest.size:
                sub = best[rest]
                for va in _crops(ga[rest].reshape(-1, s, s)):
                    sub = np.maximum(sub, _corr_to(va, nb[rest]))
                for vb in _crops(gb[rest].reshape(-1, s, s)):
                    sub = np.maximum(sub, _corr_to(vb, na[rest]))
                best[rest] = sub
            score[todo] = best
        out[sl] = score
    return out


def _corr_to(x: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Correlation of rows ``x`` with rows already normalised (zero mean, unit length)."""
    k = x.shape[1]
    sx = x.sum(axis=1)
    var = np.einsum("ij,ij->i", x, x) - sx * sx / k
    return _rowdot(x, unit) / np.sqrt(np.where(var > 0, var, np.inf))


@dataclass
class Pairs:
    """Candidate pairs of contents (``a < b``), their distance and kind, and the check."""

    a: np.ndarray
    b: np.ndarray
    distance: np.ndarray
    mirror: np.ndarray
    score: np.ndarray

    def confirmed(self, min_correlation: float) -> np.ndarray:
        return self.score >= min_correlation


def candidate_pairs(table: HashTable, max_distance: int) -> Pairs:
    """Pairs of contents within ``max_distance`` by hash, mirror hash or crop hash, each pair
    once (its smallest distance), scored by :func:`pair_scores`."""
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    variants: list[tuple[np.ndarray | None, bool]] = [
        (None, False),
        (table.mirror, True),
        (table.crop, False),
        *((table.corners[:, k], False) for k in range(table.corners.shape[1])),
    ]
    for queries, is_mirror in variants:
        for i, j, d in iter_pairs(table.hash, max_distance, queries):
            keep = i != j
            i, j, d = i[keep], j[keep], d[keep]
            parts.append((np.minimum(i, j), np.maximum(i, j), d, np.full(i.size, is_mirror)))
    if not parts:
        z = np.zeros(0, np.int64)
        return Pairs(z, z.copy(), z.copy(), np.zeros(0, bool), np.zeros(0))
    a = np.concatenate([p[0] for p in parts])
    b = np.concatenate([p[1] for p in parts])
    d = np.concatenate([p[2] for p in parts])
    m = np.concatenate([p[3] for p in parts])
    # one row per pair: the smallest distance, a plain match preferred to a mirror one
    order = np.lexsort((m, d, b, a))
    a, b, d, m = a[order], b[order], d[order], m[order]
    first = np.ones(a.size, dtype=bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    a, b, d, m = a[first], b[first], d[first], m[first]
    return Pairs(a, b, d, m, pair_scores(table, a, b, m))


def identical_pixels(table: HashTable) -> tuple[np.ndarray, np.ndarray]:
    """``(reps, rep_of)``: the first content of each distinct 32 x 32 grey image (sorted), and
    for every content the representative with the same grey pixels."""
    if len(table) == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z.copy()
    grey = np.ascontiguousarray(table.grey)
    key = grey.view(np.dtype((np.void, grey.shape[1])))[:, 0]
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    rep_of = first[inv.ravel()].astype(np.int64)
    return np.unique(rep_of), rep_of


class UnionFind:
    """Disjoint sets over 0..n-1, iterative (no recursion), path halving."""

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


# --------------------------------------------------------------------------- splits and policy


def read_split_file(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """``R/.cleaner/split.csv`` (written by ``cleaner train``): path -> split, sha256 -> split."""
    p = root / STATE_DIR / SPLIT_FILE
    by_path: dict[str, str] = {}
    by_sha: dict[str, str] = {}
    if not p.exists():
        return by_path, by_sha
    try:
        with open(p, newline="") as f:
            for r in csv.DictReader(f):
                s = (r.get("split") or "").strip()
                if not s:
                    continue
                if r.get("path"):
                    by_path[r["path"]] = s
                if r.get("sha256"):
                    by_sha[r["sha256"]] = s
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise CleanerError(f"{p}: cannot read the split file ({e}); fix or delete it") from e
    return by_path, by_sha


def split_of_path(path: str) -> str | None:
    """train/val/test from a sub-folder below the class folder (``real_images/test/a.jpg``)."""
    for part in PurePosixPath(path).parts[1:-1]:
        s = SPLIT_NAMES.get(part.lower())
        if s is not None:
            return s
    return None


def keep_key(r: Any) -> tuple[int, int, str]:
    """Sort key of the keep policy: most pixels, then largest file, then first path."""
    return (-int(r.width) * int(r.height), -int(r.bytes), str(r.path))


# ------------------------------------------------------------------------------- the main work


def find_duplicates(
    root: str | os.PathLike[str],
    rows: Sequence[Any],
    *,
    method: str = DEFAULT_METHOD,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    min_correlation: float = DEFAULT_MIN_CORRELATION,
    workers: int | None = None,
    progress: bool | None = None,
    cache: bool = True,
) -> DedupeResult:
    """Groups of duplicates among ``rows`` (manifest rows of ok files under ``root``)."""
    t0 = time.perf_counter()
    if method not in METHODS:
        raise CleanerError(f"unknown --method {method!r}; use one of {', '.join(METHODS)}")
    if not 0 <= max_distance <= 32:
        raise CleanerError(f"--max-distance {max_distance} is out of range; use 0..32 bits")
    rootp = Path(root).resolve()
    items = [(str(rootp / r.path), r.sha256) for r in rows]
    run = hash_files(
        items, method, root=rootp if cache else None, workers=workers, progress=progress
    )
    table = run.table
    sha_row = table.index()
    failed = {r.path: run.failed[r.sha256] for r in rows if r.sha256 in run.failed}
    usable = [r for r in rows if r.sha256 in sha_row]

    # contents with the same 32 x 32 grey pixels (and so the same hashes) are one node for the
    # search: a thousand copies of one blank image cost one search entry, not a million pairs
    reps, rep_of = identical_pixels(table)
    pairs = candidate_pairs(table.take(reps), max_distance)
    ok = pairs.confirmed(min_correlation)
    pair_a, pair_b = reps[pairs.a[ok]], reps[pairs.b[ok]]

    # union-find over rows: same bytes, then confirmed content pairs
    uf = UnionFind(len(usable))
    first_row_of: dict[int, int] = {}
    content_of = np.array([sha_row[r.sha256] for r in usable], dtype=np.int64)
    for k, c in enumerate(content_of.tolist()):
        if c in first_row_of:
            uf.union(first_row_of[c], k)
        else:
            first_row_of[c] = k
    for c, r in enumerate(rep_of.tolist()):
        if r != c:
            uf.union(first_row_of[c], first_row_of[r])
    for a, b in zip(pair_a.tolist(), pair_b.tolist(), strict=True):
        uf.union(first_row_of[a], first_row_of[b])
    members_of: dict[int, list[int]] = {}
    for k in range(len(usable)):
        members_of.setdefault(uf.find(k), []).append(k)
    clusters = [ks for ks in members_of.values() if len(ks) > 1]

    # exact pixel digests, only for files that ended up in a group
    in_groups = [usable[k] for ks in clusters for k in ks]
    digests = pixel_digests(
        [(str(rootp / r.path), r.sha256) for r in in_groups],
        root=rootp if cache else None,
        workers=workers,
        progress=progress,
    )

    split_by_path, split_by_sha = read_split_file(rootp)

    def split(r: Any) -> str | None:
        return split_by_path.get(r.path) or split_by_sha.get(r.sha256) or split_of_path(r.path)

    groups: list[Group] = []
    for ks in clusters:
        rs = sorted((usable[k] for k in ks), key=keep_key)
        kept = rs[0]
        ck = sha_row[kept.sha256]
        members: list[Member] = []
        for r in sorted(rs, key=lambda x: x.path):
            c = sha_row[r.sha256]
            if r is kept:
                dist, match = 0, "kept"
            elif r.sha256 == kept.sha256:
                dist, match = 0, BYTES
            else:
                dist, match = _distance_to(table, c, ck)
                dk = digests.get(kept.sha256)
                if dk and digests.get(r.sha256) == dk:
                    match = PIXELS
            members.append(
                Member(r.path, r.label, r.sha256, dist, match, r.width, r.height, r.bytes, split(r))
            )
        groups.append(Group(0, kept.path, members))
    groups.sort(key=lambda g: g.kept)
    for i, g in enumerate(groups):
        g.id = i
    return DedupeResult(
        root=rootp,
        method=method,
        max_distance=max_distance,
        min_correlation=min_correlation,
        groups=groups,
        files=len(rows),
        hashed=run.computed,
        reused=run.reused,
        failed=failed,
        candidates=int(pairs.a.size),
        confirmed=int(ok.sum()) + int((rep_of != np.arange(rep_of.size)).sum()),
        seconds=time.perf_counter() - t0,
    )


def _distance_to(table: HashTable, c: int, k: int) -> tuple[int, str]:
    """Smallest Hamming distance of content ``c`` to the kept content ``k``, and its kind."""
    h, m = table.hash, table.mirror
    crops = np.concatenate([table.crop[:, None], table.corners], axis=1)
    options = [
        (int(hamming(h[c : c + 1], h[k : k + 1])[0]), NEAR),
        (int(hamming(m[c : c + 1], h[k : k + 1])[0]), MIRROR),
        (int(hamming(crops[c], np.full(crops.shape[1], h[k])).min()), CROP),
        (int(hamming(crops[k], np.full(crops.shape[1], h[c])).min()), CROP),
    ]
    return min(options, key=lambda o: o[0])


def write_duplicates(result: DedupeResult, extra: dict[str, Any] | None = None) -> Path:
    """Write ``R/.cleaner/duplicates.json`` atomically (temporary file, fsync, rename)."""
    out = state_path(result.root, DUPLICATES_FILE)
    doc = result.to_json()
    doc["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if extra:
        doc.update(extra)

    def write(tmp: Path) -> None:
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")

    try:
        atomic_write(out, write)
    except OSError as e:
        raise CleanerError(
            f"cannot write {out} ({e.strerror or e}); make {out.parent} writable"
        ) from e
    result.output = out
    return out


def quarantine_path(path: str) -> str:
    """Where a redundant copy goes: ``quarantine/duplicates/<its ROOT-relative path>``."""
    return f"{QUARANTINE_DIR}/{QUARANTINE_SUBDIR}/{path}"


def dedupe(
    root: str | os.PathLike[str],
    *,
    method: str = DEFAULT_METHOD,
    max_distance: int | None = None,
    apply: bool = False,
    min_correlation: float = DEFAULT_MIN_CORRELATION,
    workers: int | None = None,
    progress: bool | None = None,
) -> DedupeResult:
    """The whole command: current ok files -> groups -> ``duplicates.json``; with ``apply``,
    every member but the kept one moves to ``quarantine/duplicates/`` through the journal
    (``cleaner undo`` brings them back)."""
    from cleaner.manifest import ok_rows

    open_dataset(root)  # a clear error for a missing root or one without class folders
    rows = ok_rows(root, workers=workers, progress=progress)
    result = find_duplicates(
        root,
        rows,
        method=method,
        max_distance=DEFAULT_MAX_DISTANCE if max_distance is None else max_distance,
        min_correlation=min_correlation,
        workers=workers,
        progress=progress,
    )
    write_duplicates(result)
    if apply:
        from cleaner.journal import Move, apply_moves

        moves = [
            Move(
                src=m.path,
                dst=quarantine_path(m.path),
                sha256=m.sha256,
                reason=f"duplicate of {g.kept} ({m.match}, distance {m.distance})",
            )
            for g in result.groups
            for m in g.redundant
        ]
        applied = apply_moves(root, moves, command="dedupe", progress=progress)
        result.applied = True
        result.run_id = applied.run_id
        result.moved = len(applied.moved)
        result.skipped = [f"{r.src}: {r.why}" for r in applied.skipped]
        write_duplicates(result, {"applied": True, "run_id": applied.run_id, "moved": result.moved})
    return result
