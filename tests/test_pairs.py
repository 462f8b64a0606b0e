"""A fake made from a real photo (a pasted region) is a pair, not a duplicate: kept, listed under
``pairs``, never moved, one fold and one split; the same picture in both classes is a label
conflict, listed for review, never moved; same-class copies are quarantined as before."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.dataset import Workspace
from cleaner.models import folds
from cleaner.pairs import PEAK, align, image_of, locality
from cleaner.split import dataset_samples, make_split
from tests.dedupe_helpers import picture
from tests.pairs_helpers import Truth, build, composite, jpeg_bytes

runner = CliRunner()


def pictures(n: int) -> list[functools.partial[Image.Image]]:
    return [functools.partial(picture, 1000 + k, 160) for k in range(n)]


@pytest.fixture(scope="module")
def deduped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Truth, dict, dict]:
    """8 composites beside their sources, 4 cross-class copies (2 bytes, 2 JPEG 60), 4
    same-class copies and 8 other pictures; ``dedupe --apply``. Noses and mouths: an eyes box
    covers a fifth of these smooth pictures' detail, so the copy is no longer found as one at
    all (on faces it is: bench/bench_pairs.py)."""
    root = tmp_path_factory.mktemp("pairs") / "data"
    pics = pictures(40)
    truth = build(
        root, pics[:24], composites=8, byte_copies=2, reencoded=2, same_class=4,
        extra=pics[24:32], regions=("nose", "mouth"),
    )  # fmt: skip
    res = runner.invoke(app, ["dedupe", "--root", str(root), "--apply", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    doc = json.loads((root / ".cleaner/duplicates.json").read_text())
    return root, truth, summary, doc


def test_pairs_kept_conflicts_reviewed_copies_quarantined(deduped: tuple) -> None:
    root, truth, summary, doc = deduped
    listed = {(p["real"], p["fake"]) for p in doc["pairs"]}
    # every pair listed is a composite beside its source; a composite whose match the verifier
    # does not accept at all is in no group either (on faces: 98 of 100, bench/bench_pairs.py)
    assert listed <= set(truth.pairs) and len(listed) >= 6
    in_group = {m["path"] for g in doc["groups"] for m in g["members"]}
    assert not in_group & {x for pair in truth.pairs for x in pair}
    for p in doc["pairs"]:
        assert p["peak"] >= PEAK and 0 < p["share"] < 0.5 and p["score"] > 0
        x0, y0, x1, y1 = p["box"]
        tx0, ty0, tx1, ty1 = truth.boxes[p["fake"]]
        # the changed region found overlaps the pasted one
        assert min(x1, tx1) > max(x0, tx0) and min(y1, ty1) > max(y0, ty0)
    # conflicts: one review-only group each, in the review list, never moved
    groups = {frozenset(m["path"] for m in g["members"]): g for g in doc["groups"]}
    for real, fake in truth.conflicts:
        g = groups[frozenset((real, fake))]
        assert g["conflict"] and g["review_only"]
        assert g["id"] in {r["group"] for r in doc["review"]}
        assert (root / real).exists() and (root / fake).exists()
    for real, fake in truth.pairs:
        assert (root / real).exists() and (root / fake).exists()
    # same-class copies: quarantined as before, one of each
    for a, b in truth.same:
        assert not groups[frozenset((a, b))]["conflict"]
        assert (root / a).exists() != (root / b).exists()
        moved = b if (root / a).exists() else a
        assert (root / "quarantine/duplicates" / moved).exists()
    assert summary["moved"] == len(truth.same) == summary["to_quarantine"]
    assert summary["pairs"] == len(listed) and summary["conflicts"] == 4
    fakes = sum(  # before --apply moved the same-class copies
        1 for d in (root, root / "quarantine/duplicates") for p in (d / "fake_images").iterdir()
    )
    assert summary["paired"] == f"{len(listed)} of {fakes} fakes are paired with a real photo"


def test_pairs_share_a_fold_and_a_split(deduped: tuple) -> None:
    root = deduped[0]
    samples = dataset_samples(Workspace.open(root))
    paths = [s.path for s in samples]
    shas = [s.sha256 for s in samples]
    gid = folds.group_ids(paths, shas, folds.duplicate_groups(root))
    y = np.array([s.label == "fake" for s in samples], dtype=np.int64)
    fold = folds.assign_folds(y, gid, 3)
    at = {p: i for i, p in enumerate(paths)}
    listed = [(p["real"], p["fake"]) for p in json.loads(
        (root / ".cleaner/duplicates.json").read_text())["pairs"]]  # fmt: skip
    assert listed
    for real, fake in listed:
        assert gid[at[real]] == gid[at[fake]]
        assert fold[at[real]] == fold[at[fake]]
    # without the pairs, the ids are the images' own: the pairs are what joins them
    alone = folds.group_ids(paths, shas, [])
    assert all(alone[at[r]] != alone[at[f]] for r, f in listed)
    rows, _ = make_split(Workspace.open(root), samples, resplit=True)
    split = {r.path: r.split for r in rows}
    assert len(set(split.values())) > 1
    for real, fake in listed:
        assert split[real] == split[fake]


def test_report_shows_pairs_with_a_difference_map(deduped: tuple, tmp_path: Path) -> None:
    root, _, _, doc = deduped
    out = tmp_path / "report.html"
    res = runner.invoke(app, ["report", "--root", str(root), "--out", str(out)])
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert 'id="pairs"' in html
    for p in doc["pairs"]:
        assert p["fake"] in html and p["real"] in html
    assert html.count('class="diffmap"') == len(doc["pairs"])


def test_local_change_measured_global_change_not() -> None:
    """The statistic itself on one picture: a pasted box stands out, a re-encoding, a resize
    and a 5 % crop do not."""
    src = picture(7, 160)
    fake, _ = composite(src, picture(8, 160), "nose", np.random.default_rng(0))

    def peak(b: Image.Image) -> float:
        a, _ = image_of(src)
        f, size = image_of(b)
        return locality(align(a, f), size).peak

    import io

    def reopen(data: bytes) -> Image.Image:
        return Image.open(io.BytesIO(data)).convert("RGB")

    assert peak(reopen(jpeg_bytes(fake, 90))) >= PEAK
    assert peak(src) == 0.0
    assert peak(reopen(jpeg_bytes(src, 60))) < PEAK
    assert peak(src.resize((80, 80), Image.Resampling.LANCZOS)) < PEAK
    assert peak(src.crop((4, 4, 156, 156))) < PEAK


def test_serve_shows_conflicts_side_by_side(deduped: tuple) -> None:
    from cleaner.web import create_app

    root, truth, _, doc = deduped
    c = create_app(root, predictor=lambda im: 0.5).test_client()  # type: ignore[arg-type]
    r = c.get("/conflicts")
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    conflicts = [g for g in doc["groups"] if g["conflict"]]
    assert html.count('class="box conflict"') == len(conflicts) == len(truth.conflicts)
    for real, fake in truth.conflicts:
        assert real in html and fake in html
    for p in doc["pairs"]:  # a pair is no conflict
        assert p["fake"] not in html
    img = c.get("/conflict-thumb/0/1")
    assert img.status_code == 200 and img.mimetype == "image/jpeg"
    assert c.get("/conflict-thumb/0/9").status_code == 404
    assert c.get(f"/conflict-thumb/{len(conflicts)}/0").status_code == 404


def test_duplicates_file_pairs_read_kept_and_checked(tmp_path: Path) -> None:
    from cleaner.errors import CleanerError
    from cleaner.state import duplicates

    def put(d: dict[str, object]) -> None:  # as an older or a damaged writer left it
        (tmp_path / ".cleaner").mkdir(exist_ok=True)
        duplicates.path(tmp_path).write_text(json.dumps(d), encoding="utf-8")

    doc = {"method": "phash", "max_distance": 10, "groups": []}
    put(doc)  # an older file: no pairs
    got = duplicates.read(tmp_path)
    assert got is not None and got.pairs == () and duplicates.member_keys(tmp_path) == []
    pair = {"real": "real_images/a.jpg", "fake": "fake_images/b.jpg", "real_sha256": "aa",
            "fake_sha256": "bb", "box": [1, 2, 3, 4], "future_key": 7}  # fmt: skip
    put({**doc, "pairs": [pair]})
    got = duplicates.read(tmp_path)
    assert got is not None and got.pairs[0].extra["future_key"] == 7
    duplicates.write(tmp_path, got)  # a reader that writes back keeps what it does not know
    again = duplicates.read(tmp_path)
    assert again is not None and again.pairs[0].to_json() == pair
    assert duplicates.member_keys(tmp_path) == [
        [("real_images/a.jpg", "aa"), ("fake_images/b.jpg", "bb")]
    ]
    put({**doc, "pairs": {"real": "x"}})
    with pytest.raises(CleanerError, match="'pairs' is not a list"):
        duplicates.read(tmp_path)
