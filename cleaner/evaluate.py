"""Planted versus found: how well the chain did on a dataset whose problems are known.

``cleaner demo DIR`` writes ``DIR/ground_truth.json`` (label errors with their true label,
duplicates with their original, corrupt files). After ``make clean-data`` (and ``make
retrain``) this module compares that with what the stages left in ``DIR/.cleaner/``:

- **relabeling**: the moves of every *applied* plan (``.cleaner/plans/*.json``). A move is right
  when its image is a planted label error and it goes to the true label. Precision = right /
  moves, recall = right / planted errors; label noise in the class folders before and after.
- **dedupe**: ``.cleaner/duplicates.json`` against the planted (copy, original) pairs, on
  unordered pairs: a found pair is right when both files come from one planted family (a copy
  and its original, or two copies of one original). Paths are followed through the applied
  moves, so a copy that ``separate`` moved is still recognised.
- **corrupt files**: the manifest's status of each planted broken file.
- **final accuracy**: the test-split figures of a trained model's ``M.metrics.json``, and the
  accuracy of ``predict-dir``'s predictions.json on unseen images whose labels are known.

No TensorFlow: this reads JSON and CSV only.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cleaner.dataset import Workspace, check_input, open_dataset
from cleaner.errors import CleanerError
from cleaner.state import duplicates as duplicates_file
from cleaner.state import manifest as manifest_file
from cleaner.state import metrics as metrics_file
from cleaner.state import plans as plans_file
from cleaner.state.duplicates import Duplicates
from cleaner.state.plans import Plan, PlanItem


def _load_json(path: Path, what: str, fix: str) -> Any:
    check_input(path, what, fix)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CleanerError(f"{path} is not a valid {what} ({e}); {fix}") from None


def _moves(plans: Iterable[Plan]) -> list[PlanItem]:
    """Moves that happened (a plan record without ``moved`` counts as moved)."""
    return [m for p in plans for m in p.moves if m.moved is not False]


def _follow(path: str, moved: dict[str, str]) -> str:
    for _ in range(8):
        if path not in moved:
            break
        path = moved[path]
    return path


def score_relabeling(truth: dict[str, Any], plans: list[Plan], n_images: int) -> dict[str, Any]:
    errors = {str(e["path"]): str(e["true_label"]) for e in truth.get("label_errors", [])}
    moves = _moves(plans)
    right = [m for m in moves if errors.get(m.path) == m.to_label]
    wrong = len(moves) - len(right)
    fixed = {m.path for m in right}
    remaining = len(errors) - len(fixed) + wrong
    reviews = sum(len(p.review) for p in plans)
    return {
        "planted": len(errors),
        "images": n_images,
        "moves": len(moves),
        "right": len(right),
        "wrong": wrong,
        "precision": len(right) / len(moves) if moves else None,
        "recall": len(fixed) / len(errors) if errors else None,
        "review": reviews,
        "noise_before": len(errors) / n_images if n_images else None,
        "noise_after": remaining / n_images if n_images else None,
        "estimated": _estimated(plans, len(moves)),
    }


def _estimated(plans: list[Plan], moves: int) -> dict[str, Any] | None:
    """What ``separate`` estimated before moving (the plans' ``estimate``), to set beside what
    was found: expected wrong moves add up over plans; noise rate and recall are the first
    plan's (the dataset before any move)."""
    ests = [p.extra["estimate"] for p in plans if p.extra.get("estimate")]
    if not ests:
        return None
    # a plan whose estimate the check did not vouch for states no wrong moves: nothing is
    # estimated then (not "none wrong")
    unvouched = any(e.get("expected_wrong_moves") is None for e in ests)
    wrong = sum(float(e.get("expected_wrong_moves") or 0.0) for e in ests)
    return {
        "precision": 1 - wrong / moves if moves and not unvouched else None,
        "expected_wrong_moves": None if unvouched else round(wrong, 1),
        "recall": ests[0].get("estimated_recall") if len(ests) == 1 else None,
        "noise_rate": ests[0].get("estimated_noise_rate"),
        "target_precision": plans[0].extra.get("target_precision"),
        "threshold": plans[0].extra.get("threshold"),
    }


def _pairs(groups: Iterable[Iterable[str]]) -> set[frozenset[str]]:
    out: set[frozenset[str]] = set()
    for g in groups:
        for a, b in itertools.combinations(sorted(set(g)), 2):
            out.add(frozenset((a, b)))
    return out


def score_dedupe(
    truth: dict[str, Any], duplicates: Duplicates | None, moved: dict[str, str]
) -> dict[str, Any]:
    # planted families: an original and all its copies (union of (path, original) pairs)
    fam: dict[str, set[str]] = {}
    for d in truth.get("duplicates", []):
        a, b = _follow(str(d["original"]), moved), _follow(str(d["path"]), moved)
        merged = fam.get(a, {a}) | fam.get(b, {b})
        for p in merged:
            fam[p] = merged
    families = {frozenset(s) for s in fam.values()}
    true_pairs = _pairs(families)
    groups = duplicates.groups if duplicates is not None else ()
    found_groups = [[m.path for m in g.members] for g in groups]
    found_pairs = _pairs(found_groups)
    hit = true_pairs & found_pairs
    copies = {_follow(str(d["path"]), moved) for d in truth.get("duplicates", [])}
    found_copies = {p for p in copies if any(frozenset((p, q)) in hit for q in fam.get(p, ()))}
    cross = [d for d in truth.get("duplicates", []) if d.get("cross_class")]
    conflicts = sum(1 for g in groups if g.conflict)
    return {
        "planted_copies": len(copies),
        "planted_pairs": len(true_pairs),
        "found_groups": len(found_groups),
        "found_pairs": len(found_pairs),
        "right_pairs": len(hit),
        "precision": len(hit) / len(found_pairs) if found_pairs else None,
        "recall": len(hit) / len(true_pairs) if true_pairs else None,
        "copies_found": len(found_copies),
        "planted_cross_class": len(cross),
        "conflict_groups": conflicts,
        "ran": duplicates is not None,
    }


def _manifest(ws: Workspace) -> dict[str, dict[str, str]]:
    p = manifest_file.path(ws)
    if not p.is_file():
        return {}
    return {r.path: {"path": r.path, "status": r.status} for r in manifest_file.read(ws)}


def score_corrupt(truth: dict[str, Any], manifest: dict[str, dict[str, str]]) -> dict[str, Any]:
    planted = [str(c["path"]) for c in truth.get("corrupt", [])]
    flagged = [p for p in planted if p in manifest and manifest[p].get("status") != "ok"]
    bad_total = sum(1 for r in manifest.values() if r.get("status") != "ok")
    return {
        "planted": len(planted),
        "reported": len(flagged),
        "recall": len(flagged) / len(planted) if planted else None,
        "manifest_not_ok": bad_total,
    }


def score_predictions(predictions: Path, labels: Path) -> dict[str, Any]:
    """Accuracy of a ``predict-dir`` predictions.json against ``[{"image", "label"}]``."""
    preds = _load_json(predictions, "predictions.json", "run cleaner predict-dir again")
    truth = _load_json(labels, "labels file", "make it with pipelines/state.py unlabel")
    want = {str(e["image"]): str(e["label"]) for e in truth}
    got = {str(p["image"]): str(p["prediction"]) for p in preds}
    scored = [img for img in want if img in got]
    right = sum(1 for img in scored if got[img] == want[img])
    return {
        "images": len(want),
        "predicted": len(scored),
        "right": right,
        "accuracy": right / len(scored) if scored else None,
    }


def check_unseen_pair(predictions: object | None, labels: object | None) -> None:
    """``--predictions`` and ``--labels`` score the unseen images together: one alone would be
    ignored, so it is refused (one line naming both flags), before anything is read."""
    if (predictions is None) == (labels is None):
        return
    given, missing = (
        ("--labels", "--predictions") if predictions is None else ("--predictions", "--labels")
    )
    raise CleanerError(
        f"{given} without {missing}: the unseen images are scored from both together; "
        "add --predictions predictions.json --labels LABELS.json (make demo writes both), "
        f"or drop {given}"
    )


def evaluate(
    demo_dir: str | os.PathLike[str],
    *,
    metrics: str | os.PathLike[str] | None = None,
    predictions: str | os.PathLike[str] | None = None,
    labels: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Score the chain's results in ``demo_dir`` against its ``ground_truth.json``."""
    check_unseen_pair(predictions, labels)
    root = Path(demo_dir)
    truth = _load_json(
        root / "ground_truth.json", "ground truth file", "build the dataset with cleaner demo DIR"
    )
    ws = open_dataset(root, require_classes=False)
    plans = plans_file.applied_plans(ws)
    moved = {m.path: m.dst for m in _moves(plans) if m.dst}
    manifest = _manifest(ws)
    n_images = sum(1 for e in truth.get("images", [])) or sum(
        1 for r in manifest.values() if r.get("status") == "ok"
    )
    dups = duplicates_file.read(ws)
    out: dict[str, Any] = {
        "dir": str(root),
        "relabeling": score_relabeling(truth, plans, n_images),
        "dedupe": score_dedupe(truth, dups, moved),
        "corrupt": score_corrupt(truth, manifest),
        "model": None,
        "unseen": None,
    }
    if predictions is not None and labels is not None:
        out["unseen"] = score_predictions(Path(predictions), Path(labels))
    if metrics is not None:
        mp = check_input(metrics, "metrics file", "run cleaner train (make retrain) first")
        m = metrics_file.read_metrics(mp)
        test = m.split.get("test")
        out["model"] = {
            "metrics": str(mp),
            "accuracy": m.accuracy,
            "roc_auc": m.roc_auc,
            "f1": m.f1,
            "test_images": test.get("images") if isinstance(test, Mapping) else None,
            "backbone": m.backbone,
            "epochs": m.epochs,
        }
    return out
