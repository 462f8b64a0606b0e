"""The work behind ``cleaner predict`` and ``cleaner predict-dir``: probabilities into files.

- :func:`predict_with_model`: a saved classifier (``M.keras``, 0..255 RGB in, prob_fake out)
  over every ``ok`` image of the manifest; in-sample, so ``out_of_fold: false``.
- :func:`predict_out_of_fold`: no model, a backbone: K grouped folds, a head per fold (frozen
  features from the embedding cache, or ``finetune``), each image predicted by the head that
  never saw it; ``out_of_fold: true`` and each entry's ``fold``.
- :func:`predict_dir`: unlabelled images of one folder, in numeric order, into the contract's
  ``predictions.json`` list.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cleaner.atomic import atomic_write_text
from cleaner.choices import Label
from cleaner.dataset import check_output
from cleaner.errors import CleanerError
from cleaner.hashing import file_sha256
from cleaner.models.calibrate import Calibration, read_labels
from cleaner.models.calibrate import calibrate as fit_calibration

Progress = Callable[[int], None] | None


@dataclass
class PredictSummary:
    """What a predict run did, for the CLI's table and ``--json``."""

    out: Path
    images: int
    predicted: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of images that did not decode now (reported, skipped)."""
    out_of_fold: bool = False
    model: dict[str, Any] = field(default_factory=dict)
    folds: int = 0
    computed: int = 0
    """Images the backbone ran on (the rest came from the embedding cache)."""
    cached: int = 0
    seconds: float = 0.0
    auc: float | None = None
    """ROC AUC of prob_fake against the folder labels (both classes present)."""
    accuracy: float | None = None

    def summary(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["out"] = str(self.out)
        d["failed"] = [{"path": p, "reason": r} for p, r in self.failed]
        return d


def _scores(y: np.ndarray, p: np.ndarray) -> tuple[float | None, float | None]:
    if len(y) == 0:
        return None, None
    acc = float(np.mean((p >= 0.5) == (y == 1)))
    if len(np.unique(y)) < 2:
        return None, acc
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)), acc


def predict_with_model(
    root: str | os.PathLike[str],
    model_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    image_size: int | None = None,
    crop: str | None = None,
    batch_size: int = 32,
    progress: Progress = None,
) -> PredictSummary:
    """prob_fake of a saved model for every ``ok`` image of ROOT, into a v1 file."""
    from cleaner.manifest import ok_rows
    from cleaner.models.inputs import predict_paths
    from cleaner.models.saved import load_detector
    from cleaner.predictions import write_predictions_v1

    check_output(out, root=root)
    t0 = time.perf_counter()
    rows = ok_rows(root)
    mp = Path(model_path)
    det = load_detector(mp, image_size=image_size, crop=crop)
    size, c = det.size, det.crop
    base = Path(root)
    outs, errors = predict_paths(
        det.model,
        [base / r.path for r in rows],
        size,
        crop=c,
        batch_size=batch_size,
        progress=progress,
        factory=det.factory,  # the Ray engine's actors load their own, on the same runtime
    )
    probs = det.prob_fake(outs) if len(rows) else np.zeros(0)
    entries, failed = [], []
    for r, p, e in zip(rows, probs, errors, strict=True):
        if e:
            failed.append((r.path, e))
        else:
            entries.append(
                {
                    "path": r.path,
                    "sha256": r.sha256,
                    "label": r.label,
                    "prob_fake": round(float(np.clip(p, 0, 1)), 6),
                }
            )
    info = {
        "name": mp.name,
        "backbone": det.backbone,
        "sha256": file_sha256(mp),
        "image_size": size,
        "crop": c,
    }
    path = write_predictions_v1(out, model=info, entries=entries, out_of_fold=False)
    y = np.array([e["label"] == Label.FAKE for e in entries], dtype=int)
    auc, acc = _scores(y, np.array([e["prob_fake"] for e in entries]))
    return PredictSummary(
        out=path,
        images=len(rows),
        predicted=len(entries),
        failed=failed,
        model=info,
        computed=len(rows),
        seconds=time.perf_counter() - t0,
        auc=auc,
        accuracy=acc,
    )


def predict_out_of_fold(
    root: str | os.PathLike[str],
    backbone: str,
    out: str | os.PathLike[str],
    *,
    folds: int = 5,
    weights: str | None = None,
    image_size: int | None = None,
    crop: str | None = None,
    finetune: bool = False,
    epochs: int = 3,
    head: str = "logreg",
    mirror: bool = False,
    prune: bool = True,
    batch_size: int = 32,
    seed: int = 0,
    repeats: int = 1,
    head_features: str = "auto",
    pca_dim: int = 1024,
    planted: bool = True,
    progress: Progress = None,
    log: Callable[[str], None] | None = None,
) -> PredictSummary:
    """Out-of-fold prob_fake for every ``ok`` image of ROOT from ``backbone`` (see module doc).

    Frozen heads: ``mirror`` adds the mirror images' features as training rows; ``prune``
    lets each fold's head leave out the training images an inner cross-validation doubts
    (:func:`cleaner.models.folds.frozen_oof`); ``repeats`` averages that many fold
    assignments (seeds ``seed`` to ``seed + repeats - 1``;
    :func:`cleaner.models.folds.repeated_frozen_oof`); ``head_features`` (``auto``, ``full``
    or ``pca``, :class:`cleaner.models.projection.HeadFeatures`) and ``pca_dim``: what the
    heads train on, the full features or a projection of ``pca_dim`` components streamed
    from the cache (:func:`cleaner.models.embeddings.embed_for_heads`); ``planted``: the
    frozen heads run a second time with a sample of labels swapped in memory, for
    ``separate``'s check of its estimate (:mod:`cleaner.models.planted`)."""
    from cleaner.manifest import ok_rows
    from cleaner.models import folds as F
    from cleaner.models.backbones import get_backbone
    from cleaner.models.embeddings import EmbeddingSpec, embed_for_heads
    from cleaner.models.inputs import check_crop
    from cleaner.models.planted import PLANT_SHARE, PlantedRun, planted_run
    from cleaner.predictions import write_predictions_v1

    if repeats < 1:
        raise CleanerError(f"--repeats {repeats}: give 1 or more")
    if finetune and repeats > 1:
        raise CleanerError(
            "--repeats is for frozen heads; each --finetune repetition is K trainings"
        )
    mode = _head_features_mode(head_features)
    if pca_dim < 1:
        raise CleanerError(f"--pca-dim {pca_dim}: give 1 or more")
    check_output(out, root=root)
    t0 = time.perf_counter()
    bb = get_backbone(backbone)
    w = weights or bb.default_weights
    bb.check_weights(w)
    if finetune and bb.builder is None:
        raise CleanerError(f"--finetune needs a network; backbone {backbone!r} has none")
    size = image_size or bb.input_size
    c = check_crop(crop or bb.crop)
    rows = ok_rows(root)
    if not rows:
        raise CleanerError(f"no ok image under {root}; run cleaner scan and check the folders")
    y = np.array([r.label == Label.FAKE for r in rows], dtype=np.int64)
    groups = F.group_ids([r.path for r in rows], [r.sha256 for r in rows], F.duplicate_groups(root))
    fold_sets = [F.assign_folds(y, groups, folds, seed=seed + r) for r in range(repeats)]
    fold = fold_sets[0]
    base = Path(root)
    spec = EmbeddingSpec(bb, w, size, c)
    computed = cached = 0
    projection = None
    plant: PlantedRun | None = None
    if finetune:
        res = F.finetune_oof(
            [base / r.path for r in rows],
            y,
            fold,
            backbone=bb,
            weights=w,
            image_size=size,
            crop=c,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            log=log,
        )
        errors = ["" if np.isfinite(p) else "not decoded" for p in res.prob_fake]
        computed = len(rows)
    else:
        items = [(base / r.path, r.sha256) for r in rows]
        kw: dict[str, Any] = {
            "mode": mode, "pca_dim": pca_dim, "regions": bb.regions, "seed": seed,
            "copies": 2 if mirror else 1, "batch_size": batch_size, "progress": progress,
        }  # fmt: skip
        emb = embed_for_heads(root, items, spec, **kw)
        computed, cached, errors = emb.computed, emb.cached, emb.errors
        projection = emb.projection
        if projection is not None and log is not None:
            log(
                f"heads on a projection: {projection.dim} principal components per row, "
                f"{projection.explained:.1%} of the variance of {projection.sample_rows} rows"
            )
        mirror_features = None
        if mirror:
            if log is not None:
                log("mirror images: features for the heads' extra training rows")
            m = embed_for_heads(root, items, spec.mirrored(), projection=projection, **kw)
            computed, cached = computed + m.computed, cached + m.cached
            mirror_features = m.features
        heads: dict[str, Any] = {
            "head": head, "c": bb.head_c, "ok": emb.ok, "mirror": mirror_features,
            "prune": prune, "groups": groups, "seed": seed, "regions": bb.regions,
            "standardised": projection is not None,
        }  # fmt: skip
        res = F.repeated_frozen_oof(emb.features, y, fold_sets, log=log, **heads)
        if planted:
            if log is not None:
                log(f"planted run (separate's check): the heads again, {PLANT_SHARE:.0%} swapped")
            plant = planted_run(
                lambda yp: F.repeated_frozen_oof(emb.features, yp, fold_sets, **heads).prob_fake,
                y,
                [r.sha256 for r in rows],
            )
    entries, failed = [], []
    for i, r in enumerate(rows):
        p = res.prob_fake[i]
        if errors[i] or not np.isfinite(p):
            failed.append((r.path, errors[i] or "not predicted"))
            continue
        entry = {
            "path": r.path,
            "sha256": r.sha256,
            "label": r.label,
            "prob_fake": round(float(p), 6),
            "fold": int(res.fold[i]),
        }
        if res.repeat_folds is not None:
            entry["folds"] = [int(f) for f in res.repeat_folds[:, i]]
        if plant is not None and np.isfinite(plant.prob_fake[i]):
            entry["planted_prob_fake"] = round(float(plant.prob_fake[i]), 6)
            if plant.swapped[i]:
                entry["planted"] = True
        entries.append(entry)
    times = f"-x{repeats}" if repeats > 1 else ""
    info = {
        "name": f"{backbone}-{'finetune' if finetune else res.head}-{folds}fold{times}",
        "backbone": backbone,
        "sha256": spec.weights_id,
        "weights": w,
        "preprocessing": spec.preprocessing,
        "head": res.head,
        "folds": folds,
        "seed": seed,
    }
    if not finetune:
        info["head_c"] = bb.head_c if bb.head_c is not None else F.HEAD_C
        info["mirror_augment"] = res.mirror
        info["pruned"] = res.pruned
        if repeats > 1:
            info["repeats"] = repeats
        if bb.regions > 1:
            info["regions"] = bb.regions
        info["head_features"] = "full" if projection is None else projection.info()
        if plant is not None:
            info["planted"] = plant.info()
    path = write_predictions_v1(out, model=info, entries=entries, out_of_fold=True)
    yy = np.array([e["label"] == Label.FAKE for e in entries], dtype=int)
    auc, acc = _scores(yy, np.array([e["prob_fake"] for e in entries]))
    return PredictSummary(
        out=path,
        images=len(rows),
        predicted=len(entries),
        failed=failed,
        out_of_fold=True,
        model=info,
        folds=folds,
        computed=computed,
        cached=cached,
        seconds=time.perf_counter() - t0,
        auc=auc,
        accuracy=acc,
    )


