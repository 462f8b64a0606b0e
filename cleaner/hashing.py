"""Exact and perceptual hashes of images, as batch functions, cached by sha256.

Why it is shaped this way:

- **Decode less.** A 64-bit perceptual hash looks at a 32 x 32 grey image, so every file is
  decoded through the shared loader's fast path (:func:`cleaner.images.load_rgb` with
  ``max_side=32``: JPEG draft mode decodes at 1/8 scale straight from the DCT). That, not the
  hash, is where the time goes.
- **One decode, several looks.** From that one small image we take the hash (``imagehash``:
  phash, dhash, whash or ahash), the hashes of its mirror image, of five 95 % windows of it
  (centred and in the four corners) and of 4 x 4 90 % windows (mirrors, small crops and crops of
  about 10 % can be searched for), and keep the
  32 x 32 grey pixels for the second, independent check of a candidate pair in
  :mod:`cleaner.dedupe` (1 KiB per image).
- **Integers.** Hashes are kept as ``uint64`` (the bits of ``imagehash``'s 8 x 8 boolean array,
  row-major, most significant first: ``int(str(imagehash.phash(im)), 16)``).
- **Cache by content.** ``R/.cleaner/cache/hashes-<method>.npz`` keyed by sha256 (and a recipe
  string, so a change of recipe rehashes); only files with new content are decoded. Exact pixel
  digests (:func:`cleaner.images.pixel_digest`, full decode) are computed lazily, only for files
  that a search put in a group, and cached in ``pixel-digests.csv``.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cleaner import images
from cleaner.atomic import atomic_write
from cleaner.choices import HashMethod, values
from cleaner.dataset import Workspace
from cleaner.engine import map_batches

METHODS: tuple[str, ...] = values(HashMethod)
"""Perceptual hash methods (imagehash's), the default first."""

HASH_SIDE = 32
"""Longest side the loader decodes to for hashing (pHash's own working size)."""
GREY_PIXELS = HASH_SIDE * HASH_SIDE
"""The 32 x 32 grey image is kept (row-major ``uint8``) to confirm candidate pairs."""
CROP_KEEP = 0.95
"""The crop variant keeps this central fraction of each side (finds copies cropped by ~5 %)."""
WIDE_KEEP = 0.9
"""The wide crop windows keep this fraction of each side (find copies cropped by ~10 %: a copy
cropped to 90 % of each side is 16-30 bits from the original's hash, beyond any useful radius,
and 14 from the nearest 95 % window)."""
WIDE_STEPS = 4
"""Offsets per axis of the ``WIDE_KEEP`` windows (0, 1/3, 2/3 and all of the margin): measured
on 200 copies cropped to 90 % at random offsets of faces140k fakes, the nearest window's hash
was at most 8 bits from the copy's (3 x 3: up to 14, 1 in 100 over the radius 10; the centre
and four corners: up to 16)."""
RECIPE = f"v5:side{HASH_SIDE}:grey:crop{CROP_KEEP}:corners:wide{WIDE_KEEP}x{WIDE_STEPS}"
"""Changes whenever the hashing recipe changes; part of the cache key."""

CACHE_DIR = Path(".cleaner") / "cache"


def file_sha256(path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in chunks: the identity of an image everywhere in cleaner
    (manifest, predictions, caches, journal checks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------- single images


def _hash_fn(method: str) -> Callable[[Image.Image], object]:
    import imagehash

    fns: dict[str, Callable[[Image.Image], object]] = {
        "phash": imagehash.phash,
        "dhash": imagehash.dhash,
        "whash": imagehash.whash,
        "ahash": imagehash.average_hash,
    }
    try:
        return fns[method]
    except KeyError:
        raise ValueError(f"unknown hash method {method!r}; expected one of {METHODS}") from None


def hash_to_int(h: object) -> int:
    """An ``imagehash.ImageHash`` (64 bits) as an unsigned integer, ``int(str(h), 16)``."""
    bits = np.asarray(getattr(h, "hash", h), dtype=np.uint8).ravel()
    if bits.size != 64:
        raise ValueError(f"expected a 64-bit hash, got {bits.size} bits")
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def int_to_hex(value: int) -> str:
    """The 16-hex-digit form imagehash prints (and imagededup stores)."""
    return f"{int(value):016x}"


def small_grey(source: images.Source) -> Image.Image:
    """The image as pHash sees it: decoded on the fast path, grey, ``HASH_SIDE`` square."""
    im = images.load_rgb(source, max_side=HASH_SIDE)
    grey = im.convert("L")
    if grey.size != (HASH_SIDE, HASH_SIDE):
        grey = grey.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS)
    return grey


CORNERS: tuple[tuple[float, float], ...] = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0))
"""Where the corner windows sit, as fractions of the margin (x, y): top-left, top-right,
bottom-left, bottom-right."""


