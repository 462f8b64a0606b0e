"""A trained detector on disk (``M.keras`` from ``cleaner train``): the one loader used by
``cleaner predict --model``, ``cleaner predict-dir`` and ``cleaner serve``.

A cleaner detector takes raw 0..255 RGB ``(S, S, 3)`` and outputs prob_fake (one sigmoid unit,
or two softmax units real/fake). It is shown images as it was evaluated: the crop policy named
in ``M.metrics.json`` (``center`` when none is named, as ``cleaner train`` evaluates), at its
own input side. Knowing this in one place keeps the three front ends from drifting apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cleaner.errors import CleanerError
from cleaner.state import metrics as metrics_file

DEFAULT_SIDE = 224
"""Input side of a model whose input shape does not fix one (and no --image-size was given)."""


def load_model(path: str | os.PathLike[str]) -> Any:
    """A saved Keras model; one clear line when it is missing or not a model."""
    p = Path(path)
    if not p.is_file():
        raise CleanerError(f"model {p} does not exist; pass --model with a .keras file")
    import keras

    from cleaner.models import texture
    from cleaner.models.devices import share_gpus

    share_gpus()
    texture.register()  # the custom layer of efficientnet-lite0-gram models
    try:
        return keras.models.load_model(p, compile=False)
    except Exception as e:
        msg = " ".join(str(e).split())[:200]
        raise CleanerError(
            f"cannot load model {p} ({msg}); pass a .keras file written by cleaner train"
        ) from e


def model_input(model: Any, image_size: int | None) -> int:
    """The model's input side (its own when fixed, else ``image_size`` or 224)."""
    shape = model.input_shape
    if isinstance(shape, list):
        raise CleanerError("the model has several inputs; cleaner models take one image")
    if len(shape) != 4 or shape[-1] != 3:
        raise CleanerError(f"the model takes {shape}, not (None, S, S, 3) RGB images")
    side = shape[1]
    if side is None:
        return image_size or DEFAULT_SIDE
    if image_size and image_size != side:
        raise CleanerError(f"--image-size {image_size} but the model takes {side} px; drop it")
    return int(side)


def model_crop(model_path: Path, crop: str | None = None) -> str:
    """The crop policy the model was evaluated with: ``crop`` when given, else
    ``M.metrics.json``'s, else ``center`` (what ``cleaner train`` uses)."""
    if crop:
        return crop
    c = metrics_file.read_lenient(model_path).crop
    return c if c in ("center", "resize") else "center"


def model_backbone(model_path: Path) -> str:
    """The backbone named in ``M.metrics.json``; ``unknown`` without one."""
    return metrics_file.read_lenient(model_path).backbone or "unknown"


@dataclass(frozen=True)
class SavedDetector:
    """A loaded detector with the view it expects: ``size`` px, ``crop`` policy."""

    path: Path
    model: Any
    size: int
    crop: str

    @property
    def backbone(self) -> str:
        return model_backbone(self.path)

    def prob_fake(self, outputs: np.ndarray) -> np.ndarray:
        """prob_fake from the model's outputs: one sigmoid unit, or two softmax units."""
        out = np.asarray(outputs)
        if out.ndim == 2 and out.shape[1] in (1, 2):
            return np.asarray(out[:, -1])
        raise CleanerError(
            f"model {self.path} outputs {out.shape[1:]} values per image; expected 1 "
            "(prob_fake) or 2 (real, fake)"
        )


def load_detector(
    path: str | os.PathLike[str], *, image_size: int | None = None, crop: str | None = None
) -> SavedDetector:
    """The detector at ``path`` with its input side and crop policy (see the module doc)."""
    from cleaner.models.inputs import check_crop

    p = Path(path)
    model = load_model(p)
    size = model_input(model, image_size)
    return SavedDetector(path=p, model=model, size=size, crop=check_crop(model_crop(p, crop)))
