"""`cleaner train --by-source`: leave-one-source-out AUCs in M.metrics.json and the report, on a
generated dataset whose fakes come from two "generators" (two sub-folders)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.models.sources import image_sources
from cleaner.state.split import SplitRow
from tests.train_helpers import make_image

runner = CliRunner()


def _stripes(rng: np.random.Generator, size: int) -> Image.Image:
    """A second generator's trace: vertical stripes of period 2 instead of a checkerboard."""
    base = np.asarray(make_image(rng, size, False), np.float32)
    base += ((np.arange(size) % 2) * 2 - 1)[None, :, None] * 12.0
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def _two_sources(root: Path, n: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for d in ("real_images", "fake_images/checker", "fake_images/stripes"):
        (root / d).mkdir(parents=True)
    for i in range(2 * n):
        make_image(rng, 40, False).save(root / "real_images" / f"r{i:03d}.png")
    for i in range(n):
        make_image(rng, 40, True).save(root / "fake_images" / "checker" / f"c{i:03d}.png")
        _stripes(rng, 40).save(root / "fake_images" / "stripes" / f"s{i:03d}.png")
    return root


def test_by_source_table_in_metrics_and_report(tmp_path: Path) -> None:
    root = _two_sources(tmp_path / "ds")
    out = tmp_path / "m.keras"
    res = runner.invoke(app, ["train", "--root", str(root), "--out", str(out), "--backbone",
                              "efficientnet-lite0-gram", "--image-size", "32", "--epochs", "0",
                              "--no-augment", "--by-source"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "leave one source out" in res.stdout
    m = json.loads(out.with_suffix(".metrics.json").read_text())
    rec = m["by_source"]
    assert rec["sources_from"] == "sub-folders"
    rows = {r["source"]: r for r in rec["sources"]}
    assert set(rows) == {"fake/checker", "fake/stripes", "real/(top)"}
    assert rows["real/(top)"]["skipped"] == "the only source of its class"
    n_test_fakes = m["split"]["test"]["fake"]
    assert rows["fake/checker"]["test_images"] + rows["fake/stripes"]["test_images"] == n_test_fakes
    for s in ("fake/checker", "fake/stripes"):
        r = rows[s]
        assert r["train_left_out"] > 0 and 0.0 <= r["roc_auc"] <= 1.0
        assert r["fails"] == (r["roc_auc"] < rec["fail_below"])
        assert r["seen_roc_auc"] is not None
    assert rec["failed"] == [s for s in sorted(rows) if rows[s].get("fails")]

    page = tmp_path / "report.html"
    res = runner.invoke(
        app,
        [
            "report",
            "--root",
            str(root),
            "--out",
            str(page),
            "--model-metrics",
            str(out.with_suffix(".metrics.json")),
        ],
    )
    assert res.exit_code == 0, res.output
    html = page.read_text()
    assert "Leave one source out" in html and "fake/stripes" in html


def test_sources_fall_back_to_the_files_form(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    rng = np.random.default_rng(1)
    (root / "real_images").mkdir(parents=True)
    (root / "fake_images").mkdir(parents=True)
    make_image(rng, 40, False).save(root / "real_images" / "a.png")
    make_image(rng, 40, True).save(root / "fake_images" / "b.png")
    make_image(rng, 48, True).convert("RGB").save(root / "fake_images" / "c.jpg", quality=90)
    res = runner.invoke(app, ["scan", "--root", str(root)])
    assert res.exit_code == 0, res.output
    rows = [SplitRow(p, "", p.split("_")[0], "train", p) for p in
            ("real_images/a.png", "fake_images/b.png", "fake_images/c.jpg")]  # fmt: skip
    src, how = image_sources(root, rows)
    assert how.startswith("form")
    assert src == ["real/PNG 40x40", "fake/PNG 40x40", "fake/JPEG 48x48"]
