"""`cleaner train`: a grouped split, two-phase transfer learning, test metrics and plots.

The pieces, in the order :func:`train` runs them:

1. **Split** (:func:`make_split`): 60/20/20, seeded, stratified by class and *grouped*: every
   near-duplicate group of ``R/.cleaner/duplicates.json`` (and every set of byte-identical files)
   lands in one split, so no copy of a test image is trained on. Written to
   ``R/.cleaner/split.csv`` and reused by later runs (matched by sha256, so files that
   ``separate`` moved keep their split; quarantined files drop out; new files join by group).
2. **Inputs**: images are decoded by :mod:`cleaner.images` at native resolution; training takes
   random ``S x S`` crops (plus flips, small rotations, brightness/contrast), evaluation a centre
   crop. Nothing is resized down unless the image is over twice ``S`` (then to ``2S``), so the
   high-frequency traces generators leave survive. Smaller images are scaled up to ``S``.
   Each batch is decoded from its paths when Keras asks for it
   (:func:`cleaner.models.fit.image_batches`, a few threads): memory holds a few batches of
   pixels, not the split (some 150 GB at a million images); the split holds only images the
   scan found ``ok``, and one that stops decoding later is dropped from its batch and counted
   (``unreadable`` in the metrics).
3. **Phase 1, head**: the backbone is frozen; its features of the (centre-cropped) train and val
   images are computed once into the embeddings cache (or read from it), standardised
   (a ``Normalization`` layer set from running sums over the train split's features, saved in
   the model) and a dropout + sigmoid head is fitted on them, which takes seconds. At a million
   images the features are streamed from the cache, full or projected on their principal
   directions (:mod:`cleaner.models.frozen_head` says how and why).
4. **Phase 2, fine-tuning**: the top ``N`` layers of the backbone are unfrozen (BatchNormalization
   stays frozen, in inference mode) and the whole model trains on augmented crops at a 10x lower
   learning rate. With ``--weights none`` there is nothing to transfer: the whole network trains
   from scratch (BatchNormalization included) instead of phases 1 and 2.
   EarlyStopping on validation loss, ReduceLROnPlateau and a best checkpoint in both phases.
5. **Test**: metrics on the held-out test split, ``M.metrics.json`` and PNG plots beside ``M``.

The saved model takes float32 RGB **0..255** ``(S, S, 3)`` and outputs **prob_fake** (sigmoid:
1 = fake, 0 = real), the convention ``predict-dir`` relies on. Evaluate it on centre crops at
native resolution (``cleaner.images.load_array(path, S, crop="center")``).

This module holds the phases only. The flags are :class:`~cleaner.models.config.TrainConfig`
(checked when built); the decoding is :mod:`cleaner.models.inputs`, the precision
:mod:`cleaner.models.devices`, the Keras plumbing (batches, callbacks, freezing, saving)
:mod:`cleaner.models.fit`, the metrics and plots :mod:`cleaner.models.metrics`. A phase takes
the run (:class:`_Run`: the workspace, the config, the split, the network, the history).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cleaner.choices import Augment, Label
from cleaner.dataset import Workspace
from cleaner.errors import CleanerError
from cleaner.models import augment as AUG
from cleaner.models import fit as FIT
from cleaner.models import frozen_head as FH
from cleaner.models.config import TrainConfig
from cleaner.models.devices import resolve_precision
from cleaner.models.metrics import classification_metrics, median, versions, write_plots
from cleaner.split import SPLITS, SplitRow, data_digest, dataset_samples, make_split
from cleaner.state import metrics as metrics_file
from cleaner.state import split as split_file

__all__ = ["TrainConfig", "TrainResult", "head_phase_on", "train"]

PREPROCESSING = "native-resolution crops: random SxS for training, centre SxS for evaluation"

Reporter = Callable[[str], None]


@dataclass
class TrainResult:
    model_path: Path
    metrics_path: Path
    plots: list[Path]
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    SUMMARY_KEYS = (
        "accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix", "epochs",
        "backbone", "weights", "image_size", "data_digest",
    )  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """What ``cleaner train --json`` prints: the test figures, the model and its metrics."""
        m = self.metrics
        return {k: m[k] for k in self.SUMMARY_KEYS} | {
            "model": str(self.model_path),
            "metrics": str(self.metrics_path),
        }


@dataclass
class _Data:
    """The split: what every phase after it reads. Paths, not pixels: each phase decodes
    batch by batch (:func:`cleaner.models.fit.image_batches`), so memory does not grow with
    the split."""

    rows: list[SplitRow]
    reused: bool
    kept: dict[str, list[SplitRow]]
    """Per split, its rows (all ``ok`` in the scan that :func:`make_split` ran first)."""
    paths: dict[str, list[str]]
    y: dict[str, np.ndarray]
    unreadable: FIT.Unreadable = field(default_factory=FIT.Unreadable)
    class_weight: dict[str, float] | None = None
    sample_w: np.ndarray | None = None

    def items(self, part: str) -> list[tuple[str, str]]:
        """``(path, sha256)`` of each image of split ``part``, for the embedding cache."""
        return [(p, r.sha256) for p, r in zip(self.paths[part], self.kept[part], strict=True)]


@dataclass
class _Net:
    """The classifier and the parts of it the phases train."""

    model: Any
    backbone: Any
    feat_norm: Any
    head: Any
    scratch: bool
    has_trainable: bool
    policy: str


@dataclass
class _Run:
    """One training run, what every phase takes: the workspace and the config it was given,
    the split and the network built from them, and what the phases have recorded so far."""

    ws: Workspace
    cfg: TrainConfig
    data: _Data
    net: _Net
    say: Reporter
    history: list[dict[str, Any]] = field(default_factory=list)
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def fine_tuned(self) -> bool:
        """Phase 2 ran (fine-tuning or from scratch)."""
        return any(k in self.phases for k in ("fine-tune", "scratch"))

    @property
    def frozen(self) -> bool:
        """The final model's backbone is the pretrained one, as phase 1 saw it."""
        return not self.net.scratch and not any(
            k in self.phases and not self.phases[k].get("kept_head_only")
            for k in ("fine-tune", "scratch")
        )

    def sequence(self, part: str) -> Any:
        """Keras batches of one split, decoded when asked: the training split shuffled,
        augmented (``--augment``) and class-weighted; the others in order, as they are."""
        cfg, train = self.cfg, part == "train"
        return FIT.image_batches(
            self.data.paths[part],
            self.data.y[part],
            size=cfg.size,
            crop=cfg.crop_policy,
            batch_size=cfg.batch_size,
            train=train,
            seed=cfg.seed,
            do_augment=train and AUG.mode(cfg.augment) is not Augment.NONE,
            robust=cfg.robust if AUG.mode(cfg.augment) is Augment.ROBUST else None,  # auto: crops
            unreadable=self.data.unreadable,
            weights=self.data.sample_w if train else None,
            workers=cfg.workers,
        )


