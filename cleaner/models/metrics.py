"""What ``cleaner train`` reports of a model: test metrics, the plots beside ``M.keras``, and
the versions that made it (all in ``M.metrics.json``, :mod:`cleaner.state.metrics`)."""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cleaner.dataset import LABELS


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


def versions() -> dict[str, str]:
    """The versions of Python and the libraries that trained the model."""
    out = {"python": platform.python_version()}
    for mod in ("tensorflow", "keras", "numpy", "sklearn", "PIL", "cleaner"):
        try:
            m = __import__(mod)
            out[mod] = str(getattr(m, "__version__", "?"))
        except ImportError:
            continue
    return out


def median(xs: Sequence[float]) -> float | None:
    """The median of ``xs``; None when there are none."""
    return float(np.median(xs)) if xs else None
