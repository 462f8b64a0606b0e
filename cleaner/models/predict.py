"""The work behind ``cleaner predict`` and ``cleaner predict-dir``: probabilities into files.

- :func:`predict`: ``cleaner predict``, given a :class:`~cleaner.models.config.ModelConfig`
  or an :class:`~cleaner.models.config.OOFConfig` (:func:`~cleaner.models.config.predict_config`
  builds one from the flags and refuses a mix), runs one of these two:
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cleaner.atomic import atomic_write_text
from cleaner.choices import Label
from cleaner.dataset import Workspace, check_output
from cleaner.errors import CleanerError
from cleaner.hashing import file_sha256
from cleaner.models.calibrate import Calibration, read_labels
from cleaner.models.calibrate import calibrate as fit_calibration
from cleaner.models.config import ModelConfig, OOFConfig

if TYPE_CHECKING:
    from cleaner.models.embeddings import EmbeddingSpec
    from cleaner.models.folds import OutOfFold
    from cleaner.models.planted import PlantedRun
    from cleaner.models.projection import Projection

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


def predict(
    ws: Workspace,
    cfg: ModelConfig | OOFConfig,
    *,
    progress: Progress = None,
    log: Callable[[str], None] | None = None,
) -> PredictSummary:
    """``cleaner predict``: a saved model's probabilities (:func:`predict_with_model`) or the
    out-of-fold heads' (:func:`predict_out_of_fold`), as the config says."""
    if isinstance(cfg, ModelConfig):
        return predict_with_model(ws, cfg, progress=progress)
    return predict_out_of_fold(ws, cfg, progress=progress, log=log)


