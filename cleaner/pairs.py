"""A fake and the real photo it was made from are a *pair*, not a duplicate.

Manipulated fakes are near-copies of reals by construction (face swaps, inpainting, composites;
training sets such as DRCT-2M and B-Free pair every fake with its source), so a match across the
classes is one of two things:

- a **label conflict**: the same picture in both folders (bytes, pixels, or a re-encoding,
  resize, crop or mirror: a change spread over the whole image). One label is wrong; it goes to
  the review list, never moved automatically.
- a **pair**: a real photo and a derivative with a *local* change, a region whose difference
  after alignment stands far above the rest of the image. Both halves are kept; the pair is
  listed (``pairs`` in ``duplicates.json``) and kept in one fold and one split.

How a cross-class match is told apart (:func:`measure`): both images are decoded at ``SIDE`` px
RGB and aligned as the verifier aligns a candidate (the real one mirrored or not, and the best of
the ``CROP_KEEP`` windows of either image on a ``GRID`` x ``GRID`` grid, by the correlation of
their grey gradients); each channel's intensities are matched by rank (any monotone change of
brightness or contrast, clipped highlights included), the difference is blurred a little and its
energy averaged over ``PATCH`` px patches. A re-encoding, resize or crop spreads its residual
over the image: the strongest patch stays within about ten times the median patch. A pasted eye,
nose or mouth puts it in one region: tens to thousands of times the median. ``peak`` is that
ratio; ``PEAK`` the decision (fitted on generated composites and copies: see its docstring and
bench/README.md, issue 30).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from cleaner.choices import Label
from cleaner.dataset import Workspace
from cleaner.engine import map_batches
from cleaner.hashing import CROP_KEEP, resample_matrix
from cleaner.images import ImageError, load_rgb

SIDE = 64
"""Pixels per side the two images are compared at: an eye, nose or mouth of a 256 px face is
8-30 px here, several patches; JPEG blocks and resampling are below it."""
GRID = 9
"""Window offsets per axis (as the verifier's fine grid: 0, 1/8, ..., all of the margin)."""
PATCH = 12
"""Side of a patch (px at ``SIDE``); patches overlap by half. Measured with ``BLUR`` 1 on
faces140k (bench/bench_pairs.py --statistic, JPEG 40 at 128 px composites): 8 px let
brightened copies reach 190 and composites fall to 23; 12 px: 54 and 15; 16 px: 36 and 9
(and the global copies' maximum from 36 / 14 / 11)."""
BLUR = 1.0
"""Gaussian blur (px at ``SIDE``) before the difference: a sub-pixel misalignment of a cropped
copy otherwise leaves its residual along every edge."""
FLOOR = 1.0 / 12.0
"""The smallest median patch residual the ratio divides by: the variance of 8-bit rounding (a
byte copy has residual 0 everywhere and is no pair)."""
PEAK = 28.0
"""Strongest patch residual over the median patch, from which a cross-class match is a pair:
twice the most any whole-image change reached on faces140k (14: JPEG 30/60, half size, 64 px, 5 %
crops, mirrors, blur, on two draws), fitted there with ``bench/bench_pairs.py --statistic``;
composites saved at JPEG 90 scored 137 and more, at JPEG 40 and 128 px 15 and more (about 1 in
10 below ``PEAK``); brightened copies whose highlights clip reached 54 (1 in 20 above ``PEAK``).
See bench/README.md, issue 30."""
_STEP = 2


@dataclass(frozen=True)
class Locality:
    """How a fake differs from a real photo once aligned."""

    peak: float
    """Strongest patch residual over the median patch (0: identical pixels)."""
    box: tuple[int, int, int, int]
    """The changed region in the fake's pixels (x0, y0, x1, y1): the patches above ``PEAK``
    times the median (the strongest patch when none is)."""
    share: float
    """Fraction of the fake's area in those patches."""
    diff: np.ndarray
    """``(SIDE, SIDE)`` difference after alignment (root of the squares over the channels), in
    the fake's frame."""

    @property
    def local(self) -> bool:
        return self.peak >= PEAK

    def to_json(self) -> dict[str, Any]:
        return {
            "peak": round(self.peak, 1),
            "box": list(self.box),
            "share": round(self.share, 4),
        }


@functools.cache
def _mats() -> np.ndarray:
    margin = 1.0 - CROP_KEEP
    return np.stack(
        [resample_matrix(CROP_KEEP, k / (GRID - 1) * margin, side=SIDE) for k in range(GRID)]
    ).astype(np.float32)


def image(path: str | Path) -> tuple[np.ndarray, tuple[int, int]]:
    """The image at ``SIDE`` x ``SIDE`` RGB (float32, ``(3, S, S)``) and its size. Raises
    ImageError."""
    return image_of(load_rgb(path))


def image_of(im: Image.Image) -> tuple[np.ndarray, tuple[int, int]]:
    """An RGB image at ``SIDE`` x ``SIDE`` (float32, ``(3, S, S)``) and its size."""
    g = im.convert("RGB").resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    return np.asarray(g, dtype=np.float32).transpose(2, 0, 1).copy(), im.size


def _windows(x: np.ndarray) -> np.ndarray:
    """The ``GRID`` x ``GRID`` ``CROP_KEEP`` windows of ``(..., S, S)`` images, resampled to
    ``SIDE``: ``(G * G, ..., S, S)``."""
    m = _mats()
    out = np.empty((GRID, GRID, *x.shape), dtype=np.float32)
    for iy in range(GRID):
        rows = np.matmul(m[iy], x)
        for ix in range(GRID):
            out[iy, ix] = np.matmul(rows, m[ix].T)
    return out.reshape(-1, *x.shape)


def _unit_gradients(x: np.ndarray) -> np.ndarray:
    """Rows of (N, S, S) images to their gradients, zero mean and unit length."""
    n, k = x.shape[0], _STEP
    g = np.concatenate(
        [(x[:, :, k:] - x[:, :, :-k]).reshape(n, -1), (x[:, k:] - x[:, :-k]).reshape(n, -1)], 1
    )
    g = g - g.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->i", g, g))[:, None]
    return g / np.where(norm > 0, norm, 1.0)


@dataclass(frozen=True)
class Alignment:
    real: np.ndarray
    """``(3, S, S)``: the real image as it lines up (mirrored, or a window of it)."""
    fake: np.ndarray
    """``(3, S, S)``: the fake (or a window of it)."""
    window: tuple[float, float]
    """Offset (fractions: y, x) of the fake's ``CROP_KEEP`` window, or (-1, -1): whole fake."""
    score: float
    """Gradient correlation of the grey images so aligned."""


def align(real: np.ndarray, fake: np.ndarray) -> Alignment:
    """The real image (mirrored or not) and the fake ``(3, S, S)``, as they line up best: as
    they are, a window of the real one against the whole fake, or the whole real against a
    window of the fake (the correlation of the grey images' gradients decides)."""
    gf = fake.mean(axis=0)
    wf = _windows(gf)
    best: tuple[float, int, int, int] = (-2.0, 0, -1, -1)  # score, mirror, real win, fake win
    for mirror in (0, 1):
        gr = real.mean(axis=0)[:, ::-1] if mirror else real.mean(axis=0)
        wr = _windows(gr)
        reals = np.concatenate([gr[None], wr, np.broadcast_to(gr, wf.shape)])
        fakes = np.concatenate([gf[None], np.broadcast_to(gf, wr.shape), wf])
        s = np.einsum("ij,ij->i", _unit_gradients(reals), _unit_gradients(fakes))
        k = int(np.argmax(s))
        if s[k] > best[0]:
            n = wr.shape[0]
            rw = k - 1 if 1 <= k <= n else -1
            fw = k - 1 - n if k > n else -1
            best = (float(s[k]), mirror, rw, fw)
    score, mirror, rw, fw = best
    r = real[:, :, ::-1] if mirror else real
    m = _mats()
    if rw >= 0:
        r = np.matmul(np.matmul(m[rw // GRID], r), m[rw % GRID].T)
    f = fake
    off = (-1.0, -1.0)
    if fw >= 0:
        f = np.matmul(np.matmul(m[fw // GRID], f), m[fw % GRID].T)
        margin = 1.0 - CROP_KEEP
        off = ((fw // GRID) / (GRID - 1) * margin, (fw % GRID) / (GRID - 1) * margin)
    return Alignment(np.ascontiguousarray(r), np.ascontiguousarray(f), off, score)


def _rank_matched(src: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``src``'s pixels replaced by ``ref``'s values of the same rank."""
    out = np.empty(src.size, dtype=np.float32)
    out[np.argsort(src.ravel(), kind="stable")] = np.sort(ref.ravel())
    return out.reshape(src.shape)


def residual(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """``(S, S)``: the aligned ``(3, S, S)`` images' difference after a monotone intensity match
    per channel (brightness, contrast, clipped highlights; the direction with the smaller
    residual: clipping is one-way), lightly blurred, root of the sum of squares over the
    channels."""
    r1 = np.stack([real[c] - _rank_matched(fake[c], real[c]) for c in range(real.shape[0])])
    r2 = np.stack([_rank_matched(real[c], fake[c]) - fake[c] for c in range(real.shape[0])])
    r = r1 if float((r1 * r1).sum()) <= float((r2 * r2).sum()) else r2
    r = gaussian_filter(r, (0, BLUR, BLUR))
    return np.asarray(np.sqrt((r * r).sum(axis=0)), dtype=np.float32)


def patch_means(d2: np.ndarray) -> np.ndarray:
    """Mean of ``d2`` over ``PATCH`` x ``PATCH`` patches at a stride of ``PATCH // 2``."""
    st = PATCH // 2
    c = np.cumsum(np.cumsum(np.pad(d2, ((1, 0), (1, 0))), 0), 1)
    ys = np.arange(0, SIDE - PATCH + 1, st)
    y0, x0 = ys[:, None], ys[None, :]
    tot = c[y0 + PATCH, x0 + PATCH] - c[y0, x0 + PATCH] - c[y0 + PATCH, x0] + c[y0, x0]
    return tot / (PATCH * PATCH)


def locality(al: Alignment, fake_size: tuple[int, int]) -> Locality:
    """:class:`Locality` of an aligned pair (the box mapped back into the fake's pixels)."""
    d = residual(al.real, al.fake)
    p = patch_means(d * d)
    if float(p.max()) == 0.0:
        return Locality(0.0, (0, 0, fake_size[0], fake_size[1]), 1.0, d)
    top = float(p.max())
    peak = 0.0 if top == 0.0 else top / max(float(np.median(p)), FLOOR)
    hot = p >= max(PEAK * max(float(np.median(p)), FLOOR), FLOOR) if peak >= PEAK else p >= top
    st = PATCH // 2
    mask = np.zeros((SIDE, SIDE), dtype=bool)
    for y, x in zip(*np.nonzero(hot), strict=True):
        mask[y * st : y * st + PATCH, x * st : x * st + PATCH] = True
    ys, xs = np.nonzero(mask)
    keep = CROP_KEEP if al.window[0] >= 0 else 1.0
    oy, ox = max(al.window[0], 0.0), max(al.window[1], 0.0)
    w, h = fake_size

    def fx(v: float) -> int:
        return round((ox + keep * v / SIDE) * w)

    def fy(v: float) -> int:
        return round((oy + keep * v / SIDE) * h)

    box = (fx(xs.min()), fy(ys.min()), fx(xs.max() + 1), fy(ys.max() + 1))
    share = float(mask.mean()) * keep * keep
    return Locality(peak, box, share, d)


def measure(real: str | Path, fake: str | Path) -> Locality | None:
    """How ``fake`` differs from ``real`` (None when either no longer decodes)."""
    try:
        a, _ = image(real)
        b, size = image(fake)
    except (ImageError, OSError):
        return None
    return locality(align(a, b), size)


def diff_png(loc: Locality, side: int = 128) -> bytes:
    """The difference map as a PNG (brighter: more different; scaled to its strongest patch)."""
    import io

    d = loc.diff
    top = float(d.max()) or 1.0
    im = Image.fromarray((255.0 * d / top).clip(0, 255).astype(np.uint8), "L")
    buf = io.BytesIO()
    im.resize((side, side), Image.Resampling.NEAREST).save(buf, "PNG")
    return buf.getvalue()


# ------------------------------------------------------------------ cross-class matches


@dataclass(frozen=True)
class Pair:
    """A real photo and a fake made from it (a local change): both kept, one fold, one split."""

    real: str
    fake: str
    real_sha256: str
    fake_sha256: str
    score: float
    """The verification score of the match (:mod:`cleaner.verify`)."""
    locality: Locality

    def to_json(self) -> dict[str, Any]:
        return {
            "real": self.real,
            "fake": self.fake,
            "real_sha256": self.real_sha256,
            "fake_sha256": self.fake_sha256,
            "score": round(self.score, 4),
            **self.locality.to_json(),
        }


CONFLICT_WHY = (
    "members in different classes with no local change between them (the same picture, "
    "re-encoded, resized or cropped): one label is wrong; never quarantined automatically"
)


MEASURE_BATCH = 32
"""Cross-class matches measured per task (each decodes two images: about 60 ms of CPU)."""


def _measure_batch(batch: Sequence[tuple[str, str]]) -> list[Locality | None]:
    """Pure batch function for :func:`cleaner.engine.map_batches`."""
    return [measure(real, fake) for real, fake in batch]


def split_cross(
    ws: Workspace,
    a: np.ndarray,
    b: np.ndarray,
    score: np.ndarray,
    rows_of: list[list[Any]],
    *,
    workers: int | None = None,
    progress: bool | None = None,
) -> tuple[np.ndarray, list[Pair]]:
    """Of the matches ``(a[i], b[i])`` between nodes (``rows_of[k]``: the manifest rows of node
    ``k``, best first), those between a real and a fake node with a local change
    (:func:`measure`, on the engine) are pairs. Returns which matches are no pair (duplicates or
    conflicts, as before) and the pairs."""
    cross: list[tuple[int, Any, Any]] = []
    for i, (x, y) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
        lx = {str(r.label) for r in rows_of[x]}
        ly = {str(r.label) for r in rows_of[y]}
        if not rows_of[x] or not rows_of[y] or len(lx | ly) != 2 or len(lx) != 1:
            continue
        rx, ry = rows_of[x][0], rows_of[y][0]
        cross.append((i, *((rx, ry) if lx == {Label.REAL} else (ry, rx))))
    items = [(str(ws.root / real.path), str(ws.root / fake.path)) for _, real, fake in cross]
    locs: list[Locality | None] = []
    for part in map_batches(
        _measure_batch, items, batch_size=MEASURE_BATCH, workers=workers, desc="pairs",
        progress=progress,
    ):  # fmt: skip
        locs.extend(part)
    keep = np.ones(a.size, dtype=bool)
    found: list[Pair] = []
    for (i, real, fake), loc in zip(cross, locs, strict=True):
        if loc is not None and loc.local:
            keep[i] = False
            found.append(Pair(real.path, fake.path, real.sha256, fake.sha256, float(score[i]), loc))
    found.sort(key=lambda p: (p.fake, p.real))
    return keep, found
