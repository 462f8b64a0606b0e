"""Images to model inputs: decoding through :mod:`cleaner.images`, in parallel, in batches.

Two front ends over one loader function (:func:`load_one`):

- :func:`numpy_batches`: decoding in a thread pool, in order, a few batches ahead, no
  TensorFlow: feeds ``spectrum`` and, through :func:`predict_paths`, every Keras model at
  inference (the next batch decodes while the model runs on this one).
- :func:`tf_dataset`: a ``tf.data`` pipeline (parallel decoding, batching, prefetch) for
  training (``--finetune``), where shuffling and augmentation are tf.data's strength.

Neither holds more than a few batches in memory, whatever the number of images. On the Ray
engine (``--engine ray``) :func:`predict_paths` given a ``factory`` runs on an actor pool
instead (:func:`cleaner.engine.map_with_model`): each actor builds the model once
(:func:`model_runner`) and decodes and predicts its own batches, on its GPU when it has one.
An image that does not decode gives a zero image and its status (``ok`` is False): reported,
never fatal.

Crop policy (``crop``):

- ``center`` (the default for every pretrained backbone and for ``spectrum``): a central
  ``S x S`` crop at the image's native resolution. Only a huge image is shrunk first (its long
  side to ``2 S``, so the crop still shows most of the picture) and only an image smaller than
  ``S`` is enlarged. Fake-image evidence lives in high frequencies (up-sampling traces,
  blending seams), and a resize is a low-pass filter that erases it; a 256 px face cropped to
  224 keeps 77% of its area and every pixel as it was. This is exactly the evaluation view of
  ``cleaner train`` (:func:`load_for_eval`), so ``cleaner predict --model``
  sees images as the model was tested on them.
- ``resize``: the whole image resized to ``S x S`` (bilinear; JPEG draft decoding first when the
  image is at least twice as large). The choice for tiny-input models (``simple-cnn`` at 32 px,
  whose training images are already 32 px) and for images much larger than ``S``, where a
  central crop would see only a small part of the picture.

The measured effect is in bench/README.md (bench_folds.py --crop).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from cleaner.engine import MODEL_CALL_BATCHES, Engine, current, default_workers, map_with_model
from cleaner.errors import CleanerError
from cleaner.images import ImageError, load_array

if TYPE_CHECKING:
    import tensorflow as tf


class CropPolicy(StrEnum):
    """How an image becomes the model's square input (see the module's docstring)."""

    CENTER = "center"
    RESIZE = "resize"


CROPS = tuple(c.value for c in CropPolicy)


class CropError(CleanerError, ValueError):
    """An unknown crop policy (from a model's metrics.json or a script): one line, exit 1."""


def check_crop(crop: str) -> str:
    """The crop policy, or a :class:`CropError` naming the choices."""
    if crop not in CROPS:
        raise CropError(f"crop must be one of {', '.join(CROPS)}, not {crop!r}")
    return str(crop)


def load_one(
    path: str | os.PathLike[str], size: int, crop: str, *, mirror: bool = False, view: str = ""
) -> tuple[np.ndarray, str]:
    """``(S, S, 3) uint8`` pixels (left-right mirrored if ``mirror``; of the image under
    ``view``, :mod:`cleaner.models.views`, when one is named) and ``""``; or zeros and the
    reason it failed."""
    try:
        if view:
            from cleaner.models.views import view_source

            source: str | os.PathLike[str] | bytes = view_source(path, view, size)
        else:
            source = path
        arr = load_array(source, size, crop=check_crop(crop))
        return (np.ascontiguousarray(arr[:, ::-1]) if mirror else arr), ""
    except ImageError as e:
        return np.zeros((size, size, 3), np.uint8), f"{e.status}: {e.reason}"
    except OSError as e:  # pragma: no cover - the file vanished between scan and predict
        return np.zeros((size, size, 3), np.uint8), f"unreadable: {e}"


@dataclass
class Batch:
    """One batch: positions in the input list, pixels, and a reason per failed image."""

    start: int
    images: np.ndarray
    errors: list[str]

    @property
    def ok(self) -> np.ndarray:
        return np.array([not e for e in self.errors], dtype=bool)


def numpy_batches(
    paths: Sequence[str | os.PathLike[str]],
    size: int,
    *,
    crop: str = "center",
    batch_size: int = 64,
    threads: int | None = None,
    mirror: bool = False,
    view: str = "",
) -> Iterator[Batch]:
    """Decoded batches in input order, a few in flight at a time (no TensorFlow); ``mirror``:
    every image left-right mirrored (the augmented view the frozen heads also train on)."""
    check_crop(crop)
    n_threads = threads or default_workers()  # PIL releases the GIL while it decodes

    def load(start: int) -> Batch:
        chunk = paths[start : start + batch_size]
        loaded = [load_one(p, size, crop, mirror=mirror, view=view) for p in chunk]
        images = np.stack([a for a, _ in loaded]) if loaded else np.zeros((0, size, size, 3))
        return Batch(start, images.astype(np.uint8), [e for _, e in loaded])

    starts = list(range(0, len(paths), batch_size))
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        pending: list[Future[Batch]] = []
        for s in starts:
            pending.append(pool.submit(load, s))
            if len(pending) > n_threads:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


def tf_dataset(
    paths: Sequence[str | os.PathLike[str]],
    size: int,
    *,
    crop: str = "center",
    batch_size: int = 64,
    threads: int | None = None,
) -> tf.data.Dataset:
    """A ``tf.data`` pipeline yielding ``(images float32 (B, S, S, 3) in 0..255, errors)``
    batches in input order: parallel decoding, batching, prefetch."""
    import tensorflow as tf

    check_crop(crop)
    n_threads = threads or default_workers()  # PIL releases the GIL while it decodes

    def _load(p: Any) -> tuple[np.ndarray, np.bytes_]:
        # bytes both ways (os.fsencode/fsdecode): a file name that is not UTF-8 survives TF
        arr, err = load_one(os.fsdecode(p) if isinstance(p, bytes) else str(p), size, crop)
        return arr, np.bytes_(err.encode("utf-8", "backslashreplace"))

    def _map(p: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        img, err = tf.numpy_function(_load, [p], [tf.uint8, tf.string], stateful=False)
        img = tf.ensure_shape(img, (size, size, 3))
        err = tf.ensure_shape(err, ())
        return tf.cast(img, tf.float32), err

    ds = tf.data.Dataset.from_tensor_slices([os.fsencode(p) for p in paths] or [b""][:0])
    ds = ds.map(_map, num_parallel_calls=n_threads, deterministic=True)
    options = tf.data.Options()
    options.threading.private_threadpool_size = n_threads
    options.autotune.cpu_budget = n_threads
    return ds.batch(batch_size).prefetch(2).with_options(options)


def predict_paths(
    model: Any,
    paths: Sequence[str | os.PathLike[str]],
    size: int,
    *,
    crop: str = "center",
    batch_size: int = 64,
    threads: int | None = None,
    progress: Any = None,
    mirror: bool = False,
    factory: Callable[[], Any] | None = None,
    view: str = "",
) -> tuple[np.ndarray, list[str]]:
    """Run a Keras model over images; ``(outputs, errors)`` with one row and one error string
    (``""`` when fine) per path.

    ``factory`` (picklable, builds the same model): on the Ray engine the images go to an actor
    pool of models built by it (:func:`model_runner`); without one, or on the local engine,
    ``model`` runs here as follows.

    Decoding runs in :func:`numpy_batches`' threads, a few batches ahead, while the model runs
    ``predict_on_batch`` (TensorFlow releases the GIL, so both proceed at once). Measured against
    :func:`tf_dataset` + a traced call: the same speed or better on 2 cores, and as fast as
    ``model.predict`` on tensors already in memory (bench/bench_predict.py), with less machinery;
    ``tf_dataset`` stays the pipeline for training, where shuffling and augmentation live."""
    if factory is not None and current().kind is Engine.RAY:
        runner = functools.partial(model_runner, factory, size, crop, mirror, batch_size, view)
        call = batch_size * MODEL_CALL_BATCHES
        results = map_with_model(runner, paths, batch_size=call, progress=progress)
        return _stack_rows([r for b in results for r in b])
    outs: list[np.ndarray] = []
    errors: list[str] = []
    batches = numpy_batches(
        paths, size, crop=crop, batch_size=batch_size, threads=threads, mirror=mirror, view=view
    )
    for b in batches:
        y = np.asarray(model.predict_on_batch(b.images.astype(np.float32)))
        outs.append(y.reshape(len(y), -1))
        errors.extend(b.errors)
        if progress is not None:
            progress(len(y))
    out = np.concatenate(outs) if outs else np.zeros((0, 1), np.float32)
    return out.astype(np.float32), errors


Row = tuple[np.ndarray, str]
"""One image's model output (flattened) and its error (``""`` when it decoded)."""


def model_runner(
    factory: Callable[[], Any], size: int, crop: str, mirror: bool, batch_size: int, view: str = ""
) -> Callable[[Sequence[str | os.PathLike[str]]], list[Row]]:
    """Built once per worker of :func:`cleaner.engine.map_with_model`: the model from
    ``factory()``, and a pure batch function running :func:`predict_paths` over a batch of
    paths (decoding the next model batch while the model runs)."""
    model = factory()

    def run(paths: Sequence[str | os.PathLike[str]]) -> list[Row]:
        y, errs = predict_paths(
            model, paths, size, crop=crop, batch_size=batch_size, mirror=mirror, view=view
        )
        return list(zip(y, errs, strict=True))

    return run


def _stack_rows(rows: Sequence[Row]) -> tuple[np.ndarray, list[str]]:
    """``(outputs, errors)`` from per-image rows, as :func:`predict_paths` returns them."""
    if not rows:
        return np.zeros((0, 1), np.float32), []
    return np.stack([r for r, _ in rows]).astype(np.float32), [e for _, e in rows]


# ---------------------------------------------------------------------------------------------
# training's decoding (``cleaner train``): the image at native resolution, cropped per batch


def fit_up(arr: np.ndarray, size: int) -> np.ndarray:
    """Scale an image whose short side is below ``size`` up so that it covers ``size``."""
    from PIL import Image

    h, w = arr.shape[:2]
    if min(h, w) >= size:
        return arr
    k = size / min(h, w)
    im = Image.fromarray(arr).resize(
        (max(size, round(w * k)), max(size, round(h * k))), Image.Resampling.BILINEAR
    )
    return np.asarray(im, dtype=np.uint8)


def load_for_training(path: str, size: int, crop: str = "center") -> np.ndarray:
    """An image for random cropping. ``center`` policy: native resolution, short side at least
    ``size``, long side capped at ``2 * size`` (a huge photo shrinks; a 256 px face stays
    untouched). ``resize`` policy (tiny-input backbones): the whole image at ``size x size``."""
    from cleaner.images import fit_view

    if crop == "resize":
        return load_array(path, size, crop="resize")
    return np.asarray(fit_view(path, size), dtype=np.uint8)


def center_crop(arr: np.ndarray, size: int) -> np.ndarray:
    """The central ``size x size`` crop (the image scaled up first when it is smaller)."""
    arr = fit_up(arr, size)
    h, w = arr.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return arr[top : top + size, left : left + size]


def load_for_eval(path: str, size: int, crop: str = "center") -> np.ndarray:
    """The evaluation view: the centre ``size`` crop of :func:`load_for_training`'s image (the
    same pixels as :func:`load_one` gives ``predict``)."""
    return load_array(path, size, crop=crop)
