"""THE image loader: every stage decodes through here, and nowhere else.

- The format is sniffed from the bytes, not the extension (a WEBP named ``.png`` is WEBP).
- EXIF orientation is applied; every mode ends as 8-bit RGB (palette with transparency, RGBA,
  LA, CMYK, 16-bit, float, 1-bit, grayscale); an animation gives its first frame.
- A pixel limit guards against decompression bombs: it gives status ``too-large``, not a crash
  and not a warning on stderr.
- Truncated and corrupt files raise :class:`ImageError` with a status (``truncated``,
  ``corrupt``, ``not-an-image``, ``empty``, ``unreadable``, ``unsupported`` for a real format
  this Pillow cannot decode, such as HEIF without a plugin) and a one-line reason. No decoder
  exception and no Pillow warning escapes: one bad file never stops a run of 100,000.
- ``max_side`` turns on the fast path: JPEG draft mode decodes at 1/2, 1/4 or 1/8 scale directly
  (hashes and thumbnails need only a small image).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from struct import error as struct_error  # raised by some plugins on garbage
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Our own guard replaces Pillow's (which warns on stderr, then raises): we check the header size.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False

MAX_PIXELS = 120_000_000
"""Default pixel limit (width x height, per frame): about 11k x 11k. Larger is ``too-large``."""

Source = str | os.PathLike[str] | bytes | BinaryIO

# status values, used in the manifest's ``status`` column
OK = "ok"
EMPTY = "empty"
NOT_AN_IMAGE = "not-an-image"
CORRUPT = "corrupt"
TRUNCATED = "truncated"
TOO_LARGE = "too-large"
UNREADABLE = "unreadable"
UNSUPPORTED = "unsupported"
NOT_A_FILE = "not-a-file"

MAX_FILE_BYTES = 1 << 30
"""Files larger than this are hashed in blocks but never read whole (nor decoded)."""

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"\x00\x00\x00\x0cjP  ", 0, "JPEG2000"),
    (b"\xff\x4f\xff\x51", 0, "JPEG2000"),
)

EXTENSION_FORMATS: dict[str, str] = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG",
    ".png": "PNG", ".gif": "GIF", ".webp": "WEBP", ".bmp": "BMP",
    ".tif": "TIFF", ".tiff": "TIFF", ".ico": "ICO", ".jp2": "JPEG2000",
    ".heic": "HEIF", ".heif": "HEIF", ".avif": "AVIF",
}  # fmt: skip
"""What an extension claims, to report a file whose bytes say otherwise."""


class ImageError(Exception):
    """An image that cannot be used: ``status`` for the manifest, ``reason`` for people."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class FileBytes:
    """A file's bytes read through :func:`read_regular`, or why they were not read."""

    data: bytes | None
    status: str = OK
    reason: str = ""
    sha256: str = ""
    size: int = 0
    mtime_ns: int = 0


