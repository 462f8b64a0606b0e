"""`cleaner demo`: deterministic, its ground truth matches the disk, and the classes separate
for a spectral reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cleaner import manifest
from cleaner.cli import app
from cleaner.demo import CORRUPT_KINDS, DemoParams, build_demo, make_fake, make_real

runner = CliRunner()
SMALL = ["--n", "60", "--exact", "4", "--near", "6", "--corrupt", "5", "--min-size", "32",
         "--max-size", "48"]  # fmt: skip


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("demo") / "d"
    res = runner.invoke(app, ["demo", str(root), "--seed", "7", *SMALL])
    assert res.exit_code == 0, res.output
    return root, json.loads((root / "ground_truth.json").read_text())


def test_same_seed_same_bytes(demo: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    root, _ = demo
    res = runner.invoke(app, ["demo", str(tmp_path / "again"), "--seed", "7", *SMALL])
    assert res.exit_code == 0, res.output
    a, b = _tree(root), _tree(tmp_path / "again")
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a)
    runner.invoke(app, ["demo", str(tmp_path / "other"), "--seed", "8", *SMALL])
    assert _tree(tmp_path / "other") != a


def test_ground_truth_lists_what_is_on_disk(demo: tuple[Path, dict[str, Any]]) -> None:
    root, gt = demo
    assert gt["seed"] == 7 and gt["params"]["n"] == 60
    on_disk = {k for k in _tree(root) if k != "ground_truth.json"}
    listed = {e["path"] for e in gt["images"]} | {e["path"] for e in gt["corrupt"]}
    assert listed == on_disk
    true = {e["path"]: e["true_label"] for e in gt["images"]}
    folder = {"real_images": "real", "fake_images": "fake"}

    # label errors: exactly the image files whose folder is not their true class
    wrong = {p for p, t in true.items() if folder[p.split("/")[0]] != t}
    assert {e["path"] for e in gt["label_errors"]} == wrong
    for e in gt["label_errors"]:
        assert e["true_label"] == true[e["path"]]
    originals_wrong = [e for e in gt["label_errors"] if e["planted"] == "wrong-folder"]
    for label in ("real", "fake"):  # the stated fraction of each class (0.10 of 30 = 3)
        assert sum(1 for e in originals_wrong if e["true_label"] == label) == 3

    # duplicates: exact copies are byte-identical, near ones are the same picture, changed
    kinds = {d["kind"] for d in gt["duplicates"]}
    assert {"exact", "resized", "recompressed"} <= kinds
    assert any(d["cross_class"] for d in gt["duplicates"])
    assert any(not d["cross_class"] for d in gt["duplicates"])
    for d in gt["duplicates"]:
        dup, orig = root / d["path"], root / d["original"]
        in_other = folder[d["path"].split("/")[0]] != folder[d["original"].split("/")[0]]
        assert d["cross_class"] == in_other
        if d["kind"] == "exact":
            assert dup.read_bytes() == orig.read_bytes()
        else:
            assert dup.read_bytes() != orig.read_bytes()
            a = np.asarray(Image.open(dup).convert("RGB").resize((16, 16)), dtype=float)
            b = np.asarray(Image.open(orig).convert("RGB").resize((16, 16)), dtype=float)
            assert np.abs(a - b).mean() < 12, d
        assert true[d["path"]] == true[d["original"]]

    # corrupt files: every kind, and a scan reports exactly those as not ok
    assert {c["kind"] for c in gt["corrupt"]} == set(CORRUPT_KINDS)
    rows = manifest.scan(root, workers=1).rows
    bad = {r.path for r in rows if r.status != "ok"}
    assert bad == {c["path"] for c in gt["corrupt"]}
    assert len(rows) == len(on_disk)


def test_names_leak_nothing(demo: tuple[Path, dict[str, Any]]) -> None:
    _, gt = demo
    for e in gt["images"]:
        name = e["path"].rsplit("/", 1)[1]
        assert name.startswith("img_") and "real" not in name and "fake" not in name


def _radial(a: np.ndarray, bins: int = 24) -> np.ndarray:
    g = a.mean(-1) - a.mean()
    power = np.abs(np.fft.fftshift(np.fft.fft2(g))) ** 2
    h, w = g.shape
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.minimum((np.hypot(yy - h / 2, xx - w / 2) / (min(h, w) / 2) * bins).astype(int), bins)
    prof = np.bincount(r.ravel(), power.ravel(), bins + 1) / np.bincount(r.ravel(), None, bins + 1)
    return np.log(prof[:bins] + 1e-6) - np.log(prof[:bins].sum())


def test_classes_separate_by_their_spectrum() -> None:
    """Fakes are told from reals by a radial power spectrum (the reason detectors use), not by
    colour or content: held-out accuracy of a logistic regression on the spectrum is high, on
    mean colour near chance."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    rng = np.random.default_rng(0)
    xs, cs, ys = [], [], []
    for i in range(160):
        size = int(rng.choice([64, 80, 96]))
        arr = make_real(rng, size) if i % 2 == 0 else make_fake(rng, size)[0]
        a = arr.astype(float)
        xs.append(_radial(a))
        cs.append(a.reshape(-1, 3).mean(0))
        ys.append(i % 2)
    spec = cross_val_score(LogisticRegression(C=10, max_iter=5000), np.array(xs), ys, cv=4)
    colour = cross_val_score(LogisticRegression(max_iter=5000), np.array(cs), ys, cv=4)
    assert spec.mean() > 0.9, spec
    assert colour.mean() < 0.7, colour


def test_refuses_a_folder_with_files(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    res = runner.invoke(app, ["demo", str(tmp_path), *SMALL])
    assert res.exit_code == 1
    assert "not an empty folder" in res.output
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize(
    "bad", [["--noise", "0.7"], ["--n", "2"], ["--min-size", "8"], ["--exact", "50"]]
)
def test_bad_parameters_are_one_line_errors(tmp_path: Path, bad: list[str]) -> None:
    res = runner.invoke(app, ["demo", str(tmp_path / "d"), "--n", "60", *bad])
    assert res.exit_code == 1, res.output
    assert "error:" in res.output
    assert not (tmp_path / "d").exists()


def test_default_demo_size_fits_the_chain(tmp_path: Path) -> None:
    """The default demo: a few hundred images of 64-96 px, ~10% noise per class."""
    p = DemoParams()
    res = build_demo(tmp_path / "d", DemoParams(n=p.n, exact=0, near=0, corrupt=0), seed=1)
    assert 300 <= res.counts["files"] <= 500
    gt = json.loads(res.ground_truth.read_text())
    sizes = {Image.open(tmp_path / "d" / e["path"]).size for e in gt["images"]}
    assert all(min(s) >= 64 and max(s) <= 96 for s in sizes)
    assert len(gt["label_errors"]) == round(p.noise * p.n / 2) * 2