@dataclass
class _Tested:
    """The evaluate phase: test prob_fake and labels, test and validation metrics, what the
    model does away from its test split (``launder``, ``by_source``) and the seconds taken."""

    prob: np.ndarray
    y: np.ndarray
    test: dict[str, Any]
    val: dict[str, Any]
    seconds: float
    away: dict[str, Any] = field(default_factory=dict)


def train(ws: Workspace, cfg: TrainConfig, *, report: Reporter | None = None) -> TrainResult:
    """Split, train, test, write ``cfg.out`` + ``.metrics.json`` + plots. See the module doc.

    The phases, in order: :func:`_split` (the split), :func:`_build` (the network),
    :func:`_head_phase` (a head on frozen features), :func:`_tune_phase` (fine-tune or from
    scratch), :func:`_evaluate` (test split, ``--launder``, ``--by-source``), :func:`_save`."""
    say: Reporter = report or (lambda s: print(s, file=sys.stderr))
    t_start = time.perf_counter()
    cfg.check(ws)
    data = _split(ws, cfg, say)
    run = _Run(ws, cfg, data, _build(cfg), say)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    val_seq = run.sequence("val")
    if not run.net.scratch and cfg.head_epochs > 0:
        run.phases["head"] = _head_phase(run)
    if cfg.epochs > 0 and run.net.has_trainable:
        _tune_phase(run, val_seq)
    tested = _evaluate(run, val_seq)
    return _save(run, tested, t_start)