def read_regular(abspath: str, max_bytes: int = MAX_FILE_BYTES) -> FileBytes:
    """Read a regular file once; never raises. A socket, FIFO or device is never opened
    (opening a FIFO can block, a device hang); a file over ``max_bytes`` is hashed in blocks,
    not held; ``O_NONBLOCK`` and the second check on the open descriptor close the race with a
    file swapped for a FIFO in between."""
    try:
        st0 = os.stat(abspath)
    except OSError as e:
        return FileBytes(None, UNREADABLE, f"cannot stat: {e.strerror or e}")
    if not stat.S_ISREG(st0.st_mode):
        return FileBytes(None, NOT_A_FILE, "not a regular file", mtime_ns=st0.st_mtime_ns)
    try:
        fd = os.open(abspath, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        return FileBytes(None, UNREADABLE, f"cannot open: {e.strerror or e}")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return FileBytes(None, NOT_A_FILE, "not a regular file", mtime_ns=st.st_mtime_ns)
        with os.fdopen(fd, "rb", closefd=False) as f:
            if st.st_size > max_bytes:
                h = hashlib.sha256()
                while block := f.read(1 << 20):
                    h.update(block)
                reason = f"file of {st.st_size:,} bytes exceeds {max_bytes:,}; not read"
                return FileBytes(None, TOO_LARGE, reason, h.hexdigest(), st.st_size, st.st_mtime_ns)
            data = f.read()
    except OSError as e:
        return FileBytes(None, UNREADABLE, f"cannot read: {e.strerror or e}")
    finally:
        os.close(fd)
    return FileBytes(data, size=len(data), mtime_ns=st.st_mtime_ns)


@dataclass(frozen=True)
class ImageInfo:
    """What a full check of one file found (see :func:`probe`)."""

    status: str
    reason: str = ""
    format: str = ""
    width: int = 0
    height: int = 0
    mode: str = ""
    frames: int = 0
    extension_mismatch: bool = False
    """The extension claims another format than the bytes (the file is still usable)."""


def sniff_format(head: bytes) -> str | None:
    """The format named by the first bytes of a file (at least 16 bytes), or None."""
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
            return "HEIF"
    for magic, offset, fmt in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return fmt
    return None


def _read_bytes(source: Source) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as f:
                return f.read()
        except OSError as e:
            raise ImageError(UNREADABLE, f"cannot read file: {e.strerror or e}") from e
    return source.read()


def _supported(fmt: str) -> bool:
    """Whether this Pillow build has a decoder registered for ``fmt``."""
    Image.init()
    return fmt in Image.OPEN or (fmt == "JPEG2000" and "JPEG2000" in Image.OPEN)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only) with the size guard; raises :class:`ImageError`."""
    if not data:
        raise ImageError(EMPTY, "file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as e:
        fmt = sniff_format(data[:32])
        if fmt is None:
            raise ImageError(NOT_AN_IMAGE, "not an image (no known image signature)") from e
        if not _supported(fmt):
            raise ImageError(
                UNSUPPORTED, f"{fmt} image, but this Pillow has no {fmt} decoder"
            ) from e
        raise ImageError(CORRUPT, f"{fmt} signature but the header does not decode") from e
    except MemoryError as e:
        raise ImageError(TOO_LARGE, "header asks for more memory than is available") from e
    except Exception as e:  # decoder bugs on hostile headers: TypeError, KeyError, struct.error
        raise ImageError(CORRUPT, f"header does not decode ({type(e).__name__}: {e})") from e
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageError(CORRUPT, f"invalid size {w}x{h}")
    if w * h > max_pixels:
        raise ImageError(
            TOO_LARGE, f"{w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,}"
        )
    return im


def _decode(im: Image.Image) -> None:
    """Force the full decode, turning Pillow's many exceptions into statuses."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im.load()
    except Image.DecompressionBombError as e:  # pragma: no cover - guard is off, belt and braces
        raise ImageError(TOO_LARGE, str(e)) from e
    except OSError as e:
        msg = str(e)
        low = msg.lower()
        if "truncated" in low or "premature end" in low or "unrecognized data" in low:
            raise ImageError(TRUNCATED, f"image data is truncated ({msg})") from e
        raise ImageError(CORRUPT, f"pixel data does not decode ({msg})") from e
    except EOFError as e:
        raise ImageError(TRUNCATED, f"image data ends early ({e or 'end of file'})") from e
    except (ValueError, SyntaxError, IndexError, struct_error) as e:
        raise ImageError(CORRUPT, f"pixel data does not decode ({e})") from e
    except MemoryError as e:
        raise ImageError(TOO_LARGE, "decoding needs more memory than is available") from e
    except Exception as e:  # any other decoder failure is a bad file, not a crashed run
        raise ImageError(CORRUPT, f"pixel data does not decode ({type(e).__name__}: {e})") from e


_SAFE_MODES = frozenset(
    {"RGB", "RGBA", "RGBX", "L", "LA", "La", "P", "PA", "1", "CMYK", "YCbCr", "I", "F", "RGBa"}
)
"""Modes :func:`to_rgb` is known to convert; others are tried once in :func:`probe`."""

