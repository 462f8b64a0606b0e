"""Keras fit plumbing for ``cleaner train``: the batches it decodes on request, its callbacks,
compiling, freezing for fine-tuning, the feature standardisation layer, prediction over a split
and an all-or-nothing save. No phase lives here: :mod:`cleaner.models.train` runs the phases.

Batches are decoded from their paths when Keras asks for them (:func:`image_batches`, a few
threads): memory holds a few batches of pixels, not the split (some 150 GB at a million images);
an image that stops decoding is dropped from its batch and counted (:class:`Unreadable`).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cleaner.models import augment as AUG
from cleaner.models import inputs as INP

if TYPE_CHECKING:
    import keras

Reporter = Callable[[str], None]


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


def image_batches(
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
    """A keras PyDataset that decodes each batch from its paths when asked, so training holds
    a few batches of pixels, not the split (at a million images the decoded split was some
    150 GB): augmented crops for training, fixed views otherwise. Every batch is ``(x, y,
    sample weight)``; an image that no longer decodes is dropped from its batch and recorded
    in ``unreadable``. Augmentation draws from a generator seeded by (seed, epoch, image), so
    a run is the same whatever thread decodes what."""
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
                    return INP.load_for_eval(paths[j], size, crop)
                arr = INP.load_for_training(paths[j], size, crop)
            except (ImageError, OSError):
                unreadable.add(paths[j])
                return None
            if do_augment:
                rng = np.random.default_rng((seed, self.epoch, int(j)))
                if robust is not None:
                    arr = INP.fit_up(AUG.robust_array(arr, rng, robust), size)
                return AUG.crop_view(arr, size, rng)
            return INP.center_crop(arr, size)

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


def epoch_logger(phase: str, n_images: int, report: Reporter, history: list[dict[str, Any]]) -> Any:
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


def callbacks(
    phase: str, n: int, report: Reporter, history: list[dict[str, Any]], ckpt: Path, patience: int
) -> list[Any]:
    import keras

    return [
        epoch_logger(phase, n, report, history),
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


def compile_model(model: keras.Model, lr: float) -> None:
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
    )


def freeze_for_fine_tuning(backbone: keras.Model, top: int) -> int:
    """Unfreeze the top ``top`` weighted layers of ``backbone``, keeping BatchNormalization
    frozen (inference mode: its statistics stay ImageNet's). Returns how many were unfrozen."""
    import keras

    backbone.trainable = True
    layers = [ly for ly in flat_layers(backbone) if ly.weights]
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


def flat_layers(model: Any) -> list[Any]:
    out: list[Any] = []
    for ly in model.layers:
        if hasattr(ly, "layers") and ly.layers:
            out.extend(flat_layers(ly))
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


def row_batches(
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


def probabilities(model: Any, seq: Any) -> tuple[np.ndarray, np.ndarray]:
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


def save_model(model: Any, out: Path) -> None:
    """``out`` written whole or not at all (a temporary file beside it, then a rename)."""
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, out)