# ---------------------------------------------------------------------------------------------
# split


def _split(ws: Workspace, cfg: TrainConfig, say: Reporter) -> _Data:
    """The split (reused from ``split.csv`` unless ``--resplit``), each part with both classes,
    as paths and labels (nothing is decoded here: the split holds only images the scan found
    ``ok``, and one that stops decoding later is dropped from its batch); class weights when
    the training split is imbalanced."""
    rows, reused = make_split(ws, dataset_samples(ws), seed=cfg.seed, resplit=cfg.resplit)
    kept = {s: [r for r in rows if r.split == s] for s in SPLITS}
    if cfg.max_train is not None:
        kept["train"] = kept["train"][: cfg.max_train]
    for s in SPLITS:
        labels = {r.label for r in kept[s]}
        if len(labels) < 2:
            raise CleanerError(
                f"the {s} split of {ws.root} has images of {len(labels)} class(es); each split "
                "needs real and fake images (add images to both class folders)"
            )
    say(
        f"split ({'reused' if reused else 'new'}, {split_file.path(ws)}): "
        + ", ".join(f"{s} {len(kept[s])}" for s in SPLITS)
    )
    paths = {s: [str(ws.root / r.path) for r in kept[s]] for s in SPLITS}
    y = {s: np.array([1.0 if r.label == Label.FAKE else 0.0 for r in kept[s]]) for s in SPLITS}
    data = _Data(rows=rows, reused=reused, kept=kept, paths=paths, y=y)
    _class_weights(data, say)
    return data


def _class_weights(data: _Data, say: Reporter) -> None:
    """Class weights when the training split is imbalanced (minority under 80% of the
    majority), set on ``data``."""
    y_train = data.y["train"]
    n_fake, n_real = int(y_train.sum()), int(len(y_train) - y_train.sum())
    if min(n_fake, n_real) < 0.8 * max(n_fake, n_real):
        n = n_fake + n_real
        cw = {Label.REAL.value: n / (2 * n_real), Label.FAKE.value: n / (2 * n_fake)}
        data.class_weight = cw
        data.sample_w = np.where(y_train > 0.5, cw[Label.FAKE], cw[Label.REAL])
        say(f"class weights (imbalanced {n_real} real / {n_fake} fake): {cw}")


def _split_summary(ws: Workspace, data: _Data) -> dict[str, Any]:
    """The metrics file's ``split``: its file, whether it was reused, per-split counts."""
    y = data.y
    return {
        "file": str(split_file.path(ws)),
        "reused": data.reused,
        **{
            s: {
                "images": len(data.kept[s]),
                Label.REAL.value: int((y[s] < 0.5).sum()),
                Label.FAKE.value: int(y[s].sum()),
            }
            for s in SPLITS
        },
        "groups": len({r.group for r in data.rows}),
    }


# ---------------------------------------------------------------------------------------------
# the network


def _build(cfg: TrainConfig) -> _Net:
    """The classifier: the backbone (frozen for transfer, trainable from scratch), the region
    mean for ``-quad`` backbones, feature standardisation, dropout, one sigmoid unit."""
    import keras

    bb, size = cfg.bb, cfg.size
    keras.utils.set_random_seed(cfg.seed)
    policy = resolve_precision(cfg.precision)
    keras.mixed_precision.set_global_policy(policy)
    try:
        backbone = bb.build(cfg.weights_name, size)
        keras.utils.set_random_seed(cfg.seed)  # build() seeds its own --weights none init
        has_trainable = any("moving" not in w.path for w in backbone.weights)
        scratch = cfg.weights_name == "none" and has_trainable
        backbone.trainable = False
        inp = keras.Input((size, size, 3), name="image")
        # transfer: the backbone always runs in inference mode (BatchNormalization keeps its
        # ImageNet statistics); from scratch it must learn them
        feats = backbone(inp) if scratch else backbone(inp, training=False)
        if bb.regions > 1:  # the mean of the region rows: its logit is the mean of theirs
            width = int(backbone.output_shape[-1]) // bb.regions
            feats = keras.layers.Reshape((bb.regions, width), name="regions")(feats)
            feats = keras.layers.GlobalAveragePooling1D(name="region_mean")(feats)
        # standardises the features (adapted on the training split's before the head phase;
        # the identity otherwise): frozen features come in any scale, texture ones in many
        feat_norm = keras.layers.Normalization(dtype="float32", name="feature_norm")
        head_drop = keras.layers.Dropout(cfg.dropout, name="head_dropout")
        head = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="prob_fake")
        model = keras.Model(inp, head(head_drop(feat_norm(feats))), name=f"cleaner_{cfg.backbone}")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return _Net(model, backbone, feat_norm, head, scratch, has_trainable, policy)


