"""Acceptance on real faces (../shared/data/faces140k, skipped when absent): planted byte
copies, half-size copies, JPEG quality-40 copies and cross-class copies are each grouped with
their original and nothing else is; conflicts are flagged (never moved, and no pair: a byte
copy has no local change); --apply quarantines the same-class copies; a
rerun finds nothing; undo restores the exact tree."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from cleaner.cli import app
from tests.test_dedupe import tree

FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces140k"
pytestmark = [
    pytest.mark.faces,
    pytest.mark.skipif(not FACES.is_dir(), reason="faces140k not found"),
]
runner = CliRunner()


def test_planted_copies_on_faces(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    real = sorted((FACES / "real").glob("*.jpg"))[:160]
    fake = sorted((FACES / "fake").glob("*.jpg"))[-60:]  # not the few near-identical StyleGAN pairs
    (root / "real_images").mkdir(parents=True)
    (root / "fake_images").mkdir()
    for f in real:
        shutil.copy(f, root / "real_images" / f.name)
    for f in fake:
        shutil.copy(f, root / "fake_images" / f.name)
    truth: set[frozenset[str]] = set()
    for k, f in enumerate(real[:40]):
        orig = f"real_images/{f.name}"
        kind = k % 4
        if kind == 0:  # byte copy
            copy = f"real_images/copy_{f.name}"
            shutil.copy(f, root / copy)
        elif kind == 1:  # half size
            copy = f"real_images/half_{f.name}"
            im = Image.open(f)
            im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS).save(
                root / copy, quality=90
            )
        elif kind == 2:  # JPEG quality 40
            copy = f"real_images/q40_{f.name}"
            Image.open(f).save(root / copy, quality=40)
        else:  # cross-class copy
            copy = f"fake_images/x_{f.name}"
            shutil.copy(f, root / copy)
        truth.add(frozenset({orig, copy}))
    before = tree(root)

    res = runner.invoke(app, ["dedupe", "--root", str(root), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads((root / ".cleaner/duplicates.json").read_text())
    found = {frozenset(m["path"] for m in g["members"]) for g in doc["groups"]}
    assert found == truth
    conflicts = {frozenset(m["path"] for m in g["members"]) for g in doc["groups"] if g["conflict"]}
    assert conflicts == {t for t in truth if any(p.startswith("fake_images/") for p in t)}
    assert len(doc["review"]) == len(conflicts) == 10

    res = runner.invoke(
        app, ["dedupe", "--root", str(root), "--apply", "--max-fraction", "0.3", "--json"]
    )
    assert res.exit_code == 0, res.output
    # the 10 cross-class copies are label conflicts: listed for review, never moved
    moved = len(truth) - len(conflicts)
    assert json.loads(res.stdout.splitlines()[-1])["moved"] == moved
    assert len(list((root / "quarantine/duplicates").rglob("*.jpg"))) == moved
    res = runner.invoke(app, ["dedupe", "--root", str(root), "--json"])
    again = json.loads(res.stdout.splitlines()[-1])
    assert again["groups"] == again["conflicts"] == len(conflicts)
    assert again["to_quarantine"] == again["pairs"] == 0
    res = runner.invoke(app, ["undo", "--root", str(root)])
    assert res.exit_code == 0, res.output
    assert tree(root) == before
