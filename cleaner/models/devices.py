"""The GPU, when there is one: TensorFlow places every model on a visible GPU by itself, so
``predict``, ``predict-dir``, ``train`` and ``serve`` use it with no flag. This module makes the
GPU shareable and says when one is present that TensorFlow cannot use.

TensorFlow reserves all of a GPU's memory in the first process that touches it; with memory
growth on, the driver of a Ray run (which loads a saved model to read its input size) and the
actor that runs it can share one GPU. Inference stays float32 everywhere (features computed on
a GPU and on a CPU share one cache, so they must agree); ``cleaner train --precision auto``
trains in mixed float16 on a GPU (:func:`resolve_precision`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os

from cleaner.errors import CleanerError

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
"""``cleaner train --precision``: ``auto`` or a Keras dtype policy."""

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


def cpu_has_amx() -> bool:
    """True when the CPU advertises AMX tiles for bfloat16 (Intel Sapphire Rapids and later)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return "amx_bf16" in f.read()
    except OSError:
        return False


def check_precision(name: str) -> str:
    """``--precision`` as given, or the one-line error naming the choices."""
    if name not in PRECISIONS:
        raise CleanerError(f"--precision {name!r} is not one of {', '.join(PRECISIONS)}")
    return name


def resolve_precision(name: str) -> str:
    """The Keras dtype policy for ``--precision``: ``auto`` = mixed_float16 on a GPU, float32
    on every CPU. bfloat16 measured slower on both CPUs tried (bench/README "Mixed precision"):
    0.43x float32 without AMX (AMD EPYC), 0.61x fine-tuning and 0.70x inference with AMX
    (Intel Xeon: oneDNN runs the convolutions on AMX tiles, the depthwise ones cannot use
    them, and the casts cost more than the tiles save on 2 cores). ``mixed_bfloat16`` stays
    available for a CPU where it measures faster (``cpu_has_amx`` tells whether it could)."""
    if check_precision(name) != "auto":
        return name
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "float32"