# ---------------------------------------------------------------------------------------------
# phase 1: a head on frozen features


def _head_phase(run: _Run) -> dict[str, Any]:
    """Phase 1: the head on frozen features, from the embedding cache (computed into it where
    missing), full or projected (``--head-features``); returns the phase's record."""
    from cleaner.models.embeddings import EmbeddingSpec
    from cleaner.models.projection import HeadFeatures

    cfg, data, bb = run.cfg, run.data, run.cfg.bb
    t0 = time.perf_counter()
    spec = EmbeddingSpec(bb, cfg.weights_name, cfg.size, cfg.crop_policy)
    items = {s: data.items(s) for s in ("train", "val")}
    inputs = FH.head_inputs(
        run.ws, items["train"], items["val"], spec, regions=bb.regions,
        mode=HeadFeatures(cfg.head_features), pca_dim=cfg.pca_dim, seed=cfg.seed,
        batch_size=cfg.feature_batch,
    )  # fmt: skip
    n_tr = len(items["train"])
    views: dict[str, Any] | None = None
    if AUG.mode(cfg.augment) in AUG.HEAD_ROBUST:
        from cleaner.models.head_views import add_views

        inputs, views = add_views(
            run.ws, items["train"], spec, inputs, views=cfg.head_views, robust=cfg.robust,
            batch_size=cfg.feature_batch, model=run.net.backbone,
        )  # fmt: skip
    for k in inputs.failed:  # no features: the image no longer decodes
        data.unreadable.add(data.paths["train"][k] if k < n_tr else data.paths["val"][k - n_tr])
    t_feat = time.perf_counter() - t0
    src = f"cache ({inputs.cached} hits, {inputs.computed} computed)"
    n_img = len(inputs.train) + len(inputs.val)
    run.say(f"head features ({src}, {inputs.mode.value}): {n_img} images in {t_feat:.1f}s")
    phase = head_phase_on(run, inputs, bb.head_c)
    phase.update(
        {
            "feature_seconds": round(t_feat, 2),
            "features_from": src,
            "head_features": inputs.mode.value,
            "feature_images_per_s": round(n_img / t_feat, 1) if t_feat > 0 else None,
        }
    )
    if inputs.projection is not None:
        phase["projection"] = inputs.projection.info()
    if views is not None:
        phase["robust_views"] = views
    return phase


@dataclass
class _HeadLabels:
    """The labels of the rows a head fits on (train) and is judged on (val), and the training
    rows' class weights."""

    train: np.ndarray
    val: np.ndarray
    weights: np.ndarray | None


def head_phase_on(run: Any, inputs: FH.HeadInputs, c: float | None) -> dict[str, Any]:
    """The head fitted on ``inputs`` (the rows whose features exist) and written into
    ``run.net.feat_norm`` and ``run.net.head``. ``run``: a :class:`_Run`, or what the bench
    passes of one (``cfg``, ``data.y``, ``data.sample_w``, ``net``, ``say``, ``history``)."""
    data = run.data
    labels = _HeadLabels(
        data.y["train"][inputs.train_images()],
        data.y["val"][inputs.val - len(data.y["train"])],
        None if data.sample_w is None else data.sample_w[inputs.train_images()],
    )
    if run.cfg.head == "logreg":
        return _fit_logreg_head(run, inputs, labels, c)
    return _fit_dense_head(run, inputs, labels)


