"""`cleaner report`: every section, every thumbnail local, cache by sha256, missing state named."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.report import SECTIONS, build_report
from tests.report_helpers import make_state_dataset, write_image

runner = CliRunner()


class _Page(HTMLParser):
    """Section ids, img/script/link URLs and the JSON data blobs of a report page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.urls: list[str] = []
        self.blobs: dict[str, Any] = {}
        self._blob: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and a.get("id"):
            self.ids.add(str(a["id"]))
        for key in ("src", "href"):
            if a.get(key) and tag in ("img", "script", "link", "iframe", "source"):
                self.urls.append(str(a[key]))
        if tag == "script" and a.get("type") == "application/json":
            self._blob = str(a["id"])
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._blob:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._blob:
            self.blobs[self._blob] = json.loads("".join(self._text))
            self._blob = None


def _parse(path: Path) -> tuple[str, _Page]:
    text = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    return text, page


def _thumbs(page: _Page) -> list[str]:
    out = []
    for items in page.blobs.values():
        for it in items:
            out += [it["thumb"]] if "thumb" in it else []
            out += [m["thumb"] for m in it.get("members", []) if "thumb" in m]
    return out


def test_report_every_section_and_local_thumbnails(tmp_path: Path) -> None:
    ds = make_state_dataset(tmp_path)
    out = tmp_path / "out" / "report.html"
    r = runner.invoke(
        app,
        ["report", "--root", str(ds.root), "--out", str(out), "--model-metrics", str(ds.metrics)],
    )
    assert r.exit_code == 0, r.output
    text, page = _parse(out)
    assert page.ids >= {sid for sid, _ in SECTIONS}
    assert "Nothing to show yet" not in text
    # self-contained: nothing from the network, every image beside the page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    thumbs = _thumbs(page)
    assert len(thumbs) >= 8
    for url in page.urls + thumbs:
        if url.startswith(("#", "data:")):
            continue
        assert (out.parent / url).is_file(), url
        assert (out.parent / url).resolve().is_relative_to(out.parent)
    # moves: ordered by confidence, every prediction file's probability, sha256-named thumbnails
    moves = page.blobs["data-moves"]
    assert [m["path"] for m in moves] == ["real_images/r2.jpg", "fake_images/f3.png"]
    assert moves[0]["confidence"] >= moves[1]["confidence"]
    assert [e[0] for e in moves[0]["evidence"]] == ["a.json", "b.json"]
    assert moves[0]["evidence"][0][1] == 0.97
    assert moves[0]["thumb"].endswith(f"report_files/thumbs/{ds.sha['real_images/r2.jpg']}.jpg")
    assert {m["state"] for m in moves} == {"proposed"}
    assert page.blobs["data-review"][0]["why"] == "the files disagree"
    # duplicates: kept copy marked first, distances, the conflict flagged
    groups = page.blobs["data-duplicates"]
    assert len(groups) == 2 and groups[0]["conflict"] and not groups[1]["conflict"]
    for g in groups:
        assert g["members"][0]["kept"] and g["members"][0]["path"] == g["kept"]
        assert sum(m["kept"] for m in g["members"]) == 1
    assert [m["distance"] for m in groups[1]["members"]] == [0, 2]
    assert [g["kept"] for g in page.blobs["data-conflicts"]] == ["real_images/r1.jpg"]
    # leakage: exactly the groups whose members the split file puts in different splits
    split = {}
    for line in (ds.root / ".cleaner" / "split.csv").read_text().splitlines()[1:]:
        path, _, _, s, _ = line.split(",")
        split[path] = s
    want = sorted(g["kept"] for g in groups if len({split[m["path"]] for m in g["members"]}) > 1)
    assert want and sorted(g["kept"] for g in page.blobs["data-leakage"]) == want
    # quarantined and unreadable files with reasons
    q = page.blobs["data-quarantine"]
    assert [(f["path"], f["reason"]) for f in q] == [
        ("quarantine/duplicates/real_images/old_copy.jpg", "duplicates")
    ]
    bad = {f["path"]: f for f in page.blobs["data-unreadable"]}
    assert set(bad) == {"real_images/broken.jpg", "fake_images/notes.txt"}
    assert bad["fake_images/notes.txt"]["status"] == "not-an-image"
    assert all(f["reason"] for f in bad.values())
    # training: figures, confusion matrix, both plots copied beside the page
    assert "roc_auc" in text and "0.9500" in text
    assert re.search(r"<td>9</td><td>1</td>", text)
    assert (out.parent / "report_files" / "training" / "M.roc.png").is_file()
    assert (out.parent / "report_files" / "training" / "M.confusion.png").is_file()


