"""Each state file is one typed dataclass shared by its writer and readers: a key (or a CSV
column) this version does not know survives a read and a write back, and a damaged file is one
line naming it and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cleaner.errors import CleanerError
from cleaner.split import Sample, make_split
from cleaner.state import audit, duplicates, metrics, plans, runs
from cleaner.state import split as split_file


def _state(root: Path) -> Path:
    (root / ".cleaner").mkdir(parents=True, exist_ok=True)
    return root / ".cleaner"


def test_a_plan_reads_and_writes_back_what_separate_wrote(tmp_path: Path) -> None:
    move = {"path": "real_images/a.jpg", "sha256": "aa", "from_label": "real",
            "to_label": "fake", "dst": "fake_images/a.jpg", "mean_prob_other": 0.97,
            "evidence": [{"file": "p.json", "prob_fake": 0.97}], "moved": False,
            "why_not": "gone since", "future_item_key": [1]}  # fmt: skip
    review = {"path": "fake_images/c.jpg", "sha256": "cc", "from_label": "fake",
              "to_label": "real", "dst": None, "mean_prob_other": 0.6,
              "evidence": [{"file": "p.json", "prob_fake": 0.4}], "why": "low",
              "rank": 1, "p_misfiled": 0.3}  # fmt: skip
    doc = {"format": plans.PLAN_FORMAT, "run_id": "r1", "created": "2026-01-01T00:00:00Z",
           "rule": "all", "min_confidence": None, "prediction_files": ["p.json"],
           "applied": True, "guard": {"ok": False, "why": "too many"}, "future_key": {"x": 1},
           "moves": [move], "review": [review]}  # fmt: skip
    path = plans.write(tmp_path, doc)
    plan = plans.read_plan(path)
    assert plan.extra["future_key"] == {"x": 1} and plan.guard_why == "too many"
    assert plan.moves[0].why == "gone since" and plan.moves[0].moved is False
    assert plan.review[0].rank == 1 and plan.review[0].extra == {"p_misfiled": 0.3}
    plans.write(tmp_path, plan.with_extra(undone={"by": "r2"}))
    again = json.loads(path.read_text(encoding="utf-8"))
    assert again == {**doc, "undone": {"by": "r2"}}
    assert [p.run_id for p in plans.applied_plans(tmp_path)] == []  # undone: no longer stands
    path.write_text('{"moves": 3}', encoding="utf-8")
    with pytest.raises(CleanerError, match=r"r1\.json is not a cleaner\.plan\.v1 file"):
        plans.read_plan(path)


def test_split_keeps_a_column_it_does_not_know(tmp_path: Path) -> None:
    _state(tmp_path)
    split_file.path(tmp_path).write_text(
        "path,sha256,label,split,group,source\nreal_images/a.jpg,aa,real,test,g1,camera\n",
        encoding="utf-8",
    )
    samples = [Sample("real_images/a.jpg", "aa", "real"), Sample("fake_images/b.jpg", "bb", "fake")]
    rows, reused = make_split(tmp_path, samples)
    assert reused and {r.path: r.split for r in rows}["real_images/a.jpg"] == "test"
    text = split_file.path(tmp_path).read_text(encoding="utf-8").splitlines()
    assert text[0] == "path,sha256,label,split,group,source"
    by_path = {line.split(",")[0]: line for line in text[1:]}
    assert by_path["real_images/a.jpg"].endswith(",camera")
    assert by_path["fake_images/b.jpg"].endswith(",bb,")  # a new file: no source yet


def test_metrics_keep_order_and_unknown_figures(tmp_path: Path) -> None:
    doc = {"format": "cleaner.metrics.v1", "crop": "center", "backbone": "b0",
           "image_size": 64, "split": {"test": {"images": 3}}, "epochs": {"head": 3},
           "test": {"accuracy": 0.5}, "accuracy": 0.5, "precision": 1, "plots": ["a.png"],
           "future": [1, 2]}  # fmt: skip
    model = tmp_path / "m.keras"
    metrics.write(model, doc)
    m = metrics.read_metrics(metrics.path(model))
    assert (m.crop, m.backbone, m.epochs, m.accuracy) == ("center", "b0", {"head": 3}, 0.5)
    assert json.loads(metrics.path(model).read_text(encoding="utf-8")) == doc
    assert list(m.to_json()) == list(doc)
    assert metrics.read_lenient(tmp_path / "none.keras") == metrics.Metrics()


def test_audit_json_round_trip_and_damage(tmp_path: Path) -> None:
    a = audit.Audit.from_json({"generated": "now", "shortcut": {"auc": 0.5}, "properties": [],
                               "provenance": [], "hostile": [], "future": 1})  # fmt: skip
    audit.write(tmp_path, a)
    back = audit.read(tmp_path)
    assert back is not None and back.extra == {"future": 1} and back.shortcut == {"auc": 0.5}
    doc = json.loads(audit.path(tmp_path).read_text(encoding="utf-8"))
    audit.path(tmp_path).write_text(json.dumps({**doc, "properties": {}}), encoding="utf-8")
    with pytest.raises(CleanerError, match=r"audit\.json is damaged .*run `cleaner audit` again"):
        audit.read(tmp_path)


def test_one_conflict_rule_for_the_writer_and_an_older_file(tmp_path: Path) -> None:
    """A group without ``conflict`` (an older file) gets the rule dedupe writes with."""
    from cleaner.dedupe import Group, Member

    members = [Member("real_images/a.jpg", "real", "aa", 0, "kept", split="train"),
               Member("fake_images/a.jpg", "fake", "aa", 0, "bytes", split="test")]  # fmt: skip
    written = Group(0, "real_images/a.jpg", members).to_state().to_json()
    assert written["conflict"] is True and written["leakage"] is True
    older = {k: v for k, v in written.items() if k not in ("conflict", "leakage", "splits")}
    g = duplicates.DuplicateGroup.from_json(older)
    assert g.conflict is True and g.leaks is True and g.to_json() == written


def test_a_journal_record_keeps_its_other_keys() -> None:
    line = {"op": "intent", "i": 3, "src": "a.jpg", "dst": "b.jpg", "sha256": "aa",
            "reason": "real->fake", "of": 9}  # fmt: skip
    assert runs.well_formed(line)
    rec = runs.Record.from_json(line)
    assert (rec.op, rec.i, rec.extra) == ("intent", 3, {"reason": "real->fake", "of": 9})
    assert rec.to_json() == line
    assert not runs.well_formed({"op": "intent", "i": "x"})
