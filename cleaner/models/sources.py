"""Leave-one-source-out: for each source of a class, the AUC of a head that never saw it.

A test split drawn from the same sources as the training split flatters a detector: a new
generator or camera is the case that matters (DeepfakeBench: CNN detectors trained on one face
set fall to AUC 0.70-0.75 on another). ``cleaner train --by-source`` therefore also reports,
per source, how a head on the same frozen features does on that source's test images when the
source's training images are left out.

**Sources** (:func:`image_sources`): the first sub-folder under a class folder
(``fake_images/stylegan/...`` is ``fake/stylegan``; a file directly in the class folder is
``fake/(top)``) when any image sits in one; otherwise the file's form, as ``cleaner audit``
sees it: format and size from the manifest (``fake/JPEG 256x256``).

**Per source** ``s`` of class ``L`` (a class needs two sources or more: leaving out its only one
would leave nothing to learn it from): a logistic-regression head (the model's, ``C`` the
backbone's) fitted on the training split without ``s``; scored on the test images of ``s``
against every test image of the other class (AUC needs both classes); beside it, the head
fitted on the whole training split (what the model saw) on the same images. A source whose
held-out AUC is below :data:`FAIL_BELOW` is named as failed.

The heads are fitted on frozen features (the embedding cache), whatever the model's phases:
for a fine-tuned model the table measures its backbone's frozen representation, not the
fine-tuning (one fine-tuning per source would cost the whole training again); the record says
which.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cleaner.choices import Label
from cleaner.dataset import Workspace
from cleaner.state.split import SplitRow

FAIL_BELOW = 0.8
"""A held-out source's AUC under this is named as a failure."""

TOP = "(top)"
FINE_TUNED = " (the model was fine-tuned: its backbone's frozen features, not its own)"


def _subfolder(path: str) -> str | None:
    parts = Path(path).parts
    return parts[1] if len(parts) > 2 else None


def image_sources(ws: Workspace, rows: Sequence[SplitRow]) -> tuple[list[str], str]:
    """Each row's source (``label/name``) and where the sources came from (``sub-folders`` or
    ``form (format and size)``)."""
    subs = [_subfolder(r.path) for r in rows]
    if any(s is not None for s in subs):
        return [f"{r.label}/{s or TOP}" for r, s in zip(rows, subs, strict=True)], "sub-folders"
    from cleaner.manifest import read_manifest

    form = {m.path: f"{m.format} {m.width}x{m.height}" for m in read_manifest(ws)}
    return [f"{r.label}/{form.get(r.path, '?')}" for r in rows], "form (format and size)"


def _fit_prob(
    features: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, regions: int, c: float
) -> np.ndarray:
    """prob_fake of the ``test`` rows from a logistic regression fitted on the ``train`` rows,
    as the model's head is fitted (:func:`cleaner.models.frozen_head.fit_logreg`)."""
    from cleaner.models import frozen_head as FH
    from cleaner.models.projection import HeadFeatures

    inputs = FH.HeadInputs(
        features=features, train=train, val=test, regions=regions, projection=None,
        mode=HeadFeatures.FULL, computed=0, cached=0, failed=[],
    )  # fmt: skip
    norm = FH.standardisation(inputs)
    lr, _, _ = FH.fit_logreg(inputs, y[train], None, norm, c=c)
    return np.asarray(lr.prob(*inputs.val_features()), np.float64)


def _score(y: np.ndarray, p: np.ndarray) -> tuple[float | None, float]:
    from sklearn.metrics import roc_auc_score

    auc = float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else None
    return auc, float(np.mean((p >= 0.5) == (y > 0.5)))


def leave_one_source_out(
    ws: Workspace,
    rows: Sequence[SplitRow],
    embed_rows: Callable[[Sequence[SplitRow]], tuple[np.ndarray, np.ndarray]],
    *,
    regions: int,
    c: float,
    fine_tuned: bool,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The metrics' ``by_source`` record. ``rows``: the split's train and test rows;
    ``embed_rows(rows) -> (features, ok mask)``: their frozen features (from the cache)."""
    t0 = time.perf_counter()
    src, how = image_sources(ws, rows)
    feats, ok = embed_rows(rows)
    y = np.array([1.0 if r.label == Label.FAKE else 0.0 for r in rows])
    part = np.array([r.split for r in rows])
    source = np.array(src)
    train_all = np.flatnonzero((part == "train") & ok)
    per_class = Counter(s.split("/", 1)[0] for s in set(src))
    table: list[dict[str, Any]] = []
    for s in sorted(set(src)):
        label = s.split("/", 1)[0]
        test = np.flatnonzero(
            (part == "test") & ok & ((source == s) | (y != (1.0 if label == Label.FAKE else 0.0)))
        )
        n_test = int(((part == "test") & ok & (source == s)).sum())
        left_out = int(((part == "train") & (source == s)).sum())
        row: dict[str, Any] = {
            "source": s, "label": label, "test_images": n_test, "train_left_out": left_out,
        }  # fmt: skip
        if per_class[label] < 2 or n_test == 0:
            only = per_class[label] < 2
            row["skipped"] = "the only source of its class" if only else "no test images"
            table.append(row)
            continue
        train = train_all[source[train_all] != s]
        auc, acc = _score(y[test], _fit_prob(feats, y, train, test, regions, c))
        seen_auc, seen_acc = _score(y[test], _fit_prob(feats, y, train_all, test, regions, c))
        row.update(roc_auc=auc, accuracy=acc, seen_roc_auc=seen_auc, seen_accuracy=seen_acc,
                   fails=auc is not None and auc < FAIL_BELOW)  # fmt: skip
        if say is not None:
            say(f"left out {s}: AUC {auc:.4f} (seen: {seen_auc:.4f}) on {n_test} test images")
        table.append(row)
    return {
        "sources_from": how,
        "sources": table,
        "failed": [r["source"] for r in table if r.get("fails")],
        "fail_below": FAIL_BELOW,
        "heads": "logistic regression on frozen features" + (FINE_TUNED if fine_tuned else ""),
        "seconds": round(time.perf_counter() - t0, 2),
    }
