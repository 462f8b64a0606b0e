"""The one move pipeline (:mod:`cleaner.moves`): separate, dedupe, scan's quarantine and serve's
accept each propose a MovePlan and the one executor applies it, so every stage leaves the same
journal shape and answers with the same summary."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cleaner import journal
from cleaner.cli import app
from cleaner.dataset import Workspace
from cleaner.errors import CleanerError
from cleaner.journal import Move
from cleaner.moves import MovePlan, execute
from cleaner.web import create_app
from tests import image_factory as F
from tests.dedupe_helpers import picture, save_jpeg
from tests.relabel_helpers import acceptance_probs, make_tree, snapshot, write_v1
from tests.report_helpers import make_state_dataset

runner = CliRunner()

SUMMARY_KEYS = {"command", "applied", "run_id", "planned", "review", "moved", "skipped"}
SUMMARY_KEYS |= {"skipped_files", "undo", "document", "recovered", "message"}
BEGIN_KEYS = {"op", "run", "seq", "kind", "command", "created", "pid", "moves"}
INTENT_KEYS = {"op", "i", "src", "dst", "sha256", "reason"}
LINE = re.compile(
    r"^moved (\d+), skipped 0 \(run (\S+)\); undo with `cleaner undo --root \S+ --run (\S+)`$"
)


def _cli(*args: str) -> dict[str, Any]:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def _separate(root: Path) -> dict[str, Any]:
    labels = make_tree(root, 12, 12, sub_every=0)
    files = []
    for m in range(2):
        probs, _ = acceptance_probs(labels, flips=2, coins=2, model=m)
        files.append(str(write_v1(root.parent / f"p{m}.json", root, probs, labels, name=f"m{m}")))
    flags = ["--target-precision", "0", "--min-confidence", "0.9", "--max-fraction", "1"]
    out = _cli("separate", "--root", str(root), "-p", *files, *flags, "--apply")
    assert out["moved"] == 4 and out["applied"] is True
    return dict(out["run"])


def _dedupe(root: Path) -> dict[str, Any]:
    for i in range(6):
        save_jpeg(picture(i), root / "real_images" / f"r{i}.jpg")
        save_jpeg(picture(50 + i), root / "fake_images" / f"f{i}.jpg")
    shutil.copyfile(root / "real_images" / "r0.jpg", root / "real_images" / "r0_copy.jpg")
    out = _cli("dedupe", "--root", str(root), "--max-fraction", "1", "--apply")
    assert out["moved"] == 1 and out["applied"] is True
    return dict(out["run"])


def _quarantine(root: Path) -> dict[str, Any]:
    F.make_jpeg(root / "real_images" / "good.jpg")
    F.make_truncated_jpeg(root / "real_images" / "cut.jpg")
    F.make_zero_bytes(root / "fake_images" / "zero.png")
    out = _cli("scan", "--root", str(root), "--quarantine", "--apply")
    assert out["quarantine"]["applied"] and len(out["quarantine"]["moved"]) == 2
    return dict(out["quarantine"]["run"])


def _accept(base: Path) -> tuple[Path, dict[str, Any]]:
    ds = make_state_dataset(base)
    c = create_app(ds.root, predictor=lambda im: 0.5).test_client()
    html = c.get("/review").get_data(as_text=True)
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, html
    r = c.post(f"/review/{ds.plan_id}/r0/accept?format=json", data={"csrf_token": m.group(1)})
    assert r.status_code == 200, r.data
    body = r.get_json()
    decisions = json.loads((ds.root / ".cleaner" / "review" / f"{ds.plan_id}.json").read_text())
    assert "run" not in decisions["items"]["r0"]  # the summary answers, the file records
    assert body["run"]["run_id"] == body["journal_run"]
    return ds.root, dict(body["run"])


def _records(root: Path, run_id: str) -> list[dict[str, Any]]:
    path = root / ".cleaner" / "journal" / f"{run_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_every_stage_moves_through_one_executor(tmp_path: Path) -> None:
    """separate, dedupe, scan --quarantine and serve's accept with --apply: the same summary
    keys and line, and journals of one shape (begin, intents, dones, end) that undo reverses."""
    runs: dict[str, tuple[Path, dict[str, Any]]] = {
        "separate": (tmp_path / "s" / "R", _separate(tmp_path / "s" / "R")),
        "dedupe": (tmp_path / "d", _dedupe(tmp_path / "d")),
        "scan": (tmp_path / "q", _quarantine(tmp_path / "q")),
        "serve": _accept(tmp_path / "a"),
    }
    moved = {"separate": 4, "dedupe": 1, "scan": 2, "serve": 1}
    for stage, (root, s) in runs.items():
        assert set(s) == SUMMARY_KEYS, stage
        assert s["applied"] is True and s["moved"] == moved[stage] == s["planned"], stage
        assert s["skipped"] == 0 and s["skipped_files"] == [], stage
        m = LINE.match(s["message"])
        assert m and int(m.group(1)) == s["moved"], (stage, s["message"])
        assert m.group(2) == m.group(3) == s["run_id"], stage
        assert s["undo"] == f"cleaner undo --root {root.resolve()} --run {s['run_id']}"

        recs = _records(root, s["run_id"])
        ops = [r["op"] for r in recs]
        n = s["moved"]
        assert ops == ["begin", *["intent"] * n, *["done"] * n, "end"], (stage, ops)
        assert set(recs[0]) >= BEGIN_KEYS and recs[0]["kind"] == "apply", stage
        assert recs[0]["run"] == s["run_id"] and recs[0]["command"] == s["command"], stage
        assert all(set(r) == INTENT_KEYS for r in recs[1 : n + 1]), stage
        assert recs[-1]["moved"] == n, stage

        before = snapshot(root)
        res = runner.invoke(app, ["undo", "--root", str(root), "--run", s["run_id"], "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["restored"] == n, stage
        assert snapshot(root) != before, stage


def test_dry_runs_move_nothing_and_say_so(tmp_path: Path) -> None:
    root = tmp_path / "q"
    F.make_jpeg(root / "real_images" / "good.jpg")
    F.make_zero_bytes(root / "fake_images" / "zero.png")
    before = snapshot(root)
    out = _cli("scan", "--root", str(root), "--quarantine")
    s = out["quarantine"]["run"]
    assert s["applied"] is False and s["planned"] == 1 and s["moved"] == 0 and s["run_id"] is None
    assert s["message"].startswith("dry run: 1 to move, nothing moved")
    assert snapshot(root) == before and not (root / ".cleaner" / "journal").exists()


def test_a_tripped_guard_writes_the_document_and_moves_nothing(tmp_path: Path) -> None:
    F.make_jpeg(tmp_path / "real_images" / "a.jpg")
    ws = Workspace.open(tmp_path)
    written: list[dict[str, Any]] = []

    def write(doc: dict[str, Any]) -> Path:
        written.append(json.loads(json.dumps(doc)))
        return tmp_path / ".cleaner" / "doc.json"

    plan = MovePlan(
        "t",
        [Move("real_images/a.jpg", "fake_images/a.jpg")],
        guard={"ok": False, "why": "too large a plan; read doc.json"},
        document={"applied": False},
        write=write,
    )
    with pytest.raises(CleanerError, match="too large a plan"):
        execute(ws, plan, apply=True)
    assert written == [{"applied": False}]
    assert (tmp_path / "real_images" / "a.jpg").exists()
    assert not (tmp_path / ".cleaner" / "journal").exists()


def test_separate_apply_recovers_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage takes the lock to build its plan and the executor re-enters it: one recovery
    per command (journal.writing), not one per step."""
    calls: list[str] = []
    real = journal.recover

    def counting(ws: Any) -> journal.RecoveryReport:
        calls.append(str(ws))
        return real(ws)

    monkeypatch.setattr(journal, "recover", counting)
    _separate(tmp_path / "R")
    assert len(calls) == 1