def predict_with_model(
    ws: Workspace, cfg: ModelConfig, *, progress: Progress = None
) -> PredictSummary:
    """prob_fake of a saved model for every ``ok`` image of ROOT, into a v1 file."""
    from cleaner.manifest import ok_rows
    from cleaner.models.inputs import predict_paths
    from cleaner.models.saved import load_detector
    from cleaner.predictions import write_predictions_v1

    cfg.check(ws)
    t0 = time.perf_counter()
    rows = ok_rows(ws)
    mp = Path(cfg.model)
    det = load_detector(mp, image_size=cfg.image_size, crop=cfg.crop)
    size, c = det.size, det.crop
    outs, errors = predict_paths(
        det.model,
        [ws.root / r.path for r in rows],
        size,
        crop=c,
        batch_size=cfg.batch_size,
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
    path = write_predictions_v1(cfg.out, model=info, entries=entries, out_of_fold=False)
    return _summary(path, rows, entries, failed, info, t0, computed=len(rows))


def _summary(
    path: Path,
    rows: Sequence[Any],
    entries: Sequence[dict[str, Any]],
    failed: list[tuple[str, str]],
    info: dict[str, Any],
    t0: float,
    **counts: Any,
) -> PredictSummary:
    """The run's summary, scored against the folder labels (``counts``: the other fields)."""
    y = np.array([e["label"] == Label.FAKE for e in entries], dtype=int)
    auc, acc = _scores(y, np.array([e["prob_fake"] for e in entries]))
    return PredictSummary(
        out=path,
        images=len(rows),
        predicted=len(entries),
        failed=failed,
        model=info,
        seconds=time.perf_counter() - t0,
        auc=auc,
        accuracy=acc,
        **counts,
    )


@dataclass
class _Folds:
    """What the folds gave: out-of-fold probabilities, a reason per image that has none, the
    backbone runs and cache hits, the projection the heads trained on and the planted run."""

    res: OutOfFold
    errors: list[str]
    computed: int = 0
    cached: int = 0
    projection: Projection | None = None
    plant: PlantedRun | None = None
    """When the frozen heads ran it."""


def predict_out_of_fold(
    ws: Workspace,
    cfg: OOFConfig,
    *,
    progress: Progress = None,
    log: Callable[[str], None] | None = None,
) -> PredictSummary:
    """Out-of-fold prob_fake for every ``ok`` image of ROOT from ``cfg.backbone`` (see the
    module doc; the flags: :class:`~cleaner.models.config.OOFConfig`): K grouped folds
    (:func:`_fold_images`), a head per fold (:func:`_frozen_folds` or :func:`_finetune_folds`),
    then one entry per image (:func:`_oof_entries`) and the file's ``model`` (:func:`_oof_info`).
    """
    from cleaner.manifest import ok_rows
    from cleaner.models.embeddings import EmbeddingSpec
    from cleaner.predictions import write_predictions_v1

    cfg.check(ws)
    t0 = time.perf_counter()
    rows = ok_rows(ws)
    if not rows:
        raise CleanerError(f"no ok image under {ws.root}; run cleaner scan and check the folders")
    images = _fold_images(ws, cfg, rows)
    spec = EmbeddingSpec(cfg.bb, cfg.weights_name, cfg.size, cfg.crop_policy)
    if cfg.finetune:
        got = _finetune_folds(ws, cfg, images, log)
    else:
        got = _frozen_folds(ws, cfg, spec, images, progress, log)
    entries, failed = _oof_entries(rows, got)
    info = _oof_info(cfg, spec, got)
    path = write_predictions_v1(cfg.out, model=info, entries=entries, out_of_fold=True)
    return _summary(
        path, rows, entries, failed, info, t0, out_of_fold=True, folds=cfg.folds,
        computed=got.computed, cached=got.cached,
    )  # fmt: skip


@dataclass
class _FoldImages:
    """The images the folds share out: their manifest rows, labels (1 = fake), duplicate
    groups, and one fold assignment per ``--repeats``."""

    rows: Sequence[Any]
    y: np.ndarray
    groups: np.ndarray
    fold_sets: list[np.ndarray]


def _fold_images(ws: Workspace, cfg: OOFConfig, rows: Sequence[Any]) -> _FoldImages:
    """Each image's label and duplicate group, and one fold assignment per ``--repeats``
    (seeds ``seed`` to ``seed + repeats - 1``), stratified by label, groups never split."""
    from cleaner.models import folds as F

    y = np.array([r.label == Label.FAKE for r in rows], dtype=np.int64)
    paths, shas = [r.path for r in rows], [r.sha256 for r in rows]
    groups = F.group_ids(paths, shas, F.duplicate_groups(ws))
    sets = [F.assign_folds(y, groups, cfg.folds, seed=cfg.seed + r) for r in range(cfg.repeats)]
    return _FoldImages(rows, y, groups, sets)


def _finetune_folds(
    ws: Workspace, cfg: OOFConfig, images: _FoldImages, log: Callable[[str], None] | None
) -> _Folds:
    """``--finetune``: each fold fine-tunes the backbone's top on the other folds (the first
    assignment: ``--repeats`` is for frozen heads)."""
    from cleaner.models import folds as F

    rows, y, fold = images.rows, images.y, images.fold_sets[0]
    res = F.finetune_oof(
        [ws.root / r.path for r in rows], y, fold, backbone=cfg.bb, weights=cfg.weights_name,
        image_size=cfg.size, crop=cfg.crop_policy, epochs=cfg.epochs,
        batch_size=cfg.batch_size, seed=cfg.seed, log=log,
    )  # fmt: skip
    errors = ["" if np.isfinite(p) else "not decoded" for p in res.prob_fake]
    return _Folds(res, errors, computed=len(rows))


def _frozen_folds(
    ws: Workspace,
    cfg: OOFConfig,
    spec: EmbeddingSpec,
    images: _FoldImages,
    progress: Progress,
    log: Callable[[str], None] | None,
) -> _Folds:
    """Frozen heads: the features (and the mirror images', ``--mirror``) from the embedding
    cache, full or projected; a head per fold; then, unless ``--no-planted``, the heads again
    with a sample of labels swapped (separate's check)."""
    from cleaner.models import folds as F
    from cleaner.models.embeddings import embed_for_heads
    from cleaner.models.planted import PLANT_SHARE, planted_run

    bb, rows, y, fold_sets = cfg.bb, images.rows, images.y, images.fold_sets
    items = [(ws.root / r.path, r.sha256) for r in rows]
    kw: dict[str, Any] = {
        "mode": cfg.features, "pca_dim": cfg.pca_dim, "regions": bb.regions, "seed": cfg.seed,
        "copies": 2 if cfg.mirror else 1, "batch_size": cfg.batch_size, "progress": progress,
    }  # fmt: skip
    emb = embed_for_heads(ws, items, spec, **kw)
    computed, cached, projection = emb.computed, emb.cached, emb.projection
    if projection is not None and log is not None:
        log(
            f"heads on a projection: {projection.dim} principal components per row, "
            f"{projection.explained:.1%} of the variance of {projection.sample_rows} rows"
        )
    mirror_features = None
    if cfg.mirror:
        if log is not None:
            log("mirror images: features for the heads' extra training rows")
        m = embed_for_heads(ws, items, spec.mirrored(), projection=projection, **kw)
        computed, cached = computed + m.computed, cached + m.cached
        mirror_features = m.features
    heads: dict[str, Any] = {
        "head": cfg.head, "c": bb.head_c, "ok": emb.ok, "mirror": mirror_features,
        "prune": cfg.prune, "groups": images.groups, "seed": cfg.seed, "regions": bb.regions,
        "standardised": projection is not None,
    }  # fmt: skip
    res = F.repeated_frozen_oof(emb.features, y, fold_sets, log=log, **heads)
    got = _Folds(res, emb.errors, computed, cached, projection)
    if cfg.planted:
        if log is not None:
            log(f"planted run (separate's check): the heads again, {PLANT_SHARE:.0%} swapped")
        got.plant = planted_run(
            lambda yp: F.repeated_frozen_oof(emb.features, yp, fold_sets, **heads).prob_fake,
            y,
            [r.sha256 for r in rows],
        )
    return got


def _oof_entries(
    rows: Sequence[Any], got: _Folds
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """One predictions entry per image that has a probability (its fold, its folds per
    assignment, its planted probability); (path, reason) of the others."""
    res, plant, errors = got.res, got.plant, got.errors
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
    return entries, failed


def _oof_info(cfg: OOFConfig, spec: EmbeddingSpec, got: _Folds) -> dict[str, Any]:
    """The predictions file's ``model``: what made the probabilities, enough to redo them."""
    from cleaner.models.heads import HEAD_C

    res, bb = got.res, cfg.bb
    times = f"-x{cfg.repeats}" if cfg.repeats > 1 else ""
    info = {
        "name": f"{cfg.backbone}-{'finetune' if cfg.finetune else res.head}-{cfg.folds}fold{times}",
        "backbone": cfg.backbone,
        "sha256": spec.weights_id,
        "weights": cfg.weights_name,
        "preprocessing": spec.preprocessing,
        "head": res.head,
        "folds": cfg.folds,
        "seed": cfg.seed,
    }
    if not cfg.finetune:
        info["head_c"] = bb.head_c if bb.head_c is not None else HEAD_C
        info["mirror_augment"] = res.mirror
        info["pruned"] = res.pruned
        if cfg.repeats > 1:
            info["repeats"] = cfg.repeats
        if bb.regions > 1:
            info["regions"] = bb.regions
        info["head_features"] = "full" if got.projection is None else got.projection.info()
        if got.plant is not None:
            info["planted"] = got.plant.info()
    return info


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
