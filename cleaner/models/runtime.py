"""Which runtime runs a frozen backbone's forward pass: Keras, or TensorFlow Lite with XNNPACK.

On a CPU the backbones' forward pass is most of ``cleaner predict``'s and ``cleaner train``'s
time. TensorFlow Lite's XNNPACK kernels run the same float32 network faster (bench/README.md
"Issue 29"): the Keras model is converted once per backbone, weights and input size, and the
converted flatbuffer is cached beside the Lite family's converted weights, under
``$CLEANER_CACHE`` (default ``~/.cache/cleaner``) in ``fastrt/``, in a file named by a hash of
the backbone, its weights' checksum, the input size and the TensorFlow version.

- ``auto`` (the default): the fast runtime on a machine where TensorFlow sees no GPU and the
  interpreter is importable; Keras otherwise (the GPU path is unchanged).
- ``fast``: the fast runtime (one warning line and Keras when no interpreter is importable).
- ``keras``: today's path.

Chosen by ``--runtime`` (:func:`configure`), else ``$CLEANER_RUNTIME``, else ``auto``. The
interpreter is ``ai_edge_litert``'s when that package is installed, else the one that ships in
TensorFlow (``tf.lite.Interpreter``): no new dependency. The converted model returns the same
features (the texture statistics included: the intermediate maps stay inside the graph)
within :data:`ATOL` + :data:`RTOL` x ``|keras|`` of Keras', so the embedding cache keys do not
name the runtime and features from either runtime share one cache.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import warnings
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cleaner.errors import CleanerError

if TYPE_CHECKING:
    from cleaner.models.backbones import Backbone

log = logging.getLogger("cleaner")

RUNTIME_ENV = "CLEANER_RUNTIME"

ATOL = 1e-3
RTOL = 1e-3
"""The tolerance fast features keep against Keras' (``|fast - keras| <= ATOL + RTOL |keras|``
elementwise, numpy's ``allclose``); measured on faces140k: bench/README.md "Issue 29"."""

CHUNK = 8
"""Images per interpreter call: a larger batch is run in pieces, so the interpreter's tensor
arena stays a few hundred MB at 384 px whatever batch the caller decodes."""


CONVERSION = "frozen-v2"
"""How :func:`convert` makes the flatbuffer: part of the converted file's name, so a change
of method never reuses an old file."""


class Runtime(StrEnum):
    """``--runtime``: how a frozen backbone runs (see the module docstring)."""

    AUTO = "auto"
    KERAS = "keras"
    FAST = "fast"


_chosen: Runtime | None = None
_warned = False


def configure(runtime: Runtime | str | None) -> None:
    """Set the runtime for this process (``--runtime``); None: the environment's."""
    global _chosen
    _chosen = None if runtime is None else parse(runtime)


def parse(name: Runtime | str) -> Runtime:
    """``name`` as a :class:`Runtime`; a :class:`CleanerError` naming the choices."""
    try:
        return Runtime(str(name).strip().lower())
    except ValueError:
        choices = ", ".join(r.value for r in Runtime)
        raise CleanerError(f"runtime must be one of {choices}, not {name!r}") from None


def requested() -> Runtime:
    """What was asked for: :func:`configure`'s choice, else ``$CLEANER_RUNTIME``, else auto."""
    if _chosen is not None:
        return _chosen
    env = os.environ.get(RUNTIME_ENV, "").strip()
    return parse(env) if env else Runtime.AUTO


def resolve(runtime: Runtime | None = None) -> Runtime:
    """The runtime that will run: ``keras`` or ``fast`` (``auto`` decided here, once)."""
    want = requested() if runtime is None else runtime
    if want is Runtime.KERAS:
        return Runtime.KERAS
    if want is Runtime.AUTO and _gpus():
        return Runtime.KERAS
    if interpreter_class() is None:
        global _warned
        if want is Runtime.FAST and not _warned:  # one line per process
            log.warning("no TensorFlow Lite interpreter is importable: running on Keras")
            _warned = True
        return Runtime.KERAS
    return Runtime.FAST


def _gpus() -> int:
    from cleaner.models.devices import share_gpus

    return share_gpus()


@functools.cache
def interpreter_class() -> Any:
    """The TensorFlow Lite interpreter class (LiteRT's, else TensorFlow's), or None."""
    with contextlib.suppress(ImportError):
        from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-not-found]

        return Interpreter
    try:
        import tensorflow as tf

        return tf.lite.Interpreter
    except (ImportError, AttributeError):
        return None


def threads() -> int:
    """Interpreter threads: the CPUs this process may run on."""
    from cleaner.engine import default_workers

    return default_workers()


# ---------------------------------------------------------------------------------------------
# conversion, once per backbone, weights and input size


def cache_dir() -> Path:
    """Where converted models live: ``<the Lite weights' cache>/fastrt``."""
    from cleaner.models.lite import cache_dir as weights_cache

    return weights_cache() / "fastrt"


def converted_path(backbone: Backbone, weights: str, image_size: int) -> Path:
    """The converted model's file: named by the backbone, its weights' checksum, the input
    size and the TensorFlow version that converted it."""
    import tensorflow as tf

    parts = (CONVERSION, backbone.name, backbone.weights_id(weights), str(image_size))
    text = "\n".join((*parts, tf.__version__))
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return cache_dir() / f"{backbone.name}-{digest}.tflite"


