"""``cleaner dedupe``: exact and near-duplicate groups, keep policy, label conflicts, split
leakage, and quarantine of the redundant copies through the journal.

How a pair becomes a duplicate:

1. **Exact bytes**: files with the same sha256 (from the manifest) are one content.
2. **Candidates**: every content's 64-bit hash (:mod:`cleaner.hashing`) is searched against all
   others within ``max_distance`` bits (:mod:`cleaner.hashindex`: multi-index hashing, memory
   linear in N); so are the hashes of its mirror image (finds flipped copies), of 95 %
   windows of it, centred and in the four corners (finds copies cropped by a few percent), and
   of 90 % windows at 4 x 4 offsets (finds copies cropped by about 10 %).
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
5. A match across the classes is a **pair** when the fake differs from the real photo by a
   local change (:mod:`cleaner.pairs`): listed under ``pairs``, never grouped, never moved.
   Otherwise it is a **label conflict**: its group gets ``conflict: true``, is listed under
   ``review`` and is never quarantined automatically. A group whose members sit in different
   splits (train/val/test sub-folders, or ``R/.cleaner/split.csv`` from ``cleaner train``) is
   **leakage**.
"""

from __future__ import annotations

import functools
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from cleaner.dataset import QUARANTINE_DIR, Workspace
from cleaner.errors import CleanerError
from cleaner.guard import fraction_guard
from cleaner.hashindex import hamming, iter_pairs
from cleaner.hashing import (
    CROP_KEEP,
    HASH_SIDE,
    METHODS,
    WIDE_KEEP,
    HashTable,
    crop_matrices,
    hash_files,
    pixel_digests,
    resample_matrix,
)
from cleaner.pairs import CONFLICT_WHY, Pair, split_cross
from cleaner.state import duplicates as duplicates_file
from cleaner.state import split as split_file
from cleaner.verify import (
    FINE_UNTIL,
    Calibration,
    Scorer,
    calibrate,
    fit_basis,
    hard_null,
    null_scores,
)

if TYPE_CHECKING:
    from cleaner.journal import AppliedRun
    from cleaner.moves import MoveOutcome, MovePlan

DEFAULT_METHOD = "phash"
DEFAULT_MAX_DISTANCE = 10
"""Hamming radius (bits of 64), chosen on faces140k with generated transforms (bench/README,
bench/bench_dedupe_quality.py): recall 1.0 for half-size, JPEG q40, +30 % brightness and
mirrors, about 0.95 for 5 % crops; the pixel check keeps precision at 1.0 there. A wider radius
buys little crop recall for three times the candidates."""
DEFAULT_MIN_CORRELATION = 0.85
"""Aligned raw pixel correlation a candidate pair must reach to be verified at all (the first,
cheap check; every true copy on both benches scores >= 0.88). The decision is the verification
score's (:mod:`cleaner.verify`), against a threshold calibrated on the dataset."""
MAX_GROUP = 20
"""A kept image matched directly by more copies than this is implausible: review only."""
DEFAULT_MAX_FRACTION = 0.1
"""``--apply`` refuses a plan that would quarantine more than this fraction of a class."""
PRECHECK_MIN = 0.80
"""16 x 16 correlation below which a pair is not worth aligning (no true pair measured below)."""

QUARANTINE_SUBDIR = "duplicates"

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
    score: float = 1.0
    """Verification score of its match to the kept image (1: same bytes or pixels, or kept)."""

    def to_state(self) -> duplicates_file.DuplicateMember:
        """The member as ``duplicates.json`` holds it."""
        return duplicates_file.DuplicateMember(
            path=self.path,
            label=self.label,
            sha256=self.sha256,
            distance=self.distance,
            match=self.match,
            score=self.score,
            width=self.width,
            height=self.height,
            bytes=self.bytes,
            split=self.split,
        )