_ROTATING = frozenset({5, 6, 7, 8})
"""EXIF orientations that swap width and height."""


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # a broken EXIF block is not a broken image
        return 1


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is composited on white.

    Raises :class:`ImageError` (``unsupported``) for a mode Pillow cannot convert."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _to_rgb(im)
    except (ValueError, OSError, TypeError) as e:
        raise ImageError(UNSUPPORTED, f"mode {im.mode} cannot be converted to RGB ({e})") from e


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    elif im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        im = Image.fromarray(arr, "L")
    elif im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min(initial=0)), float(arr.max(initial=1))
        scale = 255.0 / (hi - lo) if hi > lo else 1.0
        im = Image.fromarray(np.clip((arr - lo) * scale, 0, 255).astype(np.uint8), "L")
    elif im.mode in ("LA", "La", "PA", "RGBa"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im, mask=im.getchannel("A"))
        return background
    return im.convert("RGB")


def probe(source: Source, *, max_pixels: int = MAX_PIXELS, name: str | None = None) -> ImageInfo:
    """Check one file fully (header, every pixel of the first frame). Never raises for bad data.

    ``name`` (or the path of ``source``) is used to report an extension that lies about the format.
    """
    if name is None and isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
    data = b""
    try:
        data = _read_bytes(source)
        im = _open(data, max_pixels)
        fmt = im.format or sniff_format(data[:32]) or ""
        try:
            frames = int(getattr(im, "n_frames", 1) or 1)
        except Exception:  # a broken later frame: the first one is what we use
            frames = 1
        _decode(im)
        if im.mode not in _SAFE_MODES and not im.mode.startswith("I;16"):
            to_rgb(im)  # an exotic mode (LAB, HSV...): prove it converts before saying ok
        w, h = im.size
        if _orientation(im) in _ROTATING:
            w, h = h, w  # report the upright size, as load_rgb returns it
    except ImageError as e:
        # the format the bytes claim, even when they do not decode (a truncated JPEG is a JPEG)
        return ImageInfo(status=e.status, reason=e.reason, format=sniff_format(data[:32]) or "")
    claimed = EXTENSION_FORMATS.get(Path(name).suffix.lower()) if name else None
    mismatch = (
        claimed is not None
        and fmt != ""
        and claimed != fmt
        and not (claimed == "JPEG2000" and fmt.startswith("JPEG2000"))
        and not (claimed == "JPEG" and fmt == "MPO")  # a multi-picture JPEG is a JPEG
    )
    reason = f"extension says {claimed}, bytes say {fmt}" if mismatch else ""
    return ImageInfo(
        status=OK,
        reason=reason,
        format=fmt,
        width=w,
        height=h,
        mode=im.mode,
        frames=frames,
        extension_mismatch=mismatch,
    )


UPLOAD_FLOOR_PIXELS = 16_000_000
"""Any upload may have this many pixels (4000 x 4000), however small its file."""
UPLOAD_PIXELS_PER_BYTE = 64
"""Beyond the floor, an upload may have this many pixels per byte of its file. Photos carry
0.3 to 3 pixels per byte, flat screenshots up to about 100 at small sizes; a decompression bomb
(a 14.6 KB 1-bit PNG of 10,950 x 10,950) carries 8,000: refused from its header, never decoded."""
UPLOAD_MAX_PIXELS = 50_000_000
"""No upload has more (8000 x 6000 photos fit): one decode then costs at most ~350 MB."""


def upload_pixel_budget(nbytes: int) -> int:
    """The pixels an upload of ``nbytes`` may declare: what it may cost to decode is bounded by
    what it cost to send, so a small file can never ask for a gigabyte."""
    return min(UPLOAD_MAX_PIXELS, max(UPLOAD_FLOOR_PIXELS, nbytes * UPLOAD_PIXELS_PER_BYTE))


