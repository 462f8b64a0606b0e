"""Hostile names, trees, files and requests (issue #18): every promise holds through the CLI.

Each case checks what a user sees and what is on disk: the exit code, one ``error:`` line on
stderr and no traceback for refused input, the multiset of file contents under ROOT unchanged
(or, after undo, the exact tree), nothing written outside ROOT, no dangling link left.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from cleaner import journal, predictions
from cleaner.cli import app
from cleaner.hashing import file_sha256
from cleaner.journal import Move, apply_moves
from cleaner.web import create_app
from tests.hostile_helpers import cli, one_line_error, put, tree
from tests.relabel_helpers import png_bytes, snapshot

runner = CliRunner()
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def dangling_links(root: Path) -> list[str]:
    out = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            if os.path.islink(p) and not os.path.exists(p):
                out.append(p)
    return out


def write_json(path: Path, doc: object) -> str:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------ 1: names repeated in classes


def swap_tree(root: Path, n: int) -> dict[str, str]:
    """``real_images/nNNN.png`` and ``fake_images/nNNN.png`` (different content, same names) and
    the mapping that swaps every one of them."""
    swap = {}
    for i in range(n):
        put(root, f"real_images/n{i:03d}.png", png_bytes(i))
        put(root, f"fake_images/n{i:03d}.png", png_bytes(10_000 + i))
        swap[f"real_images/n{i:03d}.png"] = "fake"
        swap[f"fake_images/n{i:03d}.png"] = "real"
    return swap


@pytest.mark.parametrize(("n", "batch"), [(280, None), (9, "1"), (9, "4"), (9, "17")])
def test_undo_restores_a_swap_of_repeated_names_at_any_batch_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int, batch: str | None
) -> None:
    if batch:
        monkeypatch.setenv("CLEANER_TEST_BATCH_SIZE", batch)
    root = tmp_path / "R"
    preds = write_json(tmp_path / "swap.json", swap_tree(root, n))
    before = snapshot(root)
    code, out, err = cli(
        "separate", "--root", str(root), "-p", preds, "--max-fraction", "1", "--apply", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["moved"] == 2 * n
    assert sorted(snapshot(root).values()) == sorted(before.values()) and snapshot(root) != before
    code, out, err = cli("undo", "--root", str(root), "--json")
    assert code == 0, err
    assert json.loads(out)["restored"] == 2 * n and json.loads(out)["left"] == []
    assert snapshot(root) == before
    code, _, err = cli("undo", "--root", str(root))
    one_line_error(code, err, "undone already")


# the journal's property test (tests/test_journal.py) draws names repeated across the classes
# and batch sizes from 1 to 600 for apply and undo apart


# ------------------------------------------------------------------ 2: names that are not UTF-8

RAW_NAMES = (
    st.binary(min_size=1, max_size=24)
    .filter(lambda b: b"/" not in b and b"\x00" not in b and b not in (b".", b".."))
    .map(lambda b: b + b".png")
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=RAW_NAMES)
@example(name=b"bad\xff\xfe.jpg")
@example(name=b"\\.png")  # a backslash is a character of a POSIX name, not a separator
def test_any_byte_name_scans_moves_and_undoes_like_any_other(name: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "R"
        put(root, b"real_images/" + name, png_bytes(1))
        put(root, b"fake_images/keep.png", png_bytes(2))
        before = snapshot(root)
        code, out, err = cli("scan", "--root", str(root), "--json")
        assert code == 0, err
        assert json.loads(out)["counts"]["real"]["ok"] == 1
        rel = "real_images/" + os.fsdecode(name)
        preds = Path(d) / "p.json"
        preds.write_text(json.dumps({rel: "fake"}), encoding="ascii")  # \udcXX escapes
        code, out, err = cli(
            "separate", "--root", str(root), "-p", str(preds), "--max-fraction", "1", "--apply",
            "--json",
        )  # fmt: skip
        assert code == 0, err
        assert json.loads(out)["moved"] == 1
        assert os.path.lexists(os.fsencode(root / "fake_images") + b"/" + name)
        code, _, err = cli("undo", "--root", str(root))
        assert code == 0, err
        assert snapshot(root) == before


def test_a_backslash_name_never_stands_for_another_file(tmp_path: Path) -> None:
    """``real_images/a\\b.png`` (one name) and ``real_images/a/b.png`` (a folder and a name):
    relabeling the first must move it, never the second."""
    root = tmp_path / "R"
    put(root, "real_images/a\\b.png", png_bytes(1))
    put(root, "real_images/a/b.png", png_bytes(2))
    put(root, "fake_images/c.png", png_bytes(3))
    before = snapshot(root)
    preds = write_json(tmp_path / "p.json", {"real_images/a\\b.png": "fake"})
    code, out, err = cli(
        "separate", "--root", str(root), "-p", preds, "--max-fraction", "1", "--apply", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["moved"] == 1
    assert (root / "fake_images/a\\b.png").read_bytes() == png_bytes(1)
    assert (root / "real_images/a/b.png").read_bytes() == png_bytes(2)
    assert cli("undo", "--root", str(root))[0] == 0
    assert snapshot(root) == before


def test_a_byte_name_goes_through_dedupe_and_back(tmp_path: Path) -> None:
    root = tmp_path / "R"
    put(root, b"real_images/bad\xff\xfe.png", png_bytes(7))
    put(root, "real_images/twin.png", png_bytes(7))
    put(root, "fake_images/f.png", png_bytes(8))
    before = snapshot(root)
    code, _, err = cli(
        "dedupe", "--root", str(root), "--apply", "--max-fraction", "1", "--json"
    )  # a two-file class: one copy is half of it
    assert code == 0, err
    assert sorted(snapshot(root).values()) == sorted(before.values())  # nothing lost
    assert len(list((root / "quarantine").rglob("*"))) > 0
    code, _, err = cli("report", "--root", str(root), "--out", str(tmp_path / "r.html"), "--json")
    assert code == 0, err
    code, _, err = cli("undo", "--root", str(root))
    assert code == 0, err
    assert snapshot(root) == before


# ------------------------------------------------------------------ 3: aliased folders and files


@pytest.mark.parametrize("target", ["real_images", "real_images/sub/..", "."])
def test_a_class_folder_aliasing_the_other_is_refused(tmp_path: Path, target: str) -> None:
    root = tree(tmp_path / "R", "real_images/a.png", "real_images/sub/b.png")
    (root / "fake_images").symlink_to(target)
    before = snapshot(root)
    for cmd in ("scan", "dedupe"):
        code, _, err = cli(cmd, "--root", str(root), "--apply" if cmd == "dedupe" else "--json")
        one_line_error(code, err, "fake_images", "both real and fake")
    assert snapshot(root) == before


@pytest.mark.parametrize("link", ["a.png", "../real_images/a.png", "ABS"])
def test_a_symlinked_image_is_one_file_and_never_dangles(tmp_path: Path, link: str) -> None:
    root = tree(tmp_path / "R", "real_images/a.png", "real_images/b.png", "fake_images/c.png")
    alias = root / ("fake_images/alias.png" if link.startswith("..") else "real_images/alias.png")
    alias.symlink_to(root / "real_images/a.png" if link == "ABS" else link)
    before = snapshot(root)
    code, out, err = cli("scan", "--root", str(root), "--json")
    assert code == 0, err
    counts = json.loads(out)["counts"]
    assert sum(c.get("ok", 0) for c in counts.values()) == 3  # the link is not a 4th image
    assert sum(c.get("symlink", 0) for c in counts.values()) == 1
    code, out, err = cli("dedupe", "--root", str(root), "--apply", "--json")
    assert code == 0, err
    assert snapshot(root) == before  # one file under two names is no duplicate
    # relabeling the target or the link moves neither: the link would dangle
    preds = write_json(
        tmp_path / "p.json",
        {"real_images/a.png": "fake", alias.relative_to(root).as_posix(): "fake"},
    )
    code, out, err = cli(
        "separate", "--root", str(root), "-p", preds, "--max-fraction", "1", "--apply", "--json"
    )
    assert code == 0, err
    assert snapshot(root) == before and not dangling_links(root)


# ------------------------------------------------------------------ 4: state outside ROOT


@pytest.mark.parametrize("which", [".cleaner", ".cleaner/plans", ".cleaner/journal"])
def test_state_through_a_symlink_is_refused_and_nothing_is_written_outside(
    tmp_path: Path, which: str
) -> None:
    root = tmp_path / "R"
    put(root, "real_images/a.png", png_bytes(1))
    put(root, "fake_images/b.png", png_bytes(2))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "lock").write_text("precious")
    if which != ".cleaner":
        assert cli("scan", "--root", str(root))[0] == 0
    (root / which).symlink_to(outside)
    before = snapshot(root)
    preds = write_json(tmp_path / "p.json", {"real_images/a.png": "fake"})
    code, _, err = cli(
        "separate", "--root", str(root), "-p", preds, "--max-fraction", "1", "--apply"
    )
    one_line_error(code, err, "symlink")
    if which == ".cleaner":
        code, _, err = cli("scan", "--root", str(root))
        one_line_error(code, err, "symlink")
    assert sorted(os.listdir(outside)) == ["lock"] and (outside / "lock").read_text() == "precious"
    assert snapshot(root) == before


def test_a_symlinked_journal_file_is_never_written_through(small: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text('{"op":"begin","run":"x","seq":1,"kind":"apply"}\n')
    (small / ".cleaner/journal").mkdir(parents=True)
    (small / ".cleaner/journal/x.jsonl").symlink_to(outside)
    before = snapshot(small)
    preds = write_json(tmp_path / "p.json", {"real_images/a.png": "fake"})
    code, _, err = cli(
        "separate", "--root", str(small), "-p", preds, "--max-fraction", "1", "--apply"
    )
    assert code == 0, err
    assert outside.read_text() == '{"op":"begin","run":"x","seq":1,"kind":"apply"}\n'
    assert cli("undo", "--root", str(small))[0] == 0
    assert snapshot(small) == before


def test_state_folder_that_is_a_file_or_holds_a_folder_for_a_file(tmp_path: Path) -> None:
    root = tmp_path / "R"
    put(root, "real_images/a.png", png_bytes(1))
    (root / ".cleaner").write_text("not a folder")
    code, _, err = cli("scan", "--root", str(root))
    one_line_error(code, err, ".cleaner is a file")
    (root / ".cleaner").unlink()
    (root / ".cleaner/manifest.csv").mkdir(parents=True)  # a folder where a file goes
    code, _, err = cli("scan", "--root", str(root))
    one_line_error(code, err, "manifest.csv")


@pytest.mark.skipif(IS_ROOT, reason="root writes to read-only folders")
def test_read_only_state_folder_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "R"
    put(root, "real_images/a.png", png_bytes(1))
    (root / ".cleaner").mkdir()
    (root / ".cleaner").chmod(0o500)
    try:
        code, _, err = cli("scan", "--root", str(root))
        one_line_error(code, err)
    finally:
        (root / ".cleaner").chmod(0o700)


# ------------------------------------------------------------------ 5 and 7: bad predictions


@pytest.fixture
def small(tmp_path: Path) -> Path:
    return tree(tmp_path / "R", "real_images/a.png", "real_images/b.png", "fake_images/c.png")


def _sha(root: Path, rel: str) -> str:
    return file_sha256(root / rel)


BAD_PREDICTIONS: dict[str, tuple[str, str]] = {
    "duplicate key": ('{"real_images/a.png": "fake", "real_images/a.png": "real"}', "twice"),
    "duplicate key in an entry": (
        '[{"path": "real_images/a.png", "prediction": "fake", "prediction": "real"}]',
        "twice",
    ),
    "5000 digits": ('{"real_images/a.png": ' + "7" * 5000 + "}", "digits"),
    "400 digits": ('{"real_images/a.png": ' + "7" * 400 + "}", "digits"),
    "huge float": ('{"real_images/a.png": 1e999}', "outside [0, 1]"),
    "deep": ("[" * 100_000 + "]" * 100_000, "deeper"),
    "deep object": ('{"a": ' * 50_000 + "1" + "}" * 50_000, "deeper"),
    "lone surrogate": ('{"real_images/\\ud800.png": "fake"}', "surrogate"),
    "full path and bare name": ('{"real_images/a.png": "fake", "a.png": "real"}', "both name"),
}


@pytest.mark.parametrize("case", sorted(BAD_PREDICTIONS))
def test_bad_predictions_are_refused_whole_with_one_line(
    small: Path, tmp_path: Path, case: str
) -> None:
    text, word = BAD_PREDICTIONS[case]
    p = tmp_path / "bad.json"
    p.write_text(text, encoding="utf-8")
    before = snapshot(small)
    code, _, err = cli("separate", "--root", str(small), "-p", str(p), "--apply")
    one_line_error(code, err, word)
    assert snapshot(small) == before


def test_one_sha256_under_two_paths_with_two_values_is_refused(small: Path, tmp_path: Path) -> None:
    sha = _sha(small, "real_images/a.png")
    doc = {
        "format": predictions.FORMAT_V1,
        "predictions": [
            {"path": "real_images/a.png", "sha256": sha, "prob_fake": 0.99},
            {"path": "real_images/old-name.png", "sha256": sha, "prob_fake": 0.01},
        ],
    }
    before = snapshot(small)
    code, _, err = cli(
        "separate", "--root", str(small), "-p", write_json(tmp_path / "p.json", doc), "--apply"
    )
    one_line_error(code, err, "appears twice with different values")
    assert snapshot(small) == before


def test_a_device_or_a_huge_predictions_file_is_capped(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(predictions, "MAX_BYTES", 4096)
    big = tmp_path / "big.json"
    big.write_text(json.dumps({f"real_images/{i}.png": "fake" for i in range(1000)}))
    code, _, err = cli("separate", "--root", str(small), "-p", str(big))
    one_line_error(code, err, "larger than")
    if os.path.exists("/dev/zero"):  # a device is no file at all (issue #26)
        code, _, err = cli("separate", "--root", str(small), "-p", "/dev/zero")
        one_line_error(code, err, "not a regular file")


def test_unknown_crop_is_a_usage_error(small: Path) -> None:
    r = runner.invoke(app, ["predict", "--root", str(small), "--crop", "foo"])
    assert r.exit_code == 2  # Typer's usage error, as for any unknown choice
    assert "Traceback" not in r.stderr and "foo" in r.stderr


# ------------------------------------------------------------------ 6: a file changed mid-run


def test_the_journal_keeps_the_hash_of_the_content_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file appended to after its batch was planned, before its own move: the journal holds
    the moved content's sha256, so undo restores it (not 'changed since the run')."""
    put(tmp_path, "real_images/a.png", b"a")
    put(tmp_path, "real_images/b.png", b"b")
    real_move = journal._Mover.move

    def move_and_touch(self: journal._Mover, src: Path, dst: Path) -> None:
        if src.name == "a.png":
            with open(tmp_path / "real_images/b.png", "ab") as f:
                f.write(b" appended during the run")
        real_move(self, src, dst)

    monkeypatch.setattr(journal._Mover, "move", move_and_touch)
    run = apply_moves(
        tmp_path,
        [Move(f"real_images/{n}.png", f"fake_images/{n}.png") for n in "ab"],
        command="t",
        progress=False,
    )
    monkeypatch.setattr(journal._Mover, "move", real_move)
    moved_b = next(r for r in run.moved if r.src.endswith("b.png"))
    assert moved_b.sha256 == file_sha256(tmp_path / "fake_images/b.png")
    code, out, err = cli("undo", "--root", str(tmp_path), "--json")
    assert code == 0, err
    assert json.loads(out)["left"] == [] and json.loads(out)["restored"] == 2
    assert (tmp_path / "real_images/b.png").read_bytes() == b"b appended during the run"


