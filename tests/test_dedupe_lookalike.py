"""cleaner dedupe refuses a look-alike pair (two distinct pictures alike in everything but
detail) that its score alone accepts, and still groups a mirrored copy, a 5 % cropped one and
one cropped to 90 % of each side (outside every 95 % window: found by the 90 % windows of the
hash search and the alignment); the calibration reports the hard null (issue 25)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.hashing import hash_files
from cleaner.verify import FINE_UNTIL, MIN_ACCEPT, Scorer, fit_basis
from tests.dedupe_helpers import lookalike, picture, save_jpeg, transformed

runner = CliRunner()


def crop90(im: Image.Image, x: int, y: int) -> Image.Image:
    """90 % of each side of ``im``, from ``(x, y)``."""
    w, h = im.size
    return im.crop((x, y, x + round(w * 0.9), y + round(h * 0.9)))


def build(root: Path) -> list[Path]:
    """210 distinct pictures (enough for the dataset's basis), two look-alikes ``a`` and ``b``,
    and a mirrored, a 5 % cropped and a 10 % cropped copy of ``a``."""
    paths = [save_jpeg(picture(k, 96), root / f"real_images/p{k}.jpg") for k in range(210)]
    a = lookalike(picture(1000, 96), seed=1)
    paths.append(save_jpeg(a, root / "fake_images/a.jpg"))
    paths.append(save_jpeg(lookalike(picture(1000, 96), seed=2), root / "fake_images/b.jpg"))
    for kind in ("mirror", "crop5"):
        im, q = transformed(a, kind, seed=3)
        paths.append(save_jpeg(im, root / f"fake_images/a_{kind}.jpg", q))
    paths.append(save_jpeg(crop90(a, 7, 2), root / "fake_images/a_crop90.jpg"))
    return paths


def test_lookalike_refused_copies_kept(tmp_path: Path) -> None:
    root = tmp_path / "data"
    paths = build(root)

    # the pair is a look-alike by the score alone: it clears the floor the acceptance had (and
    # stays below the score from which the fine band is not asked)
    items = [(str(p), hashlib.sha256(p.read_bytes()).hexdigest()) for p in paths]
    table = hash_files(items, "phash").table
    scorer = Scorer(table.grey, fit_basis(table.grey))
    ia, ib = len(paths) - 5, len(paths) - 4
    v = scorer.scores(np.array([ia]), np.array([ib]), np.array([False]))
    assert MIN_ACCEPT <= v[0] < FINE_UNTIL

    res = runner.invoke(app, ["dedupe", "--root", str(root), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads((root / ".cleaner/duplicates.json").read_text())
    together = {
        frozenset((m["path"], n["path"]))
        for g in doc["groups"]
        for m in g["members"]
        for n in g["members"]
        if m["path"] != n["path"]
    }
    a, b = "fake_images/a.jpg", "fake_images/b.jpg"
    assert frozenset((a, b)) not in together
    assert frozenset((a, "fake_images/a_mirror.jpg")) in together
    assert frozenset((a, "fake_images/a_crop5.jpg")) in together
    assert frozenset((a, "fake_images/a_crop90.jpg")) in together
    cal = doc["calibration"]
    assert cal["hard_null_pairs"] > 0
    assert doc["expected_false_pairs"] >= cal["expected_false_pairs_hard"] - 1e-4
    assert doc["expected_false_pairs"] >= cal["expected_false_pairs_random"] - 1e-4