def _head_features_mode(name: str) -> Any:
    """``--head-features`` as :class:`cleaner.models.projection.HeadFeatures`, or one line."""
    from cleaner.models.projection import HeadFeatures

    try:
        return HeadFeatures(name)
    except ValueError:
        choices = ", ".join(m.value for m in HeadFeatures)
        raise CleanerError(f"--head-features {name!r}: choose one of {choices}") from None


# ---------------------------------------------------------------------------------------------
# predict-dir


def numeric_key(name: str) -> tuple[Any, ...]:
    """Sort key: the numbers in a name compare as numbers (``2.png`` before ``10.png``)."""
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p), p) if p.isdigit() else (1, 0, p.lower()) for p in parts if p != "")


_NUMBER = re.compile(r"\d+")


def name_index(name: str, position: int) -> int:
    """The number in a file's name (``17.png`` -> 17), or its 1-based position if it has none."""
    m = _NUMBER.search(Path(name).stem)
    return int(m.group()) if m else position


@dataclass
class PredictDirSummary:
    out: Path
    files: int
    predicted: int
    skipped: list[tuple[str, str]]
    """(file name, reason) of files that are not usable images (reported, not fatal)."""
    fake: int
    real: int
    seconds: float
    threshold: float = 0.5
    """The prob_fake at and above which ``prediction`` is fake (``--calibrate`` moves it)."""
    calibration: Calibration | None = None

    def summary(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["out"] = str(self.out)
        d["skipped"] = [{"image": n, "reason": r} for n, r in self.skipped]
        d["calibration"] = None if self.calibration is None else self.calibration.summary()
        return d


def predict_dir(
    directory: str | os.PathLike[str],
    model_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    image_size: int | None = None,
    crop: str | None = None,
    batch_size: int = 32,
    threshold: float = 0.5,
    calibrate: str | os.PathLike[str] | None = None,
    progress: Progress = None,
) -> PredictDirSummary:
    """Label every file of ``directory`` (not recursive, hidden files skipped) with a saved
    model; the contract's ``predictions.json``: a list in numeric order of file names.
    ``calibrate``: a labels file of some of those images; the threshold that labels them best
    replaces ``threshold`` (:mod:`cleaner.models.calibrate`); prob_fake is unchanged."""
    from cleaner.models.inputs import predict_paths
    from cleaner.models.saved import load_detector

    t0 = time.perf_counter()
    d = Path(directory)
    if not d.is_dir():
        raise CleanerError(f"{d} is not a folder; pass the folder of images to label")
    check_output(out)
    labels = read_labels(calibrate) if calibrate is not None else None
    names = sorted(
        (e.name for e in os.scandir(d) if e.is_file() and not e.name.startswith(".")),
        key=numeric_key,
    )
    det = load_detector(model_path, image_size=image_size, crop=crop)
    outs, errors = predict_paths(
        det.model,
        [d / n for n in names],
        det.size,
        crop=det.crop,
        batch_size=batch_size,
        progress=progress,
        factory=det.factory,  # Ray actors load their own, on the same runtime
    )
    probs = det.prob_fake(outs) if names else np.zeros(0)
    kept = [(pos, n, round(float(np.clip(p, 0, 1)), 6)) for pos, (n, p, e)
            in enumerate(zip(names, probs, errors, strict=True), start=1) if not e]  # fmt: skip
    skipped = [(n, e) for n, e in zip(names, errors, strict=True) if e]
    cal = None
    if labels is not None:
        cal = fit_calibration([n for _, n, _ in kept], [pf for *_, pf in kept], labels,
                              str(calibrate))  # fmt: skip
        threshold = cal.threshold
    result = [
        {
            "index": name_index(n, pos),
            "image": n,
            "prediction": Label.FAKE if pf >= threshold else Label.REAL,
            "prob_fake": pf,
        }
        for pos, n, pf in kept
    ]
    target = Path(out)
    atomic_write_text(target, json.dumps(result, indent=1) + "\n", is_json=True)
    n_fake = sum(1 for r in result if r["prediction"] == Label.FAKE)
    return PredictDirSummary(
        out=target,
        files=len(names),
        predicted=len(result),
        skipped=skipped,
        fake=n_fake,
        real=len(result) - n_fake,
        seconds=time.perf_counter() - t0,
        threshold=threshold,
        calibration=cal,
    )
