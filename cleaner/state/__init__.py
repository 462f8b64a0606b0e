"""The files under ``R/.cleaner/``: one module per file, each with its path, frozen dataclasses,
``read``/``write`` (atomic, :mod:`cleaner.atomic`) and a format version. Every stage reads and
writes a state file through its module, never by opening the path itself (tests/test_layout.py
checks that no other module names the file).

- :mod:`~cleaner.state.manifest`: ``manifest.csv`` (``cleaner scan``)
- :mod:`~cleaner.state.duplicates`: ``duplicates.json`` (``cleaner dedupe``), and the one
  union-find that turns its groups and byte-identical files into group ids
- :mod:`~cleaner.state.split`: ``split.csv`` (``cleaner train``'s train/val/test split)
- :mod:`~cleaner.state.plans`: ``plans/<run>.json`` (``cleaner separate``) and the review
  decisions taken on them (``review/<run>.json``, ``cleaner serve``)
- :mod:`~cleaner.state.runs`: the journal's runs as a reader sees them (``journal/``; the
  journal itself, :mod:`cleaner.journal`, writes them)
- :mod:`~cleaner.state.metrics`: ``M.metrics.json`` beside a model (``cleaner train``)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cleaner import dataset
from cleaner.errors import CleanerError


def state_path(root: str | os.PathLike[str], *parts: str) -> Path:
    """``R/.cleaner/<parts...>``, through :func:`cleaner.dataset.state_path`, the one resolver of
    state paths (a ``.cleaner`` or a state file that is a symlink is refused, never read or
    written)."""
    return dataset.state_path(root, *parts)


def load_json(path: Path, *, fix: str) -> Any:
    """A JSON state file; one line naming it and ``fix`` when it does not parse."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CleanerError(f"{path} does not parse as JSON ({e}); {fix}") from e
