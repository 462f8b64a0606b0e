"""`cleaner scan` and cleaner.manifest: rows field by field, every bad-input kind, incremental
rescans, exit codes."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cleaner import manifest
from cleaner.cli import app
from cleaner.errors import CleanerError
from tests import image_factory as F

runner = CliRunner()
FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces140k"


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def messy(tmp_path: Path) -> tuple[Path, dict[str, F.Kind | str]]:
    """ROOT with class folders under aliases, every bad kind, symlinks out and a loop."""
    root = tmp_path / "root"
    expect: dict[str, F.Kind | str] = {}
    for i in range(3):
        F.make_jpeg(root / "REAL" / f"r{i}.jpg", seed=i)
        F.make_png(root / "ai" / "sub" / f"f{i}.png", seed=10 + i)
        expect[f"REAL/r{i}.jpg"] = "ok"
        expect[f"ai/sub/f{i}.png"] = "ok"
    for kind, spec in F.BAD_KINDS.items():
        spec.make(root / "ai" / "bad" / spec.name)
        expect[f"ai/bad/{spec.name}"] = spec
        del kind
    outside = F.make_jpeg(tmp_path / "outside" / "secret.jpg")
    F.make_symlink_out_of_root(root / "REAL" / "escape.jpg", outside)
    expect["REAL/escape.jpg"] = manifest.OUTSIDE_ROOT
    F.make_symlink_loop(root / "REAL" / "loop")
    expect["REAL/loop/loop_a.jpg"] = "unreadable"
    expect["REAL/loop/loop_b.jpg"] = "unreadable"
    os.symlink("nowhere.jpg", root / "REAL" / "dangling.jpg")
    expect["REAL/dangling.jpg"] = "unreadable"
    os.mkfifo(root / "REAL" / "pipe.jpg")
    expect["REAL/pipe.jpg"] = manifest.NOT_A_FILE
    F.make_jpeg(root / "quarantine" / "duplicates" / "REAL" / "q.jpg")
    F.make_jpeg(root / ".cleaner" / "x.jpg")
    return root, expect


def _status(v: F.Kind | str) -> str:
    return v.expect_status if isinstance(v, F.Kind) else v


def test_every_bad_kind_gets_its_row(messy: tuple[Path, dict[str, F.Kind | str]]) -> None:
    root, expect = messy
    res = runner.invoke(app, ["scan", "--root", str(root), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    rows = {r.path: r for r in manifest.read_manifest(root)}
    assert set(rows) == set(expect)
    for path, want in expect.items():
        r = rows[path]
        assert r.status == _status(want), (path, r)
        assert r.label == ("real" if path.startswith("REAL/") else "fake")
        if r.status == "ok":
            assert r.sha256 == _sha(root / path)
            assert r.bytes == (root / path).stat().st_size
            assert r.width > 0 and r.height > 0 and r.format
            if isinstance(want, F.Kind):
                assert r.format == want.expect_format
                if want.expect_size:
                    assert (r.width, r.height) == want.expect_size
        else:
            assert r.reason, f"{path} has status {r.status} but no reason"
    # non-ok files that could be read still carry their sha256 and size (dedupe, journal)
    assert rows["ai/bad/truncated.jpg"].sha256 == _sha(root / "ai/bad/truncated.jpg")
    assert rows["ai/bad/zero.jpg"].bytes == 0
    assert rows["REAL/escape.jpg"].sha256 == ""  # never read
    assert "outside ROOT" in rows["REAL/escape.jpg"].reason


def test_scan_prints_nothing_on_stderr(messy: tuple[Path, dict[str, F.Kind | str]]) -> None:
    """A real process with the pool: no warning, no traceback from Pillow or the workers."""
    root, expect = messy
    proc = subprocess.run(
        [sys.executable, "-m", "cleaner", "scan", "--root", str(root), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "ok" in proc.stdout and "too-large" in proc.stdout
    assert len(manifest.read_manifest(root)) == len(expect)


def test_manifest_columns_and_round_trip(tmp_path: Path) -> None:
    F.make_jpeg(tmp_path / "real_images" / "a.jpg")
    F.make_text_file(tmp_path / "fake_images" / "b.jpg")
    result = manifest.scan(tmp_path, workers=1)
    with open(result.manifest_path, newline="") as f:
        header = next(csv.reader(f))
    contract = ["path", "label", "sha256", "bytes", "width", "height", "format", "status"]
    assert header[: len(contract)] == contract
    assert "reason" in header and "mtime_ns" in header
    assert manifest.read_manifest(tmp_path) == result.rows
    assert [r.path for r in manifest.ok_rows(tmp_path)] == ["real_images/a.jpg"]
    assert [p.name for p in result.manifest_path.parent.iterdir()] == ["manifest.csv"]


def test_pool_and_inline_give_the_same_rows(tmp_path: Path) -> None:
    for i in range(40):
        F.make_jpeg(tmp_path / ("real_images" if i % 2 else "fake_images") / f"{i}.jpg", seed=i)
    a = manifest.scan(tmp_path, workers=2, batch_size=4).rows
    (tmp_path / ".cleaner" / "manifest.csv").unlink()
    b = manifest.scan(tmp_path, workers=1).rows
    assert a == b and len(a) == 40


def test_rescan_reads_only_changed_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(6):
        F.make_jpeg(tmp_path / "real" / f"{i}.jpg", seed=i)
    F.make_jpeg(tmp_path / "fake" / "x.jpg", seed=99)
    reads: list[str] = []
    original = manifest.check_file

    def counting(abspath: str, relpath: str) -> tuple[object, ...]:
        reads.append(relpath)
        return original(abspath, relpath)

    monkeypatch.setattr(manifest, "check_file", counting)
    first = manifest.scan(tmp_path, workers=1)
    assert first.read == 7 and first.reused == 0 and len(reads) == 7

    reads.clear()
    second = manifest.scan(tmp_path, workers=1)
    assert reads == [] and second.read == 0 and second.reused == 7
    assert second.rows == first.rows

    # change one file's bytes (new size and mtime), add one, remove one
    F.make_jpeg(tmp_path / "real" / "2.jpg", seed=50, quality=60)
    F.make_png(tmp_path / "fake" / "new.png")
    (tmp_path / "real" / "5.jpg").unlink()
    reads.clear()
    third = manifest.scan(tmp_path, workers=1)
    assert sorted(reads) == ["fake/new.png", "real/2.jpg"]
    paths = [r.path for r in third.rows]
    assert "real/5.jpg" not in paths and "fake/new.png" in paths
    row2 = next(r for r in third.rows if r.path == "real/2.jpg")
    assert row2.sha256 == _sha(tmp_path / "real" / "2.jpg")

    # same size, new mtime: read again
    st = (tmp_path / "real" / "0.jpg").stat()
    os.utime(tmp_path / "real" / "0.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    reads.clear()
    manifest.scan(tmp_path, workers=1)
    assert reads == ["real/0.jpg"]

    # a file moved to the other class folder is a new path: read again, new label
    shutil.move(tmp_path / "real" / "1.jpg", tmp_path / "fake" / "1.jpg")
    reads.clear()
    rows = {r.path: r for r in manifest.scan(tmp_path, workers=1).rows}
    assert reads == ["fake/1.jpg"] and rows["fake/1.jpg"].label == "fake"


def test_a_broken_manifest_means_a_full_rescan(tmp_path: Path) -> None:
    F.make_jpeg(tmp_path / "real_images" / "a.jpg")
    manifest.scan(tmp_path, workers=1)
    (tmp_path / ".cleaner" / "manifest.csv").write_text("garbage\n1,2,3\n")
    with pytest.raises(CleanerError, match="cleaner scan"):
        manifest.read_manifest(tmp_path)
    again = manifest.scan(tmp_path, workers=1)
    assert again.read == 1 and again.rows[0].status == "ok"


def test_read_manifest_without_scan_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "real_images").mkdir()
    with pytest.raises(CleanerError, match="run `cleaner scan"):
        manifest.read_manifest(tmp_path)
    with pytest.raises(CleanerError):
        manifest.ok_rows(tmp_path, rescan=False)
    assert manifest.ok_rows(tmp_path) == []


def test_exit_codes(tmp_path: Path) -> None:
    res = runner.invoke(app, ["scan", "--root", str(tmp_path / "missing")])
    assert res.exit_code == 1
    assert "does not exist" in res.output and "Traceback" not in res.output
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["scan", "--root", str(tmp_path / "empty")])
    assert res.exit_code == 1 and "no class folder" in res.output
    res = runner.invoke(app, ["scan", "--root", str(tmp_path), "--workers", "0"])
    assert res.exit_code == 2  # usage error (Typer's own)


def test_missing_root_is_one_line_on_stderr(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cleaner", "scan", "--root", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "nope" in lines[0]
    assert proc.stdout == ""


def test_json_summary(tmp_path: Path) -> None:
    F.make_jpeg(tmp_path / "real" / "a.jpg")
    F.make_zero_bytes(tmp_path / "FAKE" / "b.jpg")
    res = runner.invoke(app, ["scan", "--root", str(tmp_path), "--json"])
    assert res.exit_code == 0
    out = json.loads(res.stdout)
    assert out["files"] == 2 and out["ok"] == 1
    assert out["counts"] == {"real": {"ok": 1}, "fake": {"ok": 0, "empty": 1}}
    assert out["class_dirs"] == {"real": ["real"], "fake": ["FAKE"]}
    res = runner.invoke(app, ["scan", "--root", str(tmp_path), "--json"])
    assert json.loads(res.stdout)["reused"] == 2


@pytest.mark.faces
def test_faces140k_subset_all_ok(tmp_path: Path) -> None:
    """A copy of 25 + 25 faces under aliases (symlinks out of ROOT are deliberately not
    followed, so the files are copied): every row ok, sha256 and labels right."""
    if not (FACES / "real").is_dir() or not (FACES / "fake").is_dir():
        pytest.skip("../shared/data/faces140k is absent")
    src: dict[str, Path] = {}
    for cls, alias in (("real", "training_real"), ("fake", "ai")):
        for p in sorted((FACES / cls).iterdir())[:25]:
            dst = tmp_path / alias / p.name
            dst.parent.mkdir(exist_ok=True)
            shutil.copyfile(p, dst)
            src[f"{alias}/{p.name}"] = p
    rows = manifest.scan(tmp_path, workers=2).rows
    assert len(rows) == 50
    for r in rows:
        assert r.status == "ok", r
        assert r.sha256 == _sha(src[r.path])
        assert r.bytes == src[r.path].stat().st_size
        assert r.label == ("real" if r.path.startswith("training_real/") else "fake")
        assert r.format == "JPEG" and r.width > 0 and r.height > 0


def test_quarantine_is_a_dry_run_then_journaled_and_undoable(tmp_path: Path) -> None:
    F.make_jpeg(tmp_path / "real_images" / "good.jpg")
    F.make_truncated_jpeg(tmp_path / "real_images" / "sub" / "cut.jpg")
    F.make_zero_bytes(tmp_path / "fake_images" / "zero.png")
    F.make_heif_stub(tmp_path / "fake_images" / "photo.heic")  # unsupported: stays
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    res = runner.invoke(app, ["scan", "--root", str(tmp_path), "--quarantine", "--json"])
    assert res.exit_code == 0, res.output
    q = json.loads(res.stdout)["quarantine"]
    assert not q["applied"]
    assert {(m["src"], m["dst"]) for m in q["moves"]} == {
        ("real_images/sub/cut.jpg", "quarantine/unreadable/real_images/sub/cut.jpg"),
        ("fake_images/zero.png", "quarantine/unreadable/fake_images/zero.png"),
    }
    assert (tmp_path / "real_images" / "sub" / "cut.jpg").exists()  # dry run moved nothing

    res = runner.invoke(app, ["scan", "--root", str(tmp_path), "--apply"])
    assert res.exit_code == 1 and "--quarantine" in res.output

    res = runner.invoke(app, ["scan", "--root", str(tmp_path), "--quarantine", "--apply", "--json"])
    assert res.exit_code == 0, res.output
    q = json.loads(res.stdout)["quarantine"]
    assert q["applied"] and len(q["moved"]) == 2 and q["skipped"] == []
    moved = tmp_path / "quarantine" / "unreadable" / "real_images" / "sub" / "cut.jpg"
    assert moved.read_bytes() == before[tmp_path / "real_images" / "sub" / "cut.jpg"]
    assert {r.path for r in manifest.read_manifest(tmp_path)} == {
        "real_images/good.jpg",
        "fake_images/photo.heic",
    }

    res = runner.invoke(app, ["undo", "--root", str(tmp_path), "--run", q["run_id"]])
    assert res.exit_code == 0, res.output
    after = {
        p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and ".cleaner" not in p.parts
    }
    assert after == before


def _square_or_die(batch: Sequence[int]) -> list[int]:
    """A batch function whose worker process dies on item 13 (like a decoder segfault)."""
    if 13 in batch:
        os._exit(9)
    return [x * x for x in batch]


def test_engine_survives_a_worker_that_dies() -> None:
    from concurrent.futures.process import BrokenProcessPool

    from cleaner.engine import map_batches

    out = [
        y
        for b in map_batches(
            _square_or_die, list(range(40)), batch_size=4, workers=2, on_crash=lambda x, e: -x
        )
        for y in b
    ]
    assert out == [-x if x == 13 else x * x for x in range(40)]
    with pytest.raises(BrokenProcessPool):
        list(map_batches(_square_or_die, list(range(40)), batch_size=4, workers=2))


_KILLS_ON_BOOM = """
import json, os, sys
from cleaner import manifest
original = manifest.check_file

