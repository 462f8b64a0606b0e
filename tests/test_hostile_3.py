"""Hostile inputs, round 3 (issue #26): no stuck lock, no network from data, no write over ROOT,
whatever cleaner writes cleaner reads, damaged state is one line, links are rows, provenance by
exact signature only, no blocking on a FIFO, state honours the umask.

Each case goes through the CLI (or the Flask test client) and checks what a user sees and what
is on disk.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from cleaner.engine import default_workers
from tests.hostile_helpers import cli, one_line_error, put, tree
from tests.relabel_helpers import png_bytes, snapshot

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ 1: no stuck lock after kill -9


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(
    not Path("/proc/self/task").is_dir() or default_workers() < 2,
    reason="needs Linux /proc and a process pool (2+ CPUs)",
)
def test_kill_during_the_scan_of_apply_leaves_no_worker_and_no_lock(tmp_path: Path) -> None:
    root = tmp_path / "R"
    for i in range(160):  # several scan batches (32 files each) per class
        put(root, f"real_images/r{i:03d}.png", png_bytes(i))
        put(root, f"fake_images/f{i:03d}.png", png_bytes(1000 + i))
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps({"real_images/r000.png": "real"}), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "cleaner", "separate", "--root", str(root), "-p", str(preds)]
    proc = subprocess.Popen(
        [*cmd, "--apply"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    kids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not kids and proc.poll() is None and time.monotonic() < deadline:
            kids = _children(proc.pid)  # the scan's pool workers
            time.sleep(0.002)
        assert kids, "the scan finished before its pool could be seen; make the tree bigger"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        t0 = time.monotonic()
        got = None
        while time.monotonic() - t0 < 5:
            code, _, err = cli("separate", "--root", str(root), "-p", str(preds), "--apply")
            if "another cleaner command is writing" not in err:
                got = time.monotonic() - t0
                break
            time.sleep(0.2)
        assert got is not None, f"the lock was still held 5 s after kill -9: {err}"
        assert code == 0, err
        while any(_alive(k) for k in kids) and time.monotonic() - t0 < 5:
            time.sleep(0.05)
        assert not [k for k in kids if _alive(k)], "workers of the killed command survive"
    finally:
        for k in kids:
            with contextlib.suppress(OSError):
                os.kill(k, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()


# ------------------------------------------------------------------ 2: no network from data


def _jpeg_with_xmp(xmp: str, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (seed, 2, 3)).save(buf, "JPEG", xmp=xmp.encode())
    return buf.getvalue()


def _xmp_provenance(url: str) -> str:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
        f'xmlns:dcterms="http://purl.org/dc/terms/" dcterms:provenance="{url}"/></rdf:RDF>'
        "</x:xmpmeta>"
    )


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, int]]:
    """A local TCP port that records whether anyone connected (the 'remote' manifest host)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.setblocking(False)
    try:
        yield srv, srv.getsockname()[1]
    finally:
        srv.close()


def test_audit_never_fetches_a_remote_manifest_named_by_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listener: tuple[socket.socket, int]
) -> None:
    srv, port = listener
    root = tmp_path / "R"
    for i, url in enumerate((f"http://127.0.0.1:{port}/m.c2pa", f"http://127.0.0.1:{port}/x")):
        put(root, f"real_images/remote{i}.jpg", _jpeg_with_xmp(_xmp_provenance(url), i))
    tree(root, "real_images/a.png", "fake_images/b.png", "fake_images/c.png")

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a network connection was opened while reading images")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    code, out, err = cli("audit", "--root", str(root), "--workers", "1", "--json")
    with pytest.raises(BlockingIOError):  # the native c2pa reader did not connect either
        srv.accept()
    assert code == 0, err
    prov = {e["path"]: e for e in json.loads(out)["provenance"]}
    for i in (0, 1):
        e = prov[f"real_images/remote{i}.jpg"]
        assert e["strength"] == "info" and not e["contradicts"]
        assert "remote manifest not fetched" in e["why"] and f":{port}/" in e["why"]


# ------------------------------------------------------------------ 3: no output over ROOT


