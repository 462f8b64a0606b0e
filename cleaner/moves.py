"""One move pipeline: every stage that moves files *proposes* a :class:`MovePlan`, and one
executor, :func:`execute`, applies it.

Why one executor: separate, dedupe, scan's quarantine and serve's accept used to sequence
propose -> guard -> write the plan -> lock and recover -> apply -> patch the document -> write
it again each in their own way, with four summaries. Now a stage only decides *what* should
move (its moves, what it holds for review, its guard's verdict, its document and how that is
written and patched); the order of the steps, the lock, the one crash recovery of the command
(:func:`cleaner.journal.writing`), the refusal of a tripped guard and the summary ("moved N,
skipped M; undo with ...") are decided here, once, the same for every stage. The moves
themselves still go through :func:`cleaner.journal.apply_moves`: journaled, never
overwriting, undone by ``cleaner undo``.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleaner.dataset import Workspace
from cleaner.errors import CleanerError
from cleaner.journal import (
    AppliedRun,
    Move,
    MoveResult,
    RecoveryReport,
    apply_moves,
    writing,
)

Document = dict[str, Any]
"""A stage's JSON document (a plan, ``duplicates.json``) as it is written."""


@dataclass
class MovePlan:
    """What a stage proposes to move, and what it needs written around the moves.

    The executor writes ``document`` (with ``write``) before anything moves, refuses the plan
    when ``guard`` says so, applies ``moves``, lets ``record`` patch the document with what
    happened, and writes it again. A stage without a document (scan's quarantine, serve's
    accept) leaves those ``None``.
    """

    command: str
    """The journal's ``command`` (what ``cleaner undo`` lists)."""
    moves: list[Move]
    review: list[Any] = field(default_factory=list)
    """What the stage holds for a person to decide (never moved); counted in the summary."""
    guard: dict[str, Any] = field(default_factory=lambda: {"ok": True})
    """The stage's guard outcome (``ok``, and ``why`` when not): ``--apply`` refuses a plan
    whose guard is not ok, after its document is written (so a person can read it)."""
    document: Document | None = None
    write: Callable[[Document], Path] | None = None
    """Writes ``document`` where the stage keeps it; returns the path."""
    record: Callable[[Document, AppliedRun], None] | None = None
    """Patches ``document`` with what the run did (before it is written again)."""
    run_id: str | None = None
    """The run id the journal takes (a plan's own id); a fresh one when None."""
    journal: dict[str, Any] = field(default_factory=dict)
    """Extra keys of the journal's ``begin`` record (the plan file, the item accepted)."""


@dataclass(frozen=True)
class MoveOutcome:
    """What :func:`execute` did with a :class:`MovePlan`; one shape for every stage."""

    ws: Workspace
    command: str
    planned: int
    review: int
    applied: bool
    """The plan was applied (``--apply`` and the guard ok); False on a dry run."""
    run: AppliedRun | None = None
    document_path: Path | None = None
    recovery: RecoveryReport = field(default_factory=RecoveryReport)

    @property
    def run_id(self) -> str | None:
        return self.run.run_id if self.run is not None else None

    @property
    def moved(self) -> list[MoveResult]:
        return self.run.moved if self.run is not None else []

    @property
    def skipped(self) -> list[MoveResult]:
        return self.run.skipped if self.run is not None else []

    @property
    def undo_command(self) -> str | None:
        """The command that reverses the run; None when it moved nothing."""
        if not self.moved:
            return None
        root = shlex.quote(self.ws.shown)  # as typed, pasteable
        return f"cleaner undo --root {root} --run {self.run_id}"

    def line(self) -> str:
        """The one summary line every stage prints."""
        if not self.applied:
            return f"dry run: {self.planned} to move, nothing moved; add --apply to move them"
        if not self.planned:
            return "nothing to move: the tree is unchanged"
        undo = f"undo with `{self.undo_command}`" if self.undo_command else "nothing to undo"
        return f"moved {len(self.moved)}, skipped {len(self.skipped)} (run {self.run_id}); {undo}"

    def summary(self) -> dict[str, Any]:
        """The same dict for every stage's ``--json`` (under the key ``run``)."""
        rec = self.recovery
        return {
            "command": self.command,
            "applied": self.applied,
            "run_id": self.run_id if self.moved or self.skipped else None,
            "planned": self.planned,
            "review": self.review,
            "moved": len(self.moved),
            "skipped": len(self.skipped),
            "skipped_files": [{"path": r.src, "why": r.why} for r in self.skipped],
            "undo": self.undo_command,
            "document": str(self.document_path) if self.document_path else None,
            "recovered": rec.runs,
            "message": self.line(),
        }


def _write(plan: MovePlan) -> Path | None:
    if plan.document is None or plan.write is None:
        return None
    return plan.write(plan.document)


@contextlib.contextmanager
def _held(ws: Workspace, apply: bool) -> Iterator[RecoveryReport]:
    """The lock and the command's one recovery when applying; nothing on a dry run (which
    writes only its document under ``.cleaner/`` and never recovers)."""
    if not apply:
        yield RecoveryReport()
        return
    with writing(ws):
        yield ws.memo.get("recovered") or RecoveryReport()


def execute(
    ws: Workspace, plan: MovePlan, *, apply: bool, progress: bool | None = None
) -> MoveOutcome:
    """Apply ``plan`` (a dry run unless ``apply``): write its document, refuse a tripped guard,
    move through the journal under the lock, record the outcome in the document and write it
    again.

    Raises :class:`CleanerError` (the guard's ``why``) when ``apply`` and the guard is not ok;
    the document is written first. The recovery reported is the command's one recovery (also
    when the stage took the lock earlier, to read the files the plan is built from).
    """
    with _held(ws, apply) as recovery:
        path = _write(plan)
        if not apply:
            return MoveOutcome(
                ws, plan.command, len(plan.moves), len(plan.review), False, None, path
            )
        if not plan.guard.get("ok", True):
            raise CleanerError(str(plan.guard.get("why") or "the plan's guard refused it"))
        run = apply_moves(
            ws,
            plan.moves,
            command=plan.command,
            run_id=plan.run_id,
            progress=progress,
            extra=plan.journal or None,
        )
        ws.memo.pop("rows", None)  # files moved: the scan's rows no longer describe the disk
        if plan.document is not None and plan.record is not None:
            plan.record(plan.document, run)
            path = _write(plan) or path
    return MoveOutcome(
        ws, plan.command, len(plan.moves), len(plan.review), True, run, path, recovery
    )


def results_by_source(run: AppliedRun) -> dict[str, MoveResult]:
    """src -> what happened to it (for a stage's ``record``)."""
    return {r.src: r for r in run.results}


def skipped_lines(results: Sequence[MoveResult]) -> list[str]:
    """``path: why`` per skipped move, as the CLIs print them."""
    return [f"{r.src}: {r.why}" for r in results]
