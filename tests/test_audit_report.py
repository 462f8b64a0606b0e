"""The audit in `cleaner report` (a section with plots) and the warning `cleaner train` prints."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cleaner.audit import shortcut_warning
from cleaner.cli import app

runner = CliRunner()


def _demo(path: Path, bias: str) -> Path:
    args = ["demo", str(path), "--n", "60", "--exact", "3", "--near", "3", "--bias", bias]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return path


def _report(root: Path, out: Path) -> tuple[str, dict[str, object]]:
    r = runner.invoke(app, ["report", "--root", str(root), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    return out.read_text(encoding="utf-8"), json.loads(r.stdout)["sections"]["audit"]


def test_report_shows_the_audit_with_plots_and_train_warns(tmp_path: Path) -> None:
    root = _demo(tmp_path / "demo", "format")
    html, section = _report(root, tmp_path / "before.html")
    assert section["missing"] == f"cleaner audit --root {root}"
    assert shortcut_warning(root) == ""  # no audit yet: no warning

    r = runner.invoke(app, ["audit", "--root", str(root), "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "SHORTCUT" in r.stdout and "format" in r.stdout
    html, section = _report(root, tmp_path / "after.html")
    assert section["missing"] is None and section["items"] >= 1
    audit = html[html.index('<section id="audit">') :]
    audit = audit[: audit.index("</section>")]
    assert "SHORTCUT: a detector could learn this folder" in audit
    assert audit.count("<svg") >= 4 and "format (share of each class)" in audit
    assert "<td>format</td><td>categorical</td>" in audit

    warning = shortcut_warning(root)
    doc = json.loads((root / ".cleaner" / "audit.json").read_text())
    assert warning.startswith(f"the audit of {root}") and "format" in warning
    assert f"AUC {doc['shortcut']['auc']:.3f}" in warning


def test_no_shortcut_no_warning_and_a_damaged_audit_is_a_problem_not_a_crash(
    tmp_path: Path,
) -> None:
    root = _demo(tmp_path / "demo", "none")
    r = runner.invoke(app, ["audit", "--root", str(root), "--workers", "1", "--json"])
    assert r.exit_code == 0, r.output
    assert shortcut_warning(root) == ""
    (root / ".cleaner" / "audit.json").write_text("{broken")
    warning = shortcut_warning(root)  # ignored by train, and said so (issue #26)
    assert "audit.json does not parse" in warning and "ignored; training goes on" in warning
    _, section = _report(root, tmp_path / "r.html")
    assert "audit.json does not parse" in str(section["problem"])
