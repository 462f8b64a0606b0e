"""The files under ``R/.cleaner/``: one module per file, each with its path, frozen dataclasses,
``read``/``write`` (atomic, :mod:`cleaner.atomic`) and a format version. Every stage reads and
writes a state file through its module, never by opening the path itself (tests/test_layout.py
checks that no other module names the file or parses it, and that there is one ``read_plan``).

- :mod:`~cleaner.state.manifest`: ``manifest.csv`` (``cleaner scan``)
- :mod:`~cleaner.state.duplicates`: ``duplicates.json`` (``cleaner dedupe``), and the one
  union-find that turns its groups and byte-identical files into group ids
- :mod:`~cleaner.state.split`: ``split.csv`` (``cleaner train``'s train/val/test split)
- :mod:`~cleaner.state.plans`: ``plans/<run>.json`` (``cleaner separate``)
- :mod:`~cleaner.state.review`: ``review/<run>.json``, the decisions taken in ``cleaner serve``
  on a plan's items
- :mod:`~cleaner.state.runs`: the journal's runs and their records (``journal/``; the
  journal itself, :mod:`cleaner.journal`, appends them and reads them back here)
- :mod:`~cleaner.state.metrics`: ``M.metrics.json`` beside a model (``cleaner train``)
- :mod:`~cleaner.state.audit`: ``audit.json`` (``cleaner audit``'s summary) and the audit's
  properties cache

Each file is one frozen dataclass (``from_json``/``to_json``, or its rows for the CSV files)
used by its writer and every reader; a reader keeps the keys it does not know in ``extra``
and the writer writes them back, so an older cleaner never drops what a newer one added.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeAlias

from cleaner.dataset import Workspace
from cleaner.errors import CleanerError

WsLike: TypeAlias = Workspace | str | os.PathLike[str]
"""What the state functions take as their first parameter ``ws``: the command's
:class:`~cleaner.dataset.Workspace`; a ROOT path is still accepted while callers move over
(a workspace is its ROOT to ``os.fspath``)."""


def load_json(path: Path, *, fix: str) -> Any:
    """A JSON state file; one line naming it and ``fix`` when it does not parse."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CleanerError(f"{path} does not parse as JSON ({e}); {fix}") from e
