"""Prediction files: the one place that writes, reads, validates and matches them to files.

Formats accepted (``../shared/docs/contract.md``):

- ``cleaner.predictions.v1``: ``{"format", "model", "classes", "out_of_fold", "predictions":
  [{"path", "sha256", "label", "prob_fake"}]}`` (written by :func:`write_predictions_v1`);
- hard-label lists from other tools: ``[{"path"|"image"|"file"|"index": ..., "prediction"|
  "label": "real"|"fake"|0|1}]`` (0 = fake, 1 = real, as in the original scripts);
- a plain mapping ``{"path": "real" | "fake" | prob_fake}``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cleaner.errors import CleanerError

FORMAT_V1 = "cleaner.predictions.v1"
"""The ``format`` field of cleaner's own predictions files."""

CLASSES: list[str] = ["real", "fake"]


class PredictionsError(CleanerError):
    """A predictions file that fails validation: refused whole, one line naming the entry."""


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader (or a crash) sees the old file or the new one,
    never half of it: temp file in the same folder, fsync, rename, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(dfd)
    finally:
        os.close(dfd)


def _dump_v1(doc: Mapping[str, Any]) -> str:
    """The document as JSON with one prediction per line (readable, diffable, compact)."""
    head = {k: v for k, v in doc.items() if k != "predictions"}
    lines = [json.dumps(e, ensure_ascii=False) for e in doc["predictions"]]
    body = ",\n  ".join(lines)
    inner = json.dumps(head, ensure_ascii=False)[:-1]
    sep = ", " if head else ""
    return (
        f'{inner}{sep}"predictions": [\n  {body}\n]}}\n'
        if lines
        else (f'{inner}{sep}"predictions": []}}\n')
    )


def write_predictions_v1(
    path: str | os.PathLike[str],
    *,
    model: Mapping[str, Any],
    entries: Sequence[Mapping[str, Any]],
    out_of_fold: bool,
) -> Path:
    """Write a ``cleaner.predictions.v1`` file atomically; returns its path.

    ``entries``: mappings with ``path`` (ROOT-relative), ``sha256``, ``label`` (the folder's
    class) and ``prob_fake`` in [0, 1]; extra keys are kept. Validated before anything is
    written, so a bug upstream never leaves a file that ``separate`` would refuse later.
    """
    out: list[dict[str, Any]] = []
    for i, e in enumerate(entries):
        for key in ("path", "sha256", "label", "prob_fake"):
            if key not in e:
                raise PredictionsError(f"predictions entry #{i} lacks {key!r}; cannot write {path}")
        p = float(e["prob_fake"])
        if not (0.0 <= p <= 1.0) or math.isnan(p):
            raise PredictionsError(
                f"predictions entry #{i} ({e['path']}) has prob_fake={e['prob_fake']!r}, "
                f"outside [0, 1]; cannot write {path}"
            )
        if e["label"] not in CLASSES:
            raise PredictionsError(
                f"predictions entry #{i} ({e['path']}) has label {e['label']!r}; "
                f"expected 'real' or 'fake'; cannot write {path}"
            )
        row = dict(e)
        row["path"] = str(e["path"])
        row["prob_fake"] = p
        out.append(row)
    doc = {
        "format": FORMAT_V1,
        "model": dict(model),
        "classes": list(CLASSES),
        "out_of_fold": bool(out_of_fold),
        "predictions": out,
    }
    target = Path(path)
    _atomic_write_text(target, _dump_v1(doc))
    return target
