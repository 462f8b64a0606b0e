"""``cleaner train --launder``: the final model scored on its test split under each laundering
condition (:mod:`cleaner.models.launder`), beside the split as it is.

Where the backbone was not trained (a head on frozen features: ``--epochs 0``, or a fine-tuning
that was undone) the laundered images' features go through the embedding cache under the
condition's view key, and the model's own head (its ``Normalization`` and ``Dense`` layers) is
applied to them: a second model on the same backbone and test split (another ``--augment``, say)
costs no backbone run. Otherwise the whole model runs on the laundered pixels.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cleaner.choices import Launder
from cleaner.dataset import Workspace
from cleaner.models import launder
from cleaner.models.embeddings import EmbeddingSpec, embed
from cleaner.models.inputs import predict_paths

Item = tuple[str | os.PathLike[str], str]


def _head_model(net: Any, dim: int, regions: int) -> Any:
    """The model's head alone: features ``(dim,)`` -> prob_fake, its own layers (shared)."""
    import keras

    inp = keras.Input((dim,), name="features")
    x = inp
    if regions > 1:
        x = keras.layers.Reshape((regions, dim // regions))(x)
        x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inp, net.head(net.feat_norm(x)))


def _probs_frozen(
    ws: Workspace, items: Sequence[Item], spec: EmbeddingSpec, net: Any, regions: int, bs: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """(prob_fake of the items whose features exist, their positions, backbone runs)."""
    e = embed(ws, items, spec, batch_size=bs, model=net.backbone)
    ok = np.flatnonzero(e.ok)
    if not len(ok):
        return np.zeros(0), ok, e.computed
    head = _head_model(net, e.features.shape[1], regions)
    p = np.asarray(head.predict(e.features[ok], batch_size=256, verbose=0), np.float64)
    return p.reshape(-1), ok, e.computed


def _probs_model(
    items: Sequence[Item], view: str, net: Any, size: int, crop: str, bs: int
) -> tuple[np.ndarray, np.ndarray, int]:
    out, errs = predict_paths(
        net.model, [p for p, _ in items], size, crop=crop, batch_size=bs, view=view
    )
    ok = np.flatnonzero([not e for e in errs])
    return out[ok, 0].astype(np.float64), ok, len(items)


def _row(y: np.ndarray, prob: np.ndarray) -> dict[str, Any]:
    """The figures of one condition, as train's test metrics count them (fake at >= 0.5)."""
    from sklearn import metrics as m

    y_true = (np.asarray(y) > 0.5).astype(int)
    pred = (np.asarray(prob) >= 0.5).astype(int)
    p = np.clip(np.asarray(prob, np.float64), 1e-7, 1 - 1e-7)
    both = len(set(y_true.tolist())) == 2
    return {
        "images": len(y_true),
        "accuracy": float(m.accuracy_score(y_true, pred)) if len(y_true) else 0.0,
        "roc_auc": float(m.roc_auc_score(y_true, p)) if both else None,
        "loss": float(m.log_loss(y_true, p, labels=[0, 1])) if len(y_true) else None,
        "confusion_matrix": m.confusion_matrix(y_true, pred, labels=[0, 1]).tolist(),
    }


def evaluate(
    ws: Workspace,
    items: Sequence[Item],
    y: np.ndarray,
    net: Any,
    bb: Any,
    weights: str,
    size: int,
    crop: str,
    clean: dict[str, Any],
    *,
    frozen: bool,
    batch_size: int = 32,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The metrics' ``launder`` record: per condition images, accuracy, AUC, log loss and the
    AUC lost against the split as it is (``clean``: the test metrics), and the worst one."""
    t0 = time.perf_counter()
    spec = EmbeddingSpec(bb, weights, size, crop)
    rows: dict[str, Any] = {}
    runs = 0
    for c in Launder:
        view = launder.view_name(c)
        if frozen:
            prob, ok, n = _probs_frozen(ws, items, spec.viewed(view), net, bb.regions, batch_size)
        else:
            prob, ok, n = _probs_model(items, view, net, size, crop, batch_size)
        runs += n
        rows[c.value] = _row(y[ok], prob)
        auc, base = rows[c.value]["roc_auc"], clean.get("roc_auc")
        rows[c.value]["auc_drop"] = None if auc is None or base is None else round(base - auc, 4)
        if say is not None:
            say(f"laundered test split, {c.value}: AUC {auc}, accuracy "
                f"{rows[c.value]['accuracy']:.4f}")  # fmt: skip
    aucs = {k: v["roc_auc"] for k, v in rows.items() if v["roc_auc"] is not None}
    worst = min(aucs, key=lambda k: aucs[k]) if aucs else None
    return {
        "conditions": rows,
        "worst": None if worst is None else {"condition": worst, "roc_auc": aucs[worst]},
        "clean": {"accuracy": clean.get("accuracy"), "roc_auc": clean.get("roc_auc")},
        "features_from": "embedding cache (frozen backbone)" if frozen else "model",
        "backbone_runs": runs,
        "seconds": round(time.perf_counter() - t0, 2),
        "described": {c.value: launder.DESCRIBED[c] for c in Launder},
    }
