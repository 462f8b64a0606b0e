"""`cleaner train`: a grouped split, two-phase transfer learning, test metrics and plots.

The pieces, in the order :func:`train` runs them:

1. **Split** (:func:`make_split`): 60/20/20, seeded, stratified by class and *grouped*: every
   near-duplicate group of ``R/.cleaner/duplicates.json`` (and every set of byte-identical files)
   lands in one split, so no copy of a test image is trained on. Written to
   ``R/.cleaner/split.csv`` and reused by later runs (matched by sha256, so files that
   ``separate`` moved keep their split; quarantined files drop out; new files join by group).
2. **Inputs**: images are decoded by :mod:`cleaner.images` at native resolution; training takes
   random ``S x S`` crops (plus flips, small rotations, brightness/contrast), evaluation a centre
   crop. Nothing is resized down unless the image is over twice ``S`` (then to ``2S``), so the
   high-frequency traces generators leave survive. Smaller images are scaled up to ``S``.
   Each batch is decoded from its paths when Keras asks for it (:class:`_Batches`, a few
   threads): memory holds a few batches of pixels, not the split (some 150 GB at a million
   images); the split holds only images the scan found ``ok``, and one that stops decoding
   later is dropped from its batch and counted (``unreadable`` in the metrics).
3. **Phase 1, head**: the backbone is frozen; its features of the (centre-cropped) train and val
   images are computed once into the embeddings cache (or read from it), standardised
   (a ``Normalization`` layer set from running sums over the train split's features, saved in
   the model) and a dropout + sigmoid head is fitted on them, which takes seconds. At a million
   images the features are streamed from the cache, full or projected on their principal
   directions (:mod:`cleaner.models.frozen_head` says how and why).
4. **Phase 2, fine-tuning**: the top ``N`` layers of the backbone are unfrozen (BatchNormalization
   stays frozen, in inference mode) and the whole model trains on augmented crops at a 10x lower
   learning rate. With ``--weights none`` there is nothing to transfer: the whole network trains
   from scratch (BatchNormalization included) instead of phases 1 and 2.
   EarlyStopping on validation loss, ReduceLROnPlateau and a best checkpoint in both phases.
5. **Test**: metrics on the held-out test split, ``M.metrics.json`` and PNG plots beside ``M``.

The saved model takes float32 RGB **0..255** ``(S, S, 3)`` and outputs **prob_fake** (sigmoid:
1 = fake, 0 = real), the convention ``predict-dir`` relies on. Evaluate it on centre crops at
native resolution (``cleaner.images.load_array(path, S, crop="center")``).
"""

from __future__ import annotations

import math
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cleaner.choices import Augment, Label
from cleaner.dataset import LABELS, Workspace, open_dataset
from cleaner.errors import CleanerError
from cleaner.models import augment as AUG
from cleaner.models import frozen_head as FH
from cleaner.models.inputs import CROPS
from cleaner.split import (
    SPLITS,
    SplitRow,
    data_digest,
    dataset_samples,
    make_split,
)
from cleaner.state import metrics as metrics_file
from cleaner.state import split as split_file

if TYPE_CHECKING:
    import keras

__all__ = ["TrainConfig", "TrainResult", "set_feature_norm", "train"]

PREPROCESSING = "native-resolution crops: random SxS for training, centre SxS for evaluation"

Reporter = Callable[[str], None]


# ---------------------------------------------------------------------------------------------
# inputs


def _fit_up(arr: np.ndarray, size: int) -> np.ndarray:
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
    from cleaner.images import fit_view, load_array

    if crop == "resize":
        return load_array(path, size, crop="resize")
    return np.asarray(fit_view(path, size), dtype=np.uint8)


def center_crop(arr: np.ndarray, size: int) -> np.ndarray:
    arr = _fit_up(arr, size)
    h, w = arr.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return arr[top : top + size, left : left + size]


def load_for_eval(path: str, size: int, crop: str = "center") -> np.ndarray:
    """The evaluation view: the centre ``size`` crop of :func:`load_for_training`'s image (the
    same pixels as :func:`cleaner.models.inputs.load_one` gives ``predict``)."""
    from cleaner.images import load_array

    return load_array(path, size, crop=crop)


