"""The flags of ``cleaner train`` and ``cleaner predict`` as frozen configs, each checked in one
place: a config that exists is one the stage can run (every refusal is one line naming the flag
and the fix, exit 1, before any work). The CLI builds one, checks its outputs against ROOT
(:meth:`TrainConfig.check`, :meth:`OOFConfig.check`: before TensorFlow loads, so a refused
``--out`` is answered at once) and calls one function: :func:`cleaner.models.train.train` or
:func:`cleaner.models.predict.predict`. Importing this module loads no TensorFlow.

- :class:`TrainConfig`: ``cleaner train`` (:mod:`cleaner.models.train`).
- :class:`OOFConfig`: ``cleaner predict --backbone B`` (out-of-fold heads).
- :class:`ModelConfig`: ``cleaner predict --model M.keras``; :func:`predict_config` picks one of
  the two from the flags, refusing a mix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cleaner.dataset import Workspace, check_output
from cleaner.errors import CleanerError
from cleaner.models import augment as AUG
from cleaner.models.backbones import Backbone, get_backbone
from cleaner.models.devices import check_precision
from cleaner.models.inputs import CROPS, check_crop
from cleaner.models.keras_file import check_model
from cleaner.models.projection import DIM, HeadFeatures
from cleaner.state import metrics as metrics_file

TRAIN_HEADS = ("logreg", "dense")
"""``train --head``: the phase 1 heads."""

HEAD_EPOCHS = 20
"""``train --head-epochs``'s default (the dense head's epochs; the Makefile's ``HEAD_EPOCHS``)."""

MIN_IMAGE_SIZE = 16
"""``train --image-size``: the smallest input side."""


def head_features_mode(name: str) -> HeadFeatures:
    """``--head-features`` as :class:`~cleaner.models.projection.HeadFeatures`, or one line."""
    try:
        return HeadFeatures(name)
    except ValueError:
        choices = ", ".join(m.value for m in HeadFeatures)
        raise CleanerError(f"--head-features {name!r}: choose one of {choices}") from None


def _at_least(flag: str, value: int, low: int) -> None:
    if value < low:
        raise CleanerError(f"{flag} {value}: give {low} or more")


def check_pca_dim(features: HeadFeatures, pca_dim: int) -> None:
    """``--pca-dim`` is the ``pca`` heads' (``auto`` may pick them): with ``--head-features
    full`` it would be ignored, so a value other than the default is refused."""
    if features is HeadFeatures.FULL and pca_dim != DIM:
        raise CleanerError(
            f"--pca-dim {pca_dim} only applies to --head-features pca (or auto, when it picks "
            "pca); --head-features full keeps every feature: drop --pca-dim or choose pca"
        )


class _BackboneFlags:
    """What ``--backbone``, ``--weights``, ``--image-size`` and ``--crop`` resolve to, with the
    backbone's defaults where a flag is not given: one place for train's and predict's configs."""

    backbone: str
    weights: str | None
    image_size: int | None
    crop: str | None

    @property
    def bb(self) -> Backbone:
        return get_backbone(self.backbone)

    @property
    def weights_name(self) -> str:
        """``--weights``, or the backbone's default."""
        return self.weights or self.bb.default_weights

    @property
    def size(self) -> int:
        """The input side S: ``--image-size``, or the backbone's."""
        return int(self.image_size or self.bb.input_size)

    def check_weights(self) -> None:
        """``--weights`` against the backbone: one it cannot use is refused, and so is any
        but ``none`` for a backbone without a network (it would be ignored)."""
        bb = self.bb
        if bb.builder is None and self.weights not in (None, "none"):
            raise CleanerError(
                f"--weights {self.weights}: backbone {bb.name!r} has no network, hence no "
                "weights (it would be ignored); drop --weights or choose a network backbone"
            )
        bb.check_weights(self.weights_name)

    @property
    def crop_policy(self) -> str:
        """``--crop``, or the backbone's."""
        return self.crop or self.bb.crop


