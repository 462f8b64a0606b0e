"""The report's tables of how a trained model holds away from its own test split: the
laundering conditions (``cleaner train --launder``) and leave-one-source-out
(``cleaner train --by-source``), read from ``M.metrics.json``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _f(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "n/a"


def _launder(rec: Mapping[str, Any]) -> dict[str, Any]:
    clean = rec.get("clean") or {}
    rows = [["as is", _f(clean.get("roc_auc")), _f(clean.get("accuracy")), ""]]
    described = rec.get("described") or {}
    for name, r in (rec.get("conditions") or {}).items():
        label = f"{name} ({described[name]})" if name in described else name
        rows.append([label, _f(r.get("roc_auc")), _f(r.get("accuracy")), _f(r.get("auc_drop"))])
    worst = rec.get("worst") or {}
    note = f"worst: {worst['condition']} (AUC {_f(worst.get('roc_auc'))})" if worst else ""
    return {
        "title": "Test split laundered (re-encoded as images travel)",
        "columns": ["condition", "ROC-AUC", "accuracy", "AUC lost"],
        "rows": rows,
        "note": note,
    }


def _by_source(rec: Mapping[str, Any]) -> dict[str, Any]:
    rows = [
        [s.get("source"), s.get("label"), str(s.get("train_left_out")), str(s.get("test_images")),
         _f(s.get("roc_auc")), _f(s.get("accuracy")), "FAILS" if s.get("fails") else ""]
        for s in rec.get("sources", [])
    ]  # fmt: skip
    failing = [s.get("source") for s in rec.get("sources", []) if s.get("fails")]
    note = (
        f"sources from {rec.get('sources_from')}; the model fails on: {', '.join(failing)}"
        if failing
        else f"sources from {rec.get('sources_from')}; no source under AUC {rec.get('fail_below')}"
    )
    return {
        "title": "Leave one source out (a head that never saw the source)",
        "columns": ["source", "class", "train left out", "test images", "ROC-AUC", "accuracy", ""],
        "rows": rows,
        "note": note,
    }


def tables(m: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The tables the metrics hold (none when it has neither record)."""
    out = []
    if isinstance(m.get("launder"), Mapping):
        out.append(_launder(m["launder"]))
    if isinstance(m.get("by_source"), Mapping):
        out.append(_by_source(m["by_source"]))
    return out
