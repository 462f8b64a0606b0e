"""The second, independent evidence for a candidate duplicate pair, and its acceptance threshold
calibrated on the dataset itself.

Why it is shaped this way:

- **What a dataset shares is no evidence.** Aligned faces on a plain background correlate above
  0.93 as raw 32 x 32 pixels: the oval and the background agree, the person does not matter. So
  each image is taken as its gradients (:func:`gradients`: brightness-proof where raw pixels
  are not), normalised (zero mean, unit length) and the dataset's own mean image and its
  ``BASIS_DROP`` leading principal components (fitted on a sample of *this* dataset) are
  removed; what is left is what tells one image from the others. Two copies agree there (after
  resizing, recompression, brightness, a small crop or a mirror); two people do not. On a
  dataset with little shared structure the basis removes little and the score is close to the
  plain correlation.
- **Alignment.** A mirror pair (from the hash search) is mirrored first; a crop of a few percent
  is found by trying ``CROP_KEEP`` windows of either image, first at 3 x 3 offsets, then, for the
  pairs that come close, at every offset of a 9 x 9 grid around the best one (the residual is
  sharper than the raw pixels, so a 0.4 px misalignment costs a crop copy 0.2 of score); a crop
  of about 10 % likewise with ``WIDE_KEEP`` windows (4 x 4 coarse, 13 x 13 fine), for the pairs
  the first scale has not accepted.
- **Calibration.** The score of random pairs of the dataset (almost surely not copies) is the
  null distribution; its upper tail is fitted (an exponential tail of the Fisher z above the 99th
  percentile) and the acceptance is the lowest score at which the expected number of false pairs
  among all the pairs checked stays below ``TARGET_FALSE_PAIRS``. That estimate is reported; when
  the threshold must climb above ``WEAK_ABOVE`` (where small crops and brightened copies start to
  be lost) the evidence is weak and the pairs just below it go to review instead.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

from cleaner.hashing import CROP_KEEP, HASH_SIDE, WIDE_KEEP, resample_matrix

BASIS_DROP = 48
"""Leading principal components of the gradients removed (masked-portrait bench, every pair of
the 200 planted six-image families at the calibrated threshold: 16 of 128 left 199 of 3,000
under it, 32 of 128: 11, 32 of 256: 6, 48 of 256: 1; on raw pixels 0 components left false pairs
at 0.93)."""
BAND = 256
"""Components kept after the dropped ones: the residual is compared in this band (the rest is
mostly JPEG and resampling noise; see ``BASIS_DROP`` for the measured choice)."""
BASIS_MIN_IMAGES = 200
"""Below this many distinct images the dataset's mean and components are not estimated (too
few to tell shared structure from a copy family); the score is then the plain correlation."""
BASIS_SAMPLE = 4000
"""Images the basis is fitted on (a seeded sample: enough for 304 components of 1,920
gradients)."""
FINE_FROM = 0.5
"""Coarse score from which a pair is aligned on the fine grid (true copies score >= 0.7
coarse on the benches; random pairs rarely reach 0.5)."""
GRID = 9
"""Window offsets per axis on the fine grid (0, 1/8, ..., all of the margin)."""
NULL_PAIRS = 100000
"""Random pairs scored to estimate the null distribution (20,000 left the fitted tail noisy:
the threshold moved by 0.02 between two samples of the same dataset)."""
TAIL_QUANTILE = 0.99
"""The null's tail is fitted above this quantile."""
TARGET_FALSE_PAIRS = 0.1
"""Expected false pairs among all checked pairs the acceptance allows (well below one)."""
MIN_ACCEPT = 0.8
"""The acceptance never goes below this score, whatever the null says. Random pairs cannot show
near-identical *different* pictures (faces140k holds StyleGAN lookalikes: same pose, light and
background): there the calibrated threshold was 0.65 and let 113 false pairs through at 13,200
images, 4 at 0.8 with every copy kept (bench/README). Every true copy on both benches scores
>= 0.85 but a few brightened or cropped ones."""
WEAK_ABOVE = 0.88
"""A calibrated threshold above this means copies and non-copies are hard to tell apart here:
brightened and cropped copies scored 0.83-0.92 on the masked-portrait bench with raw pixels."""
FINE_FROM_COMPONENT = 96
"""The fine band: the residual's components from this one on (of ``BAND``). Two renderings of
one picture agree there as well as overall; two similar faces (same pose, light and background:
StyleGAN look-alikes) agree in the leading components and part there. Measured on faces140k's
1,100 fakes with planted copies (bench/README, issue 25): its look-alikes that reach the floor
(pairs of one face from two seeds, and their copies) 0.31-0.83 there for an overall 0.73-0.90,
other faces <= 0.62; resized, JPEG q30-40, blurred, mirrored, brightened and 5 % cropped copies
>= 0.91. A pair's evidence is the lower of its score and this agreement plus ``FINE_SLACK``
(below ``FINE_UNTIL``)."""
FINE_SLACK = 0.03
"""Added to the fine band's agreement before it is compared (measured on the two benches'
pairs: on the masked portraits the copy pairs refused only by the fine band went from 33 to 17
with 0.03 and to 9 with 0.05; on faces140k's fakes 0.03 let no more look-alikes through at the
0.8 floor and 0.05 two more pairs of one face from two seeds)."""
FINE_UNTIL = 0.9
"""Scores from which the fine band is not asked (the test is for pairs near the floor): the
look-alikes measured scored up to 0.83 on faces140k's fakes (and 0.898 for one face from two
StyleGAN seeds), up to 0.79 on the masked portraits, while copies that stack two changes agree
less in the fine band than their score says: a 5 % crop of a sharp generated picture scores 0.98
there for 0.1-0.8, a crop against a brightened copy of one masked portrait 0.82-0.93 for
0.66-0.88 (from 0.95 down to 0.9, 41 of those 200 pairs under the threshold went to 22)."""
REVIEW_BAND = 0.15
"""Pairs scoring this far below the acceptance are listed for review (not grouped)."""
_CHUNK = 8192
_COARSE = (0, GRID // 2, GRID - 1)
"""Offsets (on the fine grid) of the 3 x 3 coarse windows."""
WIDE_GRID = 13
"""Window offsets per axis on the fine grid of the ``WIDE_KEEP`` windows (0, 1/12, ..., all of
the margin: 0.27 px steps at 32 px, the ``CROP_KEEP`` grid's 0.2 px)."""
_WIDE_COARSE = (0, 4, 8, 12)
"""Offsets (on the wide fine grid) of the 4 x 4 coarse ``WIDE_KEEP`` windows. Why a second
scale: a copy cropped to 90 % of each side is 5 % off in scale from every ``CROP_KEEP`` window
and scored 0.30-0.90 there (the look-alikes' range); aligned at 90 % its score was 0.96-0.99
and its fine band 0.95-0.99 (200 such copies of faces140k fakes). 3 x 3 coarse windows left
crop copies at a coarse 0.41 (under ``FINE_FROM``), 4 x 4 at 0.69 or more."""


@dataclass(frozen=True)
class _Scale:
    """Windows of one size: their fraction of the side, fine grid and coarse offsets."""

    keep: float
    steps: int
    coarse: tuple[int, ...]

    @property
    def first(self) -> int:
        """Row of its first coarse window in :func:`features`."""
        return 1 if self.keep == CROP_KEEP else 1 + len(_COARSE) ** 2


_SCALES = (_Scale(CROP_KEEP, GRID, _COARSE), _Scale(WIDE_KEEP, WIDE_GRID, _WIDE_COARSE))
_FEATURE_ROWS = 1 + sum(len(sc.coarse) ** 2 for sc in _SCALES)


@dataclass(frozen=True)
class Basis:
    """What the dataset's images share: their mean and leading components (unit vectors)."""

    mean: np.ndarray
    """``(S*S,)`` float32, the mean of the normalised images (zeros: not estimated)."""
    comps: np.ndarray
    """``(k, S*S)`` float32 (``k = 0``: not estimated)."""

    @property
    def fitted(self) -> bool:
        return bool(self.comps.shape[0])

    @functools.cached_property
    def projected_mean(self) -> np.ndarray:
        """``(k,)`` the mean in the components' coordinates."""
        return self.mean @ self.comps.T


_RESIDUAL_ROWS = 8192
"""Windows whose residuals are computed in one call (all 26 views of a few hundred images in
:func:`features`, the 25 windows of a few hundred pairs in the fine search: 63 MiB of
gradients). Why: one call per window was, for the handful of random pairs of a block that reach
``FINE_FROM``, a matrix product of a few rows, which a threaded BLAS made 50x slower on a busy
machine (45 ms against 0.6 ms single-threaded, load 7 on 2 cores): 22 of the 44 s the random
null took on the 2,900-image look-alike bench."""


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows to zero mean and unit length (a flat row stays all zero)."""
    x = x - x.mean(axis=1, keepdims=True)
    n = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return x / np.where(n > 0, n, 1.0)


GRAD_STEP = 2
"""Pixels between the two ends of each gradient (a central difference: measured on the
masked-portrait bench, 1 px left crops 4x more misaligned pairs below the threshold)."""


def gradients(x: np.ndarray) -> np.ndarray:
    """Rows ``(P, S*S)`` of grey images to their horizontal and vertical differences
    ``(P, GRAD_DIM)``. Why: brightening clips the highlights and lifts a flat background past
    the face's values, a non-linear change raw pixels do not survive (a +30 % copy scored down
    to 0.85, under the masked bench's 0.92 threshold); a flat region has zero gradient in both
    images and inside the face the gradient only scales."""
    s, k = HASH_SIDE, GRAD_STEP
    x = x.reshape(-1, s, s).astype(np.float32, copy=False)
    p = x.shape[0]
    out = np.empty((p, GRAD_DIM), dtype=np.float32)  # written in place: one pass, no copies
    half = s * (s - k)
    np.subtract(x[:, :, k:], x[:, :, :-k], out=out[:, :half].reshape(p, s, s - k))
    np.subtract(x[:, k:], x[:, :-k], out=out[:, half:].reshape(p, s - k, s))
    return out


GRAD_DIM = 2 * HASH_SIDE * (HASH_SIDE - GRAD_STEP)


EIGH_THREADS = 1
"""BLAS threads of the basis's eigendecomposition (a 1,920 x 1,920 symmetric matrix). Why one:
its tridiagonal reduction is a long series of matrix-vector products, each a wait for every
thread; with two threads on a busy machine it took 30.5 s where one thread took 1.0 s (load 7 on
2 cores, the 2,900-image look-alike bench; 20 of the verification's 80 s in its profile). The
solver's eigenvector signs follow its thread count, so :func:`fit_basis` fixes them."""


def fit_basis(grey: np.ndarray, seed: int = 0) -> Basis:
    """The mean and ``BASIS_DROP`` components of the gradients of a seeded sample of ``grey``
    ``(N, S*S)``."""
    d = GRAD_DIM
    if grey.shape[0] < BASIS_MIN_IMAGES:
        return Basis(np.zeros(d, np.float32), np.zeros((0, d), np.float32))
    rng = np.random.default_rng(seed)
    pick = rng.choice(grey.shape[0], min(BASIS_SAMPLE, grey.shape[0]), replace=False)
    x = _unit(gradients(grey[np.sort(pick)]))
    mean = x.mean(axis=0)
    c = x - mean
    # only the components wanted (ascending order: the leading ones are the last)
    d = c.shape[1]
    hi = min(BASIS_DROP + BAND, d)
    gram = c.T @ c
    with threadpool_limits(EIGH_THREADS):
        _, vecs = scipy.linalg.eigh(gram, subset_by_index=[d - hi, d - 1], driver="evr")
    band = vecs[:, ::-1][:, BASIS_DROP:hi].T
    # a fixed sign per component (its largest entry positive): the residual's final unit step
    # removes its mean over the components, which a component's sign changes, and the solver's
    # signs follow its thread count (see EIGH_THREADS)
    band *= np.sign(band[np.arange(band.shape[0]), np.abs(band).argmax(axis=1)])[:, None]
    return Basis(mean.astype(np.float32), np.ascontiguousarray(band, np.float32))


def residual(x: np.ndarray, basis: Basis) -> np.ndarray:
    """Rows ``(P, S*S)`` of grey images: their gradients without what the dataset shares, at
    unit length."""
    if not basis.fitted:
        return _unit(_unit(gradients(x)))
    # ((g - mean(g)) / |g - mean(g)| - basis.mean) @ comps.T, with the division and the mean
    # after the product (on BAND columns, not GRAD_DIM): three passes over the gradients fewer
    g = gradients(x)
    g -= g.mean(axis=1, keepdims=True)
    n = np.sqrt(np.einsum("ij,ij->i", g, g))[:, None]
    z = g @ basis.comps.T
    z /= np.where(n > 0, n, 1.0)
    z -= basis.projected_mean
    return _unit(z)


@functools.cache
def _grid(keep: float = CROP_KEEP, steps: int = GRID) -> np.ndarray:
    """``(steps, S, S)`` resampling matrices of the ``keep`` window at each offset."""
    margin = 1.0 - keep
    return np.stack(
        [resample_matrix(keep, k / (steps - 1) * margin).astype(np.float32) for k in range(steps)]
    )


def _rowdot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, y)


def features(grey: np.ndarray, basis: Basis, *, mirror: bool = False) -> np.ndarray:
    """Per image ``(N, 1 + 9 + 16, BAND)``: the residual of the whole image, of its 3 x 3 coarse
    ``CROP_KEEP`` windows and of its 4 x 4 coarse ``WIDE_KEEP`` windows (of the mirror image
    when ``mirror``), computed once per image so that a pair's coarse alignment is dot
    products."""
    s = HASH_SIDE
    n = grey.shape[0]
    d = basis.comps.shape[0] if basis.fitted else GRAD_DIM
    out = np.empty((n, _FEATURE_ROWS, d), dtype=np.float32)
    step = max(1, _RESIDUAL_ROWS // _FEATURE_ROWS)  # every view of a few hundred images at once
    for c0 in range(0, n, step):
        x = grey[c0 : c0 + step].astype(np.float32).reshape(-1, s, s)
        if mirror:
            x = x[:, :, ::-1]
        p = x.shape[0]
        views = [x[:, None]]
        for sc in _SCALES:
            mats = _grid(sc.keep, sc.steps)[list(sc.coarse)]  # (c, S, S)
            rows = np.matmul(mats, x[:, None])  # (p, c, S, S): iy
            win = np.matmul(rows[:, :, None], mats.transpose(0, 2, 1))  # (p, c, c, S, S): iy, ix
            views.append(win.reshape(p, -1, s, s))
        v = np.concatenate(views, axis=1).reshape(p * _FEATURE_ROWS, -1)
        out[c0 : c0 + p] = residual(v, basis).reshape(p, _FEATURE_ROWS, d)
    return out


def _coarse(
    fa: np.ndarray, fb: np.ndarray, sc: _Scale = _SCALES[0]
) -> tuple[np.ndarray, np.ndarray]:
    """Best score over no crop (``CROP_KEEP`` only) and the coarse windows of scale ``sc`` of
    either image, from :func:`features` rows; and where it was found (``-1`` no crop, else
    ``side * G * G + iy * G + ix`` on the scale's fine grid of ``G`` offsets)."""
    g = sc.steps
    best = _rowdot(fa[:, 0], fb[:, 0]) if sc is _SCALES[0] else np.full(fa.shape[0], -2.0)
    where = np.full(best.size, -1, dtype=np.int64)
    cells = [iy * g + ix for iy in sc.coarse for ix in sc.coarse]
    rows = slice(sc.first, sc.first + len(cells))
    for side, (crop, whole) in enumerate(((fa, fb), (fb, fa))):
        v = np.einsum("pkd,pd->pk", crop[:, rows], whole[:, 0])
        k = v.argmax(axis=1)
        top = v[np.arange(k.size), k]
        up = top > best
        best[up] = top[up]
        where[up] = side * g * g + np.asarray(cells)[k[up]]
    return best, where


_COARSE_PAIRS = 512
"""Pairs whose features are gathered at once for :func:`_coarse_rows` (13 MiB a side at
26 x 256 float32; a block's 8,192 pairs gathered at once were 218 MiB a side, written out and
read back for a few dot products per pair)."""


def _coarse_rows(
    feats: np.ndarray, ra: np.ndarray, rb: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`_coarse` at each scale (in ``_SCALES`` order) of the pairs of rows ``ra[i]`` and
    ``rb[i]`` of ``feats``, a few pairs gathered at a time."""
    parts = []
    for s0 in range(0, ra.size, _COARSE_PAIRS):
        fa, fb = feats[ra[s0 : s0 + _COARSE_PAIRS]], feats[rb[s0 : s0 + _COARSE_PAIRS]]
        parts.append([_coarse(fa, fb, sc) for sc in _SCALES])
    return [
        (np.concatenate([q[k][0] for q in parts]), np.concatenate([q[k][1] for q in parts]))
        for k in range(len(_SCALES))
    ]


def _fine(
    imgs: tuple[np.ndarray, np.ndarray],
    res: tuple[np.ndarray, np.ndarray],
    where: np.ndarray,
    best: np.ndarray,
    basis: Basis,
    sc: _Scale = _SCALES[0],
) -> np.ndarray:
    """Every window of the fine grid within two steps of the coarse best (same image cropped)."""
    return _fine_aligned(imgs, res, where, best, basis, sc)[0]


def _fine_aligned(
    imgs: tuple[np.ndarray, np.ndarray],
    res: tuple[np.ndarray, np.ndarray],
    where: np.ndarray,
    best: np.ndarray,
    basis: Basis,
    sc: _Scale = _SCALES[0],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_fine`'s best score, and the two residuals at the alignment that gave it (the
    cropped one and the other whole; both whole where no window beat the coarse best)."""
    g = sc.steps
    p = where.size
    cropped = where >= 0
    first = np.where(cropped, where // (g * g), 0) == 0
    cy = np.where(cropped, (where // g) % g, g // 2)
    cx = np.where(cropped, where % g, g // 2)
    x = np.where(first[:, None, None], imgs[0], imgs[1])
    other = np.where(first[:, None], res[1], res[0])
    mine = np.empty_like(other)
    got = np.empty(p)
    step = max(1, _RESIDUAL_ROWS // _FINE_WINDOWS)
    for c0 in range(0, p, step):
        sl = slice(c0, c0 + step)
        got[sl], mine[sl] = _best_window(x[sl], other[sl], (cy[sl], cx[sl]), sc, basis)
    # the whole pair where it beat every window (a coarse window is on the fine grid too)
    whole = best > got + 1e-6
    mine[whole] = np.where(first[:, None], res[0], res[1])[whole]
    return np.maximum(best, got), mine, other


_FINE_WINDOWS = 25
"""Windows of the fine search per pair: offsets -2..2 steps on both axes around the coarse best."""


def _best_window(
    x: np.ndarray,
    other: np.ndarray,
    at: tuple[np.ndarray, np.ndarray],
    sc: _Scale,
    basis: Basis,
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, the best of the 5 x 5 windows of grey image ``x`` ``(p, S, S)`` around fine
    grid offsets ``at`` (clipped to the grid) against the residual ``other``: its score and
    residual (the first best in row-major order of the offsets)."""
    g = sc.steps
    mats = _grid(sc.keep, g)
    p = x.shape[0]
    off = np.arange(-2, 3)[:, None]
    iy, ix = np.clip(at[0] + off, 0, g - 1), np.clip(at[1] + off, 0, g - 1)  # (5, p) each
    rows = np.matmul(mats[iy], x)  # (5, p, S, S)
    win = np.matmul(rows[:, None], mats[ix].transpose(0, 1, 3, 2)[None])  # (5, 5, p, S, S)
    crop = residual(win.reshape(_FINE_WINDOWS * p, -1), basis).reshape(_FINE_WINDOWS, p, -1)
    v = np.einsum("wpd,pd->wp", crop, other)
    k = v.argmax(axis=0)
    pick = np.arange(p)
    return v[k, pick], crop[k, pick]


FEATURE_BYTES = 1 << 30
"""Per-image features a :class:`Scorer` keeps between calls (1 GiB: 40,329 image orientations
of 26 x 256 float32, every orientation of a table up to 20,164 images; 10 x 256 before the
``WIDE_KEEP`` windows). Why a bound: features of a whole table were 20 KiB per image, 20 GiB at
a million images, most never used (the null sample touches at most 200,000 images, the
candidates a few per copy)."""
# A block of pairs is one chunk (_CHUNK pairs): the features of its up to 2 x _CHUNK distinct
# image orientations are computed together, 160 MiB of float32 at 256 dims, twice that while
# the block is assembled, beyond the kept features.


class Scorer:
    """Scores pairs of one table's grey images. Features are computed only for the images (and
    orientations) that the scored pairs use, block by block, and kept up to ``FEATURE_BYTES``
    so that a small table computes each once, as before; beyond that they are recomputed per
    block (cheaper than computing the whole table when the pairs touch a fraction of it)."""

    def __init__(self, grey: np.ndarray, basis: Basis, *, keep_bytes: int = FEATURE_BYTES) -> None:
        self.grey = grey
        self.basis = basis
        d = basis.comps.shape[0] if basis.fitted else GRAD_DIM
        self._shape = (_FEATURE_ROWS, d)
        per_key = self._shape[0] * d * 4
        self._cap = min(2 * grey.shape[0], max(keep_bytes // per_key, 0))
        self._kept: np.ndarray | None = None
        """``(cap, 10, d)`` float32, allocated on first use (pages are touched as filled)."""
        self._row = np.full(2 * grey.shape[0], -1, dtype=np.int64)
        """Key ``2 * image + mirror`` -> its row in ``_kept`` (``-1``: not kept)."""
        self._used = 0

    def _compute(self, keys: np.ndarray) -> np.ndarray:
        """Features of keys ``2 * image + mirror`` (any order)."""
        out = np.empty((keys.size, *self._shape), dtype=np.float32)
        for m in (False, True):
            sel = np.flatnonzero((keys & 1) == int(m))
            if sel.size:
                out[sel] = features(self.grey[keys[sel] >> 1], self.basis, mirror=m)
        return out

    def _block(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features for the sorted distinct ``keys``: an array and each key's row in it (the
        kept array itself when every key is kept, else a block-sized copy)."""
        rows = self._row[keys]
        new = np.flatnonzero(rows < 0)
        if new.size:
            f = self._compute(keys[new])
            room = min(self._cap - self._used, new.size)
            if room > 0:
                if self._kept is None:
                    self._kept = np.empty((self._cap, *self._shape), dtype=np.float32)
                at = np.arange(self._used, self._used + room)
                self._kept[at] = f[:room]
                self._row[keys[new[:room]]] = at
                self._used += room
            if room < new.size:
                out = np.empty((keys.size, *self._shape), dtype=np.float32)
                old = np.flatnonzero(rows >= 0)
                if old.size:
                    assert self._kept is not None
                    out[old] = self._kept[rows[old]]
                out[new] = f
                return out, np.arange(keys.size)
            rows = self._row[keys]
        assert self._kept is not None
        return self._kept, rows

    def _blocks(
        self, a: np.ndarray, b: np.ndarray, mirror: np.ndarray
    ) -> Iterator[tuple[slice, np.ndarray, np.ndarray, np.ndarray]]:
        """Per block of ``_CHUNK`` pairs (its distinct keys' features computed together): its
        slice of the pairs, the features and each pair's two rows in them."""
        ka, kb = 2 * a + mirror, 2 * b
        for c0 in range(0, a.size, _CHUNK):
            sl = slice(c0, min(c0 + _CHUNK, a.size))
            keys = np.unique(np.concatenate([ka[sl], kb[sl]]))
            feats, rows = self._block(keys)
            ra, rb = (rows[np.searchsorted(keys, k[sl])] for k in (ka, kb))
            yield sl, feats, ra, rb

    def _images(
        self, a: np.ndarray, b: np.ndarray, mirror: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The pairs' grey images ``(p, S, S)`` as float32, ``a``'s mirrored where ``mirror``."""
        s = HASH_SIDE
        ga = self.grey[a].astype(np.float32).reshape(-1, s, s)
        ga[mirror] = ga[mirror][:, :, ::-1]
        return ga, self.grey[b].astype(np.float32).reshape(-1, s, s)

    def scores(
        self, a: np.ndarray, b: np.ndarray, mirror: np.ndarray, accept: float = 2.0
    ) -> np.ndarray:
        """The verification score of pairs ``(a[i], b[i])`` (``a`` mirrored where ``mirror``):
        the best residual correlation over the alignments tried, in ``[-1, 1]``. A pair whose
        coarse score already reaches ``accept`` is not aligned further (its score is then a
        lower bound; most true copies, so most of the time on a dataset full of copies)."""
        out = np.zeros(a.size, dtype=np.float64)
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        mirror = np.asarray(mirror, dtype=bool)
        for sl, feats, ra, rb in self._blocks(a, b, mirror):
            ca, cb, m = a[sl], b[sl], mirror[sl]
            best = np.full(ra.size, -2.0)
            # the wide windows' fine grid only for pairs not yet accepted
            for sc, (got, where) in zip(_SCALES, _coarse_rows(feats, ra, rb), strict=True):
                todo = np.flatnonzero((got >= FINE_FROM) & (got < accept) & (best < accept))
                if todo.size:
                    imgs = self._images(ca[todo], cb[todo], m[todo])
                    res = (feats[ra[todo], 0], feats[rb[todo], 0])
                    got[todo] = _fine(imgs, res, where[todo], got[todo], self.basis, sc)
                best = np.maximum(best, got)
            out[sl] = best
        return out

    def fine_agreement(self, a: np.ndarray, b: np.ndarray, mirror: np.ndarray) -> np.ndarray:
        """Per pair, the correlation of the two residuals in the fine band (components from
        ``FINE_FROM_COMPONENT`` on) at the alignment that scores the pair best (the coarse and
        fine window search of :meth:`scores`, always run to the end)."""
        out = np.zeros(a.size, dtype=np.float64)
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        mirror = np.asarray(mirror, dtype=bool)
        for sl, feats, rows_a, rows_b in self._blocks(a, b, mirror):
            ga, gb = self._images(a[sl], b[sl], mirror[sl])
            res = (feats[rows_a, 0], feats[rows_b, 0])
            (best, where), (wide, wwhere) = _coarse_rows(feats, rows_a, rows_b)
            top, ra, rb = _fine_aligned((ga, gb), res, where, best, self.basis)
            # the wide windows where they line the pair up better (as :meth:`scores` does)
            w = np.flatnonzero(wide >= FINE_FROM)
            if w.size:
                sub = _fine_aligned(
                    (ga[w], gb[w]), (res[0][w], res[1][w]), wwhere[w], wide[w], self.basis,
                    _SCALES[1],
                )  # fmt: skip
                up = w[sub[0] > top[w]]
                better = sub[0] > top[w]
                ra[up], rb[up] = sub[1][better], sub[2][better]
            k = FINE_FROM_COMPONENT if self.basis.fitted else 0
            out[sl] = _rowdot(_unit(ra[:, k:]), _unit(rb[:, k:]))
        return out

    def evidence(
        self, a: np.ndarray, b: np.ndarray, mirror: np.ndarray, score: np.ndarray, least: float
    ) -> np.ndarray:
        """The acceptance's evidence for pairs already scored: ``min(score, fine agreement +
        FINE_SLACK)`` for those scoring from ``least`` up to ``FINE_UNTIL``, the score itself
        elsewhere (below: it cannot pass; above: no look-alike measured there) and wherever the
        dataset is too small for a basis (no fine band to read)."""
        out = np.asarray(score, dtype=np.float64).copy()
        if not self.basis.fitted:
            return out
        todo = np.flatnonzero((out >= least) & (out < FINE_UNTIL))
        if todo.size:
            f = self.fine_agreement(a[todo], b[todo], mirror[todo])
            out[todo] = np.minimum(out[todo], f + FINE_SLACK)
        return out


def _pairs(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``(m, 2)``: up to ``k`` distinct unordered pairs ``(i, j)`` of distinct images in
    ``[0, n)``, in the order drawn: pairs drawn one after another, a repeat or ``i == j``
    skipped, at most ``4 k`` draws. Drawn in one call, then ``rng`` is left where drawing them
    one by one leaves it (one stream of bounded integers either way, so the pairs and what is
    drawn after them are those of the loop this replaced: 10 s of the null in Python)."""
    tries = 4 * k
    state = rng.bit_generator.state
    ij = rng.integers(0, n, (tries, 2))
    lo, hi = ij.min(axis=1), ij.max(axis=1)
    valid = np.flatnonzero(lo != hi)
    _, first = np.unique(lo[valid] * n + hi[valid], return_index=True)
    taken = valid[np.sort(first)][:k]
    used = int(taken[-1]) + 1 if taken.size == k else tries
    rng.bit_generator.state = state
    rng.integers(0, n, (used, 2))  # the draws the loop would have made, no more
    return ij[taken]


def null_scores(scorer: Scorer, seed: int = 0) -> np.ndarray:
    """Scores of random pairs of distinct images (half of them mirrored, as a mirror candidate
    would be): the dataset's own distribution for pairs that are almost surely not copies."""
    n = scorer.grey.shape[0]
    if n < 2:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    k = min(NULL_PAIRS, n * (n - 1) // 2)
    ij = _pairs(n, k, rng)
    mirror = rng.random(len(ij)) < 0.5
    return scorer.scores(ij[:, 0], ij[:, 1], mirror)


HARD_IMAGES = 4000
"""Images (a seeded sample) whose nearest neighbours make the hard null."""
HARD_NEIGHBOURS = 3
"""Nearest other images per sampled image and orientation (as is, mirrored) in the hard null."""


def hard_pairs(scorer: Scorer, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The hard null's pairs: each image of a seeded sample with its ``HARD_NEIGHBOURS`` nearest
    others of the sample by the whole image's residual, as it is and mirrored (``a`` mirrored
    where ``mirror``). Why: random pairs cannot show look-alikes (two faces in the same pose,
    light and background), nearest neighbours are where they are. Also returns the factor from
    the sample to the table, ``(N / n)^2``: look-alike pairs grow with the pairs of images."""
    n = scorer.grey.shape[0]
    z = np.zeros(0, dtype=np.int64)
    if n < HARD_NEIGHBOURS + 2:
        return z, z.copy(), np.zeros(0, dtype=bool), 1.0
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(n, min(HARD_IMAGES, n), replace=False))
    s = HASH_SIDE
    g = scorer.grey[pick].astype(np.float32)
    flip = g.reshape(-1, s, s)[:, :, ::-1].reshape(pick.size, -1)
    r, rm = residual(g, scorer.basis), residual(flip, scorer.basis)
    out: dict[tuple[int, int, bool], None] = {}
    for m, q in ((False, r), (True, rm)):
        for c0 in range(0, pick.size, 1024):
            sim = q[c0 : c0 + 1024] @ r.T
            rows = np.arange(sim.shape[0])
            sim[rows, c0 + rows] = -np.inf  # not itself
            top = np.argpartition(-sim, HARD_NEIGHBOURS, axis=1)[:, :HARD_NEIGHBOURS]
            for i, js in zip((c0 + rows).tolist(), top.tolist(), strict=True):
                for j in js:
                    out[(i, j, m) if m else (min(i, j), max(i, j), m)] = None
    k = np.array(list(out), dtype=np.int64).reshape(-1, 3)
    return pick[k[:, 0]], pick[k[:, 1]], k[:, 2].astype(bool), (n / pick.size) ** 2


@dataclass(frozen=True)
class HardNull:
    """The hard null's evidence (:meth:`Scorer.evidence` of :func:`hard_pairs`) and the factor
    from its sample to the table."""

    evidence: np.ndarray
    scale: float = 1.0

    def expected_false(self, t: float) -> float:
        """Expected pairs of the table that are no copies yet reach ``t``: the pairs of the
        hard null below ``t`` (those above are copies as far as the evidence can tell) are its
        non-copies; their upper tail (:class:`Tail`) extrapolated past ``t``, times their
        number and ``scale``. Copies the evidence cannot confirm (a crop larger than the
        window search) stay among them: the estimate errs high, not low."""
        below = self.evidence[self.evidence < t]
        if below.size == 0:
            return 0.0
        return self.scale * below.size * Tail.fit(below).p(t)


def hard_null(scorer: Scorer, seed: int = 0) -> HardNull:
    """The hard null of this table: :func:`hard_pairs` scored and given their evidence."""
    a, b, m, scale = hard_pairs(scorer, seed)
    v = scorer.scores(a, b, m)
    return HardNull(scorer.evidence(a, b, m, v, MIN_ACCEPT - REVIEW_BAND), scale)


@dataclass(frozen=True)
class Calibration:
    """The acceptance for this dataset and what it is expected to let through."""

    threshold: float
    review_from: float
    tested_pairs: int
    expected_false_pairs: float
    null_pairs: int
    null_q99: float
    weak: bool
    """Copies and non-copies are hard to tell apart here (threshold above ``WEAK_ABOVE``, or
    the hard null expects more than ``TARGET_FALSE_PAIRS`` false pairs at it)."""
    expected_false_pairs_random: float = 0.0
    """What the random pairs alone expect (the estimate before issue 25)."""
    hard_null_pairs: int = 0
    expected_false_pairs_hard: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": round(self.threshold, 4),
            "review_from": round(self.review_from, 4),
            "tested_pairs": self.tested_pairs,
            "expected_false_pairs": round(self.expected_false_pairs, 4),
            "expected_false_pairs_random": round(self.expected_false_pairs_random, 4),
            "expected_false_pairs_hard": round(self.expected_false_pairs_hard, 4),
            "null_pairs": self.null_pairs,
            "hard_null_pairs": self.hard_null_pairs,
            "null_q99": round(self.null_q99, 4),
            "weak_evidence": self.weak,
        }


def _z(s: np.ndarray | float) -> np.ndarray:
    return np.arctanh(np.clip(np.asarray(s, dtype=np.float64), -0.999999, 0.999999))


@dataclass(frozen=True)
class Tail:
    """P(null score >= s): empirical below the fitted quantile, exponential in Fisher z above."""

    null: np.ndarray
    zq: float
    scale: float

    @classmethod
    def fit(cls, null: np.ndarray) -> Tail:
        z = np.sort(_z(null))
        if z.size == 0:
            return cls(z, 0.0, 0.05)
        zq = float(np.quantile(z, TAIL_QUANTILE))
        over = z[z > zq] - zq
        # at least a modest spread: a handful of null pairs must not promise a razor-thin tail
        # the median exceedance (robust to the few real copies among random pairs)
        scale = max(float(np.median(over)) / np.log(2.0) if over.size else 0.0, 0.05)
        return cls(z, zq, scale)

    def p(self, s: float) -> float:
        zs = float(_z(s))
        if self.null.size == 0:
            return 1.0
        if zs <= self.zq:
            return float((self.null >= zs).mean())
        return (1.0 - TAIL_QUANTILE) * float(np.exp(-(zs - self.zq) / self.scale))

    def threshold(self, tested: int, target: float) -> float:
        """Lowest score with ``tested * p(score) <= target`` (solved in z above the quantile)."""
        if tested <= 0 or self.null.size == 0:
            return MIN_ACCEPT
        need = target / tested
        if need >= 1.0 - TAIL_QUANTILE:
            zs = float(np.quantile(self.null, 1.0 - need))
        else:
            zs = self.zq + self.scale * float(np.log((1.0 - TAIL_QUANTILE) / need))
        return float(np.tanh(zs))


HARD_STEP = 0.005
"""Steps in which the hard null raises the threshold (up to ``WEAK_ABOVE``)."""


def calibrate(
    null: np.ndarray,
    tested: int,
    target: float = TARGET_FALSE_PAIRS,
    hard: HardNull | None = None,
) -> Calibration:
    """The acceptance for ``tested`` candidate pairs given the null scores of this dataset:
    the random pairs' threshold (never below ``MIN_ACCEPT``), raised in ``HARD_STEP`` steps
    while the hard null expects more than ``target`` false pairs there, up to ``WEAK_ABOVE``;
    the expected false pairs are the larger of the two nulls' estimates."""
    tail = Tail.fit(null)
    t = max(MIN_ACCEPT, min(tail.threshold(tested, target), 0.999))
    e_hard = hard.expected_false(t) if hard is not None else 0.0
    while e_hard > target and t + HARD_STEP <= WEAK_ABOVE:
        t += HARD_STEP
        e_hard = hard.expected_false(t) if hard is not None else 0.0
    e_random = tested * tail.p(t)
    return Calibration(
        threshold=t,
        review_from=t - REVIEW_BAND,
        tested_pairs=tested,
        expected_false_pairs=max(e_random, e_hard),
        null_pairs=int(null.size),
        null_q99=float(np.tanh(tail.zq)) if null.size else 0.0,
        weak=t > WEAK_ABOVE or e_hard > target,
        expected_false_pairs_random=e_random,
        hard_null_pairs=int(hard.evidence.size) if hard is not None else 0,
        expected_false_pairs_hard=e_hard,
    )
