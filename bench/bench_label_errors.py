"""Label-error detection on faces140k with planted flips: cleaner's out-of-fold consensus
against cleanlab on the same probabilities.

A copy of faces140k (outside the repository) gets 10% of each class put into the other
class's folder (seeded; the list is written to WORK/flips.json). Then, exactly as a user would:
`cleaner scan`, `cleaner predict --backbone B --folds K --repeats N` (5 and 1 unless given)
for each backbone (frozen heads on cached embeddings; with --finetune also fine-tuned folds),
`cleaner separate --rule R` (dry run: the plan is read, nothing moves). Precision and recall
of the plan's moves against the planted flips, beside `cleanlab.filter.find_label_issues` on
the same out-of-fold probabilities (each model, and their mean).

    .venv/bin/python bench/bench_label_errors.py            # 250 + 250 faces (a few minutes)
    .venv/bin/python bench/bench_label_errors.py --full     # all 1100 + 1100

The work folder is reused across runs (same size and seed), so embeddings are computed once.
Prints one JSON line; "ratio" is cleaner's best F1 over cleanlab's best F1 in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FACES = (
    next(
        (p for p in (REPO.parent / "shared", REPO.parents[1] / "shared") if p.is_dir()),
        REPO.parent / "shared",
    )
    / "data"
    / "faces140k"
)
"""faces140k beside the checkout (main) or beside the worktrees (/work/wt/NAME); --faces
names another copy with the same real/fake folders (bench/degrade_faces.py makes one)."""


def cleaner(*args: str) -> dict:  # type: ignore[type-arg]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-m", "cleaner", *args, "--json"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def make_work(work: Path, n: int, seed: int, faces: Path = FACES) -> list[dict[str, str]]:
    """WORK/{real_images,fake_images} with 10% of each class flipped; the flips list."""
    marker = work / "flips.json"
    if marker.is_file():
        doc = json.loads(marker.read_text())
        if doc["n"] == n and doc["seed"] == seed:
            return doc["flips"]  # type: ignore[no-any-return]
    shutil.rmtree(work, ignore_errors=True)
    rng = random.Random(seed)
    flips: list[dict[str, str]] = []
    for label, other in (("real", "fake"), ("fake", "real")):
        names = sorted(os.listdir(faces / label))[:n]
        flipped = set(rng.sample(names, round(0.1 * len(names))))
        for name in names:
            to = other if name in flipped else label
            dst = work / f"{to}_images" / f"{label}_{name}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(faces / label / name, dst)
            if name in flipped:
                flips.append({"path": f"{to}_images/{label}_{name}", "true_label": label})
    marker.write_text(json.dumps({"n": n, "seed": seed, "flips": flips}, indent=1))
    return flips


def pr(found: set[str], truth: set[str]) -> dict[str, float | int]:
    tp = len(found & truth)
    p = tp / len(found) if found else 0.0
    r = tp / len(truth) if truth else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {
        "flagged": len(found),
        "precision": round(p, 3),
        "recall": round(r, 3),
        "f1": round(f1, 3),
    }


def plan_moves(summary: dict) -> set[str]:  # type: ignore[type-arg]
    plan = json.loads(Path(summary["plan"]).read_text())
    return {m["path"] for m in plan["moves"]}


def target_runs(
    args: argparse.Namespace, work: Path, files: list[str], truth: set[str]
) -> list[dict]:  # type: ignore[type-arg]
    """`cleaner separate --target-precision P` for each P: the threshold it chose, the
    estimate it made (precision, recall, noise rate, expected wrong moves) against the truth;
    plus the fixed-threshold rule with the estimate of its moves (P = 0)."""
    out = []
    for target in [*args.target_precision.split(","), "0"]:
        t0 = time.perf_counter()
        s = cleaner(
            "separate", "--root", str(work), "--rule", args.rule, "--target-precision", target,
            "--predictions", *files,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        plan = json.loads(Path(s["plan"]).read_text())
        est = plan["estimate"]
        row = {"target": float(target), "threshold": plan["threshold"]} | pr(plan_moves(s), truth)
        row |= {
            "estimated_precision": est.get("estimated_precision"),
            "estimated_recall": est.get("estimated_recall"),
            "estimated_noise_rate": est.get("estimated_noise_rate"),
            "expected_wrong_moves": est.get("expected_wrong_moves"),
            "review": len(plan["review"]),
            "separate_seconds": round(seconds, 2),
        }
        if target != "0":
            row["curve"] = [
                {k: t[k] for k in ("threshold", "moves", "estimated_precision")}
                for t in est["thresholds"]
            ]
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="all 1100 + 1100 faces")
    ap.add_argument("--n", type=int, default=250, help="faces per class (without --full)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--backbones",
        default="efficientnet-lite2-gram,efficientnet-lite1-gram,efficientnet-lite0-gram",
    )
    ap.add_argument(
        "--compare-prune",
        action="store_true",
        help="also predict with --no-prune (same cache: heads only) and score both sets",
    )
    ap.add_argument("--folds", type=int, default=5, help="cleaner predict --folds K")
    ap.add_argument("--repeats", type=int, default=1, help="cleaner predict --repeats N (frozen)")
    ap.add_argument(
        "--head-features", default="auto", help="cleaner predict --head-features (auto|full|pca)"
    )
    ap.add_argument("--min-confidence", default="0.9,0.95", help="separate's thresholds to try")
    ap.add_argument(
        "--target-precision",
        default="0.8,0.9,0.95",
        help="separate --target-precision P to score (estimated against true precision)",
    )
    ap.add_argument("--rule", default="mean", help="the rule for the --target-precision runs")
    ap.add_argument(
        "--image-size", type=int, default=None, help="cleaner predict --image-size (every voter)"
    )
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="keep a voter's predictions file already in WORK/preds (no predict run)",
    )
    ap.add_argument(
        "--only-target",
        action="store_true",
        help="skip the fixed-threshold grid and cleanlab (the estimate's rows only)",
    )
    ap.add_argument("--finetune", action="store_true", help="also fine-tuned folds (slow)")
    ap.add_argument("--finetune-backbone", default="efficientnet-lite0")
    ap.add_argument("--finetune-size", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--faces", type=Path, default=FACES, help="the real/fake folders to use")
    args = ap.parse_args()
    if not args.faces.is_dir():
        print(json.dumps({"bench": "label_errors", "skipped": f"{args.faces} not found"}))
        return
    n = 1100 if args.full else args.n
    work = args.work or Path(tempfile.gettempdir()) / f"cleaner-bench-labels-{n}-{args.seed}"
    t0 = time.perf_counter()
    flips = make_work(work, n, args.seed, args.faces)
    truth = {f["path"] for f in flips}
    cleaner("scan", "--root", str(work))
    preds_dir = work / "preds"
    preds_dir.mkdir(exist_ok=True)
    runs: dict[str, dict] = {}  # type: ignore[type-arg]
    files: dict[str, Path] = {}
    size_args = ["--image-size", str(args.image_size)] if args.image_size else []
    for b in args.backbones.split(","):
        variants = [("", [])] + ([("-noprune", ["--no-prune"])] if args.compare_prune else [])
        for suffix, extra in variants:
            hf = "" if args.head_features == "auto" else f"-{args.head_features}"
            out = preds_dir / f"{b}{suffix}{hf}.json"
            files[b + suffix] = out
            if args.reuse and out.is_file():
                runs[b + suffix] = {"seconds": 0.0, "computed": 0, "reused": True}
                continue
            runs[b + suffix] = cleaner(
                "predict", "--root", str(work), "--backbone", b, "--folds", str(args.folds),
                "--repeats", str(args.repeats), *extra, *size_args,
                "--head-features", args.head_features, "--out", str(out),
            )  # fmt: skip
    if args.finetune:
        b = args.finetune_backbone
        out = preds_dir / f"{b}-finetune.json"
        runs[f"{b}-finetune"] = cleaner(
            "predict",
            "--root",
            str(work),
            "--backbone",
            b,
            "--folds",
            str(args.folds),
            "--finetune",
            "--epochs",
            str(args.epochs),
            "--image-size",
            str(args.finetune_size),
            "--out",
            str(out),
        )
        files[f"{b}-finetune"] = out

    # out-of-fold quality per model, against the noisy (folder) and the true labels
    true_label = {f["path"]: f["true_label"] for f in flips}
    probs: dict[str, dict[str, float]] = {}
    labels: dict[str, str] = {}
    for name, f in files.items():
        doc = json.loads(f.read_text())
        probs[name] = {e["path"]: e["prob_fake"] for e in doc["predictions"]}
        labels.update({e["path"]: e["label"] for e in doc["predictions"]})
    paths = sorted(set.intersection(*(set(p) for p in probs.values())))
    noisy = np.array([labels[p] == "fake" for p in paths], dtype=int)
    true = np.array([true_label.get(p, labels[p]) == "fake" for p in paths], dtype=int)
    from sklearn.metrics import roc_auc_score

    is_flip = np.array([x in truth for x in paths])

    def ranking(p: np.ndarray) -> dict[str, float]:
        """How well "probability of the other class than the folder's" ranks the flips."""
        other = np.where(noisy == 1, 1 - p, p)
        order = np.argsort(-other, kind="stable")
        tp = np.cumsum(is_flip[order])
        prec, rec = tp / np.arange(1, len(tp) + 1), tp / max(1, is_flip.sum())
        return {
            "flip_ranking_auc": round(float(roc_auc_score(is_flip, other)), 4),
            "recall_at_precision_0.9": round(float(rec[prec >= 0.9].max(initial=0.0)), 3),
            "precision_at_recall_0.8": round(float(prec[rec >= 0.8].max(initial=0.0)), 3),
        }

    models = {}
    for name, pm in probs.items():
        p = np.array([pm[x] for x in paths])
        models[name] = ranking(p) | {
            "oof_accuracy_noisy": round(float(np.mean((p >= 0.5) == noisy)), 3),
            "oof_accuracy_true": round(float(np.mean((p >= 0.5) == true)), 3),
            "auc_true": round(float(roc_auc_score(true, p)), 3),
            "predict_seconds": round(runs[name]["seconds"], 1),
            "backbone_runs": runs[name]["computed"],
            "pruned_per_fold": json.loads(files[name].read_text())["model"].get("pruned"),
        }

    # cleaner separate: every rule on each set of files, and each file alone (confident rule)
    results: dict[str, dict[str, float | int]] = {}
    sets = {"pruned": [n for n in files if not n.endswith(("-noprune", "-finetune"))]}
    if args.compare_prune:
        sets["no-prune"] = [n for n in files if n.endswith("-noprune")]
    if args.finetune:
        sets["all"] = list(files)
    estimates = target_runs(args, work, [str(files[n]) for n in sets["pruned"]], truth)
    for conf in [] if args.only_target else args.min_confidence.split(","):
        for set_name, names in sets.items():
            chosen = [str(files[n]) for n in names]
            for rule in ("confident", "unanimous", "majority", "mean"):
                s = cleaner(
                    "separate", "--root", str(work), "--rule", rule, "--min-confidence", conf,
                    "--predictions", *chosen,
                )  # fmt: skip
                results[f"cleaner {rule} >= {conf} ({set_name} files)"] = pr(plan_moves(s), truth)
        for name, f in files.items():
            s = cleaner(
                "separate", "--root", str(work), "--rule", "confident", "--min-confidence", conf,
                "--predictions", str(f),
            )  # fmt: skip
            results[f"cleaner confident >= {conf} ({name})"] = pr(plan_moves(s), truth)

    # cleanlab on the same probabilities
    from cleanlab.filter import find_label_issues

    def cl(p: np.ndarray) -> set[str]:
        pp = np.stack([1 - p, p], axis=1)
        issues = find_label_issues(noisy, pp)
        return {paths[i] for i in np.flatnonzero(issues)}

    mats = {name: np.array([pm[x] for x in paths]) for name, pm in probs.items()}
    for name, p in [] if args.only_target else mats.items():
        results[f"cleanlab ({name})"] = pr(cl(p), truth)
    for set_name, names in sets.items():
        if len(names) > 1 and not args.only_target:
            mean = np.mean([mats[n] for n in names], axis=0)
            results[f"cleanlab (mean of {set_name} files)"] = pr(cl(mean), truth)
            models[f"mean of {set_name} files"] = ranking(mean)

    best_cleaner = max((v["f1"] for k, v in results.items() if k.startswith("cleaner")), default=0)
    best_cl = max((v["f1"] for k, v in results.items() if k.startswith("cleanlab")), default=0)
    goal = [k for k, v in results.items() if v["precision"] >= 0.9 and v["recall"] >= 0.8]
    print(
        json.dumps(
            {
                "bench": "label_errors",
                "images": len(paths),
                "planted_flips": len(truth),
                "seed": args.seed,
                "folds": args.folds,
                "repeats": args.repeats,
                "work": str(work),
                "models": models,
                "detection": results,
                "target_precision": estimates,
                "reaches_goal_p0.9_r0.8": goal,
                "ratio": round(best_cleaner / best_cl, 3) if best_cl else None,
                "ratio_is": "best cleaner F1 / best cleanlab F1 (same probabilities)",
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