def _fit_logreg_head(
    run: Any, inputs: FH.HeadInputs, labels: _HeadLabels, c: float | None
) -> dict[str, Any]:
    """Phase 1 as the out-of-fold heads do it: logistic regression on the standardised features
    (or their projection, folded back: :mod:`cleaner.models.frozen_head`), solved exactly, its
    coefficients written into the model's ``feat_norm`` and sigmoid layer ``head``: better
    test accuracy than the dense head trained by Adam (bench/README.md "Training")."""
    import keras

    from cleaner.models.heads import HEAD_C

    t0 = time.perf_counter()
    norm = FH.standardisation(inputs)
    FIT.set_feature_norm(run.net.feat_norm, *norm)
    lr, kernel, bias = FH.fit_logreg(
        inputs, labels.train, labels.weights, norm, c=HEAD_C if c is None else c,
        epsilon=keras.backend.epsilon(),
    )  # fmt: skip
    run.net.head.set_weights([kernel[:, None].astype(np.float32), np.array([bias], np.float32)])
    p_va = lr.prob(*inputs.val_features())
    val = classification_metrics(labels.val, p_va)
    run.say(
        f"head      logistic regression C={lr.c}: val_loss {val['loss']:.4f}  "
        f"val_acc {val['accuracy']:.4f}  val_auc {val['roc_auc'] or float('nan'):.4f}  "
        f"{time.perf_counter() - t0:.1f}s"
    )
    return {
        "head": "logreg",
        "c": lr.c,
        "epochs": 0,
        "iterations": lr.n_iter,
        "fit_seconds": round(time.perf_counter() - t0, 2),
        "val_accuracy": val["accuracy"],
        "val_loss": val["loss"],
        "val_auc": val["roc_auc"],
    }


def _fit_dense_head(run: Any, inputs: FH.HeadInputs, labels: _HeadLabels) -> dict[str, Any]:
    """Phase 1 by gradient descent: dropout + the sigmoid layer on the standardised features
    (or on the projected coordinates, folded back into ``head`` afterwards), Adam, early
    stopping on validation loss; rows are gathered batch by batch."""
    import keras

    cfg, net, history = run.cfg, run.net, run.history
    norm = FH.standardisation(inputs)
    FIT.set_feature_norm(net.feat_norm, *norm)
    (view, rows), r = inputs.train_blocks()[0], inputs.regions
    y = np.repeat(labels.train, r) if r > 1 else labels.train
    sample_w = labels.weights
    w = None if sample_w is None else (np.repeat(sample_w, r) if r > 1 else sample_w)
    fin = keras.Input((view.shape[1],), name="features")
    pca = inputs.projection is not None
    hd = keras.layers.Dropout(cfg.dropout)(fin if pca else net.feat_norm(fin))
    hd_dense = keras.layers.Dense(1, activation="sigmoid", name="prob_fake")
    head_model = keras.Model(fin, hd_dense(hd))
    FIT.compile_model(head_model, cfg.head_lr)
    head_ckpt = cfg.out.with_name(f".{cfg.out.stem}.head.weights.h5")
    n_before = len(history)
    t1 = time.perf_counter()
    va, va_rows = inputs.val_features()
    bs = cfg.batch_size
    head_model.fit(
        FIT.row_batches(view, rows, y, w, batch_size=bs, seed=cfg.seed),
        validation_data=FIT.row_batches(va, va_rows, labels.val, None, batch_size=bs, seed=None),
        epochs=cfg.head_epochs,
        verbose=0,
        callbacks=FIT.callbacks("head", len(rows), run.say, history, head_ckpt, cfg.patience + 2),
    )
    kernel, bias = hd_dense.get_weights()
    kernel = FH.dense_kernel(inputs, kernel[:, 0], norm, keras.backend.epsilon())[:, None]
    net.head.set_weights([np.asarray(kernel, np.float32), np.asarray(bias, np.float32)])
    head_ckpt.unlink(missing_ok=True)
    return {
        "head": "dense",
        "epochs": len(history) - n_before,
        "fit_seconds": round(time.perf_counter() - t1, 2),
        "lr": cfg.head_lr,
    }


# ---------------------------------------------------------------------------------------------
# phase 2: fine-tuning (or from scratch)


