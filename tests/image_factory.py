"""Small generated files of every bad-input kind the loader must answer (tests of every area).

Each ``make_*`` function writes one file at ``path`` (parents created) and returns it. Pixels are
seeded, so every call gives the same bytes. :data:`BAD_KINDS` maps a kind name to its writer,
the file name to use, and what :func:`cleaner.images.probe` must say about it
(``expect_status``, and ``expect_format`` for files that do decode).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


def _pixels(size: int = 48, seed: int = 0) -> np.ndarray:
    """A smooth colour gradient plus noise: decodes the same everywhere, compresses well."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    base = np.stack([x * 255 / size, y * 255 / size, (x + y) * 127 / size], axis=-1)
    noise = rng.normal(0, 12, (size, size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def rgb_image(size: int = 48, seed: int = 0) -> Image.Image:
    return Image.fromarray(_pixels(size, seed), "RGB")


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _save(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


# ----------------------------------------------------------------------------- good images


def make_jpeg(path: Path, size: int = 48, seed: int = 0, quality: int = 90) -> Path:
    return _write(path, _save(rgb_image(size, seed), "JPEG", quality=quality))


def make_png(path: Path, size: int = 48, seed: int = 0) -> Path:
    return _write(path, _save(rgb_image(size, seed), "PNG"))


def make_webp_named_png(path: Path, size: int = 48, seed: int = 0) -> Path:
    """A WEBP file whose name says ``.png`` (the bytes decide)."""
    return _write(path, _save(rgb_image(size, seed), "WEBP", quality=80))


def make_exif_rotated_jpeg(path: Path, width: int = 48, height: int = 32, seed: int = 0) -> Path:
    """A ``width x height`` stored JPEG with EXIF orientation 6 (display rotated 90° clockwise):
    upright it is ``height x width``."""
    im = Image.fromarray(_pixels(max(width, height), seed)[:height, :width], "RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    return _write(path, _save(im, "JPEG", quality=90, exif=exif.tobytes()))


def make_palette_transparent_png(path: Path, size: int = 32) -> Path:
    """Mode ``P`` with a transparent palette index (``tRNS``)."""
    im = rgb_image(size).quantize(colors=16)
    return _write(path, _save(im, "PNG", transparency=0))


def make_rgba_png(path: Path, size: int = 32) -> Path:
    arr = np.dstack([_pixels(size), np.linspace(0, 255, size * size).reshape(size, size)])
    return _write(path, _save(Image.fromarray(arr.astype(np.uint8), "RGBA"), "PNG"))


def make_cmyk_jpeg(path: Path, size: int = 32) -> Path:
    return _write(path, _save(rgb_image(size).convert("CMYK"), "JPEG", quality=90))


def make_16bit_png(path: Path, size: int = 32) -> Path:
    """A 16-bit grayscale PNG (mode ``I;16``), values spread over 0..65535."""
    arr = (np.linspace(0, 65535, size * size).reshape(size, size)).astype(np.uint16)
    return _write(path, _save(Image.fromarray(arr), "PNG"))


def make_grayscale_jpeg(path: Path, size: int = 32) -> Path:
    return _write(path, _save(rgb_image(size).convert("L"), "JPEG", quality=90))


def make_1bit_png(path: Path, size: int = 32) -> Path:
    return _write(path, _save(rgb_image(size).convert("1"), "PNG"))


def make_animated_gif(path: Path, size: int = 32, frames: int = 3) -> Path:
    ims = [rgb_image(size, seed=i).quantize(colors=32) for i in range(frames)]
    return _write(path, _save(ims[0], "GIF", save_all=True, append_images=ims[1:], duration=50))


# ----------------------------------------------------------------------------- bad files


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def make_decompression_bomb(path: Path, width: int = 60_000, height: int = 60_000) -> Path:
    """A PNG of a few hundred bytes whose header declares ``width x height`` pixels (3.6 G by
    default): the size guard must answer ``too-large`` without allocating anything."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    idat = zlib.compress(b"\x00" * 1024)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )
    return _write(path, data)


def make_truncated_jpeg(path: Path, size: int = 64, keep: float = 0.5) -> Path:
    data = _save(rgb_image(size), "JPEG", quality=95)
    return _write(path, data[: int(len(data) * keep)])


def make_truncated_png(path: Path, size: int = 64, keep: float = 0.6) -> Path:
    data = _save(rgb_image(size), "PNG")
    return _write(path, data[: int(len(data) * keep)])


def make_corrupt_jpeg(path: Path, size: int = 48) -> Path:
    """A JPEG whose header decodes, with a stray start-of-image marker in the middle of its pixel
    data (libjpeg shrugs off random entropy bytes, but not a marker out of place)."""
    data = _save(rgb_image(size), "JPEG", quality=90)
    sos = data.find(b"\xff\xda")
    mid = sos + (len(data) - sos) // 2
    return _write(path, data[:mid] + b"\xff\xd8" + data[mid:])


def make_corrupt_header_jpeg(path: Path, size: int = 48) -> Path:
    """A JPEG signature whose tables and header are overwritten with random bytes."""
    data = bytearray(_save(rgb_image(size), "JPEG", quality=90))
    rng = np.random.default_rng(1)
    data[4:-2] = rng.integers(0, 256, len(data) - 6, dtype=np.uint8).tobytes()
    return _write(path, bytes(data))


def make_garbage_png_header(path: Path) -> Path:
    """A PNG signature followed by bytes that are not a PNG header."""
    return _write(path, b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2)


def make_random_bytes(path: Path, n: int = 2048) -> Path:
    return _write(path, np.random.default_rng(7).integers(0, 256, n, dtype=np.uint8).tobytes())


def make_zero_bytes(path: Path) -> Path:
    return _write(path, b"")


def make_text_file(path: Path) -> Path:
    """A text file, typically named ``.jpg`` (an HTML error page saved by a scraper)."""
    return _write(path, b"<html><body>404 Not Found</body></html>\n")


def make_heif_stub(path: Path) -> Path:
    """The first bytes of a HEIF file: a real format this Pillow (without a plugin) cannot read."""
    box = struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00" + b"mif1heic"
    return _write(path, box + b"\x00" * 64)


def make_symlink_out_of_root(path: Path, target: Path) -> Path:
    """A symlink at ``path`` to ``target`` (a file outside ROOT, which must not be followed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)
    return path


def make_symlink_loop(folder: Path) -> tuple[Path, Path]:
    """Two symlinks pointing at each other (``loop_a.jpg`` <-> ``loop_b.jpg``) and a folder
    symlink to its own parent (``self_dir``): a walk must end and list the files once."""
    folder.mkdir(parents=True, exist_ok=True)
    a, b = folder / "loop_a.jpg", folder / "loop_b.jpg"
    os.symlink(b.name, a)
    os.symlink(a.name, b)
    os.symlink(".", folder / "self_dir")
    return a, b


@dataclass(frozen=True)
class Kind:
    """One kind of input: how to write it, its file name, and what probe must say."""

    make: Callable[[Path], Path]
    name: str
    expect_status: str
    expect_format: str = ""
    expect_size: tuple[int, int] | None = None
    """(width, height) upright, for files that decode."""


BAD_KINDS: dict[str, Kind] = {
    "webp_named_png": Kind(make_webp_named_png, "webp_named.png", "ok", "WEBP", (48, 48)),
    "exif_rotated": Kind(make_exif_rotated_jpeg, "exif_rotated.jpg", "ok", "JPEG", (32, 48)),
    "palette_transparency": Kind(make_palette_transparent_png, "palette.png", "ok", "PNG"),
    "rgba": Kind(make_rgba_png, "rgba.png", "ok", "PNG", (32, 32)),
    "cmyk_jpeg": Kind(make_cmyk_jpeg, "cmyk.jpg", "ok", "JPEG", (32, 32)),
    "png16": Kind(make_16bit_png, "gray16.png", "ok", "PNG", (32, 32)),
    "grayscale": Kind(make_grayscale_jpeg, "gray.jpg", "ok", "JPEG", (32, 32)),
    "one_bit": Kind(make_1bit_png, "onebit.png", "ok", "PNG", (32, 32)),
    "animated_gif": Kind(make_animated_gif, "animated.gif", "ok", "GIF", (32, 32)),
    "bomb": Kind(make_decompression_bomb, "bomb.png", "too-large"),
    "truncated_jpeg": Kind(make_truncated_jpeg, "truncated.jpg", "truncated"),
    "truncated_png": Kind(make_truncated_png, "truncated.png", "truncated"),
    "corrupt_jpeg": Kind(make_corrupt_jpeg, "corrupt.jpg", "corrupt"),
    "corrupt_header_jpeg": Kind(make_corrupt_header_jpeg, "corrupt_header.jpg", "corrupt"),
    "garbage_png_header": Kind(make_garbage_png_header, "garbage_header.png", "corrupt"),
    "random_bytes": Kind(make_random_bytes, "random.jpg", "not-an-image"),
    "zero_bytes": Kind(make_zero_bytes, "zero.jpg", "empty"),
    "text_named_jpg": Kind(make_text_file, "page.jpg", "not-an-image"),
    "heif_stub": Kind(make_heif_stub, "photo.heic", "unsupported"),
}
"""Every file kind (symlinks excepted: see :func:`make_symlink_out_of_root`,
:func:`make_symlink_loop`)."""


def make_all(folder: Path) -> dict[str, Path]:
    """Write every kind of :data:`BAD_KINDS` into ``folder``; kind -> path."""
    return {k: kind.make(folder / kind.name) for k, kind in BAD_KINDS.items()}
