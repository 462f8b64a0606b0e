"""Metadata that settles a label, as one more voter for ``cleaner separate``.

- **Proof of fake**: one of the exact, documented signatures of
  :data:`cleaner.audit.properties.SIGNATURES`: WebUI ``parameters`` (a ``Steps: N, Sampler:``
  line), a ComfyUI ``prompt`` / ``workflow`` graph, a C2PA manifest that validates with a
  digital source type of trained algorithmic media, a Software field naming a known generator
  as whole words. Never a substring: "Imagenomic Portraiture" is not Imagen, and a manifest
  that does not validate may have been pasted onto a real photo.
- **Weak evidence of real**: camera EXIF (make/model). It is copied by editors and scrapers and
  forged in one line, so it is listed, never written as a vote: it never moves a file alone.
- **Information**: a remote C2PA manifest the file names (XMP ``dcterms:provenance``). It is
  never fetched (no network because of a file's contents), so it proves nothing; it is listed
  as "remote manifest not fetched" with its URL, for a user who wants to check it by hand.

The predictions file holds hard labels for proof only (``prob_fake`` 1.0) and no entry for
anything else, so consensus rules, the review list and the journal apply as for any model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cleaner.audit.properties import REMOTE_NOT_FETCHED
from cleaner.predictions import write_predictions_v1

PROOF, WEAK, INFO = "proof", "weak", "info"
MODEL_NAME = "cleaner-audit-provenance"


@dataclass(frozen=True)
class Evidence:
    path: str
    label: str
    """The folder's class."""
    sha256: str
    says: str
    """``fake`` or ``real`` ('' for :data:`INFO`)."""
    strength: str
    """:data:`PROOF`, :data:`WEAK` or :data:`INFO`."""
    why: str

    @property
    def contradicts(self) -> bool:
        """The evidence disagrees with the folder."""
        return self.strength != INFO and self.says != self.label


def evidence_of(path: str, label: str, props: dict[str, Any]) -> list[Evidence]:
    """What one file's metadata says about its class: the proof or the weak evidence (at most
    one of them), and the remote manifest it names, if any."""
    sha = str(props.get("sha256", ""))
    out: list[Evidence] = []
    if props.get("generator"):
        out.append(Evidence(path, label, sha, "fake", PROOF, str(props["generator"])))
    elif props.get("camera"):
        out.append(Evidence(path, label, sha, "real", WEAK, f"camera EXIF: {props['camera']}"))
    if props.get("c2pa_remote"):
        why = f"{REMOTE_NOT_FETCHED}: {props['c2pa_remote']} (named by the file's XMP)"
        out.append(Evidence(path, label, sha, "", INFO, why))
    return out


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
