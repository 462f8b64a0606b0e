"""The model behind ``cleaner serve``'s upload form, loaded on the first upload (not at start-up,
so the review queue opens at once and ``cleaner serve --help`` never imports TensorFlow).

A cleaner model (``cleaner train``) takes raw 0..255 RGB ``(S, S, 3)`` and outputs prob_fake
(one sigmoid unit, or two softmax units real/fake). The upload is shown to it as the model was
evaluated: the crop policy named in ``M.metrics.json`` (``center`` by default, as ``cleaner
train`` and ``cleaner predict`` do), at the model's own input size.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from cleaner.images import load_array

if TYPE_CHECKING:
    from cleaner.models.saved import SavedDetector

Predictor = Callable[[Image.Image], float]
"""An upright RGB image -> prob_fake in [0, 1]."""


def model_view(data: bytes, size: int, crop: str) -> np.ndarray:
    """``(S, S, 3) uint8`` from an image file's bytes, exactly as ``cleaner predict`` and
    ``cleaner train`` load an image (:func:`cleaner.models.inputs.load_one`): ``center`` is a
    central ``S x S`` crop at native resolution (decoded with the long side capped at ``2 S``,
    JPEG draft mode included; the short side enlarged to ``S`` when smaller); ``resize`` is the
    whole image resized. Raises :class:`cleaner.images.ImageError`."""
    return load_array(data, size, crop=crop)


class KerasPredictor:
    """prob_fake from a saved ``.keras`` detector (:mod:`cleaner.models.saved`), loaded lazily
    and once (thread-safe); a frozen backbone + head runs its backbone on the fast CPU runtime
    as ``predict-dir`` does (``cleaner serve --runtime``, :mod:`cleaner.models.runtime`)."""

    def __init__(self, model_path: str | Path) -> None:
        self.path = Path(model_path)
        self._detector: SavedDetector | None = None
        self._lock = threading.Lock()

    def load(self) -> SavedDetector:
        """The detector (loaded on first use). Raises :class:`CleanerError` with one line."""
        with self._lock:
            if self._detector is None:
                from cleaner.models.saved import load_detector  # lazily: loads TensorFlow

                self._detector = load_detector(self.path)
            return self._detector

    def __call__(self, im: Image.Image) -> float:
        """prob_fake of a decoded image (re-encoded losslessly: prefer :meth:`predict_bytes`)."""
        buf = io.BytesIO()
        im.save(buf, "PNG")
        return self.predict_bytes(buf.getvalue())

    def predict_bytes(self, data: bytes) -> float:
        """prob_fake of an uploaded file, loaded as the model's evaluation loaded images."""
        det = self.load()
        x = model_view(data, det.size, det.crop).astype(np.float32)[None]
        with self._lock:
            out = np.asarray(det.model(x, training=False))
        p = float(det.prob_fake(out)[0])
        return min(1.0, max(0.0, p))
