"""Embedding throughput on the GPU against the CPU, and whether decoding keeps the GPU busy:
Lite0, Lite2-gram and EfficientNetB0, images/s of

- ``gpu_model``: the network alone on a batch of tensors already in GPU memory (the ceiling);
- ``gpu_pipeline``: :func:`cleaner.models.inputs.predict_paths` over JPEG files (decoding in
  threads through :mod:`cleaner.images`, the network on the GPU): what ``cleaner predict`` gets;
- ``cpu_model``: the network alone on tensors, on the CPU.

``feed`` = gpu_pipeline / gpu_model (goal >= 0.8: the decoder keeps the GPU busy);
``speedup`` = gpu_model / cpu_model. Precision: ``--precision auto`` (mixed float16 on a GPU,
as ``cleaner train`` and the heads use). Files: ../shared/data/faces140k (256 px JPEG faces),
or ``--images`` generated 256 px JPEGs when it is absent. EfficientNetB0 runs with random
weights (its ImageNet weights come from a download; throughput does not depend on them).

Without a GPU visible to TensorFlow it prints ``no GPU`` and a JSON line saying so, exit 0.

    .venv/bin/python bench/bench_gpu.py
    .venv/bin/python bench/bench_gpu.py --images 4096 --batch 128
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces140k"
BACKBONES = ("efficientnet-lite0", "efficientnet-lite2-gram", "efficientnetb0")


def _files(n: int, tmp: Path) -> list[Path]:
    faces = sorted(FACES.glob("*/*.jpg")) if FACES.is_dir() else []
    if faces:
        return (faces * (n // len(faces) + 1))[:n]
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for i in range(min(n, 512)):
        p = tmp / f"{i:05d}.jpg"
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(p, quality=90)
        out.append(p)
    return (out * (n // len(out) + 1))[:n]


def _rate(fn: Any, n: int, repeats: int = 3) -> float:
    """Images/s of ``fn()`` (which handles ``n`` images), best of ``repeats`` after a warm-up."""
    fn()
    best = min(_time(fn) for _ in range(repeats))
    return n / best


def _time(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _measure(name: str, files: list[Path], batch: int) -> dict[str, float]:
    """One backbone's images/s on GPU tensors, through the decode pipeline, on CPU tensors."""
    import tensorflow as tf

    from cleaner.models.backbones import get_backbone
    from cleaner.models.inputs import predict_paths

    bb = get_backbone(name)
    size = bb.input_size
    weights = "none" if name == "efficientnetb0" else bb.default_weights
    steps = max(1, len(files) // batch)
    row: dict[str, float] = {}
    with tf.device("/GPU:0"):
        model = bb.build(weights, size)
        x = tf.random.uniform((batch, size, size, 3), 0, 255)
        call = tf.function(lambda t: model(t, training=False))
        row["gpu_model"] = _rate(lambda: [call(x).numpy() for _ in range(steps)], steps * batch)
        row["gpu_pipeline"] = _rate(
            lambda: predict_paths(model, files, size, batch_size=batch), len(files), repeats=2
        )
    with tf.device("/CPU:0"):
        cpu = bb.build(weights, size)
        xc = tf.random.uniform((batch, size, size, 3), 0, 255)
        row["cpu_model"] = _rate(lambda: cpu(xc, training=False).numpy(), batch, repeats=2)
    out = {k: round(v, 1) for k, v in row.items()}
    out["feed"] = round(row["gpu_pipeline"] / row["gpu_model"], 3)
    out["speedup"] = round(row["gpu_model"] / row["cpu_model"], 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        print("no GPU", file=sys.stderr)
        print(json.dumps({"bench": "gpu", "skipped": "no GPU visible to TensorFlow"}))
        return
    import keras

    from cleaner.models.devices import resolve_precision

    policy = resolve_precision(args.precision)
    keras.mixed_precision.set_global_policy(policy)
    res: dict[str, Any] = {"bench": "gpu", "gpus": len(gpus), "policy": policy}
    with tempfile.TemporaryDirectory(prefix="cleaner-bench-gpu-") as tmp:
        files = _files(args.images, Path(tmp))
        for name in BACKBONES:
            res[name] = _measure(name, files, args.batch)
            keras.backend.clear_session()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
