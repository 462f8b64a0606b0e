"""Composite fakes beside their sources, cross-class copies and same-class copies, with known
truth: the data of the pair tests and of ``bench/bench_pairs.py``.

A composite is a source picture with one face-part-sized box (eyes, nose or mouth, at the place
an aligned face has it) pasted from another picture with a feathered edge, saved as JPEG: the
way Photoshop composites, face swaps and inpainted fakes are made from a real photo.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

REGIONS: dict[str, tuple[float, float, float, float]] = {
    "eyes": (0.27, 0.37, 0.73, 0.55),
    "nose": (0.40, 0.47, 0.60, 0.66),
    "mouth": (0.34, 0.64, 0.66, 0.82),
}
"""Boxes (x0, y0, x1, y1, fractions of the side) of an FFHQ-aligned face's parts."""
REAL, FAKE = "real_images", "fake_images"


@dataclass
class Truth:
    pairs: list[tuple[str, str]] = field(default_factory=list)
    """(real source, fake composite)."""
    conflicts: list[tuple[str, str]] = field(default_factory=list)
    """(real, fake) holding the same picture (byte copy or re-encoding)."""
    same: list[tuple[str, str]] = field(default_factory=list)
    """(original, copy) in one class."""
    boxes: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    """Composite path -> the pasted box in its pixels."""


def composite(
    src: Image.Image, donor: Image.Image, region: str, rng: np.random.Generator
) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """``src`` with ``region`` pasted from ``donor`` (resized to ``src``'s size), the box's
    position jittered by 3 %, its colour matched to the source's in the box (mean and spread per
    channel) and its edge feathered over 4 % of the side."""
    w, h = src.size
    donor = donor.convert("RGB").resize((w, h), Image.Resampling.LANCZOS)
    x0, y0, x1, y1 = REGIONS[region]
    dx, dy = rng.uniform(-0.03, 0.03, 2)
    box = (
        round((x0 + dx) * w),
        round((y0 + dy) * h),
        round((x1 + dx) * w),
        round((y1 + dy) * h),
    )
    # the donor's part matched to the source's colour in the box (as a retoucher would)
    a = np.asarray(src.convert("RGB"), np.float32)
    d = np.asarray(donor, np.float32)
    sa, sd = a[box[1] : box[3], box[0] : box[2]], d[box[1] : box[3], box[0] : box[2]]
    d = (d - sd.mean((0, 1))) / (sd.std((0, 1)) + 1e-3) * sa.std((0, 1)) + sa.mean((0, 1))
    donor = Image.fromarray(d.clip(0, 255).astype(np.uint8), "RGB")
    mask = Image.new("L", (w, h), 0)
    mask.paste(255, box)
    mask = mask.filter(ImageFilter.GaussianBlur(0.04 * w / 2))
    return Image.composite(donor, src.convert("RGB"), mask), box


def jpeg_bytes(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _save(root: Path, rel: str, data: bytes) -> str:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return rel


def build(
    root: Path,
    pictures: Sequence[Callable[[], Image.Image]],
    *,
    composites: int,
    byte_copies: int,
    reencoded: int,
    same_class: int,
    quality: int = 90,
    side: int | None = None,
    seed: int = 0,
    extra: Sequence[Callable[[], Image.Image]] = (),
    regions: Sequence[str] = tuple(REGIONS),
) -> Truth:
    """Write the set under ``root`` (``real_images/``, ``fake_images/``) from ``pictures``
    (loaders of distinct source pictures; each used once, donors drawn among the rest): every
    composite beside its source, ``byte_copies`` and ``reencoded`` (JPEG 60) copies each in the
    other class than their original (alternating), ``same_class`` copies beside their original.
    ``quality``: the composites' JPEG quality; ``side``: the composites resized to it (degraded
    variants). ``extra``: distinct pictures added alone, alternating classes (never donors).
    Same-class copies alternate two byte copies, two JPEG 60. ``regions``: the parts pasted, in
    turn. Needs ``composites + byte_copies + reencoded + same_class + 1`` pictures."""
    need = composites + byte_copies + reencoded + same_class
    if len(pictures) <= need:
        raise ValueError(f"need more than {need} pictures, got {len(pictures)}")
    rng = np.random.default_rng(seed)
    filler = len(extra)
    truth = Truth()
    k = 0
    for i in range(composites):
        src = pictures[k]()
        donor = pictures[int(rng.integers(need, len(pictures)))]()
        region = regions[i % len(regions)]
        fake, box = composite(src, donor, region, rng)
        if side is not None:
            s = side / fake.size[0]
            fake = fake.resize((side, side), Image.Resampling.LANCZOS)
            box = (round(box[0] * s), round(box[1] * s), round(box[2] * s), round(box[3] * s))
        r = _save(root, f"{REAL}/src{k:04d}.jpg", jpeg_bytes(src, 95))
        f = _save(root, f"{FAKE}/comp{k:04d}_{region}.jpg", jpeg_bytes(fake, quality))
        truth.pairs.append((r, f))
        truth.boxes[f] = box
        k += 1
    for i in range(byte_copies + reencoded):
        src = pictures[k]()
        home, other = (REAL, FAKE) if i % 2 == 0 else (FAKE, REAL)
        data = jpeg_bytes(src, 95)
        a = _save(root, f"{home}/orig{k:04d}.jpg", data)
        copy = data if i < byte_copies else jpeg_bytes(src, 60)
        b = _save(root, f"{other}/copy{k:04d}.jpg", copy)
        truth.conflicts.append((a, b) if home == REAL else (b, a))
        k += 1
    for i in range(same_class):
        home = REAL if i % 2 == 0 else FAKE
        src = pictures[k]()
        a = _save(root, f"{home}/same{k:04d}.jpg", jpeg_bytes(src, 95))
        b = f"{home}/same{k:04d}_copy.jpg"
        if i % 4 < 2:
            shutil.copy(root / a, root / b)
        else:
            _save(root, b, jpeg_bytes(src, 60))
        truth.same.append((a, b))
        k += 1
    for i in range(filler):
        home = REAL if i % 2 == 0 else FAKE
        _save(root, f"{home}/other{i:04d}.jpg", jpeg_bytes(extra[i](), 95))
    return truth
