"""Out-of-fold cost and the crop policy, on faces140k.

1. Five folds against one embedding pass: the backbone runs once per image (cache), then five
   logistic-regression heads (the backbone's C); goal: the whole K=5 run costs at most 1.3x
   the embedding pass. Timed twice: plain heads (``--no-prune``) and pruned heads (the CLI's
   default: an inner 4-fold CV per fold, so 25 head fits instead of 5).
2. Crop policy (inputs.py): out-of-fold AUC of frozen heads at 128 px with ``center`` (native
   resolution central crop) against ``resize`` (the whole 256 px face shrunk to 128), for the
   spectrum and for Lite0.

    nice .venv/bin/python bench/bench_folds.py              # 150 + 150 faces
    nice .venv/bin/python bench/bench_folds.py --n 1100     # everything
    nice .venv/bin/python bench/bench_folds.py --n 1100 --no-crop --backbone efficientnet-lite2-gram

Prints one JSON line; "ratio" is (embedding pass + 5 folds) / embedding pass.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from cleaner.hashing import file_sha256
from cleaner.models import folds as F
from cleaner.models.backbones import get_backbone
from cleaner.models.embeddings import EmbeddingSpec, embed

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces140k"


def oof_auc(items: list[tuple[Path, str]], y: np.ndarray, spec: EmbeddingSpec) -> float:
    from sklearn.metrics import roc_auc_score

    emb = embed(None, items, spec)
    fold = F.assign_folds(y, np.arange(len(y)), 5)
    res = F.frozen_oof(emb.features, y, fold, ok=emb.ok)
    return round(float(roc_auc_score(y, res.prob_fake)), 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=150, help="faces per class")
    ap.add_argument("--backbone", default="efficientnet-lite0")
    ap.add_argument("--no-crop", action="store_true", help="skip the crop-policy comparison")
    args = ap.parse_args()
    if not FACES.is_dir():
        print(json.dumps({"bench": "folds", "skipped": f"{FACES} not found"}))
        return
    items: list[tuple[Path, str]] = []
    y_list: list[int] = []
    for label in ("real", "fake"):
        for name in sorted(os.listdir(FACES / label))[: args.n]:
            p = FACES / label / name
            items.append((p, file_sha256(p)))
            y_list.append(int(label == "fake"))
    y = np.array(y_list)
    bb = get_backbone(args.backbone)
    spec = EmbeddingSpec(bb, bb.default_weights, bb.input_size, bb.crop)
    bb.build(spec.weights, spec.image_size)  # warm: weights converted, graph traced once

    t = time.perf_counter()
    emb = embed(None, items, spec)  # root=None: no cache, the backbone runs on every image
    t_embed = time.perf_counter() - t
    t = time.perf_counter()
    fold = F.assign_folds(y, np.arange(len(y)), 5)
    res = F.frozen_oof(emb.features, y, fold, c=bb.head_c, ok=emb.ok, regions=bb.regions)
    t_folds = time.perf_counter() - t
    t = time.perf_counter()
    pruned = F.frozen_oof(
        emb.features, y, fold, c=bb.head_c, ok=emb.ok, prune=True, regions=bb.regions
    )
    t_pruned = time.perf_counter() - t
    from sklearn.metrics import roc_auc_score

    out = {
        "bench": "folds",
        "images": len(items),
        "backbone": args.backbone,
        "embed_seconds": round(t_embed, 2),
        "embed_img_per_s": round(len(items) / t_embed, 1),
        "five_folds_seconds": round(t_folds, 2),
        "five_pruned_folds_seconds": round(t_pruned, 2),
        "pruned_per_fold": pruned.pruned,
        "oof_auc": round(float(roc_auc_score(y, res.prob_fake)), 3),
        "oof_auc_pruned": round(float(roc_auc_score(y, pruned.prob_fake)), 3),
        "ratio": round((t_embed + t_folds) / t_embed, 3),
        "ratio_pruned": round((t_embed + t_pruned) / t_embed, 3),
        "ratio_is": "(one embedding pass + 5 fold heads) / one embedding pass; goal <= 1.3",
    }
    if not args.no_crop:
        crops = {}
        for name in ("spectrum", args.backbone):
            b = get_backbone(name)
            for crop in ("center", "resize"):
                crops[f"{name}@128 {crop}"] = oof_auc(
                    items, y, EmbeddingSpec(b, b.default_weights, 128, crop)
                )
        out["crop_policy_oof_auc"] = crops
    print(json.dumps(out))


if __name__ == "__main__":
    main()
