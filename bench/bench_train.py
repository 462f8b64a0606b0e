"""Training benchmark: throughput per phase with and without mixed precision, and (with
``--faces``) test accuracy of ``cleaner train`` on faces140k.

Default (``make bench``, about a minute): 96 generated 64 px images, EfficientNet-Lite0
(offline ImageNet weights), one head epoch and two fine-tuning epochs, once in float32 and once
in mixed_bfloat16; prints images/s of the fine-tuning phase (first epoch, which compiles, left
out) and the ratio bf16 / fp32.

``--faces DIR``: copies DIR/{real,fake} to a temp folder (outside the repo) and runs
``cleaner train`` there for each ``--config``
(``backbone:weights:size:epochs[:layers[:lr[:crop[:head]]]]``);
one JSON line each with accuracy, ROC-AUC, epochs, per-phase images/s and wall time.
``--faces DIR --noise 0.1``: the noise-recovery run (train on clean labels, on 10% flipped, and
after ``make clean-data`` on the flipped copy); ``--backbone`` picks what is trained,
``--clean-data VAR=value`` (repeatable) the clean-data settings.

    .venv/bin/python bench/bench_train.py
    nice .venv/bin/python bench/bench_train.py --faces ../shared/data/faces140k \
        --config efficientnet-lite0:imagenet:160:4 --config efficientnetb0:none:128:4
    nice .venv/bin/python bench/bench_train.py --skip-precision --faces ../shared/data/faces140k \
        --noise 0.1 --size 256 --crop center --epochs 2 --backbone efficientnet-lite0-gram \
        --clean-data BACKBONES=efficientnet-lite0-gram --clean-data MIN_CONFIDENCE=0.9

``--write-head-cache DIR --head-images N [--dim 1280]``: N synthetic images' frozen features
(EfficientNetB0's pooled width by default; bench_heads.py's latent-factor generator, shard by
shard, never all in memory) written as embedding cache shards under DIR, labels beside them.
``--head-phase DIR [--head-features auto|full|pca]``: ``cleaner train``'s phase 1 on them, as
``train`` runs it (``frozen_head.head_inputs`` then ``train.head_phase_on``, 75% train / 25%
val, the logreg head written into a Normalization + Dense model); run it under
``/usr/bin/time -v`` for the peak RSS; prints one JSON line (stage seconds, ``ru_maxrss``).

    nice .venv/bin/python bench/bench_train.py --write-head-cache /tmp/h1m --head-images 1000000
    nice /usr/bin/time -v .venv/bin/python bench/bench_train.py --head-phase /tmp/h1m
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _fine_tune_rate(history: list[dict[str, Any]], phase: str) -> float | None:
    rates = [h["images_per_s"] for h in history if h["phase"] == phase and h.get("images_per_s")]
    rates = rates[1:] or rates  # the first epoch traces and compiles the step
    return round(statistics.median(rates), 1) if rates else None


def precision_run(size: int = 64) -> dict[str, Any]:
    from train_helpers import make_dataset

    from cleaner.dataset import Workspace
    from cleaner.models.devices import cpu_has_amx
    from cleaner.models.train import TrainConfig, train

    out: dict[str, Any] = {"bench": "train_precision", "amx": cpu_has_amx(), "size": size}
    with tempfile.TemporaryDirectory() as tmp:
        root = make_dataset(Path(tmp) / "ds", 48, size=size, seed=1)
        for policy in ("float32", "mixed_bfloat16"):
            t0 = time.perf_counter()
            r = train(
                Workspace.open(root),
                TrainConfig(
                    out=Path(tmp) / f"{policy}.keras",
                    backbone="efficientnet-lite0",
                    weights="imagenet",
                    image_size=size,
                    epochs=3,
                    head_epochs=1,
                    batch_size=16 if size <= 64 else 32,
                    precision=policy,
                    patience=10,
                ),
                report=lambda s: None,
            )
            out[policy] = {
                "fine_tune_images_per_s": _fine_tune_rate(r.history, "fine-tune"),
                "head_feature_images_per_s": r.metrics["phases"]["head"]["feature_images_per_s"],
                "val_accuracy": round(r.metrics["val"]["accuracy"], 4),
                "wall_s": round(time.perf_counter() - t0, 1),
            }
    a, b = out["float32"]["fine_tune_images_per_s"], out["mixed_bfloat16"]["fine_tune_images_per_s"]
    out["ratio_bf16_over_fp32"] = round(b / a, 3) if a and b else None
    return out


def faces_run(faces: Path, configs: list[str], seed: int) -> list[dict[str, Any]]:
    from cleaner.dataset import Workspace
    from cleaner.models.train import TrainConfig, train

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cleaner-faces-") as tmp:
        root = Path(tmp) / "faces"
        for cls in ("real", "fake"):
            shutil.copytree(faces / cls, root / cls)
        for c in configs:
            backbone, weights, size, epochs, *rest = c.split(":")
            t0 = time.perf_counter()
            r = train(
                Workspace.open(root),
                TrainConfig(
                    out=Path(tmp) / f"{backbone}-{weights}-{size}.keras",
                    backbone=backbone,
                    weights=weights,
                    image_size=int(size),
                    epochs=int(epochs),
                    seed=seed,
                    fine_tune_layers=int(rest[0]) if rest else None,
                    fine_tune_lr=float(rest[1]) if len(rest) > 1 else 1e-4,
                    crop=rest[2] if len(rest) > 2 and rest[2] else None,
                    head=rest[3] if len(rest) > 3 else "logreg",
                ),
                report=lambda s: print(s, file=sys.stderr, flush=True),
            )
            m = r.metrics
            results.append(
                {
                    "bench": "train_faces140k",
                    "config": c,
                    "test_accuracy": round(m["accuracy"], 4),
                    "test_roc_auc": round(m["roc_auc"], 4),
                    "val_accuracy": round(m["val"]["accuracy"], 4),
                    "epochs": m["epochs"],
                    "split": {s: m["split"][s]["images"] for s in ("train", "val", "test")},
                    "phases": m["phases"],
                    "dtype_policy": m["dtype_policy"],
                    "wall_s": round(time.perf_counter() - t0, 1),
                    "final_train_accuracy": next(
                        (h.get("accuracy") for h in reversed(r.history)), None
                    ),
                }
            )
            print(json.dumps(results[-1]), flush=True)
    return results


def _train(
    root: Path,
    out: Path,
    size: int,
    epochs: int,
    seed: int,
    crop: str,
    backbone: str = "efficientnet-lite0",
) -> dict[str, Any]:
    from cleaner.dataset import Workspace
    from cleaner.models.train import TrainConfig, train

    r = train(
        Workspace.open(root),
        TrainConfig(
            out=out,
            backbone=backbone,
            weights="imagenet",
            image_size=size,
            epochs=epochs,
            seed=seed,
            crop=crop,
        ),
        report=lambda s: print(s, file=sys.stderr, flush=True),
    )
    return r.metrics


def noise_run(
    faces: Path,
    noise: float,
    size: int,
    epochs: int,
    seed: int,
    crop: str,
    backbone: str = "efficientnet-lite0",
    clean_data: Sequence[str] = (),
) -> dict[str, Any]:
    """Test accuracy (test split kept clean) after training on clean labels, on labels with
    ``noise`` of the train+val images flipped, and after ``make clean-data`` (with the extra
    ``clean_data`` make variables) on the noisy set. The three share one split (split.csv is
    copied) and the embeddings cache."""
    import random
    import subprocess

    from cleaner.split import read_split

    repo = Path(__file__).resolve().parents[1]
    out: dict[str, Any] = {
        "bench": "train_noise_recovery",
        "noise": noise,
        "size": size,
        "crop": crop,
        "backbone": backbone,
        "clean_data_args": list(clean_data),
    }
    with tempfile.TemporaryDirectory(prefix="cleaner-noise-") as tmp:
        clean = Path(tmp) / "clean"
        for cls in ("real", "fake"):
            shutil.copytree(faces / cls, clean / cls)
        m = _train(clean, Path(tmp) / "clean.keras", size, epochs, seed, crop, backbone)
        out["clean"] = {"test_accuracy": round(m["accuracy"], 4), "roc_auc": round(m["roc_auc"], 4)}
        noisy = Path(tmp) / "noisy"
        shutil.copytree(clean, noisy)
        rng = random.Random(seed)
        pool = [r for r in read_split(clean) if r.split != "test"]
        flipped = rng.sample(pool, round(noise * len(pool)))
        for r in flipped:
            other = "fake" if r.label == "real" else "real"
            dst = noisy / other / Path(r.path).name
            (noisy / r.path).rename(dst.with_name("flipped_" + dst.name))
        cleaned = Path(tmp) / "cleaned"
        shutil.copytree(noisy, cleaned)
        m = _train(noisy, Path(tmp) / "noisy.keras", size, epochs, seed, crop, backbone)
        out["noisy"] = {"test_accuracy": round(m["accuracy"], 4), "roc_auc": round(m["roc_auc"], 4)}
        t0 = time.perf_counter()
        subprocess.run(
            ["make", "--no-print-directory", "clean-data", f"ROOT={cleaned}",
             *(clean_data or [f"PREDICT_ARGS_efficientnet-lite0=--image-size {size} --crop {crop}",
                              "RULE=mean", "MIN_CONFIDENCE=0.8"])],
            cwd=repo, check=True, stdout=sys.stderr,
        )  # fmt: skip
        out["clean_data_wall_s"] = round(time.perf_counter() - t0, 1)
        truth = {"flipped_" + Path(r.path).name: r.label for r in flipped}
        in_wrong = sum(
            1
            for cls in ("real", "fake")
            for p in (cleaned / cls).glob("flipped_*")
            if truth.get(p.name, cls) != cls
        )
        out["flipped"] = len(flipped)
        out["still_flipped_after_clean"] = in_wrong
        m = _train(cleaned, Path(tmp) / "cleaned.keras", size, epochs, seed, crop, backbone)
        out["after_clean_data"] = {
            "test_accuracy": round(m["accuracy"], 4),
            "roc_auc": round(m["roc_auc"], 4),
        }
    gap = out["clean"]["test_accuracy"] - out["noisy"]["test_accuracy"]
    won = out["after_clean_data"]["test_accuracy"] - out["noisy"]["test_accuracy"]
    out["gap_recovered"] = round(won / gap, 3) if gap > 0 else None
    return out


HEAD_SPEC = ("efficientnetb0", "imagenet", 224, "center")
"""The cache key the synthetic features are written under (no image is ever read)."""


def _head_spec() -> Any:
    from cleaner.models.backbones import get_backbone
    from cleaner.models.embeddings import EmbeddingSpec

    name, weights, size, crop = HEAD_SPEC
    return EmbeddingSpec(get_backbone(name), weights, size, crop)


def write_head_cache(root: Path, images: int, dim: int) -> dict[str, Any]:
    """``images`` synthetic feature rows as embedding cache shards under ``root``."""
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_heads import SHARD, Synthetic

    from cleaner.models.embeddings import _write_shard, cache_root

    t0 = time.perf_counter()
    spec = _head_spec()
    data = Synthetic(images, dim)
    directory = cache_root(root) / spec.key
    for j in range(-(-images // SHARD)):
        shas = [f"{i:064x}" for i in range(j * SHARD, min(images, (j + 1) * SHARD))]
        _write_shard(directory, spec, shas, data.shard(j))
    np.save(root / "labels.npy", data.y)
    return {"bench": "write_head_cache", "images": images, "dim": dim,
            "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip


def head_phase(root: Path, head_features: str, pca_dim: int) -> dict[str, Any]:
    """``cleaner train``'s phase 1 on the cached synthetic features of ``root``."""
    import resource
    from types import SimpleNamespace

    import numpy as np

    def peak() -> int:
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

    from cleaner.models import frozen_head as FH
    from cleaner.models.projection import HeadFeatures
    from cleaner.models.train import TrainConfig, head_phase_on

    t0 = time.perf_counter()
    y = np.load(root / "labels.npy").astype(np.float64)
    n = len(y)
    n_tr = n * 3 // 4
    items = [(f"img{i}.png", f"{i:064x}") for i in range(n)]
    out: dict[str, Any] = {"bench": "train_head_phase", "images": n, "train": n_tr}
    inputs = FH.head_inputs(
        root, items[:n_tr], items[n_tr:], _head_spec(), mode=HeadFeatures(head_features),
        pca_dim=pca_dim,
    )  # fmt: skip
    del items
    t1 = time.perf_counter()
    gib = round(inputs.features.nbytes / 2**30, 2)
    out |= {"head_features": inputs.mode.value, "feature_gib": gib,
            "features_s": round(t1 - t0, 1), "peak_after_features_mib": peak()}  # fmt: skip
    print(json.dumps(out), file=sys.stderr, flush=True)
    import keras

    width = inputs.width if inputs.projection is None else len(inputs.projection.mean)
    inp = keras.Input((width,))
    norm = keras.layers.Normalization(name="feature_norm")
    dense = keras.layers.Dense(1, activation="sigmoid", name="prob_fake")
    keras.Model(inp, dense(norm(inp)))
    run = SimpleNamespace(
        cfg=TrainConfig(out=root / "m.keras"),
        net=SimpleNamespace(feat_norm=norm, head=dense),
        data=SimpleNamespace(y={"train": y[:n_tr], "val": y[n_tr:]}, sample_w=None),
        say=lambda s: None,
        history=[],
    )
    phase = head_phase_on(run, inputs, None)
    out |= {"head_s": round(time.perf_counter() - t1, 1), "iterations": phase["iterations"],
            "val_accuracy": round(phase["val_accuracy"], 4),
            "val_auc": round(phase["val_auc"], 4), "peak_mib": peak(),
            "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    if inputs.projection is not None:
        out["projection"] = inputs.projection.info()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=Path, help="faces140k folder with real/ and fake/")
    ap.add_argument(
        "--config",
        action="append",
        default=[],
        help="backbone:weights:size:epochs[:unfrozen_layers[:lr[:crop[:head]]]]",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-precision", action="store_true")
    ap.add_argument(
        "--precision-size", type=int, default=64, help="image side of the fp32/bf16 run"
    )
    ap.add_argument("--noise", type=float, help="with --faces: the noise-recovery run instead")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--crop", default="resize", choices=["resize", "center"])
    ap.add_argument("--backbone", default="efficientnet-lite0", help="noise run: what to train")
    ap.add_argument(
        "--clean-data",
        action="append",
        default=[],
        help="noise run: a make variable for clean-data (VAR=value), repeatable",
    )
    ap.add_argument("--write-head-cache", type=Path, help="synthetic head features: write")
    ap.add_argument("--head-images", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=1280, help="synthetic feature width")
    ap.add_argument("--head-phase", type=Path, help="phase 1 on the synthetic features")
    ap.add_argument("--head-features", default="auto", choices=["auto", "full", "pca"])
    ap.add_argument("--pca-dim", type=int, default=1024)
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.write_head_cache:
        args.write_head_cache.mkdir(parents=True, exist_ok=True)
        print(json.dumps(write_head_cache(args.write_head_cache, args.head_images, args.dim)))
        return
    if args.head_phase:
        print(json.dumps(head_phase(args.head_phase, args.head_features, args.pca_dim)))
        return
    if not args.skip_precision:
        print(json.dumps(precision_run(args.precision_size)), flush=True)
    if args.faces and args.noise:
        print(
            json.dumps(
                noise_run(
                    args.faces,
                    args.noise,
                    args.size,
                    args.epochs,
                    args.seed,
                    args.crop,
                    args.backbone,
                    args.clean_data,
                )
            )
        )
    elif args.faces:
        faces_run(args.faces, args.config or ["efficientnet-lite0:imagenet:160:4"], args.seed)


if __name__ == "__main__":
    main()
