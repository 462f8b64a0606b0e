"""A trained detector on disk (``M.keras`` from ``cleaner train``): the one loader used by
``cleaner predict --model``, ``cleaner predict-dir`` and ``cleaner serve``.

A cleaner detector takes raw 0..255 RGB ``(S, S, 3)`` and outputs prob_fake (one sigmoid unit,
or two softmax units real/fake). It is shown images as it was evaluated: the crop policy named
in ``M.metrics.json`` (``center`` when none is named, as ``cleaner train`` evaluates), at its
own input side. Knowing this in one place keeps the three front ends from drifting apart.

A classifier that is a frozen registered backbone + a head (``cleaner train --epochs 0``: the
backbone's weights untouched, as their digest shows) runs its backbone on the fast CPU runtime
when :func:`cleaner.models.runtime.resolve` picks it (``auto`` on a machine without a GPU,
``--runtime fast``): the backbone's converted file, shared with ``cleaner predict --backbone``,
gives the features, and the saved head's own Keras layers (region mean, standardisation,
dropout, the sigmoid unit) turn them into prob_fake (:class:`FrozenHead`). Any other model
(fine-tuned, trained from scratch, a backbone without a fast path, not float32, not from
``cleaner train``) runs on Keras, with one line saying why when ``--runtime fast`` was asked.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cleaner.errors import CleanerError
from cleaner.models import runtime as RT
from cleaner.models.keras_file import load_model
from cleaner.state import metrics as metrics_file

log = logging.getLogger("cleaner")

DEFAULT_SIDE = 224
"""Input side of a model whose input shape does not fix one (and no --image-size was given)."""


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


HEAD_LAYERS = ("Reshape", "GlobalAveragePooling1D", "Normalization", "Dropout", "Dense")
"""The layers a frozen-feature head may have after its backbone (what ``cleaner train``'s
classifier puts there): one input each, so the head is a chain the fast path can run."""


class FrozenHead:
    """A saved frozen-backbone classifier on the fast runtime: the registered backbone's
    converted features (:class:`cleaner.models.runtime.FastModel`), then the saved head's own
    Keras layers, in inference mode. ``predict_on_batch`` as a Keras model's."""

    def __init__(self, features: RT.FastModel, head: list[Any], input_shape: tuple) -> None:
        self.features = features
        self.head = head
        self.input_shape = input_shape

    def predict_on_batch(self, images: np.ndarray) -> np.ndarray:
        import keras

        x: Any = self.features.predict_on_batch(images)
        for layer in self.head:
            x = layer(x, training=False)
        return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float32)

    def __call__(self, images: np.ndarray, training: bool = False) -> np.ndarray:
        return self.predict_on_batch(images)


def _frozen_parts(model: Any) -> tuple[Any, list[Any]] | str:
    """``(backbone, head layers)`` of a classifier shaped as ``cleaner train`` makes one (an
    input, one nested network, a chain of :data:`HEAD_LAYERS`), or why it is not one."""
    import keras

    layers = list(model.layers)
    nets = [ly for ly in layers if isinstance(ly, keras.Model)]
    if len(nets) != 1 or len(layers) < 3 or layers[1] is not nets[0]:
        return "it is not one backbone + a head"
    head = layers[2:]
    if any(type(ly).__name__ not in HEAD_LAYERS for ly in head):
        return "its head is not a chain of " + ", ".join(HEAD_LAYERS)
    backbone = nets[0]
    if any(ly.dtype_policy.compute_dtype != "float32" for ly in backbone.layers):
        return "its backbone does not compute in float32"
    return backbone, head


def fast_head(path: Path, model: Any) -> FrozenHead | str:
    """The classifier ``model`` (loaded from ``path``) on the fast runtime, or why not: its
    backbone must be a registered one with a fast path (``M.metrics.json``'s ``backbone``),
    with the weights it names, untouched (:func:`cleaner.models.runtime.weights_digest`)."""
    from cleaner.models.backbones import BACKBONES

    meta = metrics_file.read_lenient(path)
    bb = BACKBONES.get(meta.backbone or "")
    if bb is None or not bb.fast:
        return f"its backbone ({meta.backbone or 'unknown'}) has no fast path"
    parts = _frozen_parts(model)
    if isinstance(parts, str):
        return parts
    backbone, head = parts
    weights, size = str(meta.extra.get("weights", bb.default_weights)), model_input(model, None)
    try:
        if RT.weights_digest(backbone) != RT.reference_digest(bb, weights, size):
            return f"its backbone is not {bb.name} with {weights} weights (fine-tuned?)"
        fast = RT.load(bb, weights, size, RT.Runtime.FAST)
    except (CleanerError, OSError) as e:
        return " ".join(str(e).split())
    if not isinstance(fast, RT.FastModel):
        return f"{bb.name} did not convert"
    return FrozenHead(fast, head, tuple(model.input_shape))


def load_runner(path: str | os.PathLike[str], runtime: RT.Runtime | None = None) -> Any:
    """What runs the classifier at ``path``: a :class:`FrozenHead` where the fast runtime
    applies (see the module doc), else the Keras model. ``runtime``: as
    :func:`cleaner.models.runtime.resolve` takes it (picklable: the Ray engine's actors call
    this with the driver's choice)."""
    p = Path(path)
    model = load_model(p)
    return _runner(p, model, runtime)


def _runner(path: Path, model: Any, runtime: RT.Runtime | None) -> Any:
    if RT.resolve(runtime) is not RT.Runtime.FAST:
        return model
    fast = fast_head(path, model)
    if isinstance(fast, FrozenHead):
        return fast
    asked = RT.requested() if runtime is None else runtime
    say = log.warning if asked is RT.Runtime.FAST else log.debug
    say("model %s runs on Keras: %s", path.name, fast)
    return model


@dataclass(frozen=True)
class SavedDetector:
    """A loaded detector with the view it expects: ``size`` px, ``crop`` policy. ``model``
    runs it (``predict_on_batch``): the Keras model, or a :class:`FrozenHead` on the fast
    runtime; ``factory`` loads the same on a Ray actor."""

    path: Path
    model: Any
    size: int
    crop: str
    factory: Callable[[], Any]

    @property
    def backbone(self) -> str:
        return model_backbone(self.path)

    @property
    def fast(self) -> bool:
        """Whether it runs on the fast runtime."""
        return isinstance(self.model, FrozenHead)

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
    path: str | os.PathLike[str],
    *,
    image_size: int | None = None,
    crop: str | None = None,
    runtime: RT.Runtime | None = None,
) -> SavedDetector:
    """The detector at ``path`` with its input side and crop policy (see the module doc), on
    the runtime ``runtime`` resolves to (None: ``--runtime``'s, else the environment's)."""
    from cleaner.models.inputs import check_crop

    p = Path(path)
    model = load_model(p)
    size = model_input(model, image_size)
    chosen = RT.requested() if runtime is None else runtime
    return SavedDetector(
        path=p,
        model=_runner(p, model, runtime),
        size=size,
        crop=check_crop(model_crop(p, crop)),
        factory=functools.partial(load_runner, p, chosen),
    )
