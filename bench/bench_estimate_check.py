"""Issue 25: `separate`'s check of its move-precision estimate, and the review budget, scored
against planted flips.

Reads work folders a label-error bench left (WORK/flips.json, WORK/preds/*.json written by
`cleaner predict` with its planted run; no backbone, no head runs here) and, for each, runs
`cleaner separate --rule mean` as a user would at each --target-precision, then prints one JSON
line: the check's outcome and recoveries; per target the threshold, moves, true and estimated
precision; the estimate against the truth at every threshold with >= 10 moves (the largest
overstatement, where the check vouched for one); the review list (--review-budget 200): planted
flips in the top 200 against 200 random candidates of the whole list (mean of 200 draws), and the
stated expectation against the count found.

    .venv/bin/python bench/bench_estimate_check.py WORK [WORK ...] [--files a.json,b.json]

Make the work folders with bench_label_errors.py (--reuse keeps its predictions files) or
`cleaner predict` on a copy with flips.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any


def separate(work: Path, files: list[str], *args: str) -> dict[str, Any]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-m", "cleaner", "separate", "--root", str(work), "--rule", "mean",
         "--predictions", *files, *args, "--json"],
        check=True, capture_output=True, text=True, env=env,
    )  # fmt: skip
    s = json.loads(out.stdout.strip().splitlines()[-1])
    return json.loads(Path(s["plan"]).read_text())  # type: ignore[no-any-return]


def true_precision(paths: set[str], truth: set[str]) -> float | None:
    return len(paths & truth) / len(paths) if paths else None


def curve(plan: dict[str, Any], work: Path, files: list[str], truth: set[str]) -> dict[str, Any]:
    """Estimate against truth at every threshold tried with >= 10 moves (each threshold's moves
    from a fixed-threshold run would cost a separate per threshold: the moves at t are instead
    the images whose mean probability of the other class reaches t, the mean rule's test)."""
    mean_other: dict[str, float] = {}
    label: dict[str, str] = {}
    probs: dict[str, list[float]] = {}
    for f in files:
        for e in json.loads(Path(f).read_text())["predictions"]:
            probs.setdefault(e["path"], []).append(e["prob_fake"])
            label[e["path"]] = e["label"]
    for p, ps in probs.items():
        m = sum(ps) / len(ps)
        mean_other[p] = m if label[p] == "real" else 1 - m
    rows, worst = [], None
    for t in plan["estimate"]["thresholds"]:
        if t["moves"] < 10:
            continue
        moved = {p for p, m in mean_other.items() if m >= t["threshold"] - 1e-12}
        tp = true_precision(moved, truth)
        est = t["estimated_precision"]
        rows.append({"threshold": t["threshold"], "moves": t["moves"], "true": tp, "est": est,
                     "unchecked": t.get("unchecked_precision", est)})  # fmt: skip
        if est is not None and tp is not None:
            worst = max(worst if worst is not None else -1.0, est - tp)
    return {"rows": rows, "worst_overstatement": worst}


def review(plan: dict[str, Any], truth: set[str], budget: int) -> dict[str, Any]:
    listed = [r["path"] for r in plan["review"]]
    cands = listed + [r["path"] for r in plan["review_below_budget"]]
    n = min(budget, len(cands))
    rnd = [sum(p in truth for p in random.Random(s).sample(cands, n)) for s in range(200)]
    rb = plan["review_budget"]
    found = sum(p in truth for p in listed)
    return {
        "candidates": len(cands),
        "flips_in_candidates": sum(p in truth for p in cands),
        "listed": len(listed),
        "order": rb["order"],
        "flips_in_top": found,
        "random_mean": round(sum(rnd) / len(rnd), 1),
        "ratio": round(found / (sum(rnd) / len(rnd)), 2) if sum(rnd) else None,
        "expected_in_top": rb["expected_misfiled_listed"],
        "expected_vs_found": None
        if rb["expected_misfiled_listed"] is None or not found
        else round(rb["expected_misfiled_listed"] / found - 1, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("works", nargs="+", type=Path)
    ap.add_argument(
        "--files", default="", help="predictions file names in WORK/preds (default all)"
    )
    ap.add_argument("--targets", default="0.7,0.8,0.9")
    ap.add_argument("--budget", type=int, default=200)
    args = ap.parse_args()
    for work in args.works:
        truth = {f["path"] for f in json.loads((work / "flips.json").read_text())["flips"]}
        names = args.files.split(",") if args.files else sorted(os.listdir(work / "preds"))
        files = [str(work / "preds" / n) for n in names]
        out: dict[str, Any] = {"work": str(work), "files": names, "flips": len(truth)}
        for target in args.targets.split(","):
            plan = separate(work, files, "--target-precision", target,
                            "--review-budget", str(args.budget))  # fmt: skip
            moved = {m["path"] for m in plan["moves"]}
            est = plan["estimate"]
            out.setdefault("check", est.get("check"))
            out[f"target {target}"] = {
                "threshold": plan["threshold"],
                "moves": len(moved),
                "right": len(moved & truth),
                "true_precision": true_precision(moved, truth),
                "estimated_precision": est.get("estimated_precision"),
            }
            if "curve" not in out:
                out["curve"] = curve(plan, work, files, truth)
                out["review"] = review(plan, truth, args.budget)
        print(json.dumps(out))


if __name__ == "__main__":
    main()