def resample_matrix(keep: float, offset: float, side: int = HASH_SIDE) -> np.ndarray:
    """Pillow's 1-D Lanczos resampling of the window ``[offset, offset + keep]`` (fractions of
    the side) back to ``side`` samples, as a matrix, so 2-D windows of a whole stack of images
    are two matrix products."""
    m = np.zeros((side, side), dtype=np.float64)
    box = (offset * side, 0.0, (offset + keep) * side, 1.0)
    for k in range(side):
        row = np.zeros((1, side), dtype=np.float32)
        row[0, k] = 1.0
        im = Image.fromarray(row, "F").resize((side, 1), Image.Resampling.LANCZOS, box=box)
        m[:, k] = np.asarray(im, dtype=np.float64)[0]
    return m


@functools.cache
def crop_matrices() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resampling matrices of a ``CROP_KEEP`` window at 0, half and all of the margin."""
    margin = 1.0 - CROP_KEEP
    a, b, c = (resample_matrix(CROP_KEEP, f * margin).astype(np.float32) for f in (0, 0.5, 1))
    return a, b, c


def crop_windows(px: np.ndarray) -> np.ndarray:
    """The centred and the four corner ``CROP_KEEP`` windows of ``(B, S, S)`` grey images,
    resized back to ``S``: ``(B, 5, S, S)`` ``uint8``, centre first, then :data:`CORNERS`."""
    mats = crop_matrices()
    x = px.astype(np.float32)
    rows = {f: np.matmul(mats[i], x) for i, f in enumerate((0.0, 0.5, 1.0))}
    out = [np.matmul(rows[0.5], mats[1].T)]
    for fx, fy in CORNERS:
        out.append(np.matmul(rows[fy], mats[int(fx * 2)].T))
    return np.clip(np.rint(np.stack(out, axis=1)), 0, 255).astype(np.uint8)


@functools.cache
def wide_matrices() -> tuple[np.ndarray, ...]:
    """Resampling matrices of a ``WIDE_KEEP`` window at the ``WIDE_STEPS`` offsets."""
    margin = 1.0 - WIDE_KEEP
    return tuple(
        resample_matrix(WIDE_KEEP, k / (WIDE_STEPS - 1) * margin).astype(np.float32)
        for k in range(WIDE_STEPS)
    )


def wide_windows(px: np.ndarray) -> np.ndarray:
    """The ``WIDE_STEPS`` x ``WIDE_STEPS`` ``WIDE_KEEP`` windows of ``(B, S, S)`` grey images,
    resized back to ``S``: ``(B, WIDE_STEPS ** 2, S, S)`` ``uint8``, row-major (y, then x)."""
    mats = wide_matrices()
    x = px.astype(np.float32)
    out: list[np.ndarray] = []
    for my in mats:
        rows = np.matmul(my, x)
        out.extend(np.matmul(rows, mx.T) for mx in mats)
    return np.clip(np.rint(np.stack(out, axis=1)), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class ImageHashes:
    """Everything the search needs about one image content."""

    hash: int
    mirror: int
    """Hash of the image flipped left-right."""
    crop: int
    """Hash of the central ``CROP_KEEP`` of the image, resized back."""
    corners: tuple[int, int, int, int]
    """Hashes of the ``CROP_KEEP`` windows in the four corners (:data:`CORNERS`)."""
    grey: bytes
    """The ``HASH_SIDE`` square grey image the hashes were taken from, row-major."""
    wide: tuple[int, ...] = ()
    """Hashes of the ``WIDE_KEEP`` windows (:func:`wide_windows`, ``WIDE_STEPS ** 2``)."""


def phash_batch(greys: np.ndarray) -> np.ndarray:
    """imagehash's ``phash`` of many ``(K, 32, 32)`` grey images at once, as ``uint64``.

    The same steps as ``imagehash.phash`` (scipy.fftpack DCT along rows then columns, the 8 x 8
    low frequencies against their median), on a stack: one call instead of K, which is most of
    the hashing time once decoding is cheap. Bit-identical to imagehash (tested).
    """
    import scipy.fftpack

    px = np.asarray(greys, dtype=np.uint8)
    # only the first 8 rows of the first transform feed the 8 x 8 low frequencies: the second
    # transform runs on those rows alone (each 1-D transform is independent: same bits)
    rows = scipy.fftpack.dct(px, axis=1)[:, :8, :]
    low = scipy.fftpack.dct(rows, axis=2)[:, :, :8].reshape(px.shape[0], 64)
    bits = low > np.median(low, axis=1, keepdims=True)
    return np.frombuffer(np.packbits(bits, axis=1).tobytes(), dtype=">u8").astype(np.uint64)


def hashes_of_greys(greys: Sequence[Image.Image], method: str = "phash") -> list[ImageHashes]:
    """All the hashes of several ``HASH_SIDE`` square grey images (batched for phash)."""
    if not greys:
        return []
    px = np.stack([np.asarray(g, dtype=np.uint8) for g in greys])
    variants = np.concatenate(
        [px[:, None], px[:, None, :, ::-1], crop_windows(px), wide_windows(px)], axis=1
    )
    n, k = variants.shape[:2]
    if method == "phash":
        h = phash_batch(variants.reshape(n * k, *px.shape[1:])).reshape(n, k)
    else:
        fn = _hash_fn(method)
        h = np.array(
            [[hash_to_int(fn(Image.fromarray(v, "L"))) for v in vs] for vs in variants],
            dtype=np.uint64,
        )
    return [
        ImageHashes(
            hash=int(h[i, 0]),
            mirror=int(h[i, 1]),
            crop=int(h[i, 2]),
            corners=(int(h[i, 3]), int(h[i, 4]), int(h[i, 5]), int(h[i, 6])),
            grey=px[i].tobytes(),
            wide=tuple(int(v) for v in h[i, 7:]),
        )
        for i in range(n)
    ]


def hashes_of_grey(grey: Image.Image, method: str = "phash") -> ImageHashes:
    """All the hashes of one ``HASH_SIDE`` square grey image."""
    return hashes_of_greys([grey], method)[0]


def image_hashes(source: images.Source, method: str = "phash") -> ImageHashes:
    """Decode (fast path) and hash one image. Raises :class:`cleaner.images.ImageError`."""
    return hashes_of_grey(small_grey(source), method)


def perceptual_hash(source: images.Source, method: str = "phash") -> int:
    """The 64-bit perceptual hash of one image as cleaner computes it (fast-path decode)."""
    return hashes_of_grey(small_grey(source), method).hash


# ------------------------------------------------------------------------------ batch functions

HashItem = tuple[str, str]
"""(absolute path, sha256) of one file to hash."""
HashOut = tuple[str, ImageHashes | None, str]
"""(sha256, hashes or None, error reason)."""


def hash_batch(batch: Sequence[HashItem], method: str = "phash") -> list[HashOut]:
    """Pure batch function for :func:`cleaner.engine.map_batches`; a bad file gives its reason."""
    _hash_fn(method)
    greys: list[Image.Image] = []
    ok: list[str] = []
    out: list[HashOut] = []
    for path, sha in batch:
        try:
            greys.append(small_grey(path))
            ok.append(sha)
        except images.ImageError as e:
            out.append((sha, None, f"{e.status}: {e.reason}"))
    out.extend((sha, h, "") for sha, h in zip(ok, hashes_of_greys(greys, method), strict=True))
    return out


def pixel_digest_batch(batch: Sequence[HashItem]) -> list[tuple[str, str]]:
    """(sha256, digest of the fully decoded pixels, or "" when the file does not decode)."""
    out: list[tuple[str, str]] = []
    for path, sha in batch:
        try:
            out.append((sha, images.pixel_digest(images.load_rgb(path))))
        except images.ImageError:
            out.append((sha, ""))
    return out


# ------------------------------------------------------------------------------- the hash table


@dataclass
class HashTable:
    """Hashes of many image contents, as arrays aligned by row (one row per sha256)."""

    method: str
    sha256: np.ndarray
    """``<U64`` strings."""
    hash: np.ndarray
    mirror: np.ndarray
    crop: np.ndarray
    """``uint64`` each."""
    corners: np.ndarray
    """``uint64`` ``(N, 4)``."""
    grey: np.ndarray
    """``uint8`` ``(N, GREY_PIXELS)``."""
    wide: np.ndarray | None = None
    """``uint64`` ``(N, WIDE_STEPS ** 2)``: the ``WIDE_KEEP`` windows' hashes (``None``: a table
    built without them, e.g. by a benchmark: searched as if absent)."""

    def __post_init__(self) -> None:
        if self.wide is None:
            self.wide = np.zeros((len(self.sha256), 0), dtype=np.uint64)

    @property
    def wides(self) -> np.ndarray:
        """:attr:`wide`, never ``None``."""
        assert self.wide is not None
        return self.wide

    def __len__(self) -> int:
        return int(self.sha256.shape[0])

    @classmethod
    def empty(cls, method: str) -> HashTable:
        return cls(
            method=method,
            sha256=np.zeros(0, dtype="<U64"),
            hash=np.zeros(0, dtype=np.uint64),
            mirror=np.zeros(0, dtype=np.uint64),
            crop=np.zeros(0, dtype=np.uint64),
            corners=np.zeros((0, 4), dtype=np.uint64),
            grey=np.zeros((0, GREY_PIXELS), dtype=np.uint8),
            wide=np.zeros((0, WIDE_STEPS**2), dtype=np.uint64),
        )

    @classmethod
    def from_hashes(cls, method: str, items: Sequence[tuple[str, ImageHashes]]) -> HashTable:
        if not items:
            return cls.empty(method)

        def u64(vals: Iterable[int]) -> np.ndarray:
            return np.fromiter(vals, dtype=np.uint64, count=len(items))

        def greys(vals: Iterable[bytes]) -> np.ndarray:
            return np.frombuffer(b"".join(vals), dtype=np.uint8).reshape(len(items), GREY_PIXELS)

        return cls(
            method=method,
            sha256=np.array([s for s, _ in items], dtype="<U64"),
            hash=u64(h.hash for _, h in items),
            mirror=u64(h.mirror for _, h in items),
            crop=u64(h.crop for _, h in items),
            corners=np.array([h.corners for _, h in items], dtype=np.uint64).reshape(-1, 4),
            grey=greys(h.grey for _, h in items),
            wide=np.array([h.wide for _, h in items], dtype=np.uint64).reshape(len(items), -1),
        )

    def take(self, idx: np.ndarray) -> HashTable:
        return HashTable(
            self.method,
            self.sha256[idx],
            self.hash[idx],
            self.mirror[idx],
            self.crop[idx],
            self.corners[idx],
            self.grey[idx],
            self.wides[idx],
        )

    def concat(self, other: HashTable) -> HashTable:
        return HashTable(
            self.method,
            np.concatenate([self.sha256, other.sha256]),
            np.concatenate([self.hash, other.hash]),
            np.concatenate([self.mirror, other.mirror]),
            np.concatenate([self.crop, other.crop]),
            np.concatenate([self.corners, other.corners]),
            np.concatenate([self.grey, other.grey]),
            np.concatenate([self.wides, other.wides]),
        )

    def index(self) -> dict[str, int]:
        return {str(s): i for i, s in enumerate(self.sha256)}


def cache_path(ws: Workspace, method: str) -> Path:
    return ws.state_path("cache", f"hashes-{method}.npz")


def load_cache(ws: Workspace, method: str) -> HashTable:
    """The cached table, or an empty one when absent, unreadable or of another recipe."""
    p = cache_path(ws, method)
    try:
        with np.load(p, allow_pickle=False) as z:
            if str(z["recipe"]) != RECIPE or str(z["method"]) != method:
                return HashTable.empty(method)
            return HashTable(
                method=method,
                sha256=z["sha256"].astype("<U64"),
                hash=z["hash"].astype(np.uint64),
                mirror=z["mirror"].astype(np.uint64),
                crop=z["crop"].astype(np.uint64),
                corners=z["corners"].astype(np.uint64).reshape(-1, 4),
                grey=z["grey"].astype(np.uint8),
                wide=z["wide"].astype(np.uint64).reshape(-1, WIDE_STEPS**2),
            )
    except (OSError, KeyError, ValueError):
        return HashTable.empty(method)


def save_cache(ws: Workspace, table: HashTable) -> None:
    """Write the table atomically (temporary file, fsync, rename)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                recipe=np.array(RECIPE),
                method=np.array(table.method),
                sha256=table.sha256,
                hash=table.hash,
                mirror=table.mirror,
                crop=table.crop,
                corners=table.corners,
                grey=table.grey,
                wide=table.wides,
            )

    atomic_write(cache_path(ws, table.method), write)