@pytest.fixture
def small(tmp_path: Path) -> Path:
    return tree(tmp_path / "R", "real_images/a.png", "real_images/b.png", "fake_images/c.png")


def _user_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".cleaner" not in p.relative_to(root).parts
    }


def test_every_output_flag_refuses_roots_images_and_state(small: Path, tmp_path: Path) -> None:
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps({"real_images/a.png": "real"}))
    code, _, err = cli("separate", "--root", str(small), "-p", str(preds), "--apply")
    assert code == 0, err  # a writer ran: the manifest and the lock exist
    state = small / ".cleaner"
    state_before = {n: (state / n).read_bytes() for n in ("manifest.csv", "lock")}
    img = small / "real_images" / "a.png"
    new_in_class = small / "fake_images" / "new.json"
    before = _user_files(small)
    r = str(small)
    cases = [
        (["audit", "--root", r, "--predictions-out", str(img)], "inside real_images/"),
        (["audit", "--root", r, "--out", str(img)], "inside real_images/"),
        (["audit", "--root", r, "--out", str(new_in_class)], "inside fake_images/"),
        (["audit", "--root", r, "--predictions-out", str(state / "manifest.csv")], "state"),
        (["audit", "--root", r, "--predictions-out", str(state / "lock")], "state"),
        (["audit", "--root", r, "--out", str(state / "journal" / "x.json")], "state"),
        (["predict", "--root", r, "--backbone", "spectrum", "--out", str(img)], "inside"),
        (["train", "--root", r, "--backbone", "nope", "--out", str(small / "real" / "m.keras")],
         "inside real/"),
        (["report", "--root", r, "--out", str(small / "quarantine" / "r.html")], "quarantine"),
    ]  # fmt: skip
    for args, word in cases:
        code, _, err = cli(*args)
        one_line_error(code, err, word)
    assert _user_files(small) == before
    assert not new_in_class.exists() and not (small / "real").exists()
    assert {n: (state / n).read_bytes() for n in state_before} == state_before


def test_an_output_flag_never_replaces_a_users_file_outside_root(
    small: Path, tmp_path: Path
) -> None:
    photo = tmp_path / "photos" / "1.png"
    photo.parent.mkdir()
    photo.write_bytes(png_bytes(99))
    notes = tmp_path / "notes.json.txt"
    notes.write_text("my notes\n")
    for args in (
        ["audit", "--root", str(small), "--predictions-out", str(photo)],
        ["audit", "--root", str(small), "--out", str(notes)],
        ["predict-dir", str(photo.parent), "--model", str(tmp_path / "m.keras"), "--out",
         str(photo)],
    ):  # fmt: skip
        code, _, err = cli(*args)
        one_line_error(code, err, "never replaces")
    assert photo.read_bytes() == png_bytes(99) and notes.read_text() == "my notes\n"
    # a file cleaner wrote before is replaced as always
    out = tmp_path / "audit.json"
    for _ in range(2):
        code, _, err = cli("audit", "--root", str(small), "--out", str(out), "--workers", "1")
        assert code == 0, err
    assert json.loads(out.read_text())["format"] == "cleaner.audit.v1"


def test_predictions_in_the_pipelines_folder_are_written_and_rewritten(small: Path) -> None:
    """make clean-data keeps its predictions in ROOT/.cleaner/preds/ (PREDS_DIR): an output there
    is allowed, a rerun replaces its own earlier file, and a user's file there is still kept."""
    preds_dir = small / ".cleaner" / "preds"
    out = preds_dir / "audit-votes.json"
    for _ in range(2):
        code, _, err = cli("audit", "--root", str(small), "--predictions-out", str(out))
        assert code == 0, err
        assert out.is_file()
    mine = preds_dir / "notes.txt"
    mine.write_text("my notes\n")
    code, _, err = cli("audit", "--root", str(small), "--predictions-out", str(mine))
    one_line_error(code, err, "never replaces")
    assert mine.read_text() == "my notes\n"
    code, _, err = cli("audit", "--root", str(small), "--out", str(preds_dir / "a" / "b.json"))
    one_line_error(code, err, "state")


# ------------------------------------------------------------------ 4: cleaner reads what it writes


