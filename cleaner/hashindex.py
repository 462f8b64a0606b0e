"""All pairs of 64-bit hashes within a Hamming radius, in memory linear in N.

Multi-index hashing, vectorised: the 64 bits are cut into ``m`` blocks. If two hashes differ in
at most ``r`` bits, then by the pigeonhole principle some block differs in at most
``s = r // m`` bits (``m * (s + 1) > r``). So for every block and every mask ``e`` of at most
``s`` bits inside it, the pairs whose blocks satisfy ``block(a) ^ e == block(b)`` are a superset
of the answer; each such join is one sort of the block values (done once per block) plus one
vectorised lookup of all N queries, and every candidate is verified with a 64-bit popcount.

``m`` is chosen by a cost model (lookups + expected random candidates ``N^2 / 2^b`` per join);
for N = 1,000,000 at radius 8 it picks three blocks of 21-22 bits with 2-bit masks (232 masks
per block). There is no recursion (imagededup's BK-tree overflows the stack near 180k hashes), no
N x N matrix, and each join holds only its own candidates, processed in chunks.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

_TABLE_MAX_BITS = 22
"""Blocks up to this width use a direct bucket table (2^b + 1 offsets); wider ones a sorted
array with binary search."""

_CHUNK = 1 << 18
"""Queries per lookup chunk: bounds the candidate arrays of one join."""


def popcount64(x: np.ndarray) -> np.ndarray:
    """Bits set in each ``uint64``."""
    return np.bitwise_count(x.astype(np.uint64, copy=False)).astype(np.int64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise Hamming distance of two ``uint64`` arrays."""
    return popcount64(np.bitwise_xor(a.astype(np.uint64), b.astype(np.uint64)))


@dataclass(frozen=True)
class Plan:
    """How the 64 bits are split: ``widths`` of the ``m`` blocks and the per-block radius."""

    widths: tuple[int, ...]
    sub_radius: int

    @property
    def offsets(self) -> tuple[int, ...]:
        return tuple(int(x) for x in np.cumsum((0, *self.widths[:-1])))

    def masks(self, width: int) -> int:
        return sum(math.comb(width, k) for k in range(self.sub_radius + 1))


def _split(m: int) -> tuple[int, ...]:
    base, extra = divmod(64, m)
    return tuple(base + (1 if i < extra else 0) for i in range(m))


