"""cleaner dedupe: known duplicates found, distinct pictures kept apart, conflicts, leakage,
keep policy, the radius, --apply / rerun / undo, and the search index against brute force."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from cleaner import hashing
from cleaner.cli import app
from cleaner.dedupe import DEFAULT_MAX_DISTANCE, find_duplicates, keep_key
from cleaner.errors import CleanerError
from cleaner.hashindex import brute_force_pairs, hamming, plan, radius_pairs
from tests.dedupe_helpers import picture, save_jpeg, transformed
from tests.image_factory import make_truncated_jpeg

runner = CliRunner()


def build(root: Path) -> set[frozenset[str]]:
    """A small dataset with planted copies of every kind; returns the true groups."""
    truth: list[set[str]] = []

    def pic(seed: int, rel: str) -> Path:
        return save_jpeg(picture(seed, 128), root / rel)

    plan_ = [
        (0, "real_images/train/p0.jpg", "half", "real_images/test/p0_half.jpg"),
        (1, "real_images/train/p1.jpg", "jpeg40", "real_images/train/p1_q40.jpg"),
        (2, "real_images/train/p2.jpg", "bright", "real_images/train/p2_bright.jpg"),
        (3, "fake_images/p3.jpg", "crop5", "fake_images/p3_crop.jpg"),
        (4, "fake_images/p4.jpg", "mirror", "fake_images/p4_mirror.jpg"),
    ]
    for seed, rel, kind, copy in plan_:
        pic(seed, rel)
        t, q = transformed(picture(seed, 128), kind, seed=seed)
        save_jpeg(t, root / copy, q)
        truth.append({rel, copy})
    # a cross-class byte copy: a label conflict
    pic(5, "real_images/p5.jpg")
    (root / "fake_images").mkdir(parents=True, exist_ok=True)
    shutil.copy(root / "real_images/p5.jpg", root / "fake_images/p5_copy.jpg")
    truth.append({"real_images/p5.jpg", "fake_images/p5_copy.jpg"})
    # the same pixels in different bytes
    picture(6, 128).save(root / "real_images/p6.png")
    picture(6, 128).save(root / "real_images/p6.bmp")
    truth.append({"real_images/p6.png", "real_images/p6.bmp"})
    # distinct pictures and a broken file: never grouped
    for seed in range(7, 13):
        pic(seed, f"real_images/single{seed}.jpg" if seed % 2 else f"fake_images/s{seed}.jpg")
    make_truncated_jpeg(root / "real_images/broken.jpg", size=64, keep=0.3)
    return {frozenset(g) for g in truth}


def groups_of(doc: dict) -> set[frozenset[str]]:
    return {frozenset(m["path"] for m in g["members"]) for g in doc["groups"]}


def tree(root: Path) -> dict[str, str]:
    """path -> sha256 of every file outside .cleaner/."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".cleaner" not in p.relative_to(root).parts
    }