def _webui_png(seed: int) -> bytes:
    """A PNG that names its generator (Stable Diffusion WebUI's ``parameters`` text)."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a face\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1")
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), (seed, 40, 90)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


@pytest.mark.parametrize("name", ["P.JSON", "proofs.txt"])
def test_predictions_with_a_non_utf8_name_are_utf8_and_read_back(
    small: Path, tmp_path: Path, name: str
) -> None:
    raw = os.fsencode(small) + b"/real_images/gen\xff\xfe.png"
    with open(raw, "wb") as f:
        f.write(_webui_png(7))
    preds = tmp_path / name
    code, _, err = cli("audit", "--root", str(small), "--predictions-out", str(preds))
    assert code == 0, err
    text = preds.read_bytes().decode("utf-8")  # strict: the file is UTF-8
    assert "\\udcff\\udcfe" in text
    code, _, err = cli(
        "separate", "--root", str(small), "-p", str(preds), "--apply", "--max-fraction", "1"
    )
    assert code == 0, err
    assert not os.path.exists(raw)
    with open(os.fsencode(small) + b"/fake_images/gen\xff\xfe.png", "rb") as f:
        assert f.read() == _webui_png(7)


# ------------------------------------------------------------------ 5: damaged audit state


CACHE_DAMAGE = {
    "width 0": lambda p: {**p, "width": 0},
    "missing key": lambda p: {k: v for k, v in p.items() if k != "height"},
    "abc": lambda p: {**p, "width": "abc"},
    "1e400": lambda p: {**p, "bytes": float("inf")},
    "NaN": lambda p: {**p, "height": float("nan")},
    "wrong type": lambda p: {**p, "png_text": 5},
    "bool size": lambda p: {**p, "width": True},
    "not a dict": lambda p: "abc",
}


def _audited(root: Path) -> dict[str, dict[str, object]]:
    code, out, err = cli("audit", "--root", str(root), "--workers", "1", "--json")
    assert code == 0, err
    assert "Traceback" not in err
    doc = json.loads(out)
    return {p["name"]: p for p in doc["properties"]} | {"_read": {"n": doc["read"]}}


def test_damaged_audit_cache_entries_are_read_again(small: Path) -> None:
    put(small, "fake_images/d.png", png_bytes(50))
    fresh = _audited(small)
    cache = small / ".cleaner" / "audit_cache.json"
    good = json.loads(cache.read_text())
    for case, damage in CACHE_DAMAGE.items():
        doc = json.loads(json.dumps(good))
        sha = next(iter(doc["props"]))
        doc["props"][sha] = damage(doc["props"][sha])
        cache.write_text(json.dumps(doc).replace("Infinity", "1e400"))
        got = _audited(small)
        assert got.pop("_read") == {"n": 1}, case  # that one file, read again
        assert got == {k: v for k, v in fresh.items() if k != "_read"}, case
    for text in ('{"format": "cleaner.audit-cache.v1", "version": 3, "props": {}, '
                 '"paths": {"real_images/a.png": [1e400, "x", 3]}}', "[]", "abc"):  # fmt: skip
        cache.write_text(text)
        assert _audited(small)["_read"]["n"] >= 1


AUDIT_DAMAGE = {
    "not json": "{",
    "shortcut a string": {"shortcut": "abc"},
    "property without fields": {"properties": [{"name": 1}]},
    "auc a word": {"shortcut": {"shortcut": True, "auc": "x", "named": ["format"]}},
    "provenance of numbers": {"provenance": [1, 2]},
}
TRAIN_READS = {"not json", "shortcut a string", "auc a word"}


@pytest.mark.parametrize("case", sorted(AUDIT_DAMAGE))
def test_a_damaged_audit_json_is_a_warning_in_report_and_train(
    small: Path, tmp_path: Path, case: str
) -> None:
    damage = AUDIT_DAMAGE[case]
    p = small / ".cleaner" / "audit.json"
    p.parent.mkdir(exist_ok=True)
    text = (
        damage if isinstance(damage, str) else json.dumps({"format": "cleaner.audit.v1", **damage})
    )
    p.write_text(text)
    code, _, err = cli("report", "--root", str(small), "--out", str(tmp_path / "r.html"))
    assert code == 0 and "Traceback" not in err, err
    assert "warning:" in err and "audit.json" in err, err
    assert (tmp_path / "r.html").is_file()
    # the next check (an --out train refuses, answered before TensorFlow loads) is reached
    code, _, err = cli("train", "--root", str(small), "--out", str(small / "real" / "m.keras"))
    lines = [x for x in err.splitlines() if x.strip()]
    if case in TRAIN_READS:  # train reads the shortcut only
        assert lines[0].startswith("warning: ") and "audit.json" in lines[0], err
        assert "ignored; training goes on" in lines[0]
        lines = lines[1:]
    one_line_error(code, "\n".join(lines), "inside real/")  # the command went on


# ------------------------------------------------------------------ 6: folder links in a class


def test_a_class_subfolder_linked_to_the_other_class_is_a_row_and_never_moved_through(
    tmp_path: Path,
) -> None:
    root = tree(
        tmp_path / "R",
        "real_images/sub/y.png",
        "real_images/sub2/z.png",
        "real_images/other.png",
        "elsewhere/w.png",
        "fake_images/f.png",
        "fake_images/g.png",
    )
    os.symlink("../real_images/sub2", root / "fake_images" / "sub")
    os.symlink("../elsewhere", root / "real_images" / "linked")
    code, _, err = cli("scan", "--root", str(root), "--json")
    assert code == 0, err
    with open(root / ".cleaner" / "manifest.csv", newline="") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    link = rows["fake_images/sub"]
    assert link["status"] == "symlink" and link["target"] == "real_images/sub2", link
    assert rows["real_images/linked/w.png"]["status"] == "ok"  # a link it may follow is followed
    before = snapshot(root)
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps({"real_images/sub/y.png": "fake", "real_images/linked/w.png":
                                 "fake"}))  # fmt: skip
    code, out, err = cli(
        "separate", "--root", str(root), "-p", str(preds), "--apply", "--max-fraction", "1",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    assert snapshot(root) == before  # nothing moved through a folder link
    doc = json.loads(out)
    assert doc.get("moved", 0) == 0, doc
    text = json.dumps(doc)
    assert "linked folder fake_images/sub" in text and "linked folder real_images/linked" in text


# ------------------------------------------------------------------ 7: provenance by signature


def _jpeg_software(software: str, camera: bool = False) -> bytes:
    ex = Image.Exif()
    ex[0x0131] = software
    if camera:
        ex[0x010F], ex[0x0110] = "NIKON CORPORATION", "NIKON D850"
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), (len(software) * 5 % 255, 9, 9)).save(buf, "JPEG", exif=ex)
    return buf.getvalue()


def _png_text(key: str, value: str) -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(key, value)
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), (len(key + value) % 255, 60, 9)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


COMFY_PROMPT = json.dumps({"3": {"class_type": "KSampler", "inputs": {"seed": 1}}})
COMFY_WORKFLOW = json.dumps({"nodes": [{"id": 3, "type": "KSampler"}], "links": []})
WEBUI = "a face\nNegative prompt: blur\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1"

SIGNED: dict[str, bytes] = {  # each signature, as its software writes it
    "exif-midjourney.jpg": _jpeg_software("Midjourney v6"),
    "exif-firefly.jpg": _jpeg_software("Adobe Firefly"),
    "exif-dalle.jpg": _jpeg_software("DALL·E 3"),
    "exif-imagen.jpg": _jpeg_software("Google Imagen 3"),
    "png-novelai.png": _png_text("Software", "NovelAI"),
    "png-sdxl.png": _png_text("Software", "Stable Diffusion XL 1.0"),
    "png-webui.png": _png_text("parameters", WEBUI),
    "png-comfy-prompt.png": _png_text("prompt", COMFY_PROMPT),
    "png-comfy-workflow.png": _png_text("workflow", COMFY_WORKFLOW),
}
LOOK_ALIKES: dict[str, bytes] = {  # real software and text that merely resembles one
    "imagenomic.jpg": _jpeg_software("Imagenomic Portraiture 3.0", camera=True),
    "visor.png": _png_text("Software", "Visor de imágenes de Windows"),
    "editor-imagen.png": _png_text("Software", "Editor de imagen 2.1"),
    "firefly-viewer.jpg": _jpeg_software("Firefly Photo Viewer 2"),
    "unstable.jpg": _jpeg_software("Unstable Diffusion Labs"),
    "photoshop.jpg": _jpeg_software("Adobe Photoshop 25.0 (Windows)"),
    "flux.jpg": _jpeg_software("Flux 1.2 Photo Editor"),
    "focus.jpg": _jpeg_software("Helicon Focus 8"),
    "dalle-studio.jpg": _jpeg_software("Dalle Photo Studio"),
    "params.png": _png_text("parameters", "exposure +0.3, contrast 10, Steps to reproduce"),
    "prompt.png": _png_text("prompt", "a sunset over the sea"),
    "workflow.png": _png_text("workflow", "{}"),
    "workflow-text.png": _png_text("workflow", "Lightroom export workflow"),
}


def test_only_exact_signatures_are_proof_and_look_alikes_never_move(tmp_path: Path) -> None:
    from tests.test_audit_provenance import c2pa_jpeg

    root = tmp_path / "R"
    for i in range(3):
        put(root, f"fake_images/f{i}.png", png_bytes(500 + i))
    for name, data in {**SIGNED, **LOOK_ALIKES}.items():
        put(root, f"real_images/{name}", data)
    put(root, "real_images/c2pa.jpg", c2pa_jpeg())
    forged = bytearray(c2pa_jpeg())
    forged[-20] ^= 0xFF  # the manifest no longer matches the pixels: Invalid
    put(root, "real_images/c2pa-invalid.jpg", bytes(forged))
    preds = tmp_path / "prov.json"
    code, _, err = cli("audit", "--root", str(root), "--predictions-out", str(preds))
    assert code == 0, err
    proved = {e["path"].split("/", 1)[1] for e in json.loads(preds.read_text())["predictions"]}
    assert proved == {*SIGNED, "c2pa.jpg"}
    before = snapshot(root)
    code, _, err = cli(
        "separate", "--root", str(root), "-p", str(preds), "--apply", "--max-fraction", "1"
    )
    assert code == 0, err
    for name in LOOK_ALIKES:
        assert (root / "real_images" / name).is_file(), name  # a real photo stays real
    assert {k for k in before if k.startswith("real_images/")} - {
        k for k in snapshot(root) if k.startswith("real_images/")
    } == {f"real_images/{n}" for n in proved}


def test_the_signature_table_lists_each_kind_of_proof() -> None:
    from cleaner.audit.properties import GENERATOR_NAMES, SIGNATURES, generator_in

    assert {s.key for s in SIGNATURES} == {"webui", "comfyui", "c2pa", "software"}
    for name in GENERATOR_NAMES:  # each name is found as itself, and never inside a word
        assert generator_in(f"{name} 1.0") == name
        assert generator_in(f"X{name.replace(' ', '')}Y") == ""


# ------------------------------------------------------------------ 8: a FIFO is not a file


def test_predictions_that_are_a_fifo_or_a_folder_are_refused_at_once(
    small: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "preds.json"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for path in (fifo, tmp_path):
        try:
            r = subprocess.run(
                [sys.executable, "-m", "cleaner", "separate", "--root", str(small), "-p",
                 str(path)],
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            pytest.fail(f"separate -p {path} blocked (no writer on the FIFO)")
        one_line_error(r.returncode, r.stderr, "not a regular file")


# ------------------------------------------------------------------ 9: smaller ones


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _square_png(side: int, seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (seed % 256, (seed * 7) % 256, 50)).save(buf, "PNG")
    return buf.getvalue()


def test_state_and_equalized_files_honour_the_umask_and_size_is_the_median(
    tmp_path: Path, umask_022: None
) -> None:
    root = tmp_path / "R"
    put(root, "real_images/tiny.png", _square_png(1, 0))  # a few tiny images set nothing
    put(root, "fake_images/tiny.png", _square_png(2, 0))
    for i in range(5):
        put(root, f"real_images/r{i}.png", _square_png(64, 1 + i))
        put(root, f"fake_images/f{i}.png", _square_png(64, 100 + i))
    code, _, err = cli("scan", "--root", str(root))
    assert code == 0, err
    out = tmp_path / "EQ"
    code, stdout, err = cli(
        "audit", "--root", str(root), "--equalize", str(out), "--workers", "1", "--json"
    )
    assert code == 0, err
    assert json.loads(stdout)["equalized"]["side"] == 64
    made = [
        root / ".cleaner" / "manifest.csv",
        root / ".cleaner" / "audit.json",
        root / ".cleaner" / "audit_cache.json",
        *sorted((out / "real_images").iterdir()),
        out / ".cleaner" / "equalized.csv",
    ]
    assert len(made) > 5
    for p in made:
        assert p.stat().st_mode & 0o777 == 0o644, (p, oct(p.stat().st_mode))


def test_equalize_out_is_checked_before_the_audit_reads_a_file(small: Path) -> None:
    for bad in (small / "inside", small):
        code, _, err = cli("audit", "--root", str(small), "--equalize", str(bad))
        one_line_error(code, err, "--equalize")
        assert not (small / ".cleaner" / "audit.json").exists()  # the audit never ran
    code, _, err = cli(
        "audit", "--root", str(small), "--equalize", str(small.parent / "EQ"),
        "--equalize-quality", "0",
    )  # fmt: skip
    one_line_error(code, err, "--equalize-quality")
    assert not (small / ".cleaner" / "audit.json").exists()


def test_serve_bounds_the_memory_of_uploads_in_flight(tmp_path: Path) -> None:
    """Uploads each costing more than half the budget never decode together, and the budget's
    reserved bytes never pass it (a count of slots alone let two run at once)."""
    from cleaner.web import create_app
    from cleaner.web.budget import upload_cost

    side = 2000  # 4 megapixels, a few KB of PNG
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (10, 10, 10)).save(buf, "PNG")
    data = buf.getvalue()
    cost = upload_cost(len(data), side * side)
    app = create_app(tmp_path, predictor=lambda im: 0.5, decode_budget_mb=1.5 * cost / 2**20)
    budget = app.extensions["cleaner"]["decode_budget"]
    active, most, seen = [0], [0], []
    guard = threading.Lock()
    overlap = threading.Event()

    def predictor(im: Image.Image) -> float:
        with guard:
            active[0] += 1
            most[0] = max(most[0], active[0])
            seen.append(budget.used)
            if active[0] > 1:
                overlap.set()
        overlap.wait(0.3)  # long enough for another upload to get in, if it could
        with guard:
            active[0] -= 1
        return 0.5

    app.extensions["cleaner"]["predictor"] = predictor
    codes: list[int] = []

    def upload() -> None:
        r = app.test_client().post(
            "/predict?format=json", data={"image": (io.BytesIO(data), "big.png")}
        )
        codes.append(r.status_code)

    threads = [threading.Thread(target=upload) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert codes == [200] * 4
    assert most[0] == 1, "two uploads costing more than half the budget decoded at once"
    assert max(seen) <= budget.total and budget.peak <= budget.total
    assert budget.used == 0  # every reservation given back


def test_an_accept_the_mover_refuses_leaves_no_run_for_undo(tmp_path: Path) -> None:
    from cleaner.web import create_app
    from tests.report_helpers import make_state_dataset

    ds = make_state_dataset(tmp_path)
    c = create_app(ds.root, predictor=lambda im: 0.5).test_client()
    html = c.get("/review").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token
    src = ds.root / "real_images" / "r4.jpg"
    src.write_bytes(src.read_bytes() + b"\x00")  # changed since the plan: the mover skips it
    r = c.post(f"/review/{ds.plan_id}/r0/accept?format=json",
               data={"csrf_token": token.group(1)})  # fmt: skip
    assert r.status_code == 409 and "changed since it was planned" in r.get_json()["error"]
    before = snapshot(ds.root)
    code, _, err = cli("undo", "--root", str(ds.root))
    one_line_error(code, err, "no applied run to undo")
    assert snapshot(ds.root) == before
