"""`cleaner audit` through the CLI: planted shortcuts found, equalized copies clean, hostile
files listed, the cache, and the property readers on generated files."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from cleaner.audit.properties import jpeg_quality, name_tokens, read_properties
from cleaner.cli import app
from tests.image_factory import (
    BAD_KINDS,
    make_all,
    make_jpeg,
    make_png,
    make_symlink_out_of_root,
)

runner = CliRunner()

SIZE_PROPS = {"width", "height", "aspect", "megapixels"}
EXPECTED = {"format": {"format"}, "size": SIZE_PROPS, "names": {"name_tokens"}, "exif": {"exif"}}


def _audit(root: Path, *args: str) -> dict[str, Any]:
    r = runner.invoke(app, ["audit", "--root", str(root), "--json", "--workers", "1", *args])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _demo(path: Path, bias: str, n: int = 80) -> Path:
    args = ["--n", str(n), "--exact", str(n // 20), "--near", str(n // 20), "--bias", bias]
    r = runner.invoke(app, ["demo", str(path), *args, "--json"])
    assert r.exit_code == 0, r.output
    return path


@pytest.mark.parametrize("bias", sorted(EXPECTED))
def test_planted_bias_is_named_and_equalizing_removes_it(tmp_path: Path, bias: str) -> None:
    root = _demo(tmp_path / "demo", bias)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    doc = _audit(root, "--equalize", str(tmp_path / "eq"))
    s = doc["shortcut"]
    assert s["shortcut"] and s["auc"] >= 0.9, s
    assert EXPECTED[bias] & set(s["named"]), s["named"]
    assert s["low"] <= s["auc"] <= s["high"]
    # ROOT untouched (audit.json and the cache are the only new files, under .cleaner/)
    for p, data in before.items():
        assert p.read_bytes() == data
    new = {p for p in root.rglob("*") if p.is_file()} - set(before)
    assert {p.name for p in new} == {"audit.json", "audit_cache.json"}
    eq = _audit(tmp_path / "eq")["shortcut"]
    assert eq["auc"] < 0.6 and not eq["shortcut"] and eq["named"] == [], eq
    rows = (tmp_path / "eq" / ".cleaner" / "equalized.csv").read_text().splitlines()
    assert len(rows) == 1 + len(before) - 1  # every file but ground_truth.json has a row


def test_plain_demo_has_no_shortcut(tmp_path: Path) -> None:
    root = _demo(tmp_path / "demo", "none")
    doc = _audit(root)
    s = doc["shortcut"]
    assert not s["shortcut"] and s["named"] == [] and s["auc"] < 0.7, s
    assert s["low"] <= s["auc"] <= s["high"] and s["high"] - s["low"] > 0
    assert json.loads((root / ".cleaner" / "audit.json").read_text())["shortcut"] == s
    names = {p["name"] for p in doc["properties"]}
    assert {"format", "jpeg_quality", "exif", "name_tokens", "bytes_per_pixel"} <= names
    # the five planted broken files are listed with their reasons
    assert {h["status"] for h in doc["hostile"]} == {"truncated", "empty", "not-an-image"}
    assert all(h["reason"] for h in doc["hostile"])


def test_hostile_files_never_stop_the_audit(tmp_path: Path) -> None:
    root = tmp_path / "R"
    made = make_all(root / "real_images")
    for i in range(6):
        make_jpeg(root / "real_images" / f"ok_{i}.jpg", seed=i)
        make_png(root / "fake_images" / f"ok_{i}.png", seed=10 + i)
    (root / "fake_images" / "a_folder.jpg").mkdir()
    outside = make_png(tmp_path / "outside.png")
    make_symlink_out_of_root(root / "fake_images" / "link.png", outside)
    doc = _audit(root)
    listed = {h["path"].rsplit("/", 1)[-1]: h for h in doc["hostile"]}
    for kind in ("bomb", "truncated_jpeg", "truncated_png", "random_bytes", "zero_bytes",
                 "text_named_jpg", "garbage_png_header"):  # fmt: skip
        name = made[kind].name
        assert listed[name]["status"] == BAD_KINDS[kind].expect_status, listed.get(name)
        assert listed[name]["reason"]
    assert listed["link.png"]["status"] == "outside-root"
    assert doc["files"] == len(made) + 13
    assert doc["shortcut"]["files"] == doc["audited"] > 12


def test_cache_reads_only_changed_files(tmp_path: Path) -> None:
    root = tmp_path / "R"
    for i in range(5):
        make_jpeg(root / "real_images" / f"r{i}.jpg", seed=i)
        make_png(root / "fake_images" / f"f{i}.png", seed=20 + i)
    assert _audit(root)["read"] == 10
    assert _audit(root)["read"] == 0
    make_jpeg(root / "real_images" / "r0.jpg", seed=99, quality=50)
    os.utime(root / "real_images" / "r0.jpg", ns=(1, 1))
    doc = _audit(root)
    assert doc["read"] == 1 and doc["cached"] == 9
    shutil.move(root / "fake_images" / "f1.png", root / "fake_images" / "moved.png")
    assert _audit(root)["read"] == 1  # a moved file is read again (its bytes come from cache)


def test_missing_root_is_one_line_exit_1(tmp_path: Path) -> None:
    r = runner.invoke(app, ["audit", "--root", str(tmp_path / "nope")])
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1 and "does not exist" in r.stderr


def test_equalize_refuses_a_folder_inside_root_or_not_empty(tmp_path: Path) -> None:
    root = _demo(tmp_path / "demo", "none", n=20)
    r = runner.invoke(app, ["audit", "--root", str(root), "--equalize", str(root / "eq")])
    assert r.exit_code == 1 and "inside ROOT" in r.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    r = runner.invoke(app, ["audit", "--root", str(root), "--equalize", str(tmp_path / "full")])
    assert r.exit_code == 1 and "not an empty folder" in r.stderr


@settings(max_examples=30, deadline=None)
@given(q=st.integers(min_value=1, max_value=100), sub=st.sampled_from([0, 1, 2]))
def test_jpeg_quality_is_read_back_from_the_tables(q: int, sub: int) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), (90, 140, 30)).save(buf, "JPEG", quality=q, subsampling=sub)
    p = read_properties(buf.getvalue())
    assert p["jpeg_quality"] == q
    assert p["subsampling"] == ("4:4:4", "4:2:2", "4:2:0")[sub]
    im = Image.open(io.BytesIO(buf.getvalue()))
    assert jpeg_quality(im.quantization[0]) == q  # type: ignore[attr-defined]


def test_png_metadata_properties() -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", "hello")
    ex = Image.Exif()
    ex[0x010F], ex[0x0110], ex[0x0131] = "Nikon", "D750", "Darktable"
    buf = io.BytesIO()
    Image.new("RGBA", (10, 7)).save(buf, "PNG", pnginfo=info, exif=ex, icc_profile=b"x" * 64)
    p = read_properties(buf.getvalue())
    assert (p["format"], p["width"], p["height"]) == ("PNG", 10, 7)
    assert p["alpha"] and p["icc"]
    assert p["exif"] and p["camera"] == "Nikon D750" and p["software"] == "Darktable"
    assert p["png_text"] == ["Comment"] and p["generator"] == ""


@pytest.mark.parametrize(
    ("path", "tokens"),
    [
        ("real_images/IMG_0042.jpg", ["img"]),
        ("fake_images/ComfyUI_00001_.png", ["comfyui"]),
        ("fake/00AUP94LQS.jpg", []),
        ("x/3fa9c0de" + "0" * 56 + ".jpg", []),
        ("x/ai-generated photo (2).webp", ["generated", "photo"]),
    ],
)
def test_name_tokens(path: str, tokens: list[str]) -> None:
    assert name_tokens(path) == tokens


FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces140k"


@pytest.mark.skipif(not (FACES / "real").is_dir(), reason="faces140k is not on this machine")
def test_faces140k_sample_has_no_shortcut(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    for src, dst in (("real", "real_images"), ("fake", "fake_images")):
        (root / dst).mkdir(parents=True)
        for p in sorted((FACES / src).iterdir())[:150]:
            shutil.copy(p, root / dst / p.name)
    s = _audit(root)["shortcut"]
    assert not s["shortcut"] and s["named"] == [] and s["auc"] < 0.7, s


def test_audit_never_imports_tensorflow(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = tmp_path / "R"
    for i in range(3):
        make_jpeg(root / "real_images" / f"r{i}.jpg", seed=i)
        make_png(root / "fake_images" / f"f{i}.png", seed=9 + i)
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom cleaner.cli import app\n"
        f"r = CliRunner().invoke(app, ['audit', '--root', {str(root)!r}, '--workers', '1'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
