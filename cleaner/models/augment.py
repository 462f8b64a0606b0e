"""Robust training views: the blur, JPEG re-encoding and rescaling images meet on their travels.

Wang et al. (CVPR 2020, "CNN-generated images are surprisingly easy to spot... for now")
trained with Gaussian blur (sigma uniform in 0..3) and JPEG re-encoding (quality uniform in
30..100), each with probability 0.5 (or 0.1), and kept a high average precision on generators
never seen. ``cleaner train --augment robust`` does the same on the decoded pixels, plus a random
rescale *before* the crop (a photo shared at another size), in this order: rescale, blur, JPEG.

Two uses:

- fine-tuning (``--epochs N``): each training crop is drawn from a robust view of its image
  (:func:`robust_array`, seeded by (seed, epoch, image) as the crops are);
- a head on frozen features (``--epochs 0``): K robust views of every training image are
  embedded once, beside the clean view, and cached under their own key (the view seed is part
  of it, :func:`view_name`), so a second run reads them; the head trains on clean + K views.

The probabilities and K the defaults use, and what they were measured worth: bench/README.md.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from cleaner.choices import Augment
from cleaner.errors import CleanerError
from cleaner.models.launder import jpeg

VIEW_PREFIX = "robust"


SIGMA = (0.0, 3.0)
"""Gaussian blur sigma, uniform (Wang et al.)."""
QUALITY = (30, 100)
"""JPEG quality, uniform (Wang et al.)."""
SCALE = (0.5, 1.5)
"""Rescale factor, log-uniform."""
RANGES = "v1"
"""Changes whenever the ranges above do: part of every view's name, hence of its cache key."""


@dataclass(frozen=True)
class Robust:
    """What a robust view draws: each step happens with its probability."""

    blur_p: float = 0.5
    jpeg_p: float = 0.5
    rescale_p: float = 0.5

    @property
    def key(self) -> str:
        """Everything that changes the pixels, for cache keys and metrics."""
        return f"{RANGES},blur={self.blur_p:g},jpeg={self.jpeg_p:g},rescale={self.rescale_p:g}"

    @classmethod
    def from_key(cls, key: str) -> Robust:
        parts = dict(kv.split("=") for kv in key.split(",")[1:])
        return cls(float(parts["blur"]), float(parts["jpeg"]), float(parts["rescale"]))

    def info(self) -> dict[str, object]:
        return {
            "blur_p": self.blur_p, "sigma": list(SIGMA),
            "jpeg_p": self.jpeg_p, "quality": list(QUALITY),
            "rescale_p": self.rescale_p, "scale": list(SCALE),
        }  # fmt: skip


DEFAULT = Robust()

HEAD_VIEWS = 2
"""K: robust views per training image for a head on frozen features (beside the clean one)."""


HEAD_ROBUST = (Augment.ROBUST, Augment.AUTO)
"""The modes whose head on frozen features trains on robust views too."""


def robust_image(im: Image.Image, rng: np.random.Generator, p: Robust = DEFAULT) -> Image.Image:
    """One robust view of an RGB image: rescaled, blurred, JPEG re-encoded, each with its
    probability (three draws of ``rng`` always made, so the steps' draws do not shift)."""
    do_scale, do_blur, do_jpeg = rng.random(3) < (p.rescale_p, p.blur_p, p.jpeg_p)
    factor = float(np.exp(rng.uniform(np.log(SCALE[0]), np.log(SCALE[1]))))
    sigma = float(rng.uniform(*SIGMA))
    quality = int(rng.integers(QUALITY[0], QUALITY[1] + 1))
    if do_scale:
        w, h = im.size
        im = im.resize(
            (max(8, round(w * factor)), max(8, round(h * factor))), Image.Resampling.BILINEAR
        )
    if do_blur and sigma > 0:
        im = im.filter(ImageFilter.GaussianBlur(radius=sigma))
    if do_jpeg:
        return jpeg(im, quality)
    return im.convert("RGB")


def robust_array(arr: np.ndarray, rng: np.random.Generator, p: Robust = DEFAULT) -> np.ndarray:
    """:func:`robust_image` on a ``uint8`` array (fine-tuning's decoded training image)."""
    return np.asarray(robust_image(Image.fromarray(arr), rng, p), dtype=np.uint8)


def crop_view(arr: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Fine-tuning's training view (``crops``): random crop, horizontal flip, small rotation,
    brightness/contrast; float32 0..255.

    No down-scaling: the crop keeps native pixels; the rotation (a quarter of the time, at most
    8 degrees) is the one resampling step."""
    h, w = arr.shape[:2]
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    x = arr[top : top + size, left : left + size]
    if rng.random() < 0.5:
        x = x[:, ::-1]
    if rng.random() < 0.25:
        angle = float(rng.uniform(-8, 8))
        x = np.asarray(
            Image.fromarray(np.ascontiguousarray(x)).rotate(
                angle, Image.Resampling.BILINEAR, fillcolor=None
            )
        )
    xf = x.astype(np.float32)
    contrast = float(rng.uniform(0.85, 1.15))
    brightness = float(rng.uniform(-20, 20))
    mean = xf.mean()
    xf = (xf - mean) * contrast + mean + brightness
    return np.clip(xf, 0.0, 255.0)


def view_name(index: int, p: Robust = DEFAULT) -> str:
    """The name of robust view ``index`` (its seed), part of the embedding cache key."""
    return f"{VIEW_PREFIX}:{p.key}:{index}"


def parse_view(view: str) -> Robust | None:
    """The parameters of a robust view's name, or None when it is not one."""
    head, _, rest = view.partition(":")
    if head != VIEW_PREFIX:
        return None
    return Robust.from_key(rest.rpartition(":")[0])


def view_seed(view: str, data: bytes) -> np.random.Generator:
    """The generator of one image's view: seeded by the view's name and the image's bytes,
    so a view is the same on every run and in every process."""
    return np.random.default_rng([zlib.crc32(view.encode()), zlib.crc32(data), len(data)])


def mode(value: str | bool) -> Augment:
    """The augmentation a config names: an :class:`Augment` value, or the old yes/no (True is
    ``crops``, what ``--augment`` meant before ``robust``; False ``none``)."""
    if isinstance(value, bool):
        return Augment.CROPS if value else Augment.NONE
    try:
        return Augment(value)
    except ValueError:
        choices = ", ".join(a.value for a in Augment)
        raise CleanerError(f"--augment {value!r} is not one of {choices}") from None


def from_flags(augment: Augment, no_augment: bool) -> Augment:
    """``train --augment MODE`` and ``--no-augment`` as one mode; both given with a mode other
    than ``none`` (or the default ``auto``) contradict each other and are refused."""
    if not no_augment:
        return augment
    if augment not in (Augment.AUTO, Augment.NONE):
        raise CleanerError(
            f"--no-augment and --augment {augment.value} contradict each other: give one "
            "(--no-augment is --augment none)"
        )
    return Augment.NONE


def record(value: str | bool, p: Robust = DEFAULT) -> dict[str, object]:
    """What the metrics file says of the augmentation."""
    m = mode(value)
    return {"mode": m.value, **({"robust": p.info()} if m in HEAD_ROBUST else {})}