def _unfreeze(run: _Run) -> tuple[str, float, int]:
    """Phase 2's trainable layers: the top of the backbone (transfer) or all of it (from
    scratch). Returns (phase name, learning rate, layers unfrozen)."""
    import keras

    cfg, backbone = run.cfg, run.net.backbone
    if not run.net.scratch:
        top = cfg.bb.trainable_top if cfg.fine_tune_layers is None else cfg.fine_tune_layers
        return "fine-tune", cfg.fine_tune_lr, FIT.freeze_for_fine_tuning(backbone, top)
    backbone.trainable = True
    unfrozen = len([ly for ly in FIT.flat_layers(backbone) if ly.weights])
    # a few dozen steps per epoch: BatchNormalization's moving statistics (momentum
    # 0.99) would still be near their initial values at validation time
    for ly in FIT.flat_layers(backbone):
        if isinstance(ly, keras.layers.BatchNormalization) and ly.momentum > 0.9:
            ly.momentum = 0.9
    return "scratch", cfg.scratch_lr, unfrozen


def _tune_phase(run: _Run, val_seq: Any) -> None:
    """Phase 2: fine-tune the top of the backbone with the head (transfer), or train the whole
    network (from scratch); a fine-tuning that does not beat the head's validation loss is
    undone. Records the phase in ``run.phases`` (nothing when no layer could be unfrozen)."""
    cfg, model, history = run.cfg, run.net.model, run.history
    phase, lr, unfrozen = _unfreeze(run)
    if unfrozen <= 0:
        return
    ckpt = cfg.out.with_name(f".{cfg.out.stem}.best.weights.h5")
    # the head-only model is the baseline fine-tuning has to beat on validation loss
    start_weights = model.get_weights()
    FIT.compile_model(model, lr)
    start_loss = float(model.evaluate(val_seq, verbose=0)[0]) if not run.net.scratch else None
    tr_seq = run.sequence("train")
    n_before = len(history)
    t1 = time.perf_counter()
    n_train = len(run.data.paths["train"])
    model.fit(
        tr_seq,
        validation_data=val_seq,
        epochs=cfg.epochs,
        verbose=0,
        callbacks=FIT.callbacks(phase, n_train, run.say, history, ckpt, cfg.patience),
    )
    dt = time.perf_counter() - t1
    ckpt.unlink(missing_ok=True)
    kept_head = False
    if start_loss is not None:
        end_loss = float(model.evaluate(val_seq, verbose=0)[0])
        if end_loss > start_loss:
            model.set_weights(start_weights)
            kept_head = True
            run.say(
                f"fine-tuning did not beat the head's val_loss ({end_loss:.4f} > "
                f"{start_loss:.4f}): kept the head-only model"
            )
    run.phases[phase] = {
        "kept_head_only": kept_head,
        "epochs": len(history) - n_before,
        "seconds": round(dt, 2),
        "layers_unfrozen": unfrozen,
        "lr": lr,
        "train_images_per_s": median(
            [h["images_per_s"] for h in history[n_before:] if h.get("images_per_s")]
        ),
    }


# ---------------------------------------------------------------------------------------------
# evaluate: the test split, and (when asked) laundered copies and left-out sources


def _evaluate(run: _Run, val_seq: Any) -> _Tested:
    """The held-out test split (and validation) through the final model, streamed. Images that
    no longer decode are left out of the figures (and counted in ``unreadable``)."""
    t_test = time.perf_counter()
    model, data = run.net.model, run.data
    prob, idx = FIT.probabilities(model, run.sequence("test"))
    val_prob, val_idx = FIT.probabilities(model, val_seq)
    seconds = time.perf_counter() - t_test
    y_test = data.y["test"][idx]
    test = classification_metrics(y_test, prob)
    val = classification_metrics(data.y["val"][val_idx], val_prob)
    tested = _Tested(prob, y_test, test, val, seconds)
    laundered = _launder(run, test)
    if laundered is not None:
        tested.away["launder"] = laundered
    by_source = _by_source(run)
    if by_source is not None:
        tested.away["by_source"] = by_source
    return tested


