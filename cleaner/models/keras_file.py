"""A saved Keras model read from disk, with one clear line when it cannot be: the one loader of
``.keras`` files (a trained detector, :mod:`cleaner.models.saved`; a ``--weights`` file,
:mod:`cleaner.models.keras_apps`). Below both, so neither imports the other."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cleaner.dataset import check_input
from cleaner.errors import CleanerError


def check_model(path: str | os.PathLike[str]) -> Path:
    """``--model``: a readable regular file (:func:`cleaner.dataset.check_input`), checked
    before TensorFlow loads."""
    return check_input(path, "model", "pass --model with a .keras file")


def load_model(path: str | os.PathLike[str]) -> Any:
    """A saved Keras model; one clear line when it is missing or not a model."""
    p = check_model(path)
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
