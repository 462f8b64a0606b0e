"""`cleaner predict` throughput: the tf.data pipeline against its two peers, same model.

- pipeline: :func:`cleaner.models.inputs.predict_paths` (what ``cleaner predict --model`` and
  ``predict-dir`` run): parallel decoding + batching + prefetch from files;
- in-memory: ``model.predict`` on the same crops already decoded into one tensor (the floor:
  no decoding at all); goal: the pipeline costs under 10% more;
- loop: load one image, ``model.predict`` it, next (the original scripts); goal: the pipeline
  is at least 5x faster.

Two models: a Lite0 classifier at 224 px (compute-bound) and the original scripts' simple CNN at
32 px (overhead-bound).

    nice .venv/bin/python bench/bench_predict.py            # 96 faces
    nice .venv/bin/python bench/bench_predict.py --n 400

Prints one JSON line; "ratio" is loop time / pipeline time for the Lite0 model.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces140k"


def classifier(backbone: str, size: int) -> object:
    import keras

    from cleaner.models.backbones import get_backbone

    bb = get_backbone(backbone)
    base = bb.build(bb.default_weights, size)
    inp = keras.Input((size, size, 3))
    out = keras.layers.Dense(1, activation="sigmoid")(base(inp))
    return keras.Model(inp, out)


def measure(model: object, paths: list[Path], size: int, batch: int, loop_n: int) -> dict:  # type: ignore[type-arg]
    from cleaner.models.inputs import load_one, predict_paths

    crop = "center"
    predict_paths(model, paths[:batch], size, crop=crop, batch_size=batch)  # warm-up (trace)
    t = time.perf_counter()
    p_pipe, _ = predict_paths(model, paths, size, crop=crop, batch_size=batch)
    t_pipe = time.perf_counter() - t

    x = np.stack([load_one(p, size, crop)[0] for p in paths]).astype(np.float32)
    model.predict(x[:batch], batch_size=batch, verbose=0)  # type: ignore[attr-defined]
    t = time.perf_counter()
    p_mem = model.predict(x, batch_size=batch, verbose=0)  # type: ignore[attr-defined]
    t_mem = time.perf_counter() - t
    assert np.allclose(p_pipe[:, 0], p_mem[:, 0], atol=1e-4), "pipeline and memory disagree"

    sub = paths[:loop_n]
    t = time.perf_counter()
    for p in sub:
        img = load_one(p, size, crop)[0].astype(np.float32)
        model.predict(img[None], verbose=0)  # type: ignore[attr-defined]
    t_loop = (time.perf_counter() - t) * len(paths) / len(sub)
    return {
        "pipeline_img_per_s": round(len(paths) / t_pipe, 1),
        "in_memory_img_per_s": round(len(paths) / t_mem, 1),
        "loop_img_per_s": round(len(paths) / t_loop, 1),
        "pipeline_overhead_vs_memory": round(t_pipe / t_mem - 1, 3),
        "speedup_vs_loop": round(t_loop / t_pipe, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=96, help="images")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--loop-n", type=int, default=32, help="images timed in the slow loop")
    args = ap.parse_args()
    if not FACES.is_dir():
        print(json.dumps({"bench": "predict", "skipped": f"{FACES} not found"}))
        return
    names = sorted(os.listdir(FACES / "fake"))[: args.n // 2]
    paths = [FACES / "fake" / n for n in names]
    names = sorted(os.listdir(FACES / "real"))[: args.n - len(paths)]
    paths += [FACES / "real" / n for n in names]
    lite = measure(classifier("efficientnet-lite0", 224), paths, 224, args.batch_size, args.loop_n)
    cnn = measure(classifier("simple-cnn", 32), paths, 32, args.batch_size, len(paths))
    print(
        json.dumps(
            {
                "bench": "predict",
                "images": len(paths),
                "batch_size": args.batch_size,
                "lite0_224": lite,
                "simple_cnn_32": cnn,
                "ratio": lite["speedup_vs_loop"],
                "ratio_is": "loop / pipeline time, Lite0 224 px",
            }
        )
    )


if __name__ == "__main__":
    main()