@dataclass(frozen=True)
class TrainConfig(_BackboneFlags):
    """Everything ``cleaner train`` takes; defaults are the CLI's. Checked when built."""

    out: Path
    backbone: str = "efficientnetb0"
    weights: str | None = None
    """``imagenet``, ``none`` or a path; None = the backbone's default."""
    epochs: int = 10
    """Fine-tuning epochs (or from-scratch epochs with ``weights=none``)."""
    head_epochs: int = HEAD_EPOCHS
    """Phase 1 epochs of the ``dense`` head on the frozen features (cheap; early stopping ends
    it sooner); 0 skips phase 1 whatever the head."""
    head: str = "logreg"
    """Phase 1 head: ``logreg`` (the out-of-fold heads' logistic regression, fitted exactly and
    written into the model's dense layer) or ``dense`` (that layer trained by Adam)."""
    image_size: int | None = None
    seed: int = 0
    batch_size: int = 32
    fine_tune_layers: int | None = None
    """Backbone layers unfrozen in phase 2; None = the backbone's ``trainable_top``."""
    head_lr: float = 1e-3
    fine_tune_lr: float = 1e-4
    scratch_lr: float = 1e-3
    patience: int = 3
    dropout: float = 0.3
    precision: str = "auto"
    """``auto``, ``float32``, ``mixed_bfloat16`` or ``mixed_float16``."""
    resplit: bool = False
    crop: str | None = None
    """``center`` (native-resolution crops) or ``resize`` (whole image); None = the backbone's."""
    augment: str | bool = "auto"
    """``none``, ``crops`` (fine-tuning's random crops, flips, rotations, brightness) or
    ``robust`` (those on blurred, JPEG re-encoded, rescaled images; a head on frozen features
    also trains on ``head_views`` robust views of each image), or ``auto`` (robust views for a
    head on frozen features, crops for fine-tuning): :mod:`cleaner.models.augment`.
    True and False (the old yes/no) are ``crops`` and ``none``."""
    robust: AUG.Robust = AUG.DEFAULT
    head_views: int = AUG.HEAD_VIEWS
    by_source: bool = False
    """Also report leave-one-source-out AUCs (:mod:`cleaner.models.sources`)."""
    launder: bool = False
    """Also score the final model on its test split under each laundering condition
    (:mod:`cleaner.models.launder`)."""
    workers: int | None = None
    max_train: int | None = None
    """Use at most this many training images (benchmarks); None = all."""
    head_features: str = "auto"
    """Phase 1 features: ``full``, ``pca`` (streamed projection) or ``auto`` (full while they
    fit a third of the machine's memory), as ``cleaner predict --head-features``."""
    pca_dim: int = DIM
    """Principal components the ``pca`` head keeps."""

    def __post_init__(self) -> None:
        """Every flag that needs no data, in the order a user meets them."""
        object.__setattr__(self, "out", Path(self.out))
        if self.out.suffix != ".keras":
            raise CleanerError(f"--out {self.out} must end in .keras (the Keras model format)")
        if self.epochs < 0 or self.head_epochs < 0:
            raise CleanerError("--epochs and --head-epochs must be 0 or more")
        if self.head not in TRAIN_HEADS:
            raise CleanerError(f"--head {self.head!r} is not one of {', '.join(TRAIN_HEADS)}")
        if self.bb.builder is None:  # refused by the network's build, after the split is drawn
            raise CleanerError(
                f"--backbone {self.backbone} has no network to train; use it for features "
                f"(cleaner predict --backbone {self.backbone}) or train a network backbone"
            )
        self._check_pairs()
        self.check_weights()  # before the split is drawn
        if self.crop is not None and self.crop not in CROPS:
            raise CleanerError(f"--crop {self.crop!r} is not one of {', '.join(CROPS)}")
        if self.image_size is not None and self.image_size < MIN_IMAGE_SIZE:
            raise CleanerError(
                f"--image-size {self.image_size} is too small; use {MIN_IMAGE_SIZE} or more"
            )
        check_precision(self.precision)
        AUG.mode(self.augment)
        check_pca_dim(head_features_mode(self.head_features), self.pca_dim)
        _at_least("--pca-dim", self.pca_dim, 1)
        _at_least("--batch-size", self.batch_size, 1)

    @property
    def scratch(self) -> bool:
        """``--weights none`` on a network: trained whole from scratch, no phase 1."""
        return self.weights_name == "none" and self.bb.builder is not None

    def _idle_because(self, phase: str) -> str:
        """Why ``phase`` (``head``: phase 1; ``tune``: phase 2's fine-tuning) does not run, or
        ''."""
        if self.scratch:
            return "--weights none trains the whole network from scratch (no phase 1)"
        if phase == "head" and self.head_epochs == 0:
            return "--head-epochs 0 skips phase 1"
        if phase == "tune" and self.epochs == 0:
            return "--epochs 0 trains no layer"
        return ""

    def _check_pairs(self) -> None:
        """Flags that only act with another one: refused, one line naming them, when the
        other flags make them idle (defaults are never refused: the Makefile passes some)."""
        dense_head = self.head == "dense" and not self._idle_because("head")
        for flags, what, why in (
            (_changed(self, TUNE_FLAGS), "phase 2's fine-tuning", self._idle_because("tune")),
            (_changed(self, HEAD_PHASE_FLAGS), "phase 1 (the head on frozen features)",
             self._idle_because("head")),
            (_changed(self, {"patience": "--patience"}), "early stopping (phase 2, the dense head)",
             "" if self.epochs > 0 or dense_head else "neither phase 2 nor a dense head runs"),
        ):  # fmt: skip
            if flags and why:
                raise CleanerError(
                    f"{' and '.join(flags)}: used only by {what}, but {why}; drop "
                    f"{' and '.join(flags)} or change the flag that idles them"
                )
        self._check_views()

    def _check_views(self) -> None:
        """``--robust-views`` and ``--robust-p`` shape the robust views: idle without them."""
        views = _changed(self, {"head_views": "--robust-views", "robust": "--robust-p"})
        mode = AUG.mode(self.augment)
        if views and mode in (AUG.Augment.NONE, AUG.Augment.CROPS):
            raise CleanerError(
                f"{' and '.join(views)}: used only by the robust views, but --augment "
                f"{mode.value} makes none; use --augment robust (or auto), or drop "
                f"{' and '.join(views)}"
            )

    @property
    def warnings(self) -> list[str]:
        """Flags that do nothing here but that the Makefile passes always (``make retrain``
        gives ``--head-epochs``): one line each for stderr, never a refusal; the default (the
        Makefile's) says nothing."""
        if self.head_epochs in (0, HEAD_EPOCHS):
            return []
        if self.scratch:
            why = "--weights none (trained from scratch, no phase 1)"
        elif self.head == "logreg":
            why = "--head logreg (fitted exactly; only 0, which skips phase 1, counts)"
        else:
            return []
        return [f"--head-epochs {self.head_epochs} is ignored with {why}; --head dense trains "
                "by epochs"]  # fmt: skip

    def check(self, ws: Workspace) -> None:
        """The outputs against ROOT: ``M.keras`` and ``M.metrics.json`` never inside ROOT's
        class, quarantine or state paths, never over a file cleaner did not write."""
        metrics_file.check_outputs(self.out, ws)

    @property
    def feature_batch(self) -> int:
        """Images per batch when features are computed (embedding runs)."""
        return max(8, self.batch_size)