@dataclass
class Group:
    id: int
    kept: str
    members: list[Member]
    review_only: str = ""
    """Why this group is listed for review and never quarantined ("" when it may be)."""

    @property
    def conflict(self) -> bool:
        return duplicates_file.conflicting(m.label for m in self.members)

    @property
    def splits(self) -> list[str]:
        return sorted({m.split for m in self.members if m.split is not None})

    @property
    def leaks(self) -> bool:
        return duplicates_file.leaking(self.splits)

    @property
    def redundant(self) -> list[Member]:
        return [m for m in self.members if m.path != self.kept]

    @property
    def to_quarantine(self) -> list[Member]:
        """The members ``--apply`` moves: none for a review-only group."""
        return [] if self.review_only else self.redundant

    def to_state(self) -> duplicates_file.DuplicateGroup:
        """The group as ``duplicates.json`` holds it."""
        return duplicates_file.DuplicateGroup(
            kept=self.kept,
            members=tuple(m.to_state() for m in self.members),
            conflict=self.conflict,
            id=self.id,
            review_only=self.review_only,
        )


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
    calibration: Calibration | None = None
    review_pairs: list[dict[str, Any]] = field(default_factory=list)
    """Pairs whose evidence fell just short of the calibrated acceptance (never grouped)."""
    totals: dict[str, int] = field(default_factory=dict)
    """Files per class (the guard's denominators)."""
    guard: dict[str, Any] = field(default_factory=dict)
    pairs: list[Pair] = field(default_factory=list)
    """Cross-class matches with a local change: a fake and the real photo it was made from
    (:mod:`cleaner.pairs`), kept, never grouped."""
    outcome: MoveOutcome | None = None
    """What the move executor did with the proposed quarantine (a dry run too)."""

    @property
    def paired_fakes(self) -> int:
        return len({p.fake for p in self.pairs})

    @property
    def paired_line(self) -> str:
        fakes = self.totals.get("fake", 0)
        return f"{self.paired_fakes} of {fakes} fakes are paired with a real photo"

    @property
    def redundant(self) -> int:
        return sum(len(g.redundant) for g in self.groups)

    @property
    def quarantine(self) -> list[tuple[Group, Member]]:
        """What ``--apply`` moves: the redundant members of the groups not held for review."""
        return [(g, m) for g in self.groups for m in g.to_quarantine]

    @property
    def review_groups(self) -> list[Group]:
        return [g for g in self.groups if g.review_only]

    @property
    def expected_false_pairs(self) -> float:
        return self.calibration.expected_false_pairs if self.calibration else 0.0

    @property
    def weak_evidence(self) -> bool:
        return bool(self.calibration and self.calibration.weak)

    @property
    def conflicts(self) -> list[Group]:
        return [g for g in self.groups if g.conflict]

    @property
    def leakage(self) -> list[Group]:
        return [g for g in self.groups if g.leaks]

    def matches(self) -> dict[str, int]:
        c = Counter(m.match for g in self.groups for m in g.redundant)
        return {k: c.get(k, 0) for k in (BYTES, PIXELS, NEAR, MIRROR, CROP)}

    def to_state(self, extra: Mapping[str, Any] | None = None) -> duplicates_file.Duplicates:
        """``duplicates.json``: the contract's keys, plus review, leakage and statistics (and
        ``extra``'s keys)."""
        return duplicates_file.Duplicates(
            method=self.method,
            max_distance=self.max_distance,
            groups=tuple(g.to_state() for g in self.groups),
            extra={**self._extra(), **(extra or {})},
            pairs=tuple(duplicates_file.SourcePair.from_json(p.to_json()) for p in self.pairs),
        )

    def _extra(self) -> dict[str, Any]:
        return {
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
            ]
            + [
                {
                    "group": g.id,
                    "kept": g.kept,
                    "why": g.review_only,
                    "labels": sorted({m.label for m in g.members}),
                }
                for g in self.review_groups
                if not g.conflict
            ],
            "review_pairs": self.review_pairs,
            "calibration": self.calibration.to_json() if self.calibration else None,
            "expected_false_pairs": round(self.expected_false_pairs, 4),
            "guard": self.guard,
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
                "to_quarantine": len(self.quarantine),
                "review_groups": len(self.review_groups),
                "review_pairs": len(self.review_pairs),
                "conflicts": len(self.conflicts),
                "pairs": len(self.pairs),
                "paired_fakes": self.paired_fakes,
                "fakes": self.totals.get("fake", 0),
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
            "to_quarantine": len(self.quarantine),
            "review_groups": len(self.review_groups),
            "review_pairs": len(self.review_pairs),
            "expected_false_pairs": round(self.expected_false_pairs, 4),
            "threshold": round(self.calibration.threshold, 4) if self.calibration else None,
            "weak_evidence": self.weak_evidence,
            "guard": self.guard,
            "conflicts": len(self.conflicts),
            "pairs": len(self.pairs),
            "paired_fakes": self.paired_fakes,
            "fakes": self.totals.get("fake", 0),
            "paired": self.paired_line,
            "leaking_groups": len(self.leakage),
            "matches": self.matches(),
            "applied": self.applied,
            "run_id": self.run_id,
            "moved": self.moved,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "run": self.outcome.summary() if self.outcome is not None else None,
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
def _align_matrices(keep: float = CROP_KEEP) -> tuple[np.ndarray, ...]:
    margin = 1.0 - keep
    return tuple(
        resample_matrix(keep, k / (ALIGN_STEPS - 1) * margin).astype(np.float32)
        for k in range(ALIGN_STEPS)
    )