def plan(n: int, radius: int) -> Plan:
    """The block split with the least estimated work for ``n`` uniformly random hashes."""
    if not 0 <= radius < 64:
        raise ValueError(f"radius must be in 0..63, not {radius}")
    best: tuple[float, Plan] | None = None
    for m in range(1, min(radius + 1, 32) + 1):
        widths = _split(m)
        p = Plan(widths, radius // m)
        cost = 0.0
        for w in widths:
            lookups = p.masks(w) * n
            candidates = p.masks(w) * n * n / 2.0**w
            cost += lookups * (3.0 if w > _TABLE_MAX_BITS else 1.0) + 2.0 * candidates
        if best is None or cost < best[0]:
            best = (cost, p)
    assert best is not None
    return best[1]


def _masks(width: int, s: int) -> np.ndarray:
    out = [0]
    for k in range(1, s + 1):
        for bits in itertools.combinations(range(width), k):
            out.append(sum(1 << b for b in bits))
    return np.array(out, dtype=np.int64)


class _Block:
    """The index's values of one block, grouped for lookup."""

    def __init__(self, keys: np.ndarray, width: int) -> None:
        self.order = np.argsort(keys, kind="stable")
        self.width = width
        if width <= _TABLE_MAX_BITS:
            counts = np.bincount(keys, minlength=1 << width)
            dtype = np.int32 if keys.size < 2**31 else np.int64
            self.starts: np.ndarray | None = np.concatenate(([0], np.cumsum(counts))).astype(dtype)
            self.sorted: np.ndarray | None = None
        else:
            self.starts = None
            self.sorted = keys[self.order]

    def ranges(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.starts is not None:
            return self.starts[q], self.starts[q + 1]
        assert self.sorted is not None
        return (
            np.searchsorted(self.sorted, q, side="left"),
            np.searchsorted(self.sorted, q, side="right"),
        )


def _block_keys(h: np.ndarray, offset: int, width: int) -> np.ndarray:
    mask = np.uint64((1 << width) - 1)
    return ((h >> np.uint64(offset)) & mask).astype(np.int64)


def _expand(
    qidx: np.ndarray, left: np.ndarray, right: np.ndarray, order: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    counts = right - left
    nz = np.flatnonzero(counts)
    if nz.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    c = counts[nz]
    total = int(c.sum())
    qi = np.repeat(qidx[nz], c)
    starts = np.repeat(left[nz] - (np.cumsum(c) - c), c)
    j = order[starts + np.arange(total)]
    return qi, j


def iter_pairs(
    index: np.ndarray,
    radius: int,
    queries: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield chunks ``(i, j, d)`` of pairs with ``hamming(q[i], index[j]) = d <= radius``.

    Without ``queries`` it is the self-join of ``index`` and only ``i < j`` is yielded. With
    ``queries`` (any length) every ``(i, j)`` is yielded, including ``i == j``. A pair may come
    more than once (from several blocks); :func:`radius_pairs` removes repeats.
    """
    h = np.ascontiguousarray(index, dtype=np.uint64)
    self_join = queries is None
    q = h if queries is None else np.ascontiguousarray(queries, dtype=np.uint64)
    if h.size == 0 or q.size == 0:
        return
    p = plan(max(h.size, q.size), radius)
    for off, w in zip(p.offsets, p.widths, strict=True):
        block = _Block(_block_keys(h, off, w), w)
        qkeys = _block_keys(q, off, w)
        # queries in key order: key ^ mask then walks the bucket table almost sequentially
        qorder = block.order if self_join else np.argsort(qkeys, kind="stable")
        qkeys = qkeys[qorder]
        for e in _masks(w, p.sub_radius):
            for c0 in range(0, q.size, _CHUNK):
                qk = qkeys[c0 : c0 + _CHUNK] ^ e
                left, right = block.ranges(qk)
                qi, j = _expand(qorder[c0 : c0 + qk.size], left, right, block.order)
                if qi.size == 0:
                    continue
                if self_join:
                    keep = qi < j
                    qi, j = qi[keep], j[keep]
                d = hamming(q[qi], h[j])
                keep = d <= radius
                if keep.any():
                    yield qi[keep], j[keep], d[keep]


def radius_pairs(
    index: np.ndarray, radius: int, queries: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs within ``radius`` (see :func:`iter_pairs`), each once, sorted by ``(i, j)``."""
    parts = list(iter_pairs(index, radius, queries))
    if not parts:
        z = np.zeros(0, np.int64)
        return z, z.copy(), z.copy()
    i = np.concatenate([x[0] for x in parts])
    j = np.concatenate([x[1] for x in parts])
    d = np.concatenate([x[2] for x in parts])
    n = np.int64(max(int(j.max()), int(i.max())) + 1)
    key = i * n + j
    _, first = np.unique(key, return_index=True)
    return i[first], j[first], d[first]


def brute_force_pairs(
    index: np.ndarray, radius: int, queries: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same answer by comparing every pair, one query row at a time (tests, small N)."""
    h = np.asarray(index, dtype=np.uint64)
    q = h if queries is None else np.asarray(queries, dtype=np.uint64)
    out_i: list[np.ndarray] = []
    out_j: list[np.ndarray] = []
    out_d: list[np.ndarray] = []
    for a in range(q.size):
        d = hamming(np.full(h.size, q[a], dtype=np.uint64), h)
        j = np.flatnonzero(d <= radius)
        if queries is None:
            j = j[j > a]
        out_i.append(np.full(j.size, a, dtype=np.int64))
        out_j.append(j.astype(np.int64))
        out_d.append(d[j])
    if not out_i:
        z = np.zeros(0, np.int64)
        return z, z.copy(), z.copy()
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_d)