def augment(arr: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Random crop, horizontal flip, small rotation, brightness/contrast: float32 0..255.

    No down-scaling: the crop keeps native pixels; the rotation (a quarter of the time, at most
    8 degrees) is the one resampling step."""
    h, w = arr.shape[:2]
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    x = arr[top : top + size, left : left + size]
    if rng.random() < 0.5:
        x = x[:, ::-1]
    if rng.random() < 0.25:
        from PIL import Image

        angle = float(rng.uniform(-8, 8))
        x = np.asarray(
            Image.fromarray(np.ascontiguousarray(x)).rotate(
                angle, Image.Resampling.BILINEAR, fillcolor=None
            )
        )
    xf = x.astype(np.float32)
    contrast = float(rng.uniform(0.85, 1.15))
    brightness = float(rng.uniform(-20, 20))
    mean = xf.mean()
    xf = (xf - mean) * contrast + mean + brightness
    return np.clip(xf, 0.0, 255.0)


# ---------------------------------------------------------------------------------------------
# configuration and result


@dataclass
class TrainConfig:
    """Everything ``cleaner train`` takes; defaults are the CLI's."""

    root: Path
    out: Path
    backbone: str = "efficientnetb0"
    weights: str | None = None
    """``imagenet``, ``none`` or a path; None = the backbone's default."""
    epochs: int = 10
    """Fine-tuning epochs (or from-scratch epochs with ``weights=none``)."""
    head_epochs: int = 20
    """Phase 1 epochs of the ``dense`` head on the frozen features (cheap; early stopping ends
    it sooner); 0 skips phase 1 whatever the head."""
    head: str = "logreg"
    """Phase 1 head: ``logreg`` (the out-of-fold heads' logistic regression, fitted exactly and
    written into the model's dense layer) or ``dense`` (that layer trained by Adam)."""
    image_size: int | None = None
    seed: int = 0
    batch_size: int = 32
    fine_tune_layers: int | None = None
    """Backbone layers unfrozen in phase 2; None = the backbone's ``trainable_top``."""
    head_lr: float = 1e-3
    fine_tune_lr: float = 1e-4
    scratch_lr: float = 1e-3
    patience: int = 3
    dropout: float = 0.3
    precision: str = "auto"
    """``auto``, ``float32``, ``mixed_bfloat16`` or ``mixed_float16``."""
    resplit: bool = False
    crop: str | None = None
    """``center`` (native-resolution crops) or ``resize`` (whole image); None = the backbone's."""
    augment: str | bool = "auto"
    """``none``, ``crops`` (fine-tuning's random crops, flips, rotations, brightness) or
    ``robust`` (those on blurred, JPEG re-encoded, rescaled images; a head on frozen features
    also trains on ``head_views`` robust views of each image), or ``auto`` (robust views for a
    head on frozen features, crops for fine-tuning): :mod:`cleaner.models.augment`.
    True and False (the old yes/no) are ``crops`` and ``none``."""
    robust: AUG.Robust = AUG.DEFAULT
    head_views: int = AUG.HEAD_VIEWS
    by_source: bool = False
    """Also report leave-one-source-out AUCs (:mod:`cleaner.models.sources`)."""
    launder: bool = False
    """Also score the final model on its test split under each laundering condition
    (:mod:`cleaner.models.launder`)."""
    workers: int | None = None
    max_train: int | None = None
    """Use at most this many training images (benchmarks); None = all."""
    head_features: str = "auto"
    """Phase 1 features: ``full``, ``pca`` (streamed projection) or ``auto`` (full while they
    fit a third of the machine's memory), as ``cleaner predict --head-features``."""
    pca_dim: int = 1024
    """Principal components the ``pca`` head keeps."""


@dataclass
class TrainResult:
    model_path: Path
    metrics_path: Path
    plots: list[Path]
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    SUMMARY_KEYS = (
        "accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix", "epochs",
        "backbone", "weights", "image_size", "data_digest",
    )  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """What ``cleaner train --json`` prints: the test figures, the model and its metrics."""
        m = self.metrics
        return {k: m[k] for k in self.SUMMARY_KEYS} | {
            "model": str(self.model_path),
            "metrics": str(self.metrics_path),
        }


# ---------------------------------------------------------------------------------------------
# precision


def cpu_has_amx() -> bool:
    """True when the CPU advertises AMX tiles for bfloat16 (Intel Sapphire Rapids and later)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return "amx_bf16" in f.read()
    except OSError:
        return False


def resolve_precision(name: str) -> str:
    """The Keras dtype policy for ``--precision``: ``auto`` = mixed_float16 on a GPU, float32
    on every CPU. bfloat16 measured slower on both CPUs tried (bench/README "Mixed precision"):
    0.43x float32 without AMX (AMD EPYC), 0.61x fine-tuning and 0.70x inference with AMX
    (Intel Xeon: oneDNN runs the convolutions on AMX tiles, the depthwise ones cannot use
    them, and the casts cost more than the tiles save on 2 cores). ``mixed_bfloat16`` stays
    available for a CPU where it measures faster (``cpu_has_amx`` tells whether it could)."""
    if name in ("float32", "mixed_bfloat16", "mixed_float16"):
        return name
    if name != "auto":
        raise CleanerError(
            f"--precision {name!r} is not one of auto, float32, mixed_bfloat16, mixed_float16"
        )
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "float32"


# ---------------------------------------------------------------------------------------------
# training


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("tensorflow", "keras", "numpy", "sklearn", "PIL", "cleaner"):
        try:
            m = __import__(mod)
            out[mod] = str(getattr(m, "__version__", "?"))
        except ImportError:
            continue
    return out


class Unreadable:
    """Images that stopped decoding after the scan (changed or removed while training):
    dropped from their batch, counted once per path (thread-safe: batches decode in threads)."""

    def __init__(self) -> None:
        self.paths: set[str] = set()
        self._lock = threading.Lock()

    def add(self, path: str) -> None:
        with self._lock:
            self.paths.add(path)

    def summary(self) -> dict[str, Any]:
        return {"count": len(self.paths), "paths": sorted(self.paths)[:20]}


def decode_workers(workers: int | None) -> int:
    """Threads that decode one batch (PIL releases the GIL while it decodes)."""
    return max(1, workers if workers is not None else min(4, os.cpu_count() or 1))


class _Batches:
    """A keras PyDataset that decodes each batch from its paths when asked, so training holds
    a few batches of pixels, not the split (at a million images the decoded split was some
    150 GB): augmented crops for training, fixed views otherwise. Every batch is ``(x, y,
    sample weight)``; an image that no longer decodes is dropped from its batch and recorded
    in ``unreadable``. Augmentation draws from a generator seeded by (seed, epoch, image), so
    a run is the same whatever thread decodes what."""

    @staticmethod
    def make(
        paths: Sequence[str],
        labels: np.ndarray,
        *,
        size: int,
        crop: str,
        batch_size: int,
        train: bool,
        seed: int,
        do_augment: bool,
        unreadable: Unreadable,
        robust: AUG.Robust | None = None,
        weights: np.ndarray | None = None,
        workers: int | None = None,
    ) -> Any:
        import keras

        n_threads = decode_workers(workers)

        class Seq(keras.utils.PyDataset):
            def __init__(self) -> None:
                super().__init__(workers=1, use_multiprocessing=False)
                self.rng = np.random.default_rng(seed)
                self.epoch = 0
                self.order = np.arange(len(paths))
                if train:
                    self.rng.shuffle(self.order)

            def __len__(self) -> int:
                return max(1, math.ceil(len(paths) / batch_size))

            def view(self, j: int) -> np.ndarray | None:
                from cleaner.images import ImageError

                try:
                    if not train:
                        return load_for_eval(paths[j], size, crop)
                    arr = load_for_training(paths[j], size, crop)
                except (ImageError, OSError):
                    unreadable.add(paths[j])
                    return None
                if do_augment:
                    rng = np.random.default_rng((seed, self.epoch, int(j)))
                    if robust is not None:
                        arr = _fit_up(AUG.robust_array(arr, rng, robust), size)
                    return augment(arr, size, rng)
                return center_crop(arr, size)

            def batch(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
                """``(x, y, weights, image indices)`` of batch ``i``, unreadable images left
                out (an empty batch is one black image of weight 0: Keras needs a row)."""
                idx = self.order[i * batch_size : (i + 1) * batch_size]
                if n_threads > 1 and len(idx) > 1:
                    from concurrent.futures import ThreadPoolExecutor

                    with ThreadPoolExecutor(min(n_threads, len(idx))) as ex:
                        views = list(ex.map(self.view, idx))
                else:
                    views = [self.view(j) for j in idx]
                keep = np.array([v is not None for v in views], dtype=bool)
                idx = idx[keep]
                if not len(idx):
                    zero = np.zeros((1, size, size, 3), np.float32)
                    return zero, np.zeros(1, np.float32), np.zeros(1, np.float32), idx
                x = np.stack([v for v in views if v is not None]).astype(np.float32)
                y = labels[idx].astype(np.float32)
                w = np.ones(len(idx), np.float32) if weights is None else weights[idx]
                return x, y, np.asarray(w, np.float32), idx

            def __getitem__(self, i: int) -> Any:
                return self.batch(i)[:3]

            def on_epoch_end(self) -> None:
                if train:
                    self.epoch += 1
                    self.rng.shuffle(self.order)

        return Seq()


def _epoch_logger(
    phase: str, n_images: int, report: Reporter, history: list[dict[str, Any]]
) -> Any:
    import keras

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = dict(logs or {})
            dt = time.perf_counter() - self.t0
            lr = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            row = {
                "phase": phase,
                "epoch": epoch + 1,
                "seconds": round(dt, 2),
                "images_per_s": round(n_images / dt, 1) if dt > 0 else None,
                "lr": float(np.asarray(lr)),
            }
            row.update({k: round(float(v), 5) for k, v in logs.items() if k != "learning_rate"})
            history.append(row)
            report(
                f"{phase:<9} epoch {epoch + 1:>3}  loss {row.get('loss', float('nan')):.4f}  "
                f"acc {row.get('accuracy', float('nan')):.4f}  "
                f"val_loss {row.get('val_loss', float('nan')):.4f}  "
                f"val_acc {row.get('val_accuracy', float('nan')):.4f}  "
                f"val_auc {row.get('val_auc', float('nan')):.4f}  "
                f"lr {row['lr']:.1e}  {row['images_per_s']} img/s  {dt:.1f}s"
            )

    return EpochLog()


def _callbacks(
    phase: str, n: int, report: Reporter, history: list[dict[str, Any]], ckpt: Path, patience: int
) -> list[Any]:
    import keras

    return [
        _epoch_logger(phase, n, report, history),
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.3, patience=max(1, patience // 2), min_lr=1e-6
        ),
        keras.callbacks.ModelCheckpoint(
            str(ckpt), monitor="val_loss", save_best_only=True, save_weights_only=True
        ),
    ]


def _compile(model: keras.Model, lr: float) -> None:
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
    )


def _freeze_for_fine_tuning(backbone: keras.Model, top: int) -> int:
    """Unfreeze the top ``top`` weighted layers of ``backbone``, keeping BatchNormalization
    frozen (inference mode: its statistics stay ImageNet's). Returns how many were unfrozen."""
    import keras

    backbone.trainable = True
    layers = [ly for ly in _flat_layers(backbone) if ly.weights]
    for ly in layers:
        ly.trainable = False
    unfrozen = 0
    for ly in reversed(layers):
        if unfrozen >= top:
            break
        if isinstance(ly, keras.layers.BatchNormalization):
            continue
        ly.trainable = True
        unfrozen += 1
    return unfrozen


def _flat_layers(model: Any) -> list[Any]:
    out: list[Any] = []
    for ly in model.layers:
        if hasattr(ly, "layers") and ly.layers:
            out.extend(_flat_layers(ly))
        else:
            out.append(ly)
    return out


def set_feature_norm(norm: Any, mean: np.ndarray, var: np.ndarray) -> None:
    """Write a mean and variance into the ``Normalization`` layer ``norm``."""
    if not norm.built:
        norm.build((None, len(mean)))
    norm.adapt_mean.assign(np.asarray(mean, np.float32))
    norm.adapt_variance.assign(np.asarray(var, np.float32))
    norm.finalize_state()


def _fit_logreg_head(
    inputs: FH.HeadInputs,
    y_tr: np.ndarray,
    y_va: np.ndarray,
    sample_w: np.ndarray | None,
    c: float | None,
    feat_norm: Any,
    head: Any,
    say: Reporter,
) -> dict[str, Any]:
    """Phase 1 as the out-of-fold heads do it: logistic regression on the standardised features
    (or their projection, folded back: :mod:`cleaner.models.frozen_head`), solved exactly, its
    coefficients written into the model's ``feat_norm`` and sigmoid layer ``head``: better
    test accuracy than the dense head trained by Adam (bench/README.md "Training")."""
    import keras

    from cleaner.models.folds import HEAD_C

    t0 = time.perf_counter()
    norm = FH.standardisation(inputs)
    set_feature_norm(feat_norm, *norm)
    lr, kernel, bias = FH.fit_logreg(
        inputs, y_tr, sample_w, norm, c=HEAD_C if c is None else c,
        epsilon=keras.backend.epsilon(),
    )  # fmt: skip
    head.set_weights([kernel[:, None].astype(np.float32), np.array([bias], np.float32)])
    p_va = lr.prob(*inputs.val_features())
    val = classification_metrics(y_va, p_va)
    say(
        f"head      logistic regression C={lr.c}: val_loss {val['loss']:.4f}  "
        f"val_acc {val['accuracy']:.4f}  val_auc {val['roc_auc'] or float('nan'):.4f}  "
        f"{time.perf_counter() - t0:.1f}s"
    )
    return {
        "head": "logreg",
        "c": lr.c,
        "epochs": 0,
        "iterations": lr.n_iter,
        "fit_seconds": round(time.perf_counter() - t0, 2),
        "val_accuracy": val["accuracy"],
        "val_loss": val["loss"],
        "val_auc": val["roc_auc"],
    }


def _row_batches(
    features: np.ndarray,
    rows: np.ndarray | None,
    y: np.ndarray,
    w: np.ndarray | None,
    *,
    batch_size: int,
    seed: int | None,
) -> Any:
    """A keras PyDataset of ``(features[rows], y, w)`` batches gathered on request (shuffled
    each epoch when ``seed`` is given): the dense head reads its rows in place."""
    import keras

    at: np.ndarray = np.arange(len(features)) if rows is None else rows

    class Rows(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)
            self.rng = np.random.default_rng(seed) if seed is not None else None
            self.order = np.arange(len(at))
            if self.rng is not None:
                self.rng.shuffle(self.order)

        def __len__(self) -> int:
            return max(1, math.ceil(len(at) / batch_size))

        def __getitem__(self, i: int) -> Any:
            o = np.sort(self.order[i * batch_size : (i + 1) * batch_size])
            x = np.asarray(features[at[o]], np.float32)
            ww = np.ones(len(o), np.float32) if w is None else np.asarray(w[o], np.float32)
            return x, np.asarray(y[o], np.float32), ww

        def on_epoch_end(self) -> None:
            if self.rng is not None:
                self.rng.shuffle(self.order)

    return Rows()


def _fit_dense_head(
    cfg: TrainConfig,
    out: Path,
    inputs: FH.HeadInputs,
    y_tr: np.ndarray,
    y_va: np.ndarray,
    sample_w: np.ndarray | None,
    feat_norm: Any,
    head: Any,
    say: Reporter,
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    """Phase 1 by gradient descent: dropout + the sigmoid layer on the standardised features
    (or on the projected coordinates, folded back into ``head`` afterwards), Adam, early
    stopping on validation loss; rows are gathered batch by batch."""
    import keras

    norm = FH.standardisation(inputs)
    set_feature_norm(feat_norm, *norm)
    (view, rows), r = inputs.train_blocks()[0], inputs.regions
    y = np.repeat(y_tr, r) if r > 1 else y_tr
    w = None if sample_w is None else (np.repeat(sample_w, r) if r > 1 else sample_w)
    fin = keras.Input((view.shape[1],), name="features")
    pca = inputs.projection is not None
    hd = keras.layers.Dropout(cfg.dropout)(fin if pca else feat_norm(fin))
    hd_dense = keras.layers.Dense(1, activation="sigmoid", name="prob_fake")
    head_model = keras.Model(fin, hd_dense(hd))
    _compile(head_model, cfg.head_lr)
    head_ckpt = out.with_name(f".{out.stem}.head.weights.h5")
    n_before = len(history)
    t1 = time.perf_counter()
    va, va_rows = inputs.val_features()
    bs = cfg.batch_size
    head_model.fit(
        _row_batches(view, rows, y, w, batch_size=bs, seed=cfg.seed),
        validation_data=_row_batches(va, va_rows, y_va, None, batch_size=bs, seed=None),
        epochs=cfg.head_epochs,
        verbose=0,
        callbacks=_callbacks("head", len(rows), say, history, head_ckpt, cfg.patience + 2),
    )
    kernel, bias = hd_dense.get_weights()
    kernel = FH.dense_kernel(inputs, kernel[:, 0], norm, keras.backend.epsilon())[:, None]
    head.set_weights([np.asarray(kernel, np.float32), np.asarray(bias, np.float32)])
    head_ckpt.unlink(missing_ok=True)
    return {
        "head": "dense",
        "epochs": len(history) - n_before,
        "fit_seconds": round(time.perf_counter() - t1, 2),
        "lr": cfg.head_lr,
    }


@dataclass
class _Data:
    """The split: what every phase after it reads. Paths, not pixels: each phase decodes
    batch by batch (:class:`_Batches`), so memory does not grow with the split."""

    rows: list[SplitRow]
    reused: bool
    kept: dict[str, list[SplitRow]]
    """Per split, its rows (all ``ok`` in the scan that :func:`make_split` ran first)."""
    paths: dict[str, list[str]]
    y: dict[str, np.ndarray]
    unreadable: Unreadable = field(default_factory=Unreadable)
    class_weight: dict[str, float] | None = None
    sample_w: np.ndarray | None = None


@dataclass
class _Net:
    """The classifier and the parts of it the phases train."""

    model: Any
    backbone: Any
    feat_norm: Any
    head: Any
    scratch: bool
    has_trainable: bool
    policy: str


def train(cfg: TrainConfig, *, report: Reporter | None = None) -> TrainResult:
    """Split, train, test, write ``cfg.out`` + ``.metrics.json`` + plots. See the module doc.

    The phases, in order: :func:`_check`, :func:`_split`, :func:`_decode`, :func:`_build`,
    :func:`_head_phase` (frozen features), :func:`_tune_phase` (fine-tune or from scratch),
    :func:`_test` and :func:`_save`."""
    say: Reporter = report or (lambda s: print(s, file=sys.stderr))
    t_start = time.perf_counter()
    out = _check(cfg)
    ds = open_dataset(cfg.root)
    from cleaner.models.backbones import get_backbone

    bb = get_backbone(cfg.backbone)
    weights_name = cfg.weights or bb.default_weights
    size = int(cfg.image_size or bb.input_size)
    crop = cfg.crop or bb.crop
    if crop not in CROPS:
        raise CleanerError(f"--crop {crop!r} is not one of {', '.join(CROPS)}")
    if size < 16:
        raise CleanerError(f"--image-size {size} is too small; use 16 or more")

    by_split, rows, reused = _split(ds.root, cfg, say)
    data = _prepare(ds.root, by_split, rows, reused)
    _class_weights(data, say)
    net = _build(cfg, bb, weights_name, size)

    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt = out.with_name(f".{out.stem}.best.weights.h5")
    history: list[dict[str, Any]] = []
    phases: dict[str, dict[str, Any]] = {}
    val_seq = _sequence(cfg, data, "val", size, crop)
    if not net.scratch and cfg.head_epochs > 0:
        phases["head"] = _head_phase(
            cfg, ds.root, out, bb, net, data, weights_name, size, say, history
        )
    if cfg.epochs > 0 and net.has_trainable:
        tuned = _tune_phase(cfg, bb, net, data, val_seq, size, crop, ckpt, say, history)
        if tuned is not None:
            phases[tuned[0]] = tuned[1]
    ckpt.unlink(missing_ok=True)

    prob, y_test, test, val, test_seconds = _test(cfg, net.model, data, size, crop, val_seq)
    away = _away(cfg, ds.root, bb, net, data, weights_name, size, crop, test, phases, say)
    _save(net.model, out)
    metrics: dict[str, Any] = {
        "format": "cleaner.metrics.v1",
        "model": str(out),
        "output": "prob_fake (sigmoid; 1 = fake, 0 = real); input float32 RGB 0..255 (S, S, 3)",
        "preprocessing": PREPROCESSING if crop == "center" else "whole image resized to SxS",
        "crop": crop,
        "backbone": cfg.backbone,
        "weights": weights_name,
        "image_size": size,
        "seed": cfg.seed,
        "dtype_policy": net.policy,
        "mode": "scratch" if net.scratch else "transfer",
        "split": _split_summary(ds.root, data),
        "class_weight": data.class_weight,
        "augmentation": AUG.record(cfg.augment, cfg.robust),
        "data_digest": data_digest(data.rows),
        "unreadable": data.unreadable.summary(),
        "epochs": {k: v["epochs"] for k, v in phases.items()},
        "phases": phases,
        "time": {
            "total_seconds": round(time.perf_counter() - t_start, 2),
            "test_seconds": round(test_seconds, 2),
        },
        "test": test,
        "val": {k: val[k] for k in ("accuracy", "roc_auc", "loss")},
        **{k: test[k] for k in ("accuracy", "precision", "recall", "f1", "roc_auc")},
        "confusion_matrix": test["confusion_matrix"],
        "classification_report": test["classification_report"],
        **away,
        "history": history,
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    plots = write_plots(out, history, y_test, prob, test)
    metrics["plots"] = [p.name for p in plots]
    metrics_file.write(out, metrics)
    return TrainResult(out, metrics_file.path(out), plots, metrics, history)


def _sequence(cfg: TrainConfig, data: _Data, part: str, size: int, crop: str) -> Any:
    """Keras batches of one split, decoded when asked: the training split shuffled, augmented
    (``--augment``) and class-weighted; the others in order, as they are."""
    train = part == "train"
    return _Batches.make(
        data.paths[part],
        data.y[part],
        size=size,
        crop=crop,
        batch_size=cfg.batch_size,
        train=train,
        seed=cfg.seed,
        do_augment=train and AUG.mode(cfg.augment) is not Augment.NONE,
        robust=cfg.robust if AUG.mode(cfg.augment) is Augment.ROBUST else None,  # auto: crops
        unreadable=data.unreadable,
        weights=data.sample_w if train else None,
        workers=cfg.workers,
    )


def _check(cfg: TrainConfig) -> Path:
    """The flags that need no data, checked before anything is read; returns ``cfg.out``."""
    out = Path(cfg.out)
    if out.suffix != ".keras":
        raise CleanerError(f"--out {out} must end in .keras (the Keras model format)")
    if cfg.epochs < 0 or cfg.head_epochs < 0:
        raise CleanerError("--epochs and --head-epochs must be 0 or more")
    if cfg.head not in ("logreg", "dense"):
        raise CleanerError(f"--head {cfg.head!r} is not one of logreg, dense")
    metrics_file.check_outputs(out, Workspace.open(cfg.root))
    return out


def _split(
    root: Path, cfg: TrainConfig, say: Reporter
) -> tuple[dict[str, list[SplitRow]], list[SplitRow], bool]:
    """The split (reused from ``split.csv`` unless ``--resplit``), each part with both classes."""
    ws = Workspace.open(root)
    rows, reused = make_split(ws, dataset_samples(ws), seed=cfg.seed, resplit=cfg.resplit)
    by_split = {s: [r for r in rows if r.split == s] for s in SPLITS}
    if cfg.max_train is not None:
        by_split["train"] = by_split["train"][: cfg.max_train]
    for s in SPLITS:
        labels = {r.label for r in by_split[s]}
        if len(labels) < 2:
            raise CleanerError(
                f"the {s} split of {root} has images of {len(labels)} class(es); each split "
                "needs real and fake images (add images to both class folders)"
            )
    say(
        f"split ({'reused' if reused else 'new'}, {split_file.path(root)}): "
        + ", ".join(f"{s} {len(by_split[s])}" for s in SPLITS)
    )
    return by_split, rows, reused


def _prepare(
    root: Path,
    by_split: Mapping[str, Sequence[SplitRow]],
    rows: list[SplitRow],
    reused: bool,
) -> _Data:
    """The split's paths and labels. Nothing is decoded here: the split holds only images the
    scan found ``ok``, and one that stops decoding later is dropped from its batch."""
    kept = {s: list(by_split[s]) for s in SPLITS}
    paths = {s: [str(root / r.path) for r in kept[s]] for s in SPLITS}
    y = {s: np.array([1.0 if r.label == Label.FAKE else 0.0 for r in kept[s]]) for s in SPLITS}
    return _Data(rows=rows, reused=reused, kept=kept, paths=paths, y=y)


def _class_weights(data: _Data, say: Reporter) -> None:
    """Class weights when the training split is imbalanced (minority under 80% of the
    majority), set on ``data``."""
    y_train = data.y["train"]
    n_fake, n_real = int(y_train.sum()), int(len(y_train) - y_train.sum())
    if min(n_fake, n_real) < 0.8 * max(n_fake, n_real):
        n = n_fake + n_real
        cw = {Label.REAL.value: n / (2 * n_real), Label.FAKE.value: n / (2 * n_fake)}
        data.class_weight = cw
        data.sample_w = np.where(y_train > 0.5, cw[Label.FAKE], cw[Label.REAL])
        say(f"class weights (imbalanced {n_real} real / {n_fake} fake): {cw}")


def _build(cfg: TrainConfig, bb: Any, weights_name: str, size: int) -> _Net:
    """The classifier: the backbone (frozen for transfer, trainable from scratch), the region
    mean for ``-quad`` backbones, feature standardisation, dropout, one sigmoid unit."""
    import keras

    keras.utils.set_random_seed(cfg.seed)
    policy = resolve_precision(cfg.precision)
    keras.mixed_precision.set_global_policy(policy)
    try:
        backbone = bb.build(weights_name, size)
        keras.utils.set_random_seed(cfg.seed)  # build() seeds its own --weights none init
        has_trainable = any("moving" not in w.path for w in backbone.weights)
        scratch = weights_name == "none" and has_trainable
        backbone.trainable = False
        inp = keras.Input((size, size, 3), name="image")
        # transfer: the backbone always runs in inference mode (BatchNormalization keeps its
        # ImageNet statistics); from scratch it must learn them
        feats = backbone(inp) if scratch else backbone(inp, training=False)
        if bb.regions > 1:  # the mean of the region rows: its logit is the mean of theirs
            width = int(backbone.output_shape[-1]) // bb.regions
            feats = keras.layers.Reshape((bb.regions, width), name="regions")(feats)
            feats = keras.layers.GlobalAveragePooling1D(name="region_mean")(feats)
        # standardises the features (adapted on the training split's before the head phase;
        # the identity otherwise): frozen features come in any scale, texture ones in many
        feat_norm = keras.layers.Normalization(dtype="float32", name="feature_norm")
        head_drop = keras.layers.Dropout(cfg.dropout, name="head_dropout")
        head = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="prob_fake")
        model = keras.Model(inp, head(head_drop(feat_norm(feats))), name=f"cleaner_{cfg.backbone}")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return _Net(model, backbone, feat_norm, head, scratch, has_trainable, policy)


def _head_phase(
    cfg: TrainConfig,
    root: Path,
    out: Path,
    bb: Any,
    net: _Net,
    data: _Data,
    weights_name: str,
    size: int,
    say: Reporter,
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    """Phase 1: the head on frozen features, from the embedding cache (computed into it where
    missing), full or projected (``--head-features``); returns the phase's record."""
    from cleaner.models.embeddings import EmbeddingSpec
    from cleaner.models.projection import HeadFeatures

    t0 = time.perf_counter()
    spec = EmbeddingSpec(bb, weights_name, size, cfg.crop or bb.crop)
    items = {s: [(p, r.sha256) for p, r in zip(data.paths[s], data.kept[s], strict=True)]
             for s in ("train", "val")}  # fmt: skip
    inputs = FH.head_inputs(
        root, items["train"], items["val"], spec, regions=bb.regions,
        mode=HeadFeatures(cfg.head_features), pca_dim=cfg.pca_dim, seed=cfg.seed,
        batch_size=max(8, cfg.batch_size),
    )  # fmt: skip
    n_tr = len(items["train"])
    views: dict[str, Any] | None = None
    if AUG.mode(cfg.augment) in AUG.HEAD_ROBUST:
        from cleaner.models.head_views import add_views

        inputs, views = add_views(
            root, items["train"], spec, inputs, views=cfg.head_views, robust=cfg.robust,
            batch_size=max(8, cfg.batch_size), model=net.backbone,
        )  # fmt: skip
    for k in inputs.failed:  # no features: the image no longer decodes
        data.unreadable.add(data.paths["train"][k] if k < n_tr else data.paths["val"][k - n_tr])
    t_feat = time.perf_counter() - t0
    src = f"cache ({inputs.cached} hits, {inputs.computed} computed)"
    n_img = len(inputs.train) + len(inputs.val)
    say(f"head features ({src}, {inputs.mode.value}): {n_img} images in {t_feat:.1f}s")
    phase = head_phase_on(cfg, out, inputs, data, net, bb.head_c, say, history)
    phase.update(
        {
            "feature_seconds": round(t_feat, 2),
            "features_from": src,
            "head_features": inputs.mode.value,
            "feature_images_per_s": round(n_img / t_feat, 1) if t_feat > 0 else None,
        }
    )
    if inputs.projection is not None:
        phase["projection"] = inputs.projection.info()
    if views is not None:
        phase["robust_views"] = views
    return phase


def head_phase_on(
    cfg: TrainConfig,
    out: Path,
    inputs: FH.HeadInputs,
    data: Any,
    net: Any,
    c: float | None,
    say: Reporter,
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    """The head fitted on ``inputs`` (the rows whose features exist) and written into
    ``net.feat_norm`` and ``net.head``; ``data`` needs ``y`` and ``sample_w`` (the bench
    passes its own)."""
    y_tr = data.y["train"][inputs.train_images()]
    y_va = data.y["val"][inputs.val - len(data.y["train"])]
    w_tr = None if data.sample_w is None else data.sample_w[inputs.train_images()]
    if cfg.head == "logreg":
        return _fit_logreg_head(inputs, y_tr, y_va, w_tr, c, net.feat_norm, net.head, say)
    return _fit_dense_head(
        cfg, out, inputs, y_tr, y_va, w_tr, net.feat_norm, net.head, say, history
    )


def _tune_phase(
    cfg: TrainConfig,
    bb: Any,
    net: _Net,
    data: _Data,
    val_seq: Any,
    size: int,
    crop: str,
    ckpt: Path,
    say: Reporter,
    history: list[dict[str, Any]],
) -> tuple[str, dict[str, Any]] | None:
    """Phase 2: fine-tune the top of the backbone with the head (transfer), or train the whole
    network (from scratch); a fine-tuning that does not beat the head's validation loss is
    undone. Returns (phase name, record), or None when no layer could be unfrozen."""
    import keras

    model, backbone = net.model, net.backbone
    if net.scratch:
        phase, lr = "scratch", cfg.scratch_lr
        backbone.trainable = True
        unfrozen = len([ly for ly in _flat_layers(backbone) if ly.weights])
        # a few dozen steps per epoch: BatchNormalization's moving statistics (momentum
        # 0.99) would still be near their initial values at validation time
        for ly in _flat_layers(backbone):
            if isinstance(ly, keras.layers.BatchNormalization) and ly.momentum > 0.9:
                ly.momentum = 0.9
    else:
        phase, lr = "fine-tune", cfg.fine_tune_lr
        top = bb.trainable_top if cfg.fine_tune_layers is None else cfg.fine_tune_layers
        unfrozen = _freeze_for_fine_tuning(backbone, top)
    if unfrozen <= 0:
        return None
    # the head-only model is the baseline fine-tuning has to beat on validation loss
    start_weights = model.get_weights()
    _compile(model, lr)
    start_loss = float(model.evaluate(val_seq, verbose=0)[0]) if not net.scratch else None
    tr_seq = _sequence(cfg, data, "train", size, crop)
    n_before = len(history)
    t1 = time.perf_counter()
    n_train = len(data.paths["train"])
    model.fit(
        tr_seq,
        validation_data=val_seq,
        epochs=cfg.epochs,
        verbose=0,
        callbacks=_callbacks(phase, n_train, say, history, ckpt, cfg.patience),
    )
    dt = time.perf_counter() - t1
    kept_head = False
    if start_loss is not None:
        end_loss = float(model.evaluate(val_seq, verbose=0)[0])
        if end_loss > start_loss:
            model.set_weights(start_weights)
            kept_head = True
            say(
                f"fine-tuning did not beat the head's val_loss ({end_loss:.4f} > "
                f"{start_loss:.4f}): kept the head-only model"
            )
    return phase, {
        "kept_head_only": kept_head,
        "epochs": len(history) - n_before,
        "seconds": round(dt, 2),
        "layers_unfrozen": unfrozen,
        "lr": lr,
        "train_images_per_s": _median(
            [h["images_per_s"] for h in history[n_before:] if h.get("images_per_s")]
        ),
    }


def _probabilities(model: Any, seq: Any) -> tuple[np.ndarray, np.ndarray]:
    """prob_fake of every image of ``seq`` that still decodes, batch by batch: ``(probs, their
    image indices)``."""
    probs: list[np.ndarray] = []
    kept: list[np.ndarray] = []
    for i in range(len(seq)):
        x, _, _, idx = seq.batch(i)
        if len(idx):
            p = np.asarray(model.predict_on_batch(x), dtype=np.float64).reshape(-1)
            probs.append(p)
            kept.append(idx)
    if not probs:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(probs), np.concatenate(kept)


def _test(
    cfg: TrainConfig, model: Any, data: _Data, size: int, crop: str, val_seq: Any
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, Any], float]:
    """The held-out test split (and validation) through the final model, streamed: (test
    prob_fake, their labels, test metrics, validation metrics, seconds). Images that no longer
    decode are left out of the figures (and counted in ``unreadable``)."""
    t_test = time.perf_counter()
    test_seq = _sequence(cfg, data, "test", size, crop)
    prob, idx = _probabilities(model, test_seq)
    val_prob, val_idx = _probabilities(model, val_seq)
    test_seconds = time.perf_counter() - t_test
    y_test = data.y["test"][idx]
    test = classification_metrics(y_test, prob)
    val = classification_metrics(data.y["val"][val_idx], val_prob)
    return prob, y_test, test, val, test_seconds


def _away(
    cfg: TrainConfig,
    root: Path,
    bb: Any,
    net: _Net,
    data: _Data,
    weights_name: str,
    size: int,
    crop: str,
    test: dict[str, Any],
    phases: Mapping[str, Mapping[str, Any]],
    say: Reporter,
) -> dict[str, Any]:
    """How the model holds away from its own test split, for the metrics: ``launder``
    (``--launder``) and ``by_source`` (``--by-source``), each only when asked for."""
    out: dict[str, Any] = {}
    laundered = _launder(cfg, root, bb, net, data, weights_name, size, crop, test, phases, say)
    if laundered is not None:
        out["launder"] = laundered
    by_source = _by_source(cfg, root, bb, net, data, weights_name, size, crop, phases, say)
    if by_source is not None:
        out["by_source"] = by_source
    return out


def _launder(
    cfg: TrainConfig,
    root: Path,
    bb: Any,
    net: _Net,
    data: _Data,
    weights_name: str,
    size: int,
    crop: str,
    test: dict[str, Any],
    phases: Mapping[str, Mapping[str, Any]],
    say: Reporter,
) -> dict[str, Any] | None:
    """``--launder``: the test split under each laundering condition (None without it)."""
    if not cfg.launder:
        return None
    from cleaner.models import launder_eval

    frozen = not net.scratch and not any(
        k in phases and not phases[k].get("kept_head_only") for k in ("fine-tune", "scratch")
    )
    items = [(p, r.sha256) for p, r in zip(data.paths["test"], data.kept["test"], strict=True)]
    return launder_eval.evaluate(
        root, items, data.y["test"], net, bb, weights_name, size, crop, test,
        frozen=frozen, batch_size=max(8, cfg.batch_size), say=say,
    )  # fmt: skip


def _by_source(
    cfg: TrainConfig,
    root: Path,
    bb: Any,
    net: _Net,
    data: _Data,
    weights_name: str,
    size: int,
    crop: str,
    phases: Mapping[str, Any],
    say: Reporter,
) -> dict[str, Any] | None:
    """``--by-source``: leave-one-source-out heads on the frozen features (None without it)."""
    if not cfg.by_source:
        return None
    if net.scratch:
        return {"skipped": "--weights none: no pretrained features to fit heads on"}
    from cleaner.models.embeddings import EmbeddingSpec, embed
    from cleaner.models.folds import HEAD_C
    from cleaner.models.sources import leave_one_source_out

    spec = EmbeddingSpec(bb, weights_name, size, crop)
    rows = data.kept["train"] + data.kept["test"]

    def embed_rows(rs: Sequence[SplitRow]) -> tuple[np.ndarray, np.ndarray]:
        e = embed(root, [(str(root / r.path), r.sha256) for r in rs], spec,
                  batch_size=max(8, cfg.batch_size), model=net.backbone)  # fmt: skip
        return e.features, e.ok

    return leave_one_source_out(
        root, rows, embed_rows, regions=bb.regions, c=HEAD_C if bb.head_c is None else bb.head_c,
        fine_tuned=any(k in phases for k in ("fine-tune", "scratch")), say=say,
    )  # fmt: skip


def _save(model: Any, out: Path) -> None:
    """``out`` written whole or not at all (a temporary file beside it, then a rename)."""
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, out)


def _split_summary(root: Path, data: _Data) -> dict[str, Any]:
    """The metrics file's ``split``: its file, whether it was reused, per-split counts."""
    y = data.y
    return {
        "file": str(split_file.path(root)),
        "reused": data.reused,
        **{
            s: {
                "images": len(data.kept[s]),
                Label.REAL.value: int((y[s] < 0.5).sum()),
                Label.FAKE.value: int(y[s].sum()),
            }
            for s in SPLITS
        },
        "groups": len({r.group for r in data.rows}),
    }


def _median(xs: Sequence[float]) -> float | None:
    return float(np.median(xs)) if xs else None


def classification_metrics(y: np.ndarray, prob: np.ndarray) -> dict[str, Any]:
    """Accuracy, precision/recall/F1 (positive class: fake), ROC-AUC, log loss, the confusion
    matrix (rows true real/fake, columns predicted real/fake) and sklearn's report."""
    from sklearn import metrics as m

    y_true = (np.asarray(y) > 0.5).astype(int)
    pred = (np.asarray(prob) >= 0.5).astype(int)
    both = len(set(y_true.tolist())) == 2
    p = np.clip(np.asarray(prob, dtype=np.float64), 1e-7, 1 - 1e-7)
    return {
        "images": len(y_true),
        "accuracy": float(m.accuracy_score(y_true, pred)),
        "precision": float(m.precision_score(y_true, pred, zero_division=0)),
        "recall": float(m.recall_score(y_true, pred, zero_division=0)),
        "f1": float(m.f1_score(y_true, pred, zero_division=0)),
        "roc_auc": float(m.roc_auc_score(y_true, p)) if both else None,
        "loss": float(m.log_loss(y_true, p, labels=[0, 1])) if len(y_true) else None,
        "confusion_matrix": m.confusion_matrix(y_true, pred, labels=[0, 1]).tolist(),
        "confusion_labels": list(LABELS),
        "classification_report": m.classification_report(
            y_true,
            pred,
            labels=[0, 1],
            target_names=list(LABELS),
            output_dict=True,
            zero_division=0,
        ),
    }


def write_plots(
    out: Path,
    history: Sequence[Mapping[str, Any]],
    y: np.ndarray,
    prob: np.ndarray,
    test: Mapping[str, Any],
) -> list[Path]:
    """``M.confusion.png``, ``M.roc.png``, ``M.curves.png`` beside ``M.keras`` (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    paths: list[Path] = []
    stem = out.with_suffix("")

    fig, ax = plt.subplots(figsize=(4, 4))
    cm = np.asarray(test["confusion_matrix"])
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="black", fontsize=14)
    ax.set_xticks([0, 1], labels=list(LABELS))
    ax.set_yticks([0, 1], labels=list(LABELS))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"test accuracy {test['accuracy']:.3f}")
    fig.tight_layout()
    paths.append(Path(f"{stem}.confusion.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4, 4))
    y_true = (np.asarray(y) > 0.5).astype(int)
    if len(set(y_true.tolist())) == 2:
        fpr, tpr, _ = roc_curve(y_true, prob)
        ax.plot(fpr, tpr, label=f"AUC {test['roc_auc']:.3f}")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false positive rate (real called fake)")
    ax.set_ylabel("true positive rate (fake found)")
    ax.set_title("ROC, test split")
    ax.legend(loc="lower right")
    fig.tight_layout()
    paths.append(Path(f"{stem}.roc.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    xs = list(range(1, len(history) + 1))
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(xs, [h.get(key, np.nan) for h in history], "o-", label=f"train {key}")
        ax.plot(xs, [h.get(f"val_{key}", np.nan) for h in history], "o-", label=f"val {key}")
        for i in range(1, len(history)):
            if history[i]["phase"] != history[i - 1]["phase"]:
                ax.axvline(i + 0.5, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("epoch (all phases)")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    paths.append(Path(f"{stem}.curves.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths
