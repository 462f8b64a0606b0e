"""``M.metrics.json`` beside a model ``M.keras``: what ``cleaner train`` measured (test-split
figures, split, crop policy, backbone, plots), read by ``predict --model``, ``predict-dir``,
``serve`` (through :mod:`cleaner.models.saved`), the report and ``cleaner evaluate``.

Not under ``R/.cleaner/`` (a model outlives its dataset), but a state file all the same: one
path rule, one writer, lenient and strict readers here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cleaner.atomic import atomic_write_text
from cleaner.dataset import JSON_OUTPUT, STATE_DIR, Workspace, check_output
from cleaner.errors import CleanerError
from cleaner.state import load_json
from cleaner.state import split as split_file

FIX = "rerun `cleaner train`"
SUFFIX = ".metrics.json"


def path(model: str | os.PathLike[str]) -> Path:
    """``M.metrics.json`` beside ``M.keras`` (``a.b.keras`` -> ``a.b.metrics.json``)."""
    m = Path(model)
    return m.with_name(m.stem + SUFFIX)


MODEL_OUTPUT = (b"PK",)
"""How a ``.keras`` model begins (a zip)."""


def check_outputs(model: str | os.PathLike[str], ws: Workspace) -> None:
    """``train --out M.keras``: M and ``M.metrics.json`` (plots and checkpoints go beside them)
    never inside ROOT's class, quarantine or state paths, never over a file cleaner did not
    write (:func:`cleaner.dataset.check_output`)."""
    check_output(model, ws=ws, own=MODEL_OUTPUT, replaceable=(".keras",))
    check_output(path(model), ws=ws, own=JSON_OUTPUT, replaceable=(SUFFIX,))


def write(model: str | os.PathLike[str], metrics: Mapping[str, Any]) -> Path:
    p = path(model)
    atomic_write_text(p, json.dumps(metrics, indent=2, sort_keys=False) + "\n", is_json=True)
    return p


def read_lenient(model: str | os.PathLike[str]) -> dict[str, Any]:
    """The metrics of ``model`` as a dict; empty when missing or unreadable (a model from
    elsewhere has none, and a reader then uses its defaults)."""
    try:
        doc = json.loads(path(model).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _state_dir(root: Path) -> Path:
    return root / STATE_DIR


def find_metrics(root: Path, explicit: Path | None) -> Path | None:
    """The metrics file to show: ``explicit``, else the newest of: the one a pointer file under
    ``R/.cleaner/`` names, any ``*.metrics.json`` under ``R/.cleaner/``, and any
    ``models/*.metrics.json`` (where ``make retrain`` writes) whose training used this ROOT's
    split file. None when there is none."""
    if explicit is not None:
        if not explicit.is_file():
            raise CleanerError(
                f"metrics file {explicit} does not exist; pass the M.metrics.json that "
                "`cleaner train --out M.keras` wrote beside M.keras"
            )
        return explicit
    candidates: list[Path] = []
    sd = _state_dir(root)
    for pointer in ("last_training.json", "train.json", "training.json"):
        p = sd / pointer
        if p.is_file():
            try:
                doc = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            for key in ("metrics", "metrics_path", "metrics_file"):
                v = doc.get(key) if isinstance(doc, Mapping) else None
                if isinstance(v, str) and Path(v).is_file():
                    candidates.append(Path(v))
    if sd.is_dir():
        candidates += [p for p in sd.rglob("*.metrics.json") if p.is_file()]
    # `make retrain` writes models/<root>.keras + .metrics.json under the working folder; such a
    # file is this ROOT's when its split file (recorded by `cleaner train`) is this ROOT's
    split_csv = os.path.realpath(split_file.path(root))
    for p in sorted(Path("models").glob("*.metrics.json")) if Path("models").is_dir() else []:
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        split = doc.get("split") if isinstance(doc, Mapping) else None
        f = split.get("file") if isinstance(split, Mapping) else None
        if isinstance(f, str) and os.path.realpath(f) == split_csv:
            candidates.append(p)
    if not candidates:
        return None
    return max(candidates, key=lambda p: p.stat().st_mtime_ns)


def read_metrics(path: Path) -> dict[str, Any]:
    doc = load_json(path, fix=FIX)
    if not isinstance(doc, Mapping):
        raise CleanerError(f"{path} is not a metrics object; rerun `cleaner train`")
    return dict(doc)


def metrics_plots(path: Path, metrics: Mapping[str, Any]) -> dict[str, Path]:
    """name -> PNG beside the metrics file: the paths it lists under ``plots``, else every
    ``<stem>*.png`` beside it (``M.metrics.json`` -> ``M*.png``)."""
    out: dict[str, Path] = {}
    listed = metrics.get("plots")
    if isinstance(listed, Mapping):
        for name, rel in listed.items():
            p = Path(str(rel))
            p = p if p.is_absolute() else path.parent / p
            if p.is_file():
                out[str(name)] = p
    elif isinstance(listed, list):
        for rel in listed:
            p = Path(str(rel))
            p = p if p.is_absolute() else path.parent / p
            if p.is_file():
                stem = path.name.removesuffix(".metrics.json")
                out[p.stem.removeprefix(stem).strip("._-") or p.stem] = p
    if not out:
        stem = path.name.removesuffix(".metrics.json")
        for p in sorted(path.parent.glob(f"{stem}*.png")):
            out[p.stem.removeprefix(stem).strip("._-") or p.stem] = p
    return out