@dataclass
class HashRun:
    """The result of :func:`hash_files`: a table for the requested contents, and the failures."""

    table: HashTable
    computed: int
    reused: int
    failed: dict[str, str]
    """sha256 -> reason, for files that did not decode at hashing time."""


def hash_files(
    items: Sequence[HashItem],
    method: str = "phash",
    *,
    ws: Workspace | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    batch_size: int = 64,
) -> HashRun:
    """Hashes for every distinct sha256 in ``items`` (absolute path, sha256), rows in first-seen
    order. With ``ws``, reads and extends ROOT's cache so only new contents are decoded."""
    _hash_fn(method)  # fail early on a bad method
    cached = load_cache(ws, method) if ws is not None else HashTable.empty(method)
    known = cached.index()
    wanted: dict[str, str] = {}
    for path, sha in items:
        wanted.setdefault(sha, path)
    todo = [(p, s) for s, p in wanted.items() if s not in known]
    new: list[tuple[str, ImageHashes]] = []
    failed: dict[str, str] = {}
    fn = functools.partial(hash_batch, method=method)
    for out in map_batches(
        fn, todo, batch_size=batch_size, workers=workers, desc="hash", progress=progress
    ):
        for sha, h, why in out:
            if h is None:
                failed[sha] = why
            else:
                new.append((sha, h))
    table = cached.concat(HashTable.from_hashes(method, new)) if new else cached
    if ws is not None and new:
        # a read-only ROOT still gets its hashes, just not cached (the caller reports the rest)
        with contextlib.suppress(OSError):
            save_cache(ws, table)
    idx = table.index()
    rows = np.array([idx[s] for s in wanted if s in idx], dtype=np.int64)
    return HashRun(
        table=table.take(rows), computed=len(new), reused=len(wanted) - len(todo), failed=failed
    )


def pixel_digests(
    items: Sequence[HashItem],
    *,
    ws: Workspace | None = None,
    workers: int | None = None,
    progress: bool | None = None,
) -> dict[str, str]:
    """sha256 -> digest of the decoded pixels (full decode), cached in
    ``R/.cleaner/cache/pixel-digests.csv``. Files that do not decode get no entry."""
    path = ws.state_path("cache", "pixel-digests.csv") if ws is not None else None
    known: dict[str, str] = {}
    if path is not None and path.exists():
        with open(path, newline="") as f:
            known = {r["sha256"]: r["pixel_digest"] for r in csv.DictReader(f)}
    wanted: dict[str, str] = {}
    for p, s in items:
        wanted.setdefault(s, p)
    todo = [(p, s) for s, p in wanted.items() if s not in known]
    added = 0
    for out in map_batches(
        pixel_digest_batch, todo, batch_size=16, workers=workers, desc="pixels", progress=progress
    ):
        for sha, digest in out:
            if digest:
                known[sha] = digest
                added += 1
    if path is not None and added:

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["sha256", "pixel_digest"])
                w.writerows(sorted(known.items()))

        with contextlib.suppress(OSError):
            atomic_write(path, write)
    return {s: known[s] for s in wanted if s in known}