@dataclass(frozen=True)
class ModelConfig:
    """``cleaner predict --model M.keras``: a saved classifier over every ``ok`` image."""

    model: Path
    out: Path
    image_size: int | None = None
    crop: str | None = None
    batch_size: int = 32

    def __post_init__(self) -> None:
        """``--model``: a readable regular file, before anything is scanned or loaded."""
        check_model(self.model)

    def check(self, ws: Workspace) -> None:
        """``--out``: confined to ROOT's free paths, never over a user's file."""
        check_output(self.out, ws=ws)


@dataclass(frozen=True)
class OOFConfig(_BackboneFlags):
    """``cleaner predict --backbone B``: out-of-fold heads (:func:`cleaner.models.predict.
    predict_out_of_fold`); defaults are the CLI's. Checked when built."""

    backbone: str
    out: Path
    folds: int = 5
    weights: str | None = None
    image_size: int | None = None
    crop: str | None = None
    finetune: bool = False
    epochs: int = 3
    """``--finetune`` epochs per fold."""
    head: str = "logreg"
    mirror: bool = False
    """Frozen heads also train on the mirror images' features."""
    prune: bool = True
    """Each fold's head leaves out the training images an inner cross-validation doubts
    (:func:`cleaner.models.folds.frozen_oof`)."""
    batch_size: int = 32
    seed: int = 0
    repeats: int = 1
    """Average that many fold assignments (seeds ``seed`` to ``seed + repeats - 1``;
    :func:`cleaner.models.folds.repeated_frozen_oof`)."""
    head_features: str = "auto"
    """``auto``, ``full`` or ``pca`` (:class:`cleaner.models.projection.HeadFeatures`): the full
    features or a projection of ``pca_dim`` components streamed from the cache."""
    pca_dim: int = DIM
    planted: bool = True
    """The frozen heads run a second time with a sample of labels swapped in memory, for
    ``separate``'s check of its estimate (:mod:`cleaner.models.planted`); ``finetune`` runs
    none (``--no-planted`` with ``--finetune`` is refused: it would change nothing)."""
    features: HeadFeatures = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Every flag that needs no data, in the order a user meets them."""
        object.__setattr__(self, "out", Path(self.out))
        if self.finetune and self.mirror:
            raise CleanerError(
                "--mirror is for frozen heads; --finetune folds already train on flips"
            )
        _at_least("--repeats", self.repeats, 1)
        if self.finetune and self.repeats > 1:
            raise CleanerError(
                "--repeats is for frozen heads; each --finetune repetition is K trainings"
            )
        object.__setattr__(self, "features", head_features_mode(self.head_features))
        self._check_pairs()
        _at_least("--pca-dim", self.pca_dim, 1)
        self.check_weights()
        bb = self.bb
        if self.finetune and bb.builder is None:
            raise CleanerError(f"--finetune needs a network; backbone {self.backbone!r} has none")
        check_crop(self.crop_policy)

    def _check_pairs(self) -> None:
        """``--epochs`` is ``--finetune``'s; the frozen heads' flags are not: each refused
        where the mode chosen would ignore it."""
        if not self.finetune and self.epochs != _default(OOFConfig, "epochs"):
            raise CleanerError(
                f"--epochs {self.epochs} sets --finetune's epochs per fold; the frozen heads "
                "train no epochs: add --finetune or drop --epochs"
            )
        heads_only = _changed(self, FROZEN_HEAD_FLAGS)
        if self.finetune and heads_only:
            raise CleanerError(
                f"{', '.join(heads_only)}: used only by the frozen heads, which --finetune "
                f"replaces (each fold fine-tunes the backbone); drop {', '.join(heads_only)} "
                "or --finetune"
            )
        check_pca_dim(self.features, self.pca_dim)

    def check(self, ws: Workspace) -> None:
        """``--out``: confined to ROOT's free paths, never over a user's file."""
        check_output(self.out, ws=ws)


FROZEN_HEAD_FLAGS = {
    "head": "--head",
    "prune": "--no-prune",
    "planted": "--no-planted",
    "head_features": "--head-features",
    "pca_dim": "--pca-dim",
}
"""The :class:`OOFConfig` fields only the frozen heads read, and the flag that changes each."""

OOF_ONLY_FLAGS = {
    "epochs": "--epochs",
    "mirror": "--mirror",
    "seed": "--seed",
    **FROZEN_HEAD_FLAGS,
}
"""The :class:`OOFConfig` fields ``predict --model`` has no use for (beside ``--folds``,
``--repeats``, ``--finetune``, ``--weights``), and the flag that changes each."""


TUNE_FLAGS = {"fine_tune_layers": "--fine-tune-layers", "fine_tune_lr": "--fine-tune-lr"}
"""The :class:`TrainConfig` fields only phase 2's fine-tuning reads, and the flag of each."""

