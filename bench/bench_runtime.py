"""Frozen-backbone features per second: Keras against the fast runtime (TensorFlow Lite with
XNNPACK, :mod:`cleaner.models.runtime`), in one run, cache off, on faces140k.

For each backbone and each round, Keras then fast (the next round fast then Keras: A B B A,
so a change in the shared machine's load hits both), each over the same N faces through
:func:`cleaner.models.embeddings.compute_features` (decoding overlapped with the forward pass
as in ``cleaner predict``). Fixed costs (building the Keras model; converting it or loading
the cached conversion; the first batch) are timed apart and not in images/s. Also: how far the
fast features are from Keras' (max abs, max relative, the worst ``|d| / (ATOL + RTOL |k|)``,
<= 1 is within the tolerance), the achieved GFLOP/s (multiply-adds of the convolutions and
dense layers x 2 / time) and its fraction of the peak (cores x float32 lanes of the widest
AVX in /proc/cpuinfo's flags x 2 for FMA x clock; one FMA unit assumed: a core with two
halves the fraction), with the CPU model and the load average. On a machine shared with
other jobs the wall clock measures the share of the cores this run got as much as the
runtime; the process's CPU time per image (decoding threads included; a spinning worker
thread counts too) is also given.

    nice -n 10 .venv/bin/python bench/bench_runtime.py                    # 1,000 faces
    nice -n 10 .venv/bin/python bench/bench_runtime.py --n 64 --rounds 1  # a quick look

Prints one JSON line per backbone and round, then a summary line ("ratio": fast images/s over
Keras images/s, the median over rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces140k"


def cpu() -> dict[str, Any]:
    """The CPU model, cores, widest AVX, clock and the peak float32 GFLOP/s they give."""
    text = Path("/proc/cpuinfo").read_text()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = (s.strip() for s in line.split(":", 1))
            fields.setdefault(k, v)
    flags = set(fields.get("flags", "").split())
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags or "avx" in flags else 4
    fma = 2 if "fma" in flags else 1
    mhz = float(fields.get("cpu MHz", "0") or 0)
    cores = len(os.sched_getaffinity(0))
    return {
        "model": fields.get("model name", "?"),
        "cores": cores,
        "avx_lanes_f32": lanes,
        "fma": "fma" in flags,
        "mhz": mhz,
        "peak_gflops": round(cores * lanes * fma * mhz / 1000, 1),
        "peak_rule": "cores x f32 lanes x 2 (FMA) x MHz, one FMA unit per core",
    }


def macs(model: Any) -> int:
    """Multiply-adds per image of the convolutions and dense layers (nested models too)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += macs(layer)
            continue
        out = getattr(layer, "output", None)
        shape = tuple(getattr(out, "shape", ()) or ())
        if not shape or not hasattr(layer, "kernel"):
            continue
        k = tuple(layer.kernel.shape)
        spatial = int(np.prod([s for s in shape[1:-1] if s])) if len(shape) > 2 else 1
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            total += spatial * int(shape[-1]) * k[0] * k[1]
        else:
            total += spatial * int(np.prod(k))
    return total


def run(spec: Any, paths: list[str], runtime: str, batch: int) -> dict[str, Any]:
    from cleaner.models import embeddings as E
    from cleaner.models import runtime as RT

    t0 = time.perf_counter()
    model = RT.load(spec.backbone, spec.weights, spec.image_size, RT.Runtime(runtime))
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    E.compute_features(spec, paths[:batch], batch_size=batch, model=model)  # first batch
    first_s = time.perf_counter() - t0
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    feats, errors = E.compute_features(spec, paths, batch_size=batch, model=model)
    seconds, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    return {
        "runtime": runtime,
        "kind": type(model).__name__,
        "images": len(paths),
        "errors": sum(bool(e) for e in errors),
        "seconds": round(seconds, 2),
        "images_per_s": round(len(paths) / seconds, 2),
        "cpu_ms_per_image": round(1000 * cpu_s / len(paths), 1),
        "fixed_s": {"load_or_convert": round(load_s, 2), "first_batch": round(first_s, 2)},
        "load_avg": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "_features": feats,
    }


def difference(fast: np.ndarray, keras: np.ndarray) -> dict[str, float]:
    from cleaner.models.runtime import ATOL, RTOL

    d = np.abs(fast.astype(np.float64) - keras)
    scale = np.abs(keras).astype(np.float64)
    rel_img = np.linalg.norm(d, axis=1) / np.maximum(np.linalg.norm(keras, axis=1), 1e-12)
    return {
        "max_abs": float(d.max()),
        "max_rel_where_abs_over_1e-2": float((d / np.maximum(scale, 1e-2)).max()),
        "max_rel_l2_per_image": float(rel_img.max()),
        "worst_of_tolerance": float((d / (ATOL + RTOL * scale)).max()),
        "tolerance": f"|d| <= {ATOL} + {RTOL} |keras|",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--backbones", default="efficientnet-lite0,efficientnet-lite2-gram")
    ap.add_argument("--data", type=Path, default=FACES)
    ap.add_argument("--first", choices=("keras", "fast"), default="keras", help="round 0's first")
    args = ap.parse_args()

    from cleaner.models import quiet_tensorflow
    from cleaner.models.backbones import get_backbone
    from cleaner.models.embeddings import EmbeddingSpec

    quiet_tensorflow()
    half = args.n // 2
    paths = [str(p) for c in ("real", "fake") for p in sorted((args.data / c).iterdir())[:half]]
    info = cpu()
    summary: dict[str, Any] = {"cpu": info, "images": len(paths), "data": str(args.data)}
    for name in args.backbones.split(","):
        bb = get_backbone(name)
        spec = EmbeddingSpec(bb, bb.default_weights, bb.input_size, bb.crop)
        gflop = 2 * macs(bb.build(spec.weights, spec.image_size)) / 1e9
        speeds: dict[str, list[float]] = {"keras": [], "fast": []}
        cpu_ms: dict[str, list[float]] = {"keras": [], "fast": []}
        feats: dict[str, np.ndarray] = {}
        for r in range(args.rounds):
            order = (
                ("keras", "fast") if (r % 2 == 0) == (args.first == "keras") else ("fast", "keras")
            )
            for rt in order:
                res = run(spec, paths, rt, args.batch)
                feats.setdefault(rt, res.pop("_features"))
                speeds[rt].append(res["images_per_s"])
                cpu_ms[rt].append(res["cpu_ms_per_image"])
                res["gflops"] = round(gflop * res["images_per_s"], 1)
                res["fraction_of_peak"] = round(res["gflops"] / info["peak_gflops"], 3)
                print(json.dumps({"backbone": name, "round": r, **res, "cpu": info["model"]}),
                      flush=True)  # fmt: skip
        k, f = statistics.median(speeds["keras"]), statistics.median(speeds["fast"])
        summary[name] = {
            "gflop_per_image": round(gflop, 3),
            "keras_images_per_s": speeds["keras"],
            "fast_images_per_s": speeds["fast"],
            "ratio": round(f / k, 2),
            "ratios_per_round": [
                round(a / b, 2) for a, b in zip(speeds["fast"], speeds["keras"], strict=True)
            ],
            "cpu_ms_per_image": cpu_ms,
            "cpu_ratio_keras_over_fast": round(
                statistics.median(cpu_ms["keras"]) / statistics.median(cpu_ms["fast"]), 2
            ),
            "fast_gflops": round(gflop * f, 1),
            "fast_fraction_of_peak": round(gflop * f / info["peak_gflops"], 3),
            "difference": difference(feats["fast"], feats["keras"]),
        }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