def _crops(x: np.ndarray) -> Iterator[np.ndarray]:
    """The ``ALIGN_STEPS`` x ``ALIGN_STEPS`` shifted ``CROP_KEEP`` and ``WIDE_KEEP`` crops of
    square images ``(P, S, S)``, flattened, one at a time (memory: a few copies of the chunk)."""
    for keep in (CROP_KEEP, WIDE_KEEP):
        mats = [m.astype(x.dtype) for m in _align_matrices(keep)]
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


def _features(table: HashTable, ids: np.ndarray) -> tuple[np.ndarray, ...]:
    """Normalised 16 x 16 thumbnails of the whole image and of its central ``CROP_KEEP`` and
    ``WIDE_KEEP`` crops (float32)."""
    s = HASH_SIDE
    centres = (_crop_matrices()[1], _align_matrices(WIDE_KEEP)[1])
    t = np.empty((ids.size, (s // 2) ** 2), dtype=np.float32)
    cs = [np.empty_like(t) for _ in centres]
    for c0 in range(0, ids.size, _SCORE_CHUNK):
        g = table.grey[ids[c0 : c0 + _SCORE_CHUNK]].reshape(-1, s, s).astype(np.float32)
        t[c0 : c0 + g.shape[0]] = _normalise(_thumb16(g))
        for c, m in zip(cs, centres, strict=True):
            c[c0 : c0 + g.shape[0]] = _normalise(_thumb16(np.matmul(np.matmul(m, g), m.T)))
    return t, *cs


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
    either as they are or after cropping ``CROP_KEEP`` or ``WIDE_KEEP`` of one of them at 3 x 3
    offsets (a copy cropped by a few or about ten percent lines up again); ``a`` is mirrored
    first where ``mirror``. Cheap stages first: a 16 x 16 pre-check (whole and central crops)
    scores pairs that cannot reach ``PRECHECK_MIN``; a pair whose unaligned score reaches
    ``accept`` is not aligned further. Identical grey images score 1 (also flat ones).
    """
    s = HASH_SIDE
    out = np.zeros(a.size, dtype=np.float64)
    if a.size == 0:
        return out
    ids, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    pa, pb = inv[: a.size], inv[a.size :]
    t16, *c16 = _features(table, ids)
    flip16, flip32 = _flip_index(s // 2), _flip_index(s)
    for c0 in range(0, a.size, _SCORE_CHUNK):
        sl = slice(c0, c0 + _SCORE_CHUNK)
        mi = mirror[sl]
        ta, tb = t16[pa[sl]], t16[pb[sl]]
        if mi.any():
            ta[mi] = ta[mi][:, flip16]
        score = _rowdot(ta, tb)
        for c in c16:  # the central crops (95 %, 90 %) of either against the other whole
            ca, cb = c[pa[sl]], c[pb[sl]]
            if mi.any():
                ca[mi] = ca[mi][:, flip16]
            score = np.maximum.reduce([score, _rowdot(ca, tb), _rowdot(ta, cb)])
        low = np.flatnonzero(score < PRECHECK_MIN)
        if low.size:  # a crop of about 10 %: its 90 % windows, not only the central one
            ga16 = _thumb16(table.grey[a[sl][low]].reshape(-1, s, s).astype(np.float32))
            gb16 = _thumb16(table.grey[b[sl][low]].reshape(-1, s, s).astype(np.float32))
            m = mi[low]
            ga16[m] = ga16[m][:, flip16]
            score[low] = np.maximum(score[low], _wide_precheck(ga16, gb16))
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


@functools.cache
def _wide16() -> tuple[np.ndarray, ...]:
    """16 x 16 resampling matrices of ``WIDE_KEEP`` windows at ``ALIGN_STEPS`` offsets."""
    margin = 1.0 - WIDE_KEEP
    return tuple(
        resample_matrix(WIDE_KEEP, k / (ALIGN_STEPS - 1) * margin, side=HASH_SIDE // 2).astype(
            np.float32
        )
        for k in range(ALIGN_STEPS)
    )


def _wide_precheck(ta: np.ndarray, tb: np.ndarray) -> np.ndarray:
    """Best correlation of flattened 16 x 16 thumbnails ``(P, 256)`` when one of them is
    cropped to ``WIDE_KEEP`` at ``ALIGN_STEPS`` x ``ALIGN_STEPS`` offsets. Why: a copy cropped
    by 10 % at a corner is 0.8 px (at 16 px) off the central window and pre-checked 0.65-0.80
    there (faces140k fakes), under ``PRECHECK_MIN``, though it scores 0.97 once aligned."""
    side = HASH_SIDE // 2
    na, nb = _normalise(ta), _normalise(tb)
    best = np.full(ta.shape[0], -1.0, dtype=np.float32)
    mats = _wide16()
    for x, other in ((ta, nb), (tb, na)):
        img = x.reshape(-1, side, side)
        for my in mats:
            rows = np.matmul(my, img)
            for mx in mats:
                best = np.maximum(
                    best, _corr_to(np.matmul(rows, mx.T).reshape(x.shape[0], -1), other)
                )
    return best


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
        *((table.wides[:, k], False) for k in range(table.wides.shape[1])),
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


# --------------------------------------------------------------------------- splits and policy


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


@dataclass
class Verified:
    """The decision over the candidate pairs of representative contents."""

    a: np.ndarray
    b: np.ndarray
    score: np.ndarray
    """Verification score of each accepted pair."""
    review: list[tuple[int, int, float]]
    """(a, b, score) of the pairs just below the acceptance."""
    candidates: int
    calibration: Calibration
    seconds_calibrate: float = 0.0
    """Basis, per-image features and the null pairs."""
    seconds_score: float = 0.0
    """Scoring the candidate pairs."""
    tested: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    """(a, b, score) of every pair scored (benchmarks read it)."""


HOP_MAX_DEGREE = 2 * MAX_GROUP
"""Accepted matches above which a node is not used to propose two-hop pairs (bounds their
number: at most this squared per node)."""


def two_hop(
    a: np.ndarray, b: np.ndarray, mirror: np.ndarray, tested: set[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``(x, z)`` not yet tested with accepted ``x~y`` and ``y~z`` (mirrored when exactly
    one step is). Why: the hash search finds a copy's match by one transform (a mirror *or* a
    crop); a cropped copy and a mirrored copy of one original are never candidates of each
    other, and when the mirrored one is kept the crop cannot join it directly. Proposing them
    is no chain: each is verified directly, like any candidate."""
    nbr: dict[int, list[tuple[int, bool]]] = {}
    for x, y, m in zip(a.tolist(), b.tolist(), mirror.tolist(), strict=True):
        nbr.setdefault(x, []).append((y, m))
        nbr.setdefault(y, []).append((x, m))
    out: dict[tuple[int, int], bool] = {}
    for ends in nbr.values():
        if len(ends) > HOP_MAX_DEGREE:
            continue
        for i, (x, mx) in enumerate(ends):
            for z, mz in ends[i + 1 :]:
                key = (min(x, z), max(x, z))
                if x != z and key not in tested and key not in out:
                    out[key] = mx != mz
    keys = np.array(list(out), dtype=np.int64).reshape(-1, 2)
    return keys[:, 0], keys[:, 1], np.fromiter(out.values(), dtype=bool, count=len(out))


def _same_grey(grey: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairs whose grey images are identical, a chunk at a time (both rows of every candidate
    pair gathered at once were 2 KiB per pair: 2 GiB at a million pairs)."""
    out = np.zeros(a.size, dtype=bool)
    for c0 in range(0, a.size, _SCORE_CHUNK):
        sl = slice(c0, c0 + _SCORE_CHUNK)
        out[sl] = np.all(grey[a[sl]] == grey[b[sl]], axis=1)
    return out


def _evidence(
    scorer: Scorer, a: np.ndarray, b: np.ndarray, mirror: np.ndarray, v: np.ndarray, least: float
) -> np.ndarray:
    """:meth:`Scorer.evidence` of the pairs scoring at least ``least``; identical images (score
    1 unmirrored) keep 1."""
    out = v.copy()
    todo = np.flatnonzero(v < 1.0)
    out[todo] = scorer.evidence(a[todo], b[todo], mirror[todo], v[todo], least)
    return out


def verify_pairs(table: HashTable, pairs: Pairs, min_correlation: float) -> Verified:
    """Accept the candidate pairs whose evidence (:meth:`cleaner.verify.Scorer.evidence`: the
    verification score, below ``FINE_UNTIL`` also the fine band's agreement) reaches the
    threshold calibrated on this table's own random pairs and hard null (nearest neighbours);
    identical grey images always pass.
    The pairs two accepted matches apart (:func:`two_hop`) are verified too, and counted among
    the pairs tested by the calibration."""
    t0 = time.perf_counter()
    gate = np.flatnonzero(pairs.score >= min_correlation)
    ga, gb, gm = pairs.a[gate], pairs.b[gate], pairs.mirror[gate]
    scorer = Scorer(table.grey, fit_basis(table.grey))
    null = null_scores(scorer)
    hard = hard_null(scorer)
    first = calibrate(null, int(gate.size), hard=hard)
    t1 = time.perf_counter()
    # a score reaching the threshold below FINE_UNTIL is aligned on (a 90 % window may score
    # it past FINE_UNTIL, where the fine band is not asked): a lower bound must not read less
    v = scorer.scores(ga, gb, gm, max(first.threshold, FINE_UNTIL))
    same = _same_grey(table.grey, ga, gb)
    v[same & ~gm] = 1.0
    ok = _evidence(scorer, ga, gb, gm, v, first.threshold) >= first.threshold
    tested = set(zip(ga.tolist(), gb.tolist(), strict=True))
    ha, hb, hm = two_hop(ga[ok], gb[ok], gm[ok], tested)
    cal = calibrate(null, int(gate.size + ha.size), hard=hard)
    ga, gb, gm = np.concatenate([ga, ha]), np.concatenate([gb, hb]), np.concatenate([gm, hm])
    stop = max(cal.threshold, FINE_UNTIL)
    v = np.concatenate([v, scorer.scores(ha, hb, hm, stop)])
    # a score that stopped at the first threshold is a lower bound: finish it at the final one
    short = np.flatnonzero((v >= max(first.threshold, FINE_UNTIL)) & (v < stop) & (v < 1.0))
    v[short] = scorer.scores(ga[short], gb[short], gm[short], stop)
    # the decision reads the evidence: the score, unless the fine band agrees less
    v = _evidence(scorer, ga, gb, gm, v, cal.review_from)
    t2 = time.perf_counter()
    ok = v >= cal.threshold
    near = np.flatnonzero(~ok & (v >= cal.review_from))
    review = [(int(ga[k]), int(gb[k]), float(v[k])) for k in near]
    review.sort(key=lambda r: -r[2])
    return Verified(
        ga[ok], gb[ok], v[ok], review, int(pairs.a.size), cal, t1 - t0, t2 - t1, (ga, gb, v)
    )


def direct_groups(
    n: int, a: np.ndarray, b: np.ndarray, score: np.ndarray, order: Sequence[int]
) -> list[tuple[int, dict[int, float]]]:
    """No chains: nodes taken in ``order`` (best copy first); each node not yet taken keeps
    the untaken nodes it matches *directly*. A~B and B~C with A not ~ C groups A with B and
    leaves C out. Returns (kept, {member: score}) for every group of two or more."""
    nbr: list[dict[int, float]] = [{} for _ in range(n)]
    for x, y, v in zip(a.tolist(), b.tolist(), score.tolist(), strict=True):
        nbr[x][y] = max(v, nbr[x].get(y, -1.0))
        nbr[y][x] = max(v, nbr[y].get(x, -1.0))
    taken = np.zeros(n, dtype=bool)
    out: list[tuple[int, dict[int, float]]] = []
    for k in order:
        if taken[k] or not nbr[k]:
            continue
        members = {j: v for j, v in nbr[k].items() if not taken[j]}
        taken[k] = True
        if members:
            taken[list(members)] = True
            out.append((k, members))
    return out


def source_pairs(
    ws: Workspace,
    ver: Verified,
    rows_of: list[list[Any]],
    *,
    workers: int | None = None,
    progress: bool | None = None,
) -> tuple[np.ndarray, list[Pair], list[tuple[int, int, float]]]:
    """A fake beside the real photo it was made from is a pair, not a duplicate
    (:mod:`cleaner.pairs`): which accepted matches stay duplicates, the pairs, and the review
    pairs left. A cross-class review pair (just below the acceptance) with a local change is a
    pair too: a pasted part can cost a composite the whole-image score while all else agrees."""
    run = functools.partial(split_cross, ws, rows_of=rows_of, workers=workers, progress=progress)
    dup, found = run(ver.a, ver.b, ver.score)
    rv = np.array([r[:2] for r in ver.review], dtype=np.int64).reshape(-1, 2)
    rs = np.array([r[2] for r in ver.review], dtype=np.float64)
    still, near = run(rv[:, 0], rv[:, 1], rs)
    review = [r for r, k in zip(ver.review, still.tolist(), strict=True) if k]
    return dup, sorted(found + near, key=lambda p: (p.fake, p.real)), review


def find_duplicates(
    ws: Workspace | str | os.PathLike[str],
    rows: Sequence[Any],
    *,
    method: str = DEFAULT_METHOD,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    min_correlation: float = DEFAULT_MIN_CORRELATION,
    workers: int | None = None,
    progress: bool | None = None,
    cache: bool = True,
) -> DedupeResult:
    """Groups of duplicates among ``rows`` (manifest rows of ok files under ROOT)."""
    t0 = time.perf_counter()
    ws = Workspace.of(ws)
    if method not in METHODS:
        raise CleanerError(f"unknown --method {method!r}; use one of {', '.join(METHODS)}")
    if not 0 <= max_distance <= 32:
        raise CleanerError(f"--max-distance {max_distance} is out of range; use 0..32 bits")
    rootp = ws.root
    items = [(str(rootp / r.path), r.sha256) for r in rows]
    run = hash_files(items, method, ws=ws if cache else None, workers=workers, progress=progress)
    table = run.table
    sha_row = table.index()
    failed = {r.path: run.failed[r.sha256] for r in rows if r.sha256 in run.failed}
    usable = [r for r in rows if r.sha256 in sha_row]

    # contents with the same 32 x 32 grey pixels (and so the same hashes) are one node for the
    # search: a thousand copies of one blank image cost one search entry, not a million pairs
    reps, rep_of = identical_pixels(table)
    rep_table = table.take(reps)
    pairs = candidate_pairs(rep_table, max_distance)
    ver = verify_pairs(rep_table, pairs, min_correlation)

    rows_of, order = _nodes(reps, rep_of, sha_row, usable)
    dup, found_pairs, review = source_pairs(ws, ver, rows_of, workers=workers, progress=progress)
    clusters = _clusters(reps.size, ver, dup, rows_of, order)
    # exact pixel digests, only for files that ended up in a group
    in_groups = [r for rs, _ in clusters for r in rs]
    digests = pixel_digests(
        [(str(rootp / r.path), r.sha256) for r in in_groups],
        ws=ws if cache else None,
        workers=workers,
        progress=progress,
    )
    # R/.cleaner/split.csv (written by `cleaner train`): path -> split, sha256 -> split
    splits = split_file.lookup(split_file.read(ws, fix="fix or delete it"))
    groups = [_group(rs, score, table, sha_row, digests, splits) for rs, score in clusters]
    groups.sort(key=lambda g: g.kept)
    for i, g in enumerate(groups):
        g.id = i
    totals = Counter(str(r.label) for r in usable)
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
        candidates=ver.candidates,
        confirmed=int(ver.a.size) + int((rep_of != np.arange(rep_of.size)).sum()),
        seconds=time.perf_counter() - t0,
        calibration=ver.calibration,
        review_pairs=_review_pairs(review, rows_of),
        totals=dict(totals),
        pairs=found_pairs,
    )


def _nodes(
    reps: np.ndarray, rep_of: np.ndarray, sha_row: dict[str, int], usable: Sequence[Any]
) -> tuple[list[list[Any]], list[int]]:
    """The rows of each node (a node: one distinct 32 x 32 grey image), the best row of a node
    first, and the nodes with rows in the order their best rows are kept."""
    node_of_rep = {int(r): k for k, r in enumerate(reps.tolist())}
    rows_of: list[list[Any]] = [[] for _ in range(reps.size)]
    for r in usable:
        rows_of[node_of_rep[int(rep_of[sha_row[r.sha256]])]].append(r)
    for rs in rows_of:
        rs.sort(key=keep_key)
    order = sorted(
        (k for k in range(reps.size) if rows_of[k]), key=lambda k: keep_key(rows_of[k][0])
    )
    return rows_of, order


def _clusters(
    n: int, ver: Verified, dup: np.ndarray, rows_of: list[list[Any]], order: list[int]
) -> list[tuple[list[Any], dict[str, float]]]:
    """The groups' rows and each row's score: the accepted duplicate matches linked to their
    kept node, then the nodes of identical bytes or grey pixels matched to nothing else."""
    linked = direct_groups(n, ver.a[dup], ver.b[dup], ver.score[dup], order)
    grouped = {k for k, ms in linked for k in (k, *ms)}
    clusters: list[tuple[list[Any], dict[str, float]]] = []
    for k, ms in linked:
        score = {r.sha256: 1.0 for r in rows_of[k]}
        for j, v in ms.items():
            score.update({r.sha256: v for r in rows_of[j]})
        clusters.append(([r for m in (k, *ms) for r in rows_of[m]], score))
    clusters += [
        (rows_of[k], {r.sha256: 1.0 for r in rows_of[k]})
        for k in order
        if k not in grouped and len(rows_of[k]) > 1
    ]
    return clusters


def _group(
    rs: list[Any],
    score: dict[str, float],
    table: HashTable,
    sha_row: dict[str, int],
    digests: dict[str, str],
    splits: tuple[dict[str, str], dict[str, str]],
) -> Group:
    """One group: the kept file (:func:`keep_key`), each member's match to it and its split,
    and why the group is held for review (too many copies, or both classes)."""
    by_path, by_sha = splits
    kept = min(rs, key=keep_key)
    ck = sha_row[kept.sha256]
    members: list[Member] = []
    for r in sorted(rs, key=lambda x: x.path):
        if r is kept:
            dist, match = 0, "kept"
        elif r.sha256 == kept.sha256:
            dist, match = 0, BYTES
        else:
            dist, match = _distance_to(table, sha_row[r.sha256], ck)
            dk = digests.get(kept.sha256)
            if dk and digests.get(r.sha256) == dk:
                match = PIXELS
        split = by_path.get(r.path) or by_sha.get(r.sha256) or split_of_path(r.path)
        members.append(
            Member(
                r.path, r.label, r.sha256, dist, match, r.width, r.height, r.bytes, split,
                score=1.0 if match in ("kept", BYTES, PIXELS) else score[r.sha256],
            )
        )  # fmt: skip
    why = (
        f"{len(members) - 1} copies matched to one image, more than {MAX_GROUP}: "
        "implausible, look before quarantining"
        if len(members) - 1 > MAX_GROUP
        else CONFLICT_WHY
        if len({m.label for m in members}) > 1
        else ""
    )
    return Group(0, kept.path, members, why)


REVIEW_SHOWN = 200
"""Review pairs listed in ``duplicates.json`` (the strongest first)."""


def _review_pairs(
    review: list[tuple[int, int, float]], rows_of: list[list[Any]]
) -> list[dict[str, Any]]:
    out = []
    for a, b, v in review[:REVIEW_SHOWN]:
        if rows_of[a] and rows_of[b]:
            out.append({"a": rows_of[a][0].path, "b": rows_of[b][0].path, "score": round(v, 4)})
    return out


def _distance_to(table: HashTable, c: int, k: int) -> tuple[int, str]:
    """Smallest Hamming distance of content ``c`` to the kept content ``k``, and its kind."""
    h, m = table.hash, table.mirror
    crops = np.concatenate([table.crop[:, None], table.corners, table.wides], axis=1)
    options = [
        (int(hamming(h[c : c + 1], h[k : k + 1])[0]), NEAR),
        (int(hamming(m[c : c + 1], h[k : k + 1])[0]), MIRROR),
        (int(hamming(crops[c], np.full(crops.shape[1], h[k])).min()), CROP),
        (int(hamming(crops[k], np.full(crops.shape[1], h[c])).min()), CROP),
    ]
    return min(options, key=lambda o: o[0])


def write_duplicates(result: DedupeResult, extra: dict[str, Any] | None = None) -> Path:
    """Write ``R/.cleaner/duplicates.json`` atomically (temporary file, fsync, rename)."""
    return _write_document(result, _document(result, extra))


def quarantine_path(path: str) -> str:
    """Where a redundant copy goes: ``quarantine/duplicates/<its ROOT-relative path>``."""
    return f"{QUARANTINE_DIR}/{QUARANTINE_SUBDIR}/{path}"


def check_guard(result: DedupeResult, max_fraction: float) -> dict[str, Any]:
    """Per class: the fraction of its files the plan would quarantine, and whether all are
    within ``max_fraction`` (a larger plan says more about the check than about the data)."""
    out = Counter(m.label for _, m in result.quarantine)

    def explain(label: str, n_out: int, total: int, frac: float, needed: float) -> str:
        return (
            f"the plan would quarantine {n_out} of {total} {label} images ({frac:.0%}) "
            f"as duplicates, more than --max-fraction {max_fraction:g}; nothing was moved. "
            f"Read {result.output} and pass --max-fraction {needed:.2f} to apply it anyway"
        )

    return fraction_guard(out, result.totals, sorted(result.totals), max_fraction, explain)


def dedupe(
    ws: Workspace | str | os.PathLike[str],
    *,
    method: str = DEFAULT_METHOD,
    max_distance: int | None = None,
    apply: bool = False,
    min_correlation: float = DEFAULT_MIN_CORRELATION,
    max_fraction: float = DEFAULT_MAX_FRACTION,
    workers: int | None = None,
    progress: bool | None = None,
) -> DedupeResult:
    """The whole command: current ok files -> groups -> ``duplicates.json``; with ``apply``,
    every member but the kept one of the groups not held for review moves to
    ``quarantine/duplicates/`` through the journal (``cleaner undo`` brings them back), unless
    the plan would take more than ``max_fraction`` of a class: then it is written, not applied,
    and a :class:`CleanerError` says so. The stage proposes (:func:`propose_quarantine`); the
    move executor (:func:`cleaner.moves.execute`) writes, guards and applies."""
    from cleaner.manifest import ok_rows
    from cleaner.moves import execute

    if not 0.0 < max_fraction <= 1.0:
        raise CleanerError(f"--max-fraction {max_fraction:g} is outside (0, 1]; default 0.1")
    ws = Workspace.of(ws)
    rows = ok_rows(ws, workers=workers, progress=progress)
    result = find_duplicates(
        ws,
        rows,
        method=method,
        max_distance=DEFAULT_MAX_DISTANCE if max_distance is None else max_distance,
        min_correlation=min_correlation,
        workers=workers,
        progress=progress,
    )
    result.output = duplicates_file.path(result.root)
    result.guard = check_guard(result, max_fraction)
    result.outcome = execute(ws, propose_quarantine(result), apply=apply, progress=progress)
    if result.outcome.applied and result.outcome.run is not None:
        run = result.outcome.run
        result.applied = True
        result.run_id = run.run_id
        result.moved = len(run.moved)
        result.skipped = [f"{r.src}: {r.why}" for r in run.skipped]
    return result


def propose_quarantine(result: DedupeResult) -> MovePlan:
    """The dedupe stage's :class:`~cleaner.moves.MovePlan`: the redundant copies of the groups
    not held for review to ``quarantine/duplicates/``, ``duplicates.json`` as its document
    (patched with ``applied``, ``run_id`` and ``moved`` after the run)."""
    from cleaner.journal import Move
    from cleaner.moves import MovePlan

    moves = [
        Move(
            src=m.path,
            dst=quarantine_path(m.path),
            sha256=m.sha256,
            reason=f"duplicate of {g.kept} ({m.match}, distance {m.distance}, score {m.score:.3f})",
        )
        for g, m in result.quarantine
    ]

    def record(doc: dict[str, Any], run: AppliedRun) -> None:
        doc.update({"applied": True, "run_id": run.run_id, "moved": len(run.moved)})

    return MovePlan(
        "dedupe",
        moves,
        review=result.review_groups,
        guard=result.guard,
        document=_document(result),
        write=lambda doc: _write_document(result, doc),
        record=record,
    )


def _document(result: DedupeResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``duplicates.json``'s document as the move plan carries it (a dict the stage's
    ``record`` patches after the run)."""
    created = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return result.to_state({**created, **(extra or {})}).to_json()


def _write_document(result: DedupeResult, doc: dict[str, Any]) -> Path:
    result.output = duplicates_file.write(result.root, duplicates_file.Duplicates.from_json(doc))
    return result.output
