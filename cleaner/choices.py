"""The fixed choices of cleaner, each an enum defined once.

A ``StrEnum`` member *is* its string (``Label.FAKE == "fake"``, ``json.dumps`` and CSV write
``fake``), so files and messages are unchanged; what the enum adds is one list of the choices:
Typer shows it in ``--help`` and refuses anything else as a usage error (exit 2), and the
modules that own each concept check against the same list. This module imports nothing, so the
CLI can name the choices without loading the stages. (The crop policy is
:class:`cleaner.models.inputs.CropPolicy`, beside the loader it steers.)
"""

from __future__ import annotations

from enum import StrEnum


class Label(StrEnum):
    """The two classes, in the order of the predictions format's ``classes``."""

    REAL = "real"
    FAKE = "fake"

    @property
    def other(self) -> Label:
        """The class a relabeling would move an image of this class to."""
        return Label.FAKE if self is Label.REAL else Label.REAL


class ReviewVerdict(StrEnum):
    """A person's decision on a plan item in ``cleaner serve`` (:mod:`cleaner.state.review`)."""

    ACCEPTED = "accepted"
    """Moved as the plan proposed, through the journal."""
    REJECTED = "rejected"
    """Left where it is."""


class HashMethod(StrEnum):
    """Perceptual hashes (:mod:`cleaner.hashing`), imagehash's four."""

    PHASH = "phash"
    DHASH = "dhash"
    WHASH = "whash"
    AHASH = "ahash"


class Rule(StrEnum):
    """Consensus rules of ``cleaner separate`` (:mod:`cleaner.consensus`)."""

    UNANIMOUS = "unanimous"
    MAJORITY = "majority"
    MEAN = "mean"
    CONFIDENT = "confident"


class HeadKind(StrEnum):
    """The frozen-feature heads of ``cleaner predict --folds`` (:mod:`cleaner.models.folds`)."""

    LOGREG = "logreg"
    LOGREG_CV = "logreg-cv"


class CheckOutcome(StrEnum):
    """What the check of the move-precision estimate found (:mod:`cleaner.estimate_check`)."""

    PASSED = "passed"
    """The noise model recovered the planted swaps: the estimate stands."""
    FAILED = "failed"
    """It did not: no threshold is vouched for, nothing moves by a target precision."""
    UNAVAILABLE = "unavailable"
    """No planted run to check with: nothing is vouched for either."""


class Augment(StrEnum):
    """Training augmentation of ``cleaner train --augment`` (:mod:`cleaner.models.augment`):
    none, the fine-tuning crops (random crop, flip, small rotation, brightness/contrast), or
    robust (blur, JPEG and rescale as images travel, on top of the crops; K extra views for a
    head on frozen features)."""

    NONE = "none"
    CROPS = "crops"
    ROBUST = "robust"
    AUTO = "auto"
    """The default: robust views for a head on frozen features (where they were measured to
    help), the crops alone for fine-tuning (robust crops cost `make demo`'s 64 px fine-tuned
    detector 0.09 test AUC: bench/README.md, issue 28)."""


class Launder(StrEnum):
    """The ways an image is re-encoded on its travels (:mod:`cleaner.models.launder`), each a
    condition of the laundering evaluation."""

    JPEG90 = "jpeg90"
    JPEG75 = "jpeg75"
    JPEG50 = "jpeg50"
    HALF = "resize0.5"
    BLUR1 = "blur1"
    PNG_AS_JPEG = "png-as-jpeg"
    CHAIN = "chain"


def values(choice: type[StrEnum]) -> tuple[str, ...]:
    """The plain strings of an enum's members, in order (for messages and old callers)."""
    return tuple(m.value for m in choice)