def dies_on_boom(abspath, relpath):
    if relpath.endswith("boom.jpg"):
        os._exit(11)  # as a segfault in a C decoder would
    return original(abspath, relpath)

manifest.check_file = dies_on_boom  # inherited by the forked workers
rows = manifest.scan(sys.argv[1], workers=2, batch_size=2).rows
print(json.dumps([[r.path, r.status, r.reason, r.sha256] for r in rows]))
"""


def test_scan_reports_a_file_that_kills_the_decoder(tmp_path: Path) -> None:
    # In a fresh interpreter: after other tests have loaded TensorFlow the engine uses
    # forkserver, whose workers would not inherit the patched decoder.
    for i in range(12):
        F.make_jpeg(tmp_path / "real_images" / f"{i:02d}.jpg", seed=i)
    boom = F.make_jpeg(tmp_path / "real_images" / "boom.jpg", seed=99)
    proc = subprocess.run(
        [sys.executable, "-c", _KILLS_ON_BOOM, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stderr
    rows = {p: (status, reason, sha) for p, status, reason, sha in json.loads(proc.stdout)}
    assert len(rows) == 13
    status, reason, sha = rows["real_images/boom.jpg"]
    assert status == "corrupt" and "crashed" in reason
    assert sha == _sha(boom)
    assert all(r[0] == "ok" for p, r in rows.items() if p != "real_images/boom.jpg")


def test_scan_says_which_class_link_it_did_not_follow(tmp_path: Path) -> None:
    F.make_jpeg(tmp_path / "elsewhere" / "a.jpg")
    root = tmp_path / "root"
    F.make_jpeg(root / "fake" / "b.jpg")
    os.symlink(tmp_path / "elsewhere", root / "real")
    res = runner.invoke(app, ["scan", "--root", str(root)])
    assert res.exit_code == 0
    assert "real/ is a symlink out of ROOT" in res.output
    res = runner.invoke(app, ["scan", "--root", str(root), "--json"])
    assert json.loads(res.stdout)["outside_links"] == ["real"]
