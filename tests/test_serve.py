"""`cleaner serve` through Flask's test client: upload, limits, review queue, CSRF, confinement."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient
from PIL import Image
from typer.testing import CliRunner

from cleaner.cli import app as cli_app
from cleaner.hashing import file_sha256
from cleaner.journal import list_runs, undo
from cleaner.web import create_app
from tests.report_helpers import make_state_dataset, write_image


def redness(im: Image.Image) -> float:
    """A stand-in model: the mean red level, so each picture gets its own probability."""
    return float(np.asarray(im, dtype=np.float64)[..., 0].mean() / 255.0)


def _jpeg(seed: int, size: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _client(root: Path, **kw: object) -> FlaskClient:
    kw.setdefault("predictor", redness)
    return create_app(root, **kw).test_client()  # type: ignore[arg-type]


def _token(c: FlaskClient, path: str = "/review") -> str:
    html = c.get(path).get_data(as_text=True)
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


def test_upload_answers_real_or_fake_with_both_probabilities(tmp_path: Path) -> None:
    c = _client(tmp_path)
    data = _jpeg(1)
    want = redness(Image.open(io.BytesIO(data)).convert("RGB"))
    r = c.post("/predict?format=json", data={"image": (io.BytesIO(data), "face.jpg")})
    assert r.status_code == 200, r.data
    body = r.get_json()
    assert body["prob_fake"] == pytest.approx(want, abs=1e-6)
    assert body["prob_real"] == pytest.approx(1 - want, abs=1e-6)
    assert body["prediction"] == ("fake" if want >= 0.5 else "real")
    assert (body["width"], body["height"]) == (48, 48)
    page = c.post("/predict", data={"image": (io.BytesIO(data), "face.jpg")})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="result"' in html
    assert f'data-prob-fake="{body["prob_fake"]}"' in html
    assert f"{100 * want:.1f}%" in html


def test_non_image_empty_and_too_large_uploads_get_clear_messages(tmp_path: Path) -> None:
    c = _client(tmp_path, max_upload_mb=0.05)
    r = c.post("/predict?format=json", data={"image": (io.BytesIO(b"hello, world"), "a.jpg")})
    assert r.status_code == 400
    assert "a.jpg is not an image" in r.get_json()["error"]
    r = c.post("/predict", data={"image": (io.BytesIO(b"\xff\xd8\xff\xe0garbage"), "b.jpg")})
    assert r.status_code == 400 and "b.jpg is not an image" in r.get_data(as_text=True)
    r = c.post("/predict?format=json", data={})
    assert r.status_code == 400 and "choose an image" in r.get_json()["error"]
    big = _jpeg(2, size=400)
    assert len(big) > 0.05 * 1024 * 1024
    r = c.post("/predict?format=json", data={"image": (io.BytesIO(big), "big.jpg")})
    assert r.status_code == 413
    assert "too large" in r.get_json()["error"] and "0.05 MB" in r.get_json()["error"]
    r = _client(tmp_path, predictor=None).post(
        "/predict?format=json", data={"image": (io.BytesIO(_jpeg(3)), "c.jpg")}
    )
    assert r.status_code == 503 and "--model" in r.get_json()["error"]


def test_accept_moves_through_the_journal_and_undo_restores(tmp_path: Path) -> None:
    ds = make_state_dataset(tmp_path)
    c = _client(ds.root)
    page = c.get("/review").get_data(as_text=True)
    assert "real_images/r2.jpg" in page and "real_images/r4.jpg" in page
    token = _token(c)
    # the review item r0 (real_images/r4.jpg, the files disagree): accept moves it to fake
    src, dst = ds.root / "real_images" / "r4.jpg", ds.root / "fake_images" / "r4.jpg"
    sha = file_sha256(src)
    r = c.post(f"/review/{ds.plan_id}/r0/accept?format=json", data={"csrf_token": token})
    assert r.status_code == 200, r.data
    body = r.get_json()
    assert body["dst"] == "fake_images/r4.jpg" and not src.exists() and file_sha256(dst) == sha
    runs = [x for x in list_runs(ds.root) if x.run_id == body["journal_run"]]
    assert runs and runs[0].moved == 1 and "serve" in runs[0].command
    decisions = json.loads((ds.root / ".cleaner" / "review" / f"{ds.plan_id}.json").read_text())
    assert decisions["items"]["r0"]["decision"] == "accepted"
    # a second accept of the same item is refused; reject records and moves nothing
    r = c.post(f"/review/{ds.plan_id}/r0/accept?format=json", data={"csrf_token": token})
    assert r.status_code == 409
    before = sorted(p.relative_to(ds.root) for p in ds.root.rglob("*.jpg"))
    r = c.post(f"/review/{ds.plan_id}/m1/reject", data={"csrf_token": token})
    assert r.status_code == 302
    assert sorted(p.relative_to(ds.root) for p in ds.root.rglob("*.jpg")) == before
    assert "rejected" in c.get("/review?show=all").get_data(as_text=True)
    # the thumbnail follows the moved file
    assert c.get(f"/thumb/{ds.plan_id}/r0").mimetype == "image/jpeg"
    # the Undo button reverses the move through the journal and puts the item back in the queue
    assert f"/review/{ds.plan_id}/r0/undo" in c.get("/review?show=all").get_data(as_text=True)
    r = c.post(f"/review/{ds.plan_id}/r0/undo?format=json", data={"csrf_token": token})
    assert r.status_code == 200 and "back in real" in r.get_json()["message"]
    assert src.exists() and not dst.exists() and file_sha256(src) == sha
    assert 'id="item-r0"' in c.get("/review").get_data(as_text=True)
    assert [x.undoes for x in list_runs(ds.root) if x.kind == "undo"] == [body["journal_run"]]
    # accepted again, then undone with `cleaner undo` (the CLI's path): same result
    r = c.post(f"/review/{ds.plan_id}/r0/accept?format=json", data={"csrf_token": token})
    assert r.status_code == 200 and dst.exists()
    undo(ds.root, r.get_json()["journal_run"])
    assert src.exists() and not dst.exists() and file_sha256(src) == sha


def test_csrf_token_required_on_buttons_that_change_files(tmp_path: Path) -> None:
    ds = make_state_dataset(tmp_path)
    c = _client(ds.root)
    src = ds.root / "real_images" / "r2.jpg"
    for data in ({}, {"csrf_token": "forged"}):
        r = c.post(f"/review/{ds.plan_id}/m0/accept?format=json", data=data)
        assert r.status_code == 400 and "CSRF" in r.get_json()["error"]
    assert src.exists()
    # a token from another session (another browser) is refused too
    other = _client(ds.root)
    r = c.post(f"/review/{ds.plan_id}/m0/accept?format=json", data={"csrf_token": _token(other)})
    assert r.status_code == 400 and src.exists()
    assert not (ds.root / ".cleaner" / "review").exists()


def test_nothing_from_the_browser_names_a_path_outside_root(tmp_path: Path) -> None:
    ds = make_state_dataset(tmp_path)
    outside = write_image(tmp_path / "outside.jpg", seed=9)
    plan_path = ds.root / ".cleaner" / "plans" / f"{ds.plan_id}.json"
    plan = json.loads(plan_path.read_text())
    plan["moves"].append({**plan["moves"][0], "path": "../outside.jpg", "sha256": ""})
    plan["moves"].append({**plan["moves"][0], "dst": "../../escaped.jpg"})
    plan_path.write_text(json.dumps(plan))
    c = _client(ds.root)
    token = _token(c)
    r = c.post(f"/review/{ds.plan_id}/m2/accept?format=json", data={"csrf_token": token})
    assert r.status_code == 400 and "outside ROOT" in r.get_json()["error"]
    r = c.post(f"/review/{ds.plan_id}/m3/accept?format=json", data={"csrf_token": token})
    assert r.status_code == 400 and "outside ROOT" in r.get_json()["error"]
    assert outside.exists() and (ds.root / "real_images" / "r2.jpg").exists()
    assert not (tmp_path / "escaped.jpg").exists()
    assert c.get(f"/thumb/{ds.plan_id}/m2").status_code == 404  # never read outside ROOT
    for url in (
        f"/review/{ds.plan_id}/..%2F..%2Foutside.jpg/accept",
        f"/review/{ds.plan_id}/m9/accept",
        "/review/..%2F..%2Fplans/m0/accept",
        f"/review/{ds.plan_id}/m0/delete",
    ):
        r = c.post(url + "?format=json", data={"csrf_token": token})
        assert r.status_code == 404, url
    assert c.get("/thumb/x/../../outside.jpg").status_code == 404
    assert outside.exists() and not (ds.root / ".cleaner" / "review").exists()


def test_review_without_plan_says_which_command(tmp_path: Path) -> None:
    ds = make_state_dataset(tmp_path, with_state=False)
    html = _client(ds.root).get("/review").get_data(as_text=True)
    assert "cleaner separate" in html


def test_a_real_keras_model_loaded_lazily(tmp_path: Path) -> None:
    import keras

    inp = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inp, out)
    model.layers[-1].set_weights([np.array([[4.0], [-2.0], [-2.0]]), np.array([0.0])])
    path = tmp_path / "M.keras"
    model.save(path)
    (tmp_path / "M.metrics.json").write_text(json.dumps({"crop": "resize"}))
    app = create_app(tmp_path, model_path=path)
    predictor = app.extensions["cleaner"]["predictor"]
    assert predictor._detector is None  # nothing loaded until the first upload
    data = _jpeg(4, size=64)
    r = app.test_client().post("/predict?format=json", data={"image": (io.BytesIO(data), "x.jpg")})
    assert r.status_code == 200, r.data
    im = Image.open(io.BytesIO(data)).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR)
    want = float(model.predict(np.asarray(im, np.float32)[None], verbose=0)[0, 0])
    assert r.get_json()["prob_fake"] == pytest.approx(want, abs=1e-4)


def test_serve_cli_refuses_a_missing_model(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli_app, ["serve", "--model", str(tmp_path / "M.keras")])
    assert r.exit_code == 1 and "M.keras does not exist" in r.stderr
    r = CliRunner().invoke(cli_app, ["serve", "--help"])
    assert r.exit_code == 0 and "127.0.0.1" in r.stdout


def test_other_host_names_are_refused(tmp_path: Path) -> None:
    """DNS rebinding: a page of another site whose name now points at 127.0.0.1 gets nothing,
    not even the CSRF token."""
    ds = make_state_dataset(tmp_path)
    c = _client(ds.root)
    for host in ("evil.example:5000", "127.0.0.1.evil.example"):
        r = c.get("/review", headers={"Host": host})
        assert r.status_code == 400 and "csrf_token" not in r.get_data(as_text=True)
        r = c.post(f"/review/{ds.plan_id}/m0/accept?format=json", headers={"Host": host}, data={})
        assert r.status_code == 400 and "not this app's address" in r.get_json()["error"]
    for host in ("127.0.0.1:5000", "localhost:8080", "[::1]:5000"):
        assert c.get("/review", headers={"Host": host}).status_code == 200
    anyhost = _client(ds.root, trusted_hosts=None)
    assert anyhost.get("/review", headers={"Host": "10.0.0.5:5000"}).status_code == 200


def test_a_broken_plan_file_is_skipped_with_a_message(tmp_path: Path) -> None:
    ds = make_state_dataset(tmp_path)
    (ds.root / ".cleaner" / "plans" / "zzz-broken.json").write_text("{")
    r = _client(ds.root).get("/review")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "skipped a plan file" in html and "zzz-broken.json" in html
    assert ds.plan_id in html and 'id="item-m0"' in html


@pytest.mark.parametrize("size", [32, 100])
@pytest.mark.parametrize("shape", [(64, 48), (300, 120), (20, 20)])
def test_upload_view_matches_the_models_evaluation_view(
    tmp_path: Path, size: int, shape: tuple[int, int]
) -> None:
    """The app shows an upload to the model as `cleaner predict` and `cleaner train` do."""
    from cleaner.models.inputs import load_one
    from cleaner.web.predictor import model_view

    rng = np.random.default_rng(size)
    im = Image.fromarray(rng.integers(0, 256, (shape[1], shape[0], 3), dtype=np.uint8))
    for name in ("x.png", "x.jpg"):  # a JPEG goes through draft decoding in both
        path = tmp_path / name
        im.save(path)
        ours = model_view(path.read_bytes(), size, "center")
        assert ours.shape == (size, size, 3)
        assert np.array_equal(ours, load_one(path, size, "center")[0])
        assert np.array_equal(
            model_view(path.read_bytes(), size, "resize"), load_one(path, size, "resize")[0]
        )


def test_serve_cli_upload_budget_flag_reaches_the_app_and_refuses_nonsense(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cleaner.cli.serve as serve_cli
    import cleaner.web as web

    model = tmp_path / "M.keras"
    model.write_bytes(b"PK never loaded here")
    served: list[object] = []
    monkeypatch.setattr(serve_cli, "_preload", lambda predictor: None)
    monkeypatch.setattr(web, "run_server", lambda app, host, port: served.append(app))
    argv = ["serve", "--model", str(model), "--root", str(tmp_path)]
    for flags, budget_mb in (([], 512), (["--upload-budget-mb", "64"], 64)):
        r = CliRunner().invoke(cli_app, [*argv, *flags])
        assert r.exit_code == 0, r.output
        assert served.pop().extensions["cleaner"]["decode_budget"].total == budget_mb * 2**20
    for bad in ("0", "-5", "nan", "inf"):
        r = CliRunner().invoke(cli_app, [*argv, "--upload-budget-mb", bad])
        lines = r.stderr.strip().splitlines()
        assert r.exit_code == 1 and len(lines) == 1, r.output
        assert lines[0].startswith("error: --upload-budget-mb") and "positive" in lines[0]
    assert served == []


def test_the_review_file_keeps_unknown_keys_and_a_damaged_one_is_named(tmp_path: Path) -> None:
    """serve's decisions file: what a newer cleaner added (in the file, in a decision) survives
    an accept and an undo; a damaged file is refused with its path and the fix, nothing moved."""
    ds = make_state_dataset(tmp_path)
    review = ds.root / ".cleaner" / "review" / f"{ds.plan_id}.json"
    review.parent.mkdir()
    older = {"decision": "rejected", "at": "2026-11-23T12:00:00Z", "path": "fake_images/f3.png",
             "kind": "move", "note": "by hand"}  # fmt: skip
    review.write_text(json.dumps({"run_id": ds.plan_id, "reviewer": "ann", "items": {"m1": older}}))
    c = _client(ds.root)
    token = _token(c)
    r = c.post(f"/review/{ds.plan_id}/r0/accept?format=json", data={"csrf_token": token})
    assert r.status_code == 200, r.data
    doc = json.loads(review.read_text())
    assert doc["reviewer"] == "ann" and doc["items"]["m1"] == older
    assert doc["items"]["r0"]["decision"] == "accepted" and doc["items"]["r0"]["dst"]
    r = c.post(f"/review/{ds.plan_id}/r0/undo?format=json", data={"csrf_token": token})
    assert r.status_code == 200, r.data
    doc = json.loads(review.read_text())
    assert doc["reviewer"] == "ann" and set(doc["items"]) == {"m1"}
    for damaged in ('{"items": [1]}', '{"items": {"m1": {"decision": "maybe"}}}', "{"):
        review.write_text(damaged)
        before = sorted(p.relative_to(ds.root) for p in ds.root.rglob("*.jpg"))
        r = c.post(f"/review/{ds.plan_id}/m0/accept?format=json", data={"csrf_token": token})
        assert r.status_code == 409 and str(review) in r.get_json()["error"], r.data
        assert "cleaner serve" in r.get_json()["error"]  # the fix
        assert sorted(p.relative_to(ds.root) for p in ds.root.rglob("*.jpg")) == before
        assert str(review) in c.get("/review").get_data(as_text=True)