def run(*args: str) -> dict:
    res = runner.invoke(app, ["dedupe", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture()
def dataset(tmp_path: Path) -> tuple[Path, set[frozenset[str]]]:
    root = tmp_path / "data"
    return root, build(root)


@pytest.mark.parametrize("method", ["phash", "dhash", "whash", "ahash"])
def test_finds_every_planted_copy_and_nothing_else(dataset: tuple[Path, set], method: str) -> None:
    root, truth = dataset
    summary = run("--root", str(root), "--method", method)
    doc = json.loads((root / ".cleaner/duplicates.json").read_text())
    assert doc["method"] == method and doc["max_distance"] == DEFAULT_MAX_DISTANCE
    assert (root / f".cleaner/cache/hashes-{method}.npz").exists()
    assert groups_of(doc) == truth
    assert summary["groups"] == len(truth) and summary["redundant"] == len(truth)
    by_path = {m["path"]: m for g in doc["groups"] for m in g["members"]}
    assert by_path["fake_images/p5_copy.jpg"]["match"] in ("bytes", "kept")
    assert {by_path["real_images/p6.png"]["match"], by_path["real_images/p6.bmp"]["match"]} == {
        "kept",
        "pixels",
    }
    assert by_path["fake_images/p4_mirror.jpg"]["match"] == "mirror"
    for g in doc["groups"]:
        kept = [m for m in g["members"] if m["path"] == g["kept"]]
        assert len(kept) == 1 and kept[0]["distance"] == 0
        assert all(0 <= m["distance"] <= 32 for m in g["members"])
        for m in g["members"]:
            assert set(m) >= {"path", "label", "sha256", "distance"}


def test_keep_policy_conflict_and_leakage(dataset: tuple[Path, set]) -> None:
    root, _ = dataset
    run("--root", str(root))
    doc = json.loads((root / ".cleaner/duplicates.json").read_text())
    for g in doc["groups"]:

        @dataclass
        class R:
            path: str
            width: int
            height: int
            bytes: int

        best = min((R(m["path"], m["width"], m["height"], m["bytes"]) for m in g["members"]),
                   key=keep_key)  # fmt: skip
        assert g["kept"] == best.path
    half = next(
        g for g in doc["groups"] if any(m["path"].endswith("p0_half.jpg") for m in g["members"])
    )
    assert half["kept"] == "real_images/train/p0.jpg"  # more pixels wins
    conflicts = [g for g in doc["groups"] if g["conflict"]]
    assert [sorted(m["path"] for m in g["members"]) for g in conflicts] == [
        ["fake_images/p5_copy.jpg", "real_images/p5.jpg"]
    ]
    assert [r["group"] for r in doc["review"]] == [conflicts[0]["id"]]
    # same bytes, same size: the first path is kept
    assert conflicts[0]["kept"] == "fake_images/p5_copy.jpg"
    assert [sorted(x["splits"]) for x in doc["leakage"]] == [["test", "train"]]


def test_split_file_leakage(dataset: tuple[Path, set]) -> None:
    root, _ = dataset
    (root / ".cleaner").mkdir(exist_ok=True)
    with open(root / ".cleaner/split.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "sha256", "label", "split", "group"])
        w.writerow(["fake_images/p3.jpg", "", "fake", "train", "0"])
        w.writerow(["fake_images/p3_crop.jpg", "", "fake", "val", "1"])
    summary = run("--root", str(root))
    doc = json.loads((root / ".cleaner/duplicates.json").read_text())
    assert summary["leaking_groups"] == 2
    splits = sorted(tuple(sorted(x["splits"])) for x in doc["leakage"])
    assert splits == [("test", "train"), ("train", "val")]


def test_apply_rerun_finds_nothing_and_undo_restores(dataset: tuple[Path, set]) -> None:
    root, truth = dataset
    before = tree(root)
    summary = run("--root", str(root), "--apply", "--max-fraction", "1")
    # the cross-class copy is a label conflict: listed for review, never moved
    assert summary["moved"] == len(truth) - 1 and summary["run_id"]
    doc = json.loads((root / ".cleaner/duplicates.json").read_text())
    for g in doc["groups"]:
        assert (root / g["kept"]).exists()
        for m in g["members"]:
            if m["path"] != g["kept"]:
                assert (root / m["path"]).exists() == g["conflict"]
                assert (root / "quarantine/duplicates" / m["path"]).exists() != g["conflict"]
    after = tree(root)
    assert sorted(after.values()) == sorted(before.values())  # nothing lost
    again = run("--root", str(root))
    assert again["groups"] == again["conflicts"] == 1 and again["hashed"] == 0
    assert again["to_quarantine"] == 0
    res = runner.invoke(app, ["undo", "--root", str(root)])
    assert res.exit_code == 0, res.output
    assert tree(root) == before


def test_radius_decides(tmp_path: Path) -> None:
    root = tmp_path / "r"
    a = save_jpeg(picture(20, 128), root / "real_images/a.jpg")
    b = save_jpeg(picture(20, 128), root / "real_images/b.jpg", 40)
    ha, hb = hashing.image_hashes(a), hashing.image_hashes(b)
    d = min(
        int(hamming(np.array([x], np.uint64), np.array([y], np.uint64))[0])
        for x, y in ((ha.hash, hb.hash), (ha.mirror, hb.hash), (hb.mirror, ha.hash),
                     (ha.crop, hb.hash), (hb.crop, ha.hash))
    )  # fmt: skip
    assert d >= 1

    @dataclass
    class Row:
        path: str
        label: str
        sha256: str
        bytes: int
        width: int
        height: int

    rows = [Row(p.relative_to(root).as_posix(), "real", hashing.file_sha256(p),
                p.stat().st_size, 128, 128) for p in (a, b)]  # fmt: skip
    assert find_duplicates(root, rows, max_distance=d - 1, cache=False).groups == []
    found = find_duplicates(root, rows, max_distance=d, cache=False).groups
    assert len(found) == 1 and max(m.distance for m in found[0].members) == d


def test_distinct_pictures_rejected_even_at_a_wide_radius(tmp_path: Path) -> None:
    root = tmp_path / "d"
    for s in range(30, 42):
        save_jpeg(picture(s, 96), root / f"real_images/{s}.jpg")
    summary = run("--root", str(root), "--max-distance", "32")
    doc = json.loads((root / ".cleaner/duplicates.json").read_text())
    assert doc["stats"]["candidate_pairs"] > 0  # the hash alone pairs them...
    assert summary["groups"] == 0  # ...the pixel check does not


def test_bad_method_and_root_are_one_line_errors(tmp_path: Path) -> None:
    """A method outside the choices is a usage error (exit 2, Typer names the choices);
    scripts calling the library get the CleanerError naming them."""
    from cleaner.dedupe import dedupe as run_dedupe

    (tmp_path / "real_images").mkdir()
    res = runner.invoke(app, ["dedupe", "--root", str(tmp_path), "--method", "md5"])
    said = " ".join(res.output.replace("│", " ").split())
    assert res.exit_code == 2 and "'md5' is not one of" in said
    assert "'phash'" in said and "'ahash'" in said
    with pytest.raises(CleanerError, match="unknown --method 'md5'"):
        run_dedupe(tmp_path, method="md5")
    res = runner.invoke(app, ["dedupe", "--root", str(tmp_path / "missing")])
    assert res.exit_code == 1 and "does not exist" in res.output


@st.composite
def hash_sets(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    n = draw(st.integers(1, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    radius = draw(st.integers(0, 14))
    rng = np.random.default_rng(seed)
    h = rng.integers(0, np.iinfo(np.uint64).max, n, dtype=np.uint64, endpoint=True)
    k = draw(st.integers(0, n // 2))
    for i in range(k):  # planted neighbours at random distances 0..16
        bits = rng.choice(64, size=int(rng.integers(0, 17)), replace=False)
        h[n - 1 - i] = h[i] ^ np.uint64(sum(1 << int(b) for b in bits))
    return h, radius


@settings(max_examples=60, deadline=None)
@given(hash_sets())
def test_index_matches_brute_force(data: tuple[np.ndarray, int]) -> None:
    h, radius = data
    got = np.stack(radius_pairs(h, radius))
    want = np.stack(brute_force_pairs(h, radius))
    assert np.array_equal(got, want)
    q = h[::-1] ^ np.uint64(1)
    got_q = np.stack(radius_pairs(h, radius, q))
    want_q = np.stack(brute_force_pairs(h, radius, q))
    assert np.array_equal(got_q, want_q)


def test_plan_covers_the_radius() -> None:
    for n in (10, 10_000, 1_000_000):
        for r in range(0, 17):
            p = plan(n, r)
            assert sum(p.widths) == 64 and len(p.widths) * (p.sub_radius + 1) > r


def test_dedupe_never_imports_tensorflow(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = tmp_path / "t"
    save_jpeg(picture(50), root / "real_images/a.jpg")
    save_jpeg(picture(50), root / "fake_images/a.jpg", 60)
    code = (
        "import sys; from cleaner.cli import app; from typer.testing import CliRunner; "
        f"r = CliRunner().invoke(app, ['dedupe', '--root', {str(root)!r}, '--json']); "
        "assert r.exit_code == 0, r.output; assert '\"groups\": 1' in r.stdout, r.stdout; "
        "bad = [m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules]; "
        "assert not bad, bad"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_many_identical_pictures_are_one_search_entry(tmp_path: Path) -> None:
    root = tmp_path / "blank"
    (root / "real_images").mkdir(parents=True)
    for k in range(60):  # same white picture, different sizes and formats: all one group
        im = Image.new("RGB", (40 + k, 40 + k), (255, 255, 255))
        im.save(root / f"real_images/w{k}.{'png' if k % 2 else 'jpg'}")
    save_jpeg(picture(60), root / "real_images/other.jpg")
    summary = run("--root", str(root))
    doc = json.loads((root / ".cleaner/duplicates.json").read_text())
    assert summary["groups"] == 1 and len(doc["groups"][0]["members"]) == 60
    assert doc["stats"]["candidate_pairs"] == 0  # 60 identical contents searched as one
    assert doc["groups"][0]["kept"] == "real_images/w59.png"  # most pixels
