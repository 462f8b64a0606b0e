"""Tiny generated real/fake datasets for the training and pipeline tests.

"Fake" images carry a faint periodic high-frequency pattern (the kind of trace generators
leave); "real" ones are smooth noise. Both are random, so a model has to learn the pattern.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_image(rng: np.random.Generator, size: int, fake: bool) -> Image.Image:
    """One smooth random picture; fakes get a checkerboard of amplitude 12 on top."""
    coarse = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
    base = np.asarray(
        Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32
    )
    base += rng.normal(0, 3, base.shape)
    if fake:
        yy, xx = np.mgrid[0:size, 0:size]
        base += (((yy + xx) % 2) * 2 - 1)[..., None] * 12.0
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def make_dataset(
    root: Path,
    n_per_class: int = 24,
    *,
    size: int = 40,
    seed: int = 0,
    exact_copies: int = 0,
) -> Path:
    """ROOT with ``real_images/`` and ``fake_images/`` of PNGs (lossless: the pattern survives).

    ``exact_copies``: that many real images get a byte-identical copy (same group)."""
    rng = np.random.default_rng(seed)
    for label in ("real", "fake"):
        d = root / f"{label}_images"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            make_image(rng, size, label == "fake").save(d / f"{label}_{i:03d}.png")
    for i in range(exact_copies):
        src = root / "real_images" / f"real_{i:03d}.png"
        (root / "real_images" / f"copy_{i:03d}.png").write_bytes(src.read_bytes())
    return root
