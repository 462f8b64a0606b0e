"""The model behind ``cleaner serve``'s upload form, loaded on the first upload (not at start-up,
so the review queue opens at once and ``cleaner serve --help`` never imports TensorFlow).

A cleaner model (``cleaner train``) takes raw 0..255 RGB ``(S, S, 3)`` and outputs prob_fake
(one sigmoid unit, or two softmax units real/fake). The upload is shown to it as the model was
evaluated: the crop policy named in ``M.metrics.json`` (``center`` by default, as ``cleaner
train`` and ``cleaner predict`` do), at the model's own input size.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cleaner.errors import CleanerError
from cleaner.images import load_array
from cleaner.models import metrics_path

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
    """prob_fake from a saved ``.keras`` model, loaded lazily and once (thread-safe)."""

    def __init__(self, model_path: str | Path) -> None:
        self.path = Path(model_path)
        self._model: Any = None
        self._size = 224
        self._crop = "center"
        self._lock = threading.Lock()

    def _metrics_crop(self) -> str:
        metrics = metrics_path(self.path)
        try:
            doc = json.loads(metrics.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return "center"
        c = doc.get("crop") if isinstance(doc, dict) else None
        return str(c) if c in ("center", "resize") else "center"

    def load(self) -> Any:
        """The model (loaded on first use). Raises :class:`CleanerError` with one line."""
        with self._lock:
            if self._model is not None:
                return self._model
            from cleaner.models.predict import load_model  # lazily: loads TensorFlow

            model = load_model(self.path)
            shape = model.input_shape
            if isinstance(shape, list) or len(shape) != 4 or shape[-1] != 3:
                raise CleanerError(f"model {self.path} takes {shape}, not (None, S, S, 3) RGB")
            self._size = int(shape[1] or 224)
            self._crop = self._metrics_crop()
            self._model = model
            return model

    def __call__(self, im: Image.Image) -> float:
        """prob_fake of a decoded image (re-encoded losslessly: prefer :meth:`predict_bytes`)."""
        buf = io.BytesIO()
        im.save(buf, "PNG")
        return self.predict_bytes(buf.getvalue())

    def predict_bytes(self, data: bytes) -> float:
        """prob_fake of an uploaded file, loaded as the model's evaluation loaded images."""
        model = self.load()
        x = model_view(data, self._size, self._crop).astype(np.float32)[None]
        with self._lock:
            out = np.asarray(model(x, training=False))
        if out.ndim != 2 or out.shape[1] not in (1, 2):
            raise CleanerError(f"model {self.path} outputs {out.shape}; expected 1 or 2 values")
        p = float(out[0, -1])
        return min(1.0, max(0.0, p))