def test_thumbnails_cached_by_sha256_and_found_after_a_move(tmp_path: Path) -> None:
    from cleaner.journal import Move, apply_moves

    ds = make_state_dataset(tmp_path)
    out = tmp_path / "report.html"
    first = build_report(ds.root, out, workers=1, progress=False)
    assert first.thumbs_made >= 7 and first.thumbs_failed == 0
    thumbs = sorted((tmp_path / "report_files" / "thumbs").iterdir())
    stamps = [p.stat().st_mtime_ns for p in thumbs]
    second = build_report(ds.root, out, workers=1, progress=False)
    assert second.thumbs_made == 0 and second.thumbs_cached == first.thumbs_made
    assert [p.stat().st_mtime_ns for p in thumbs] == stamps
    # a move leaves the cached thumbnail valid (same bytes, same sha256); a new report made
    # elsewhere finds the moved file through the manifest's sha256
    run = apply_moves(ds.root, [Move("real_images/r2.jpg", "fake_images/r2.jpg")], command="t")
    from cleaner.manifest import scan

    scan(ds.root, workers=1, progress=False)
    third = build_report(ds.root, tmp_path / "other" / "r.html", workers=1, progress=False)
    assert third.thumbs_failed == 0
    text, page = _parse(tmp_path / "other" / "r.html")
    r2 = next(m for m in page.blobs["data-moves"] if m["path"] == "real_images/r2.jpg")
    assert (tmp_path / "other" / r2["thumb"]).is_file()
    # the journal's runs are listed with the command that reverses them
    assert f"cleaner undo --run {run.run_id}</code> reverses it" in text