HEAD_PHASE_FLAGS = {
    "head": "--head dense",
    "head_features": "--head-features",
    "pca_dim": "--pca-dim",
    "head_views": "--robust-views",
}
"""The :class:`TrainConfig` fields only phase 1 (the head on frozen features) reads; ``head``
is ``logreg`` or ``dense``, so a changed one is ``--head dense``."""


def _default(cls: type, name: str) -> Any:
    return {f.name: f.default for f in fields(cls)}[name]


def _changed(values: Any, flags: dict[str, str], cls: type | None = None) -> list[str]:
    """The flags among ``flags`` (field name -> flag) whose field in ``values`` is not its
    default: the ones a user gave. ``values`` is a config (its own class's defaults) or a dict
    of ``cls``'s fields."""
    of = type(values) if cls is None else cls
    get = values.get if isinstance(values, dict) else lambda k, d=None: getattr(values, k, d)
    return [
        flag for name, flag in flags.items() if get(name, _default(of, name)) != _default(of, name)
    ]


def predict_config(
    out: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | None = None,
    backbone: str | None = None,
    folds: int | None = None,
    finetune: bool = False,
    weights: str | None = None,
    repeats: int = 1,
    image_size: int | None = None,
    crop: str | None = None,
    batch_size: int = 32,
    **oof: Any,
) -> ModelConfig | OOFConfig:
    """``cleaner predict``'s flags as the config of one of its two modes: exactly one of
    ``--model`` and ``--backbone``, and no out-of-fold flag with ``--model``; ``oof``: the
    other :class:`OOFConfig` fields (ignored with ``--model``, as the CLI always passes them)."""
    if (model is None) == (backbone is None):
        raise CleanerError(
            "pass exactly one of --model M.keras or --backbone B (e.g. efficientnet-lite0)"
        )
    if model is not None:
        if folds is not None or finetune or weights is not None or repeats > 1:
            raise CleanerError(
                "--folds, --repeats, --finetune and --weights go with --backbone, not --model"
            )
        ignored = _changed(oof, OOF_ONLY_FLAGS, OOFConfig)
        if ignored:
            raise CleanerError(
                f"{', '.join(ignored)}: used only with --backbone (out-of-fold heads), "
                "ignored with --model (a saved model only predicts); drop "
                f"{', '.join(ignored)}"
            )
        return ModelConfig(Path(model), Path(out), image_size, crop, batch_size)
    assert backbone is not None
    return OOFConfig(
        backbone, Path(out), folds=5 if folds is None else folds, weights=weights,
        image_size=image_size, crop=crop, finetune=finetune, repeats=repeats,
        batch_size=batch_size, **oof,
    )  # fmt: skip
