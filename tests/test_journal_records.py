"""One shape for the journal's writer and its readers: every line the commands write is exactly
what :class:`cleaner.state.runs.Record` reads from it and writes back (an intent whose sha256
is unknown included: its ``"sha256": null`` is part of the line)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.state.runs import Record, run_files
from cleaner.web import create_app
from tests.report_helpers import make_state_dataset

runner = CliRunner()


def _line(rec: Record) -> bytes:
    """A record as the journal writes a line (compact JSON, UTF-8)."""
    return json.dumps(rec.to_json(), ensure_ascii=False, separators=(",", ":")).encode()


def _accept_without_a_hash(root: Path, run_id: str) -> None:
    """serve accepts the plan's review item after its sha256 was dropped from the plan, so the
    move's intent is journaled with an unknown hash."""
    plan_file = root / ".cleaner" / "plans" / f"{run_id}.json"
    plan = json.loads(plan_file.read_text())
    plan["review"][0].pop("sha256")
    plan_file.write_text(json.dumps(plan))
    c = create_app(root, predictor=lambda im: 0.5).test_client()
    page = c.get("/review").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    r = c.post(f"/review/{run_id}/r0/accept?format=json", data={"csrf_token": token})
    assert r.status_code == 200, r.data


def test_every_journal_line_is_what_its_record_reads_and_writes_back(tmp_path: Path) -> None:
    ds = make_state_dataset(tmp_path)
    root = ds.root
    _accept_without_a_hash(root, ds.plan_id)
    r = runner.invoke(app, ["scan", "--root", str(root), "--quarantine", "--apply"])
    assert r.exit_code == 0, r.output
    # a crash left a run unfinished: the next writing command recovers it (rollback, abort)
    crashed = run_files(root)[0].with_name("20260101T000000Z-dead00.jsonl")
    fields = {"run": crashed.stem, "seq": 99, "kind": "apply", "command": "crashed",
              "created": "", "pid": 1, "moves": 1}  # fmt: skip
    begin = Record("begin", extra=fields)
    intent = Record("intent", i=0, src="real_images/r0.jpg", dst="fake_images/r0.jpg",
                    sha256=ds.sha["real_images/r0.jpg"])  # fmt: skip
    crashed.write_bytes(_line(begin) + b"\n" + _line(intent) + b"\n")
    for _ in range(2):  # undo the scan's quarantine, then serve's accept
        r = runner.invoke(app, ["undo", "--root", str(root)])
        assert r.exit_code == 0, r.output
    journals = run_files(root)
    lines = [ln for p in journals for ln in p.read_bytes().splitlines() if ln.strip()]
    ops = [json.loads(ln)["op"] for ln in lines]
    assert len(journals) == 5 and {"begin", "intent", "done", "end", "rollback", "abort"} <= set(
        ops
    )
    assert any(json.loads(ln).get("sha256", "") is None for ln in lines)  # serve's intent
    for ln in lines:
        assert _line(Record.from_json(json.loads(ln))) == ln
