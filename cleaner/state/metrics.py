"""``M.metrics.json`` beside a model ``M.keras``: what ``cleaner train`` measured (test-split
figures, split, crop policy, backbone, plots), one :class:`Metrics`, written by ``cleaner
train`` and read by ``predict --model``, ``predict-dir``, ``serve`` (through
:mod:`cleaner.models.saved`), the report and ``cleaner evaluate``.

Not under ``R/.cleaner/`` (a model outlives its dataset), but a state file all the same: one
path rule, one writer, lenient and strict readers here. The figures a reader asks for by name
are typed; every other one (``test``, ``val``, ``history``, ``versions``, robustness tables,
whatever a later version adds) is kept in ``extra``, in the order written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleaner.atomic import atomic_write_text
from cleaner.dataset import JSON_OUTPUT, STATE_DIR, Workspace, check_input, check_output
from cleaner.errors import CleanerError
from cleaner.state import WsLike, load_json
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


def _num(v: Any) -> float | None:
    """A figure as written (an int stays an int), None when it is not a number."""
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@dataclass(frozen=True)
class Metrics:
    """A model's ``M.metrics.json``: the headline test figures, the backbone, image size, crop
    policy and epochs it was trained with, its ``split`` (file, per-split counts) and
    ``plots``; every other key in ``extra``."""

    accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    roc_auc: float | None = None
    backbone: str | None = None
    image_size: int | None = None
    crop: str | None = None
    epochs: int | dict[str, Any] | None = None
    """Epochs trained: a number, or per phase (``{"head": 3, "tune": 2}``)."""
    split: Mapping[str, Any] = field(default_factory=dict)
    plots: Mapping[str, Any] | list[Any] | None = None
    """name -> PNG, or a list of PNG names, beside the metrics file."""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)
    order: tuple[str, ...] = field(default=(), compare=False, repr=False)
    """The keys in the order they were written (kept when written back)."""

    FIGURES = ("accuracy", "precision", "recall", "f1", "roc_auc")
    OWN = (*FIGURES, "backbone", "image_size", "crop", "epochs", "split", "plots")

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Metrics:
        """Any mapping; a key of an unexpected type reads as absent (and stays in ``extra``)."""
        own = dict.fromkeys(cls.OWN)
        typed: dict[str, Any] = {k: _num(doc.get(k)) for k in cls.FIGURES}
        for k in ("backbone", "crop"):
            typed[k] = str(doc[k]) if isinstance(doc.get(k), str) else None
        size, epochs = doc.get("image_size"), doc.get("epochs")
        typed["image_size"] = size if isinstance(size, int) and not isinstance(size, bool) else None
        typed["epochs"] = (
            epochs
            if isinstance(epochs, int) and not isinstance(epochs, bool)
            else dict(epochs)
            if isinstance(epochs, Mapping)
            else None
        )
        split, plots = doc.get("split"), doc.get("plots")
        typed["split"] = dict(split) if isinstance(split, Mapping) else {}
        typed["plots"] = plots if isinstance(plots, (Mapping, list)) else None
        kept = {k for k, v in typed.items() if v is not None and v != {}}
        extra = {k: v for k, v in doc.items() if k not in own or k not in kept}
        return cls(**typed, extra=extra, order=tuple(doc))

    def to_json(self) -> dict[str, Any]:
        """The document, in the order it was written (keys set since: at the end)."""
        d = {k: getattr(self, k) for k in self.OWN}
        d = {**{k: v for k, v in d.items() if v is not None and v != {}}, **self.extra}
        return {**{k: d[k] for k in self.order if k in d}, **d}

    def figure(self, key: str) -> Any:
        """A figure by name, typed or not (``test``, ``val``...): None when absent."""
        return self.to_json().get(key)


def write(model: str | os.PathLike[str], metrics: Metrics | Mapping[str, Any]) -> Path:
    """Write the metrics beside ``model`` atomically."""
    if not isinstance(metrics, Metrics):
        metrics = Metrics.from_json(metrics)
    p = path(model)
    text = json.dumps(metrics.to_json(), indent=2, sort_keys=False) + "\n"
    atomic_write_text(p, text, is_json=True)
    return p


def read_lenient(model: str | os.PathLike[str]) -> Metrics:
    """The metrics of ``model``; empty when missing or unreadable (a model from elsewhere has
    none, and a reader then uses its defaults)."""
    try:
        doc = json.loads(path(model).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Metrics()
    return Metrics.from_json(doc) if isinstance(doc, dict) else Metrics()


def find_metrics(ws: WsLike, explicit: Path | None) -> Path | None:
    """The metrics file to show: ``explicit``, else the newest of: the one a pointer file under
    ``R/.cleaner/`` names, any ``*.metrics.json`` under ``R/.cleaner/``, and any
    ``models/*.metrics.json`` (where ``make retrain`` writes) whose training used this ROOT's
    split file. None when there is none."""
    if explicit is not None:
        return check_input(
            explicit,
            "metrics file",
            "pass the M.metrics.json that `cleaner train --out M.keras` wrote beside M.keras",
        )
    candidates: list[Path] = []
    sd = Path(os.fspath(ws)) / STATE_DIR
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
    split_csv = os.path.realpath(split_file.path(ws))
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


def read_metrics(path: Path) -> Metrics:
    """A metrics file a user named; one line naming it when it does not parse."""
    doc = load_json(path, fix=FIX)
    if not isinstance(doc, Mapping):
        raise CleanerError(f"{path} is not a metrics object; rerun `cleaner train`")
    return Metrics.from_json(doc)


def metrics_plots(path: Path, metrics: Metrics) -> dict[str, Path]:
    """name -> PNG beside the metrics file: the paths it lists under ``plots``, else every
    ``<stem>*.png`` beside it (``M.metrics.json`` -> ``M*.png``)."""
    out: dict[str, Path] = {}
    listed = metrics.plots
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
