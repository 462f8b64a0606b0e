"""Issue 16's recall: a crop and a mirror of one original join the kept mirror (verified
directly, proposed two matches apart); the proposal against brute force."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.dedupe import HOP_MAX_DEGREE, two_hop
from tests.dedupe_helpers import picture, save_jpeg

runner = CliRunner()


def test_crop_joins_the_kept_mirror(tmp_path: Path) -> None:
    root = tmp_path / "data"
    im = picture(3, 160)
    w, h = im.size
    save_jpeg(im, root / "real_images/orig.jpg", 80)
    # the mirror has the most bytes of the same pixels: it is the copy kept
    save_jpeg(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), root / "real_images/mirror.jpg", 98)
    crop = im.crop((3, 5, 3 + round(w * 0.95), 5 + round(h * 0.95)))
    save_jpeg(crop, root / "real_images/crop.jpg", 80)
    for seed in range(10, 16):
        save_jpeg(picture(seed, 160), root / f"fake_images/other{seed}.jpg", 80)
    # at radius 4 the crop is a hash candidate of the original only (not of the kept mirror):
    # without the two-hop proposal it is left out (checked against the code before)
    res = runner.invoke(app, ["dedupe", "--root", str(root), "--json", "--max-distance", "4"])
    assert res.exit_code == 0, res.output
    doc = json.loads((root / ".cleaner" / "duplicates.json").read_text())
    groups = {g["kept"]: {m["path"] for m in g["members"]} for g in doc["groups"]}
    assert groups["real_images/mirror.jpg"] == {
        "real_images/orig.jpg",
        "real_images/mirror.jpg",
        "real_images/crop.jpg",
    }
    assert len(groups) == 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12), st.booleans()), max_size=40),
    st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), max_size=10),
)
def test_two_hop_proposes_each_untested_pair_two_matches_apart(
    edges: list[tuple[int, int, bool]], tested_extra: list[tuple[int, int]]
) -> None:
    edges = [(min(x, y), max(x, y), m) for x, y, m in edges if x != y]
    edges = list({(x, y): (x, y, m) for x, y, m in edges}.values())
    a = np.array([e[0] for e in edges], dtype=np.int64)
    b = np.array([e[1] for e in edges], dtype=np.int64)
    m = np.array([e[2] for e in edges], dtype=bool)
    tested = {(x, y) for x, y, _ in edges} | {(min(x, y), max(x, y)) for x, y in tested_extra}
    ha, hb, hm = two_hop(a, b, m, tested)
    got = {(int(x), int(y)): bool(f) for x, y, f in zip(ha, hb, hm, strict=True)}
    # brute force: every x-y-z path through a node of small degree, mirrored when one step is
    mirror = {(x, y): f for x, y, f in edges}
    nbr: dict[int, set[int]] = {}
    for x, y, _ in edges:
        nbr.setdefault(x, set()).add(y)
        nbr.setdefault(y, set()).add(x)
    want: dict[tuple[int, int], set[bool]] = {}
    for y, ends in nbr.items():
        if len(ends) > HOP_MAX_DEGREE:
            continue
        for x in ends:
            for z in ends:
                key = (min(x, z), max(x, z))
                if x < z and key not in tested:
                    f = mirror[(min(x, y), max(x, y))] != mirror[(min(y, z), max(y, z))]
                    want.setdefault(key, set()).add(f)
    assert set(got) == set(want)
    assert all(got[k] in want[k] for k in got)
    assert all(x < y for x, y in got)
