"""``R/.cleaner/review/<run-id>.json``: the decisions a person takes in ``cleaner serve`` on the
items of a plan (:mod:`cleaner.state.plans`), one file per plan.

One :class:`Review` (its :class:`Decision` per item id), used by the writer (``cleaner serve``'s
accept, reject and undo buttons) and by every reader (the review queue, ``cleaner report``):
:func:`read`, :func:`write`. Keys this version does not know, in the file and in each decision,
are kept in ``extra`` and written back. A damaged file is one line naming it and the fix.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleaner.atomic import atomic_write_text
from cleaner.choices import ReviewVerdict
from cleaner.dataset import state_path
from cleaner.errors import CleanerError
from cleaner.state import WsLike, load_json

REVIEW_DIR = "review"
FORMAT = "cleaner.review.v1"
"""Written as each file's ``format`` (files of earlier versions have none and read the same)."""
FIX = (
    "move the file aside (its decisions are lost: the moves they made stand in the journal, "
    "`cleaner undo --run ID` reverses one) and take them again in `cleaner serve`"
)


def path(ws: WsLike, run_id: str) -> Path:
    """The decisions file of the plan ``run_id`` (its name made safe for a file name)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return state_path(ws, REVIEW_DIR, f"{safe}.json")


@dataclass(frozen=True)
class Decision:
    """One item's decision: accepted (moved, through the journal) or rejected (left)."""

    verdict: ReviewVerdict
    at: str = ""
    """When (UTC, ``%Y-%m-%dT%H:%M:%SZ``)."""
    path: str = ""
    """The item's path in the plan (ROOT-relative)."""
    kind: str = ""
    """The plan item's kind: ``move`` or ``review``."""
    journal_run: str | None = None
    """An accepted item: the journal run that moved it (``cleaner undo --run`` reverses it)."""
    dst: str | None = None
    """An accepted item: where the move put it (ROOT-relative)."""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    OWN = ("decision", "at", "path", "kind", "journal_run", "dst")

    @property
    def accepted(self) -> bool:
        return self.verdict is ReviewVerdict.ACCEPTED

    @classmethod
    def from_json(cls, doc: Any) -> Decision:
        """ValueError naming what is wrong when ``doc`` is not a decision."""
        if not isinstance(doc, Mapping):
            raise ValueError(f"a decision is {type(doc).__name__}, not an object")
        raw = doc.get("decision")
        if raw not in tuple(ReviewVerdict):
            raise ValueError(f"decision {raw!r} is not one of {', '.join(ReviewVerdict)}")
        verdict = ReviewVerdict(raw)
        run, dst = doc.get("journal_run"), doc.get("dst")
        return cls(
            verdict=verdict,
            at=str(doc.get("at") or ""),
            path=str(doc.get("path") or ""),
            kind=str(doc.get("kind") or ""),
            journal_run=str(run) if run else None,
            dst=str(dst) if dst else None,
            extra={k: v for k, v in doc.items() if k not in cls.OWN},
        )

    def to_json(self) -> dict[str, Any]:
        """The decision as the file holds it (and ``cleaner serve``'s JSON answers say it)."""
        d: dict[str, Any] = {"decision": str(self.verdict), "at": self.at, "path": self.path}
        d["kind"] = self.kind
        for key in ("journal_run", "dst"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return {**d, **self.extra}


@dataclass(frozen=True)
class Review:
    """The decisions taken on one plan's items, by item id (``m3``, ``r0``)."""

    run_id: str
    items: Mapping[str, Decision] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    OWN = ("format", "run_id", "items")

    def with_item(self, item_id: str, decision: Decision | None) -> Review:
        """The same decisions with ``item_id``'s set to ``decision`` (None: withdrawn)."""
        items = {k: v for k, v in self.items.items() if k != item_id}
        if decision is not None:
            items[item_id] = decision
        return dataclasses.replace(self, items=items)

    @classmethod
    def from_json(cls, doc: Any, run_id: str) -> Review:
        """ValueError naming what is wrong when ``doc`` is not a decisions file."""
        if not isinstance(doc, Mapping) or not isinstance(doc.get("items", {}), Mapping):
            raise ValueError("not an object with an object of items")
        items: dict[str, Decision] = {}
        for item_id, raw in doc.get("items", {}).items():
            try:
                items[str(item_id)] = Decision.from_json(raw)
            except ValueError as e:
                raise ValueError(f"item {item_id!r}: {e}") from None
        return cls(
            run_id=str(doc.get("run_id") or run_id),
            items=items,
            extra={k: v for k, v in doc.items() if k not in cls.OWN},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            **self.extra,
            "run_id": self.run_id,
            "items": {k: d.to_json() for k, d in self.items.items()},
        }


def read(ws: WsLike, run_id: str) -> Review:
    """The decisions taken on plan ``run_id`` (none yet: an empty :class:`Review`). A damaged
    file raises :class:`CleanerError`, one line naming it and the fix."""
    p = path(ws, run_id)
    if not p.is_file():
        return Review(run_id)
    doc = load_json(p, fix=FIX)
    try:
        return Review.from_json(doc, run_id)
    except ValueError as e:
        raise CleanerError(f"{p} is damaged ({e}); {FIX}") from None


def write(ws: WsLike, review: Review) -> Path:
    """Atomically rewrite the decisions file of ``review``'s plan."""
    p = path(ws, review.run_id)
    text = json.dumps(review.to_json(), indent=1, sort_keys=True)
    atomic_write_text(p, text, is_json=True)
    return p