# ------------------------------------------------------------------ 7: damaged journals


DAMAGE = [
    b'{"op":"intent"}\n',
    b'{"op":"done","i":"x"}\n',
    b'{"op":"intent","i":3,"src":"../../etc/passwd","dst":"a"}\n',
    b'{"op":"done","i":1e400}\n',
    b"[1, 2, 3]\n",
    b"\xff\xfe not json\n",
    b"[" * 50_000 + b"\n",
]


@pytest.mark.parametrize("damage", DAMAGE, ids=range(len(DAMAGE)))
def test_damaged_journal_lines_never_block_apply_or_undo(small: Path, damage: bytes) -> None:
    before = snapshot(small)
    run = apply_moves(
        small, [Move("real_images/a.png", "fake_images/a.png")], command="t", progress=False
    )
    jfile = small / ".cleaner/journal" / f"{run.run_id}.jsonl"
    with open(jfile, "ab") as f:
        f.write(damage)
    code, out, err = cli("scan", "--root", str(small), "--quarantine", "--apply", "--json")
    assert code == 0, err
    code, out, err = cli("undo", "--root", str(small), "--run", run.run_id, "--json")
    assert code == 0, err
    assert json.loads(out)["restored"] == 1
    assert snapshot(small) == before


def test_undo_after_the_state_folder_is_deleted_says_the_journal_is_missing(small: Path) -> None:
    apply_moves(small, [Move("real_images/a.png", "fake_images/a.png")], command="t")
    shutil.rmtree(small / ".cleaner")
    code, _, err = cli("undo", "--root", str(small))
    one_line_error(code, err, "journal", "missing")


