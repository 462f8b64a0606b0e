"""Generated pictures and their transformed copies, with known truth, for the dedupe tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

TRANSFORMS = ("half", "jpeg40", "bright", "crop5", "mirror")


def picture(seed: int, size: int = 96) -> Image.Image:
    """A distinct smooth picture: a random 5 x 5 colour grid, bicubic-upsampled, plus a disc."""
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)
    im = Image.fromarray(grid, "RGB").resize((size, size), Image.Resampling.BICUBIC)
    arr = np.asarray(im, dtype=np.float32)
    y, x = np.mgrid[0:size, 0:size]
    cx, cy = rng.uniform(0.25, 0.75, 2) * size
    r = rng.uniform(0.1, 0.2) * size
    disc = (x - cx) ** 2 + (y - cy) ** 2 < r * r
    arr[disc] = rng.integers(0, 256, 3)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def transformed(im: Image.Image, kind: str, seed: int = 0) -> tuple[Image.Image, int]:
    """A copy of ``im`` of the given kind, and the JPEG quality to save it with."""
    w, h = im.size
    if kind == "half":
        return im.resize((w // 2, h // 2), Image.Resampling.LANCZOS), 92
    if kind == "jpeg40":
        return im, 40
    if kind == "bright":
        return ImageEnhance.Brightness(im).enhance(1.3), 92
    if kind == "crop5":
        rng = np.random.default_rng(seed)
        cw, ch = round(w * 0.95), round(h * 0.95)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return im.crop((x, y, x + cw, y + ch)), 92
    if kind == "mirror":
        return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 92
    raise ValueError(kind)


def save_jpeg(im: Image.Image, path: Path, quality: int = 92) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format="JPEG", quality=quality)
    return path


def lookalike(im: Image.Image, seed: int, amp: float = 1.5, cells: int = 24) -> Image.Image:
    """``im`` with a faint fine texture of its own (``cells`` x ``cells`` random values,
    bicubic-upsampled, ``amp`` grey levels): two of these from different seeds are two distinct
    pictures alike in everything but detail, as StyleGAN look-alikes are (same pose, light and
    background)."""
    rng = np.random.default_rng(seed)
    g = rng.normal(0.0, 1.0, (cells, cells)).astype(np.float32)
    w, h = im.size
    n = np.asarray(Image.fromarray(g, "F").resize((w, h), Image.Resampling.BICUBIC))
    arr = np.asarray(im, dtype=np.float32) + amp * n[:, :, None]
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")
