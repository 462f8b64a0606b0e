"""A head on frozen features trained on robust views too: K augmented views per training image
(:mod:`cleaner.models.augment`), embedded once into the cache under their own key (the view's
name, its seed included), appended as extra training rows beside the clean ones. Validation
rows stay clean. A second run reads every view from the cache.

Full features only: with projected ones (``--head-features pca``) the views are left out and
the record says so (a projection fitted on the clean rows would need a second pass per view).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from cleaner.dataset import Workspace
from cleaner.models import augment as AUG
from cleaner.models.embeddings import EmbeddingSpec, embed
from cleaner.models.frozen_head import HeadInputs, Item


def add_views(
    ws: Workspace,
    train: Sequence[Item],
    spec: EmbeddingSpec,
    inputs: HeadInputs,
    *,
    views: int,
    robust: AUG.Robust,
    batch_size: int = 32,
    model: Any = None,
) -> tuple[HeadInputs, dict[str, Any]]:
    """``inputs`` with the features of ``views`` robust views of each training image appended
    as training rows; returns it and the record for the metrics (views, their cache hits and
    computed images, seconds). ``model``: the backbone, when built."""
    info: dict[str, Any] = {"views": views, **robust.info()}
    if inputs.projection is not None or views <= 0:
        info["views"] = 0
        if inputs.projection is not None:
            info["note"] = "robust views need full features (--head-features full)"
        return inputs, info
    t0 = time.perf_counter()
    blocks = [inputs.features]
    rows = [inputs.train]
    images = [inputs.train]
    n_rows, computed, cached = len(inputs.features), 0, 0
    for k in range(views):
        view = spec.viewed(AUG.view_name(k, robust))
        e = embed(ws, train, view, batch_size=batch_size, model=model)
        ok = np.flatnonzero(e.ok)
        blocks.append(e.features[ok].astype(np.float32, copy=False))
        rows.append(n_rows + np.arange(len(ok)))
        images.append(ok)
        n_rows += len(ok)
        computed, cached = computed + e.computed, cached + e.cached
    info.update(
        computed=computed, cached=cached, seconds=round(time.perf_counter() - t0, 2),
        rows=int(sum(len(r) for r in rows)),
    )  # fmt: skip
    out = dataclasses.replace(
        inputs,
        features=np.concatenate(blocks),
        train=np.concatenate(rows),
        train_image=np.concatenate(images),
    )
    return out, info
