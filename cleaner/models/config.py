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
from dataclasses import dataclass, field
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
    head_epochs: int = 20
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
        get_backbone(self.backbone).check_weights(self.weights_name)  # before the split is drawn
        if self.crop is not None and self.crop not in CROPS:
            raise CleanerError(f"--crop {self.crop!r} is not one of {', '.join(CROPS)}")
        if self.image_size is not None and self.image_size < MIN_IMAGE_SIZE:
            raise CleanerError(
                f"--image-size {self.image_size} is too small; use {MIN_IMAGE_SIZE} or more"
            )
        check_precision(self.precision)
        AUG.mode(self.augment)
        head_features_mode(self.head_features)
        _at_least("--pca-dim", self.pca_dim, 1)
        _at_least("--batch-size", self.batch_size, 1)

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
    ``separate``'s check of its estimate (:mod:`cleaner.models.planted`); no effect with
    ``finetune``."""
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
        _at_least("--pca-dim", self.pca_dim, 1)
        bb = get_backbone(self.backbone)
        bb.check_weights(self.weights_name)
        if self.finetune and bb.builder is None:
            raise CleanerError(f"--finetune needs a network; backbone {self.backbone!r} has none")
        check_crop(self.crop_policy)

    def check(self, ws: Workspace) -> None:
        """``--out``: confined to ROOT's free paths, never over a user's file."""
        check_output(self.out, ws=ws)


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
        return ModelConfig(Path(model), Path(out), image_size, crop, batch_size)
    assert backbone is not None
    return OOFConfig(
        backbone, Path(out), folds=5 if folds is None else folds, weights=weights,
        image_size=image_size, crop=crop, finetune=finetune, repeats=repeats,
        batch_size=batch_size, **oof,
    )  # fmt: skip
