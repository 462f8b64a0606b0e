"""Issue 28's benchmark: robust training, laundering and threshold calibration on faces140k.

``--root R`` (a copy of faces140k, ``real_images/`` and ``fake_images/``, scanned; its
embedding cache filled or not) is trained on once per ``--run`` with ``cleaner train
--backbone B --epochs 0 --launder`` (``none``; ``robust:K:P`` = ``--augment robust
--robust-views K --robust-p P``), each model written under ``--out``. One JSON line per run:
test accuracy and AUC, the laundering table (AUC and accuracy per condition, the worst one),
the robust views' cost (backbone runs, seconds, cache bytes).

Then the calibration check of ``predict-dir --calibrate`` on the shifted set (the test split
under the ``chain`` condition: resized to 0.5x, then JPEG 50): the model's prob_fake of those
images (its own head on their cached features: what predict-dir gives), ``--draws`` times 50
of them drawn as the labelled images, the threshold
:func:`cleaner.models.calibrate.fit_threshold` picks on them (Platt scaling), and the accuracy
it gives on the *other* images against the best threshold's there (an oracle) and 0.5's.
``--predict-dir N`` also writes N shifted images to a folder and runs ``cleaner predict-dir
--calibrate`` on it for real (N full model runs).

``--heads``: the same figures without ``cleaner train``'s full-model test pass (880 backbone
runs on the test and validation splits per run): the head each run would fit (clean rows plus
the robust views, :func:`cleaner.models.frozen_head.fit_logreg`, the model's own fit) applied to
the cached features of the test split as it is and under each condition; for sweeping K and the
probabilities (each ``--run`` as above). The models' own figures match (checked on ``none`` and
``robust:2:0.5`` with ``cleaner train``).

``--cost N``: the backbone's time on N images, clean against one robust view (same process, one
after the other), for the cost line.

    nice -n 10 .venv/bin/python bench/bench_robust.py --root /work/scratch/detector/faces140k \\
        --out /work/scratch/detector/models --run none --run robust:2:0.5 --run robust:1:0.1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

BACKBONE = "efficientnet-lite2-gram"


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def train_run(root: Path, out: Path, run: str) -> dict[str, Any]:
    """One ``cleaner train`` run; its figures."""
    name = run.replace(":", "-")
    model = out / f"{name}.keras"
    args = ["--augment", "none"]
    if run.startswith("robust"):
        _, k, p = run.split(":")
        args = ["--augment", "robust", "--robust-views", k, "--robust-p", p]
    cmd = [sys.executable, "-m", "cleaner", "train", "--root", str(root), "--out", str(model),
           "--backbone", BACKBONE, "--epochs", "0", "--launder", *args, "--json"]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    m = json.loads(model.with_suffix(".metrics.json").read_text())
    lau = m["launder"]
    return {
        "run": run,
        "command": "cleaner train " + " ".join(cmd[4:]),
        "accuracy": round(m["accuracy"], 4),
        "roc_auc": round(m["roc_auc"], 4),
        "launder": {
            k: {"roc_auc": round(v["roc_auc"], 4), "accuracy": round(v["accuracy"], 4)}
            for k, v in lau["conditions"].items()
        },
        "worst": lau["worst"],
        "robust_views": m["phases"]["head"].get("robust_views"),
        "seconds": round(time.perf_counter() - t0, 1),
        "model": str(model),
    }


def shifted_probs(root: Path, model: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """prob_fake of the test split under ``chain`` (the model's head on the cached features),
    the labels, and the paths."""
    from cleaner.choices import Launder
    from cleaner.models import launder
    from cleaner.models.backbones import get_backbone
    from cleaner.models.embeddings import EmbeddingSpec
    from cleaner.models.launder_eval import _probs_frozen
    from cleaner.models.saved import load_model
    from cleaner.split import read_split

    rows = [r for r in read_split(root) if r.split == "test"]
    items = [(str(root / r.path), r.sha256) for r in rows]
    bb = get_backbone(BACKBONE)
    spec = EmbeddingSpec(bb, bb.default_weights, bb.input_size, bb.crop)
    keras_model = load_model(model)

    class Net:
        backbone = None  # the features are in the cache (else embed builds the backbone)
        head = keras_model.get_layer("prob_fake")
        feat_norm = keras_model.get_layer("feature_norm")

    view = spec.viewed(launder.view_name(Launder.CHAIN))
    p, ok, _ = _probs_frozen(root, items, view, Net, bb.regions, 16)
    y = np.array([rows[i].label == "fake" for i in ok])
    return p, y, [items[i][0] for i in ok]


def calibration_check(p: np.ndarray, y: np.ndarray, draws: int, n: int = 50) -> dict[str, Any]:
    """Accuracy on the unlabelled rest: calibrated threshold vs the best one and 0.5."""
    from cleaner.models.calibrate import fit_threshold

    gaps, cal, best, half, ts = [], [], [], [], []
    for d in range(draws):
        rng = np.random.default_rng(d)
        pick = rng.choice(len(p), n, replace=False)
        rest = np.setdiff1d(np.arange(len(p)), pick)
        if len(set(y[pick].tolist())) < 2:
            continue
        t, _, _ = fit_threshold(p[pick], y[pick])
        acc = float(np.mean((p[rest] >= t) == y[rest]))
        oracle = max(float(np.mean((p[rest] >= c) == y[rest])) for c in np.unique(p[rest]))
        cal.append(acc)
        best.append(oracle)
        half.append(float(np.mean((p[rest] >= 0.5) == y[rest])))
        gaps.append(oracle - acc)
        ts.append(t)
    return {
        "labelled": n,
        "draws": len(cal),
        "accuracy_calibrated_mean": round(float(np.mean(cal)), 4),
        "accuracy_best_threshold_mean": round(float(np.mean(best)), 4),
        "accuracy_at_0.5_mean": round(float(np.mean(half)), 4),
        "gap_mean": round(float(np.mean(gaps)), 4),
        "gap_max": round(float(np.max(gaps)), 4),
        "share_within_0.03": round(float(np.mean(np.array(gaps) <= 0.03)), 3),
        "threshold_median": round(float(np.median(ts)), 4),
    }


def predict_dir_check(paths: list[str], y: np.ndarray, model: Path, out: Path, n: int) -> Any:
    """``cleaner predict-dir --calibrate`` for real on ``n`` shifted images (50 labelled)."""

    from cleaner.choices import Launder
    from cleaner.images import load_rgb
    from cleaner.models.launder import launder_image

    d = out / "shifted"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(paths), min(n, len(paths)), replace=False)
    truth = {}
    for j, i in enumerate(pick, start=1):
        launder_image(load_rgb(paths[i]), Launder.CHAIN).save(d / f"{j}.png")
        truth[f"{j}.png"] = "fake" if y[i] else "real"
    labels = out / "labels50.json"
    labels.write_text(json.dumps([{"image": k, "label": v} for k, v in list(truth.items())[:50]]))
    pred = out / "shifted.predictions.json"
    cmd = [sys.executable, "-m", "cleaner", "predict-dir", str(d), "-m", str(model), "--out",
           str(pred), "--calibrate", str(labels), "--json"]  # fmt: skip
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    rows = json.loads(pred.read_text())
    rest = [r for r in rows if r["image"] not in dict(list(truth.items())[:50])]
    acc = float(np.mean([r["prediction"] == truth[r["image"]] for r in rest]))
    p = np.array([r["prob_fake"] for r in rest])
    t = np.array([truth[r["image"]] == "fake" for r in rest])
    best = max(float(np.mean((p >= c) == t)) for c in np.unique(p))
    return {"images": len(rows), "calibration": json.loads(res.stdout)["calibration"],
            "accuracy_rest": round(acc, 4), "best_rest": round(best, 4)}  # fmt: skip


def cost(root: Path, n: int) -> dict[str, Any]:
    """Backbone seconds on ``n`` training images: clean, then one robust view (no cache)."""
    from cleaner.models import augment
    from cleaner.models.backbones import get_backbone
    from cleaner.models.embeddings import EmbeddingSpec, compute_features
    from cleaner.split import read_split

    rows = [r for r in read_split(root) if r.split == "train"][:n]
    paths = [str(root / r.path) for r in rows]
    bb = get_backbone(BACKBONE)
    spec = EmbeddingSpec(bb, bb.default_weights, bb.input_size, bb.crop)
    model = bb.build(spec.weights, spec.image_size)
    compute_features(spec, paths[:8], model=model)  # warm-up (tracing)
    out: dict[str, Any] = {"images": n}
    for name, s in (("clean", spec), ("robust_view", spec.viewed(augment.view_name(0)))):
        t0 = time.perf_counter()
        compute_features(s, paths, model=model, batch_size=16)
        out[f"{name}_seconds"] = round(time.perf_counter() - t0, 1)
    cache = root / ".cleaner" / "cache" / "embeddings"
    out["cache_bytes"] = {d.name: _du(d) for d in sorted(cache.iterdir())} if cache.is_dir() else {}
    return out


def head_run(
    root: Path, run: str, only_cached: bool = False, c: float | None = None
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """A run's head from the cache, scored on the test split and its laundered copies; returns
    the figures and the chain condition's prob_fake and labels (for the calibration check)."""
    from cleaner.choices import Launder
    from cleaner.models import augment, launder
    from cleaner.models import frozen_head as FH
    from cleaner.models.backbones import get_backbone
    from cleaner.models.embeddings import EmbeddingSpec, embed
    from cleaner.models.head_views import add_views
    from cleaner.models.heads import HEAD_C
    from cleaner.models.projection import HeadFeatures
    from cleaner.split import read_split

    t0 = time.perf_counter()
    rows = read_split(root)
    part = {s: [r for r in rows if r.split == s] for s in ("train", "val", "test")}
    items = {s: [(str(root / r.path), r.sha256) for r in v] for s, v in part.items()}
    y = {s: np.array([r.label == "fake" for r in v], float) for s, v in part.items()}
    bb = get_backbone(BACKBONE)
    spec = EmbeddingSpec(bb, bb.default_weights, bb.input_size, bb.crop)
    inputs = FH.head_inputs(root, items["train"], items["val"], spec, regions=bb.regions,
                            mode=HeadFeatures.FULL)  # fmt: skip
    views = None
    if run.startswith("robust"):
        _, k, p = run.split(":")
        robust = augment.Robust(float(p), float(p), augment.DEFAULT.rescale_p)
        inputs, views = add_views(root, items["train"], spec, inputs, views=int(k), robust=robust)
    norm = FH.standardisation(inputs)
    lr, _, _ = FH.fit_logreg(inputs, y["train"][inputs.train_images()], None, norm,
                             c=c or (HEAD_C if bb.head_c is None else bb.head_c))  # fmt: skip
    out: dict[str, Any] = {"run": run, "how": "head on cached features", "views": views, "c": c}
    chain: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0))
    from cleaner.models.embeddings import cache_root

    for cond in [None, *Launder]:
        s = spec if cond is None else spec.viewed(launder.view_name(cond))
        if only_cached and not list((cache_root(root) / s.key).glob("shard-*.npz")):
            continue
        e = embed(root, items["test"], s)
        ok = np.flatnonzero(e.ok)
        f = e.features[ok].reshape(len(ok), bb.regions, -1).mean(axis=1)
        prob = lr.prob(f)
        yt = y["test"][ok]
        from sklearn.metrics import roc_auc_score

        fig = {"roc_auc": round(float(roc_auc_score(yt, prob)), 4),
               "accuracy": round(float(np.mean((prob >= 0.5) == (yt > 0.5))), 4)}  # fmt: skip
        out["test" if cond is None else cond.value] = fig
        if cond is Launder.CHAIN:
            chain = (prob, yt > 0.5)
    conds = {c.value: out[c.value]["roc_auc"] for c in Launder if c.value in out}
    worst = min(conds, key=lambda c: conds[c])
    out["worst"] = {"condition": worst, "roc_auc": conds[worst]}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out, chain[0], chain[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--run", action="append", default=[])
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--predict-dir", type=int, default=0)
    ap.add_argument("--cost", type=int, default=0)
    ap.add_argument("--heads", action="store_true")
    ap.add_argument("--c", type=float, default=None, help="--heads: C instead of the backbone's")
    ap.add_argument("--only-cached", action="store_true", help="--heads: skip uncached conditions")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.cost:
        print(json.dumps({"cost": cost(a.root, a.cost)}), flush=True)
    for run in a.run if a.heads else []:
        fig, p, y = head_run(a.root, run, a.only_cached, a.c)
        print(json.dumps(fig), flush=True)
        if len(p):
            cal = calibration_check(p, y, a.draws)
            print(json.dumps({"run": run, "calibration": cal}), flush=True)
    for run in [] if a.heads else a.run:
        r = train_run(a.root, a.out, run)
        print(json.dumps(r), flush=True)
        p, y, paths = shifted_probs(a.root, Path(r["model"]))
        print(json.dumps({"run": run, "calibration": calibration_check(p, y, a.draws)}), flush=True)
        if a.predict_dir:
            check = predict_dir_check(paths, y, Path(r["model"]), a.out / run.replace(":", "-"),
                                      a.predict_dir)  # fmt: skip
            print(json.dumps({"run": run, "predict_dir": check}), flush=True)


if __name__ == "__main__":
    main()