def header_size(data: bytes, *, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Width and height from the header only (nothing decoded); raises :class:`ImageError`,
    ``too-large`` beyond ``max_pixels``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        im = _open(data, max_pixels)
        try:
            return int(im.size[0]), int(im.size[1])
        finally:
            im.close()


def load_rgb(
    source: Source,
    *,
    max_side: int | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Image.Image:
    """Decode the first frame as an upright 8-bit RGB image. Raises :class:`ImageError`.

    ``max_side``: the caller needs no more than this many pixels on the longer side, so JPEGs
    are decoded in draft mode at the largest 1/2^k scale that still covers it (much faster), and
    the result is shrunk to fit. Without it, the full image is returned.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's warnings must never reach stderr
        return _load_rgb(_read_bytes(source), max_side, max_pixels)


def _load_rgb(data: bytes, max_side: int | None, max_pixels: int) -> Image.Image:
    im = _open(data, max_pixels)
    if max_side is not None and im.format in ("JPEG", "MPO"):
        w, h = im.size
        scale = max(w, h) / max_side
        if scale >= 2:
            # draft picks a scale whose result is at least the requested size
            im.draft("RGB", (max(1, int(w / scale)), max(1, int(h / scale))))
    _decode(im)
    # a broken EXIF block is not a broken image
    with contextlib.suppress(Exception):
        im = ImageOps.exif_transpose(im) or im
    im = to_rgb(im)
    if max_side is not None and max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=None)
    return im


def fit_view(source: Source, size: int, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The image at native resolution as far as a model of input side ``size`` can use it: the
    long side capped at ``2 * size`` (JPEG draft decoding; a huge photo shrinks, a 256 px face
    stays untouched) and the short side enlarged to ``size`` only when it is smaller. Training
    takes random ``size`` crops of it; prediction takes the central one (``crop="center"``)."""
    im = load_rgb(source, max_side=2 * size, max_pixels=max_pixels)
    w, h = im.size
    if min(w, h) < size:
        k = size / min(w, h)
        im = im.resize(
            (max(size, round(w * k)), max(size, round(h * k))), Image.Resampling.BILINEAR
        )
    return im


def load_array(
    source: Source,
    size: int | None = None,
    *,
    crop: str = "resize",
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Decode to a ``uint8`` array ``(H, W, 3)``: THE view every model gets of an image
    (``cleaner predict``, ``train``'s evaluation, ``serve``).

    ``size``: output side. ``crop="resize"`` resizes the whole image to ``size x size``;
    ``crop="center"`` takes the central ``size x size`` crop of :func:`fit_view`, which keeps
    the high-frequency evidence that generators leave; ``size=None`` returns the image as it is.
    """
    if size is None:
        return np.asarray(load_rgb(source, max_pixels=max_pixels), dtype=np.uint8)
    if crop == "resize":
        im = load_rgb(source, max_side=size * 2, max_pixels=max_pixels)
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    elif crop == "center":
        im = fit_view(source, size, max_pixels=max_pixels)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        im = im.crop((left, top, left + size, top + size))
    else:
        raise ValueError(f"crop must be 'resize' or 'center', not {crop!r}")
    return np.asarray(im, dtype=np.uint8)


def thumbnail(source: Source, max_side: int = 256, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """A small upright RGB copy for hashing, reports and previews (fast path)."""
    return load_rgb(source, max_side=max_side, max_pixels=max_pixels)


def pixel_digest(im: Image.Image) -> str:
    """sha256 of the decoded RGB pixels and size: the same picture saved with different bytes
    (another encoder, metadata stripped, PNG re-saved) gets the same digest."""
    import hashlib

    rgb = to_rgb(im)
    h = hashlib.sha256(f"{rgb.size[0]}x{rgb.size[1]}:".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()


def open_header(data: bytes, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open one file's header (format sniffing and the size guard apply; no pixel is decoded),
    for stages that read only metadata (``cleaner audit``). Raises :class:`ImageError`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _open(data, max_pixels)
