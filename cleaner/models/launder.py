"""Laundering: the ways an image is re-encoded on its travels, to score a detector under them.

A detector that tells a generator's files from camera files may be reading the file, not the
picture (Grommelt et al. 2024, "Fake or JPEG?"); a photo re-compressed by a social network loses
the high-frequency traces a texture detector reads. ``cleaner train --launder`` scores the final
model on its test split as it is and under each :class:`cleaner.choices.Launder` condition
(:func:`launder_bytes`), applied to the decoded image at its own size, before the model's usual
evaluation view (the centre crop at native resolution):

- ``jpeg90``, ``jpeg75``, ``jpeg50``: re-encoded as JPEG at that quality (Pillow, 4:2:0);
- ``resize0.5``: resized to half its width and height (bilinear), saved losslessly;
- ``blur1``: Gaussian blur, sigma 1, saved losslessly;
- ``png-as-jpeg``: saved as a PNG, that PNG converted to JPEG at quality 95 (a "save as");
- ``chain``: resized to 0.5x, then JPEG 50 (a thumbnail of a heavily compressed upload; the
  shifted set the threshold calibration of ``predict-dir`` is measured on).

Every condition is deterministic, so its features can be cached like a view (its name is part
of the embedding cache key, :func:`view_name`).
"""

from __future__ import annotations

import io

from PIL import Image, ImageFilter

from cleaner.choices import Launder

VIEW_PREFIX = "launder"
VERSION = "v1"
"""Changes whenever a condition does: part of its view name, hence of its cache key."""

DESCRIBED = {
    Launder.JPEG90: "JPEG quality 90",
    Launder.JPEG75: "JPEG quality 75",
    Launder.JPEG50: "JPEG quality 50",
    Launder.HALF: "resized to 0.5x (bilinear)",
    Launder.BLUR1: "Gaussian blur sigma 1",
    Launder.PNG_AS_JPEG: "saved as PNG, then converted to JPEG quality 95",
    Launder.CHAIN: "resized to 0.5x, then JPEG 50",
}


def jpeg(im: Image.Image, quality: int) -> Image.Image:
    """``im`` saved as a JPEG of ``quality`` and decoded again (RGB): the one re-encoding that
    the laundering conditions and the robust training views share."""
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out.convert("RGB")


def _png(im: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out.convert("RGB")


def _scaled(im: Image.Image, k: float) -> Image.Image:
    w, h = im.size
    return im.resize((max(8, round(w * k)), max(8, round(h * k))), Image.Resampling.BILINEAR)


def launder_image(im: Image.Image, condition: Launder) -> Image.Image:
    """``im`` (RGB) as it comes out of ``condition``."""
    if condition is Launder.JPEG90:
        return jpeg(im, 90)
    if condition is Launder.JPEG75:
        return jpeg(im, 75)
    if condition is Launder.JPEG50:
        return jpeg(im, 50)
    if condition is Launder.HALF:
        return _scaled(im, 0.5)
    if condition is Launder.BLUR1:
        return im.filter(ImageFilter.GaussianBlur(radius=1.0))
    if condition is Launder.PNG_AS_JPEG:
        return jpeg(_png(im), 95)
    return jpeg(_scaled(im, 0.5), 50)  # chain


def view_name(condition: Launder) -> str:
    """The name of a condition as a view (part of the embedding cache key)."""
    return f"{VIEW_PREFIX}:{VERSION}:{condition.value}"


def parse_view(view: str) -> Launder | None:
    """The condition a view's name stands for, or None when it is not a laundering view."""
    head, _, rest = view.partition(":")
    return Launder(rest.partition(":")[2]) if head == VIEW_PREFIX else None
