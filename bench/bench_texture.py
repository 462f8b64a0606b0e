"""Texture features (``efficientnet-lite0-gram``) against Lite0's pooled features, on faces140k.

One pass of Lite0 at 256 px over the faces computes every variant from the same feature maps;
each is scored by the production out-of-fold head (``cleaner.models.folds``: 5 folds,
standardised features, logistic regression C = 0.003), against the true labels:

- ``pooled``: Lite0's global-average-pooled 1,280 features (what ``efficientnet-lite0`` gives);
- ``block_mean_std``: per-channel mean and std of every block's output (6,176);
- ``gram_stage_ends``: + Gram matrices of blocks 2, 4, 7, 10 (16,608: the registered backbone);
- ``gram_all``: + Gram matrices of every block up to 112 channels (36,536);
- ``gram_only_stage_ends``: the four Gram matrices alone (10,432).

    nice .venv/bin/python bench/bench_texture.py             # all 1,100 + 1,100 faces
    nice .venv/bin/python bench/bench_texture.py --n 200     # quicker

Prints one JSON line; "ratio" is the registered backbone's OOF AUC / the pooled features'.

``--family``: instead, the registered texture backbones of the EfficientNet-Lite family
(``efficientnet-lite{0,1,2}-gram`` at their default sizes) through ``cleaner.models.embeddings``
and the production head (their C), against the true labels; features are cached by content
under ``--cache-root`` (default: a temp folder), so a rerun, or a root whose cache already
holds these faces (the label-error bench's work folder), costs only the heads. "ratio" is then
Lite2's OOF accuracy / Lite0's.

    nice .venv/bin/python bench/bench_texture.py --family
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces140k"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1100, help="faces per class")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--family", action="store_true", help="the Lite0/1/2 texture backbones")
    ap.add_argument("--cache-root", type=Path, default=None, help="embedding cache root")
    args = ap.parse_args()
    if not FACES.is_dir():
        print(json.dumps({"bench": "texture", "skipped": f"{FACES} not found"}))
        return
    if args.family:
        family(args.n, args.cache_root)
        return
    import keras
    import tensorflow as tf
    from sklearn.metrics import roc_auc_score

    from cleaner.images import load_array
    from cleaner.models import folds as F
    from cleaner.models import lite, texture

    paths: list[Path] = []
    labels: list[int] = []
    for label in ("real", "fake"):
        for name in sorted(os.listdir(FACES / label))[: args.n]:
            paths.append(FACES / label / name)
            labels.append(int(label == "fake"))
    y = np.array(labels)

    net = lite.load(args.size, include_top=True)
    last: dict[int, str] = {}
    for layer in net.layers:
        if layer.name.startswith("_blocks."):
            last[int(layer.name.split(".")[1])] = layer.name
    maps = [net.get_layer(last[b]).output for b in sorted(last)] + [
        net.get_layer("head_act").output
    ]
    channels = [int(m.shape[-1]) for m in maps]
    stats = texture._layer_class()
    masks = {
        "block_mean_std": [False] * len(maps),
        "gram_stage_ends": [b in texture.gram_blocks(0) for b in sorted(last)] + [False],
        "gram_all": [c <= 112 for c in channels[:-1]] + [False],
    }
    outs = {"pooled": net.get_layer("avg_pool").output}
    outs.update({k: stats(m)(maps) for k, m in masks.items()})
    model = keras.Model(net.input, outs)
    run = tf.function(lambda x: model(x, training=False))

    t0 = time.perf_counter()
    feats: dict[str, list[np.ndarray]] = {k: [] for k in outs}
    for i in range(0, len(paths), 32):
        x = np.stack([load_array(p, args.size, crop="center") for p in paths[i : i + 32]])
        for k, v in run(x.astype(np.float32)).items():
            feats[k].append(np.asarray(v))
    seconds = time.perf_counter() - t0
    arrays = {k: np.concatenate(v) for k, v in feats.items()}
    # the layer puts each map's (mean, std[, gram]) together; the Gram-only view takes them apart
    arrays["gram_only_stage_ends"] = _grams(arrays["gram_stage_ends"], channels, masks)

    fold = F.assign_folds(y, np.arange(len(y)), 5)
    result: dict[str, Any] = {}
    for name, x in arrays.items():
        p = F.frozen_oof(x, y, fold).prob_fake
        result[name] = {
            "dim": int(x.shape[1]),
            "oof_accuracy": round(float(np.mean((p >= 0.5) == y)), 3),
            "oof_auc": round(float(roc_auc_score(y, p)), 3),
        }
    print(
        json.dumps(
            {
                "bench": "texture",
                "images": len(y),
                "size": args.size,
                "embedding_seconds": round(seconds, 1),
                "images_per_s": round(len(y) / seconds, 1),
                "variants": result,
                "ratio": round(
                    result["gram_stage_ends"]["oof_auc"] / result["pooled"]["oof_auc"], 3
                ),
                "ratio_is": "OOF AUC of efficientnet-lite0-gram's features / Lite0 pooled features",
            }
        )
    )


def family(n: int, cache_root: Path | None) -> None:
    """OOF accuracy and AUC of each registered Lite texture backbone on the true labels."""
    import tempfile

    from sklearn.metrics import roc_auc_score

    from cleaner.hashing import file_sha256
    from cleaner.models import folds as F
    from cleaner.models.backbones import get_backbone
    from cleaner.models.embeddings import EmbeddingSpec, embed

    root = cache_root or Path(tempfile.gettempdir()) / "cleaner-bench-texture-cache"
    items: list[tuple[str, str]] = []
    labels: list[int] = []
    for label in ("real", "fake"):
        for name in sorted(os.listdir(FACES / label))[:n]:
            path = FACES / label / name
            items.append((str(path), file_sha256(path)))
            labels.append(int(label == "fake"))
    y = np.array(labels)
    fold = F.assign_folds(y, np.arange(len(y)), 5)
    result: dict[str, Any] = {}
    for i in (0, 1, 2):
        bb = get_backbone(f"efficientnet-lite{i}-gram")
        spec = EmbeddingSpec(bb, "imagenet", bb.input_size, bb.crop)
        t0 = time.perf_counter()
        emb = embed(root, items, spec)
        seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        p = F.frozen_oof(emb.features, y, fold, c=bb.head_c, regions=bb.regions).prob_fake
        result[bb.name] = {
            "size": bb.input_size,
            "dim": int(emb.features.shape[1]),
            "head_c": bb.head_c,
            "oof_accuracy": round(float(np.mean((p >= 0.5) == y)), 4),
            "oof_auc": round(float(roc_auc_score(y, p)), 4),
            "embedding_seconds": round(seconds, 1),
            "computed": emb.computed,
            "images_per_s": round(emb.computed / seconds, 1) if emb.computed else None,
            "heads_seconds": round(time.perf_counter() - t1, 1),
        }
    acc = {k: v["oof_accuracy"] for k, v in result.items()}
    print(
        json.dumps(
            {
                "bench": "texture_family",
                "images": len(y),
                "backbones": result,
                "ratio": round(acc["efficientnet-lite2-gram"] / acc["efficientnet-lite0-gram"], 3),
                "ratio_is": "OOF accuracy of efficientnet-lite2-gram / efficientnet-lite0-gram",
            }
        )
    )


def _grams(x: np.ndarray, channels: list[int], masks: dict[str, list[bool]]) -> np.ndarray:
    """The Gram columns of a ``gram_stage_ends`` feature matrix (layout of TextureStats)."""
    cols: list[np.ndarray] = []
    at = 0
    for c, g in zip(channels, masks["gram_stage_ends"], strict=True):
        at += 2 * c
        if g:
            n = c * (c - 1) // 2
            cols.append(x[:, at : at + n])
            at += n
    return np.concatenate(cols, axis=1)


if __name__ == "__main__":
    main()