def test_missing_state_names_the_command(tmp_path: Path) -> None:
    ds = make_state_dataset(tmp_path, with_state=False)
    out = tmp_path / "report.html"
    r = runner.invoke(app, ["report", "--root", str(ds.root), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    missing = {k: v["missing"] for k, v in summary["sections"].items()}
    assert missing["summary"].startswith("cleaner scan")
    assert missing["moves"].startswith("cleaner separate")
    assert missing["duplicates"].startswith("cleaner dedupe")
    assert missing["training"].startswith("cleaner train")
    text, page = _parse(out)
    assert page.ids >= {sid for sid, _ in SECTIONS}
    for cmd in ("cleaner scan", "cleaner separate", "cleaner dedupe", "cleaner train"):
        assert f"<code>{cmd}" in text


def test_applied_plan_and_hostile_names(tmp_path: Path) -> None:
    ds = make_state_dataset(tmp_path, applied=True)
    evil = "real_images/<script>alert(1)<img src=x onerror=alert(2)>.jpg"
    write_image(ds.root / evil, seed=42)
    plan_path = ds.root / ".cleaner" / "plans" / f"{ds.plan_id}.json"
    plan = json.loads(plan_path.read_text())
    plan["moves"].append({**plan["moves"][0], "path": evil, "sha256": "", "dst": "x"})
    plan["moves"].append({**plan["moves"][0], "path": "../../etc/passwd", "sha256": ""})
    plan["moves"][1]["moved"] = False
    plan["moves"][1]["why_not"] = "changed since planned"
    plan_path.write_text(json.dumps(plan))
    out = tmp_path / "report.html"
    res = build_report(ds.root, out, workers=1, progress=False)
    text, page = _parse(out)
    assert "<script>alert" not in text  # names travel as escaped JSON, rendered as text
    by_path = {m["path"]: m for m in page.blobs["data-moves"]}
    assert by_path[evil]["thumb"]  # still shown, found by path
    assert "thumb" not in by_path["../../etc/passwd"]  # never read outside ROOT
    assert by_path["real_images/r2.jpg"]["state"] == "applied"
    assert by_path["fake_images/f3.png"]["state"] == "skipped"
    assert res.counts["moves"] == 4
    from cleaner.manifest import read_manifest

    assert res.counts["summary"] == len(read_manifest(ds.root)) > 0  # files, not split rows


def test_bad_out_and_missing_root(tmp_path: Path) -> None:
    ds = make_state_dataset(tmp_path, with_state=False)
    r = runner.invoke(app, ["report", "--root", str(ds.root), "--out", str(tmp_path / "r.txt")])
    assert r.exit_code == 1 and "must end in .html" in r.stderr
    inside = ds.root / "real_images" / "new" / "r.html"
    r = runner.invoke(app, ["report", "--root", str(ds.root), "--out", str(inside)])
    assert r.exit_code == 1 and "inside a class or quarantine folder" in r.stderr
    assert not inside.parent.exists()
    r = runner.invoke(app, ["report", "--root", str(tmp_path / "nope"), "--out", "r.html"])
    assert r.exit_code == 1 and "does not exist" in r.stderr
    r = runner.invoke(
        app,
        ["report", "--root", str(ds.root), "--out", str(tmp_path / "r.html"),
         "--model-metrics", str(tmp_path / "none.metrics.json")],
    )  # fmt: skip
    assert r.exit_code == 1 and "none.metrics.json" in r.stderr


def test_large_lists_are_paged_not_inlined(tmp_path: Path) -> None:
    ds = make_state_dataset(tmp_path)
    plan_path = ds.root / ".cleaner" / "plans" / f"{ds.plan_id}.json"
    plan = json.loads(plan_path.read_text())
    plan["moves"] = [dict(plan["moves"][0], path=f"real_images/x{i}.jpg") for i in range(3000)]
    plan_path.write_text(json.dumps(plan))
    out = tmp_path / "report.html"
    build_report(ds.root, out, page_size=25, workers=1, progress=False)
    text, page = _parse(out)
    assert len(page.blobs["data-moves"]) == 3000
    assert 'data-page-size="25"' in text
    assert text.count("<img") < 10  # cards are built page by page by the inline script
    assert len(text) < 3000 * 600


def test_report_never_imports_tensorflow(tmp_path: Path) -> None:
    ds = make_state_dataset(tmp_path)
    code = (
        "import sys; from cleaner.cli import app; from typer.testing import CliRunner; "
        f"r = CliRunner().invoke(app, ['report', '--root', {str(ds.root)!r}, '--out', "
        f"{str(tmp_path / 'r.html')!r}]); assert r.exit_code == 0, r.output; "
        "import cleaner.web; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'tf imported'"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def test_a_broken_state_file_is_named_on_its_section(tmp_path: Path) -> None:
    ds = make_state_dataset(tmp_path)
    (ds.root / ".cleaner" / "duplicates.json").write_text("{not json")
    (ds.root / ".cleaner" / "plans" / "zzz-broken.json").write_text("[1, 2")
    out = tmp_path / "report.html"
    r = runner.invoke(app, ["report", "--root", str(ds.root), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    sections = json.loads(r.stdout)["sections"]
    assert "duplicates.json does not parse" in sections["duplicates"]["problem"]
    assert "zzz-broken.json does not parse" in sections["moves"]["problem"]
    assert sections["moves"]["items"] == 2  # the readable plan is still shown
    text, page = _parse(out)
    assert page.ids >= {sid for sid, _ in SECTIONS}
    assert text.count("Could not read:") == 2


def test_a_damaged_review_file_is_named_on_the_review_section(tmp_path: Path) -> None:
    ds = make_state_dataset(tmp_path)
    review = ds.root / ".cleaner" / "review" / f"{ds.plan_id}.json"
    review.parent.mkdir()
    review.write_text(json.dumps({"run_id": ds.plan_id, "items": {"r0": {"decision": "maybe"}}}))
    out = tmp_path / "report.html"
    r = runner.invoke(app, ["report", "--root", str(ds.root), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    problem = json.loads(r.stdout)["sections"]["review"]["problem"]
    assert str(review) in problem and "'maybe' is not one of accepted, rejected" in problem
    review.write_text(json.dumps({"items": {"r0": {"decision": "rejected", "why": "blurry"}}}))
    r = runner.invoke(app, ["report", "--root", str(ds.root), "--out", str(out), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["sections"]["review"]["problem"] is None


def test_quarantined_files_carry_the_journal_reason(tmp_path: Path) -> None:
    from cleaner.journal import Move, apply_moves

    ds = make_state_dataset(tmp_path)
    why = "duplicate of real_images/r0.jpg (phash, distance 2)"
    src = "real_images/sub/r0_copy.jpg"
    apply_moves(ds.root, [Move(src, f"quarantine/duplicates/{src}", reason=why)], command="dd")
    out = tmp_path / "report.html"
    build_report(ds.root, out, workers=1, progress=False)
    _, page = _parse(out)
    q = {f["path"]: f for f in page.blobs["data-quarantine"]}
    moved = q[f"quarantine/duplicates/{src}"]
    assert moved["why"] == why and moved["src"] == src
    assert moved["thumb"].endswith(f"{ds.sha[src]}.jpg") and (tmp_path / moved["thumb"]).is_file()
    assert "why" not in q["quarantine/duplicates/real_images/old_copy.jpg"]  # not journaled


def test_training_found_where_make_retrain_writes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = make_state_dataset(tmp_path)
    monkeypatch.chdir(tmp_path)
    models = tmp_path / "models"
    other = json.loads(ds.metrics.read_text())
    # another dataset's model: not shown; this ROOT's (by its split file): shown
    (models / "other.metrics.json").write_text(
        json.dumps({**other, "split": {"file": str(tmp_path / "x" / "split.csv")}})
    )
    out = tmp_path / "r.html"
    assert build_report(ds.root, out, progress=False).missing.get("training")
    mine = {**other, "split": {"file": str(ds.root / ".cleaner" / "split.csv")}}
    (models / "root.metrics.json").write_text(json.dumps(mine))
    res = build_report(ds.root, out, progress=False)
    assert "training" not in res.missing and res.counts["training"] == 1
    assert "models/root.metrics.json" in out.read_text()
