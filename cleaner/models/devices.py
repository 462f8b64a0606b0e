"""The GPU, when there is one: TensorFlow places every model on a visible GPU by itself, so
``predict``, ``predict-dir``, ``train`` and ``serve`` use it with no flag. This module makes the
GPU shareable and says when one is present that TensorFlow cannot use.

TensorFlow reserves all of a GPU's memory in the first process that touches it; with memory
growth on, the driver of a Ray run (which loads a saved model to read its input size) and the
actor that runs it can share one GPU. Inference stays float32 everywhere (features computed on
a GPU and on a CPU share one cache, so they must agree); ``cleaner train --precision auto``
trains in mixed float16 on a GPU (:func:`cleaner.models.train.resolve_precision`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os

log = logging.getLogger("cleaner")


@functools.cache
def share_gpus() -> int:
    """Turn on memory growth for every visible GPU (once per process, before any model is
    built); the number of GPUs TensorFlow sees. Warns once when the machine has an NVIDIA
    device but TensorFlow sees none (the CPU-only build is installed: ``make install-gpu``)."""
    import tensorflow as tf

    found = tf.config.list_physical_devices("GPU")
    for gpu in found:
        with contextlib.suppress(RuntimeError):  # already initialised by the caller's own code
            tf.config.experimental.set_memory_growth(gpu, True)
    if not found and os.path.exists("/dev/nvidia0"):
        log.warning(
            "an NVIDIA GPU is present but this TensorFlow cannot use it (the CPU build is "
            "installed); for the GPU: make install-gpu (docs/scaling.md)"
        )
    return len(found)