def _launder(run: _Run, test: dict[str, Any]) -> dict[str, Any] | None:
    """``--launder``: the test split under each laundering condition (None without it)."""
    if not run.cfg.launder:
        return None
    from cleaner.models import launder_eval

    cfg = run.cfg
    return launder_eval.evaluate(
        run.ws, run.data.items("test"), run.data.y["test"], run.net, cfg.bb, cfg.weights_name,
        cfg.size, cfg.crop_policy, test, frozen=run.frozen, batch_size=cfg.feature_batch,
        say=run.say,
    )  # fmt: skip


def _by_source(run: _Run) -> dict[str, Any] | None:
    """``--by-source``: leave-one-source-out heads on the frozen features (None without it)."""
    if not run.cfg.by_source:
        return None
    if run.net.scratch:
        return {"skipped": "--weights none: no pretrained features to fit heads on"}
    from cleaner.models.embeddings import EmbeddingSpec, embed
    from cleaner.models.heads import HEAD_C
    from cleaner.models.sources import leave_one_source_out

    cfg, ws, bb = run.cfg, run.ws, run.cfg.bb
    spec = EmbeddingSpec(bb, cfg.weights_name, cfg.size, cfg.crop_policy)
    rows = run.data.kept["train"] + run.data.kept["test"]

    def embed_rows(rs: Sequence[SplitRow]) -> tuple[np.ndarray, np.ndarray]:
        e = embed(ws, [(str(ws.root / r.path), r.sha256) for r in rs], spec,
                  batch_size=cfg.feature_batch, model=run.net.backbone)  # fmt: skip
        return e.features, e.ok

    return leave_one_source_out(
        ws, rows, embed_rows, regions=bb.regions, c=HEAD_C if bb.head_c is None else bb.head_c,
        fine_tuned=run.fine_tuned, say=run.say,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# save: the model, its metrics and plots


def _save(run: _Run, tested: _Tested, t_start: float) -> TrainResult:
    """``M.keras`` (whole or not at all), then its plots and ``M.metrics.json`` (``t_start``:
    when the run began, for its total seconds)."""
    out = run.cfg.out
    FIT.save_model(run.net.model, out)
    metrics = _metrics(run, tested, time.perf_counter() - t_start)
    plots = write_plots(out, run.history, tested.y, tested.prob, tested.test)
    metrics["plots"] = [p.name for p in plots]
    metrics_file.write(out, metrics)
    return TrainResult(out, metrics_file.path(out), plots, metrics, run.history)


def _metrics(run: _Run, tested: _Tested, seconds: float) -> dict[str, Any]:
    """The ``cleaner.metrics.v1`` document of the run (``seconds``: the run so far)."""
    cfg, data, test, phases = run.cfg, run.data, tested.test, run.phases
    crop = cfg.crop_policy
    return {
        "format": "cleaner.metrics.v1",
        "model": str(cfg.out),
        "output": "prob_fake (sigmoid; 1 = fake, 0 = real); input float32 RGB 0..255 (S, S, 3)",
        "preprocessing": PREPROCESSING if crop == "center" else "whole image resized to SxS",
        "crop": crop,
        "backbone": cfg.backbone,
        "weights": cfg.weights_name,
        "image_size": cfg.size,
        "seed": cfg.seed,
        "dtype_policy": run.net.policy,
        "mode": "scratch" if run.net.scratch else "transfer",
        "split": _split_summary(run.ws, data),
        "class_weight": data.class_weight,
        "augmentation": AUG.record(cfg.augment, cfg.robust),
        "data_digest": data_digest(data.rows),
        "unreadable": data.unreadable.summary(),
        "epochs": {k: v["epochs"] for k, v in phases.items()},
        "phases": phases,
        "time": {
            "total_seconds": round(seconds, 2),
            "test_seconds": round(tested.seconds, 2),
        },
        "test": test,
        "val": {k: tested.val[k] for k in ("accuracy", "roc_auc", "loss")},
        **{k: test[k] for k in ("accuracy", "precision", "recall", "f1", "roc_auc")},
        "confusion_matrix": test["confusion_matrix"],
        "classification_report": test["classification_report"],
        **tested.away,
        "history": run.history,
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
