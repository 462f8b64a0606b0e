"""Metadata that settles a label, as one more voter for ``cleaner separate``.

- **Proof of fake**: the file names its generator (WebUI ``parameters``, ComfyUI ``prompt`` /
  ``workflow``, a C2PA digital source type of trained algorithmic media, a Software tag naming
  a generator). A claim of machine generation is against the interest of anyone passing a fake
  off as real, so it counts whatever the C2PA validation state (which is recorded).
- **Weak evidence of real**: camera EXIF (make/model). It is copied by editors and scrapers and
  forged in one line, so it is listed, never written as a vote: it never moves a file alone.

The predictions file holds hard labels for proof only (``prob_fake`` 1.0) and no entry for
anything else, so consensus rules, the review list and the journal apply as for any model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cleaner.predictions import write_predictions_v1

PROOF, WEAK = "proof", "weak"
MODEL_NAME = "cleaner-audit-provenance"


@dataclass(frozen=True)
class Evidence:
    path: str
    label: str
    """The folder's class."""
    sha256: str
    says: str
    """``fake`` or ``real``."""
    strength: str
    """:data:`PROOF` or :data:`WEAK`."""
    why: str

    @property
    def contradicts(self) -> bool:
        """The evidence disagrees with the folder."""
        return self.says != self.label


def evidence_of(path: str, label: str, props: dict[str, Any]) -> Evidence | None:
    """What one file's metadata says about its class, or None."""
    sha = str(props.get("sha256", ""))
    if props.get("generator"):
        return Evidence(path, label, sha, "fake", PROOF, str(props["generator"]))
    if props.get("camera"):
        return Evidence(path, label, sha, "real", WEAK, f"camera EXIF: {props['camera']}")
    return None


def write_provenance(path: str | os.PathLike[str], evidence: Sequence[Evidence]) -> Path:
    """The predictions file (``cleaner.predictions.v1``): one hard label per proof."""
    entries = [
        {"path": e.path, "sha256": e.sha256, "label": e.label,
         "prob_fake": 1.0 if e.says == "fake" else 0.0, "evidence": e.why}
        for e in evidence
        if e.strength == PROOF
    ]  # fmt: skip
    model = {"name": MODEL_NAME, "backbone": "metadata", "sha256": ""}
    return write_predictions_v1(path, model=model, entries=entries, out_of_fold=True)