# ------------------------------------------------------------------ 8: scan blind spots


@pytest.fixture
def unix_socket(small: Path) -> Iterator[Path]:
    path = small / "real_images/s.sock"
    if len(os.fsencode(path)) > 100:
        pytest.skip("socket path too long for this system")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    try:
        yield path
    finally:
        s.close()


def test_sockets_and_fifos_are_not_a_file_and_never_opened(small: Path, unix_socket: Path) -> None:
    os.mkfifo(small / "fake_images/pipe.png")
    code, out, err = cli("scan", "--root", str(small), "--json")
    assert code == 0, err
    counts = json.loads(out)["counts"]
    assert counts["real"].get("not-a-file") == 1 and counts["fake"].get("not-a-file") == 1


@pytest.mark.skipif(IS_ROOT, reason="root lists folders without read permission")
def test_an_unlistable_folder_is_reported(small: Path) -> None:
    locked = small / "real_images/locked"
    put(small, "real_images/locked/x.png", png_bytes(9))
    locked.chmod(0)
    try:
        code, out, err = cli("scan", "--root", str(small), "--json")
        assert code == 0, err
        assert json.loads(out)["counts"]["real"].get("unlistable") == 1
    finally:
        locked.chmod(0o700)


def test_a_folder_the_system_refuses_to_list_is_reported(
    small: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same through the listing call itself (this suite often runs as root, which lists
    anything): a folder whose listing fails gets an ``unlistable`` row, not a silent gap."""
    put(small, "real_images/locked/x.png", png_bytes(9))
    real_scandir = os.scandir

    def scandir(path: os.PathLike[str] | str) -> Iterator[os.DirEntry[str]]:
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    code, out, err = cli("scan", "--root", str(small), "--json")
    assert code == 0, err
    assert json.loads(out)["counts"]["real"].get("unlistable") == 1
    monkeypatch.setattr(os, "scandir", real_scandir)
    rows = (small / ".cleaner/manifest.csv").read_text().splitlines()
    assert any(r.startswith("real_images/locked/,") and "Permission denied" in r for r in rows)


# ------------------------------------------------------------------ 9: serve


def _bomb_png(side: int) -> bytes:
    """A 1-bit PNG of side x side pixels, all zero: a few KB that decode to side^2 pixels."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    raw = zlib.compress(row * side, 9)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buf, "JPEG")
    return buf.getvalue()


def test_serve_refuses_an_upload_that_would_cost_far_more_than_its_bytes(small: Path) -> None:
    c = create_app(small, predictor=lambda im: 0.5).test_client()
    bomb = _bomb_png(10_950)
    assert len(bomb) < 100_000
    r = c.post("/predict?format=json", data={"image": (io.BytesIO(bomb), "b.png")}, buffered=True)
    assert r.status_code == 400 and "exceeds" in r.get_json()["error"]
    r = c.post(
        "/predict?format=json", data={"image": (io.BytesIO(_jpeg()), "ok.jpg")}, buffered=True
    )
    assert r.status_code == 200 and r.get_json()["width"] == 32


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://evil.example"},
        {"Origin": "http://localhost:9999"},
        {"Origin": "null"},
    ],
)
def test_serve_refuses_cross_site_requests_on_every_endpoint(
    small: Path, headers: dict[str, str]
) -> None:
    c = create_app(small, predictor=lambda im: 0.5).test_client()
    for method, url in (("post", "/predict"), ("get", "/"), ("get", "/review")):
        kw = {"data": {"image": (io.BytesIO(_jpeg()), "x.jpg")}} if method == "post" else {}
        r = getattr(c, method)(url, headers=headers, **kw)
        assert r.status_code == 403, (url, r.status_code)
    # the same requests as curl sends them (no Origin, no Sec-Fetch-*) and as the app's own page
    # (Chromium's form post from a no-referrer page says Origin 'null' beside same-origin)
    own_page = [
        {"Sec-Fetch-Site": "same-origin", "Origin": o} for o in ("http://localhost", "null")
    ]
    for own in ({}, *own_page):
        r = c.post(
            "/predict?format=json",
            data={"image": (io.BytesIO(_jpeg()), "x.jpg")},
            headers=own,
        )
        assert r.status_code == 200, r.get_data(as_text=True)