def convert(model: Any, image_size: int) -> bytes:
    """A Keras feature extractor (0..255 RGB in, ``(None, D)`` out) as a float32 TensorFlow
    Lite flatbuffer with a dynamic batch dimension.

    The traced forward pass is frozen first (its variables become constants): converting the
    unfrozen function with its Keras model, TensorFlow 2.21 gave NaN features for networks
    with freshly initialised weights (``--weights none``); the frozen graph converts the same
    for every network (tests/test_runtime.py)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    spec = [tf.TensorSpec((None, image_size, image_size, 3), tf.float32, name="image")]

    @tf.function(input_signature=spec)
    def forward(x: Any) -> Any:
        return model(x, training=False)

    frozen = convert_variables_to_constants_v2(forward.get_concrete_function())
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # "consider providing the trackable_obj": frozen on purpose
    try:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
        return bytes(converter.convert())
    finally:
        absl.setLevel(level)


def _write(path: Path, data: bytes) -> None:
    """``path`` written whole or not at all (a temporary file beside it, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def converted(backbone: Backbone, weights: str, image_size: int) -> Path:
    """The converted model's file, converting (and caching, atomically) on first use; the
    Keras weights' digest (:func:`weights_digest`) is kept beside it."""
    path = converted_path(backbone, weights, image_size)
    if path.is_file():
        return path
    model = backbone.build(weights, image_size)
    _write(digest_path(path), weights_digest(model).encode())
    _write(path, convert(model, image_size))
    return path


def digest_path(converted_file: Path) -> Path:
    """Where the digest of the converted network's Keras weights is kept: beside it."""
    return converted_file.with_suffix(".weights-sha256")


def weights_digest(model: Any) -> str:
    """sha256 of a Keras network's weights (every variable, moving statistics included, in
    the network's order, with their shapes): what tells a saved classifier's backbone
    (:mod:`cleaner.models.saved`) is the registered one, untouched by training."""
    h = hashlib.sha256()
    for w in model.weights:
        a = np.ascontiguousarray(np.asarray(w.numpy() if hasattr(w, "numpy") else w))
        h.update(f"{a.dtype}{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def reference_digest(backbone: Backbone, weights: str, image_size: int) -> str:
    """:func:`weights_digest` of the registered backbone with ``weights``: read from beside
    its converted file, else computed (building the network; no conversion) and kept."""
    backbone.check_weights(weights)
    side = digest_path(converted_path(backbone, weights, image_size))
    if side.is_file():
        return side.read_text(encoding="utf-8").strip()
    digest = weights_digest(backbone.build(weights, image_size))
    _write(side, digest.encode())
    return digest


class FastModel:
    """A converted backbone with the one method :func:`cleaner.models.inputs.predict_paths`
    calls, ``predict_on_batch``: ``(B, S, S, 3)`` float32 0..255 -> ``(B, D)`` float32."""

    def __init__(self, path: str | os.PathLike[str], num_threads: int | None = None) -> None:
        cls = interpreter_class()
        if cls is None:  # pragma: no cover - resolve() never picks FAST then
            raise CleanerError("no TensorFlow Lite interpreter is importable; use --runtime keras")
        with warnings.catch_warnings():  # tf.lite.Interpreter warns that LiteRT replaces it
            warnings.simplefilter("ignore")
            self._interp = cls(model_path=str(path), num_threads=num_threads or threads())
        self._input = self._interp.get_input_details()[0]["index"]
        self._output = self._interp.get_output_details()[0]["index"]
        self._batch = -1

    def _resize(self, n: int, shape: tuple[int, ...]) -> None:
        if n != self._batch:
            self._interp.resize_tensor_input(self._input, [n, *shape])
            self._interp.allocate_tensors()
            self._batch = n

    def predict_on_batch(self, images: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(images, dtype=np.float32)
        outs = []
        for at in range(0, len(x), CHUNK):
            piece = x[at : at + CHUNK]
            self._resize(len(piece), tuple(piece.shape[1:]))
            self._interp.set_tensor(self._input, piece)
            self._interp.invoke()  # releases the GIL: the next batch decodes meanwhile
            outs.append(np.array(self._interp.get_tensor(self._output), dtype=np.float32))
        return np.concatenate(outs) if outs else np.zeros((0, 1), np.float32)


def load(backbone: Backbone, weights: str, image_size: int, runtime: Runtime) -> Any:
    """The backbone's feature extractor on ``runtime`` (``keras`` or ``fast``: see
    :func:`resolve`): a Keras model, or a :class:`FastModel` of its converted file (only for
    a backbone with a fast path, :attr:`~cleaner.models.backbones.Backbone.fast`)."""
    if runtime is Runtime.FAST and backbone.fast:
        from cleaner.models.devices import share_gpus

        backbone.check_weights(weights)
        share_gpus()
        try:
            return FastModel(converted(backbone, weights, image_size))
        except (CleanerError, OSError):
            raise
        except Exception as e:  # a network the converter does not take: Keras, said once
            reason = " ".join(str(e).split())[:160]
            log.warning(
                "%s does not convert to TensorFlow Lite (%s): running on Keras",
                backbone.name,
                reason,
            )
    return backbone.build(weights, image_size)
