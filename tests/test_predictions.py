"""Predictions files: writer, every accepted format, whole-file validation, matching to files."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cleaner.dataset import Workspace
from cleaner.predictions import (
    FORMAT_V1,
    HARD_LABELS,
    MAPPING,
    PredictionsError,
    match_entries,
    read_predictions,
    write_predictions_v1,
)

SHA_A = "a" * 64
SHA_B = "b" * 64


@dataclass(frozen=True)
class Row:
    path: str
    sha256: str


def write(tmp_path: Path, doc: Any, name: str = "p.json") -> Path:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def v1(*entries: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"format": FORMAT_V1, "model": {"name": "m"}, "classes": ["real", "fake"],
            "out_of_fold": True, "predictions": list(entries), **top}  # fmt: skip


def test_write_then_read_v1_round_trip(tmp_path: Path) -> None:
    entries = [
        {"path": "real_images/a.png", "sha256": SHA_A, "label": "real", "prob_fake": 0.25},
        {"path": "fake_images/s/b.png", "sha256": SHA_B, "label": "fake", "prob_fake": 1},
    ]
    out = write_predictions_v1(
        tmp_path / "out" / "p.json", model={"name": "m", "backbone": "x"}, entries=entries,
        out_of_fold=True,
    )  # fmt: skip
    doc = json.loads(out.read_text())
    assert doc["format"] == FORMAT_V1 and doc["classes"] == ["real", "fake"]
    assert doc["out_of_fold"] is True and doc["model"]["backbone"] == "x"
    assert [e["prob_fake"] for e in doc["predictions"]] == [0.25, 1.0]
    assert os.listdir(tmp_path / "out") == ["p.json"]  # no temp file left behind
    pf = read_predictions(out)
    assert pf.format == FORMAT_V1 and pf.out_of_fold is True
    assert [(e.path, e.sha256, e.prob_fake, e.hard) for e in pf.entries] == [
        ("real_images/a.png", SHA_A, 0.25, False),
        ("fake_images/s/b.png", SHA_B, 1.0, False),
    ]


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"path": "a.png", "sha256": SHA_A, "label": "real", "prob_fake": 1.5}, "outside"),
        ({"path": "a.png", "sha256": SHA_A, "label": "real", "prob_fake": float("nan")}, "out"),
        ({"path": "a.png", "sha256": SHA_A, "label": "dog", "prob_fake": 0.5}, "label"),
        ({"path": "a.png", "sha256": SHA_A, "label": "real"}, "prob_fake"),
    ],
)
def test_writer_refuses_bad_entries_and_writes_nothing(
    tmp_path: Path, entry: dict[str, Any], match: str
) -> None:
    with pytest.raises(PredictionsError, match=match):
        write_predictions_v1(tmp_path / "p.json", model={}, entries=[entry], out_of_fold=True)
    assert not (tmp_path / "p.json").exists()


def test_hard_label_lists_every_key_and_value_spelling(tmp_path: Path) -> None:
    doc = [
        {"path": "real_images/a.png", "prediction": "fake"},
        {"image": "real_images/b.png", "label": "REAL"},
        {"file": "fake_images/c.png", "prediction": 1},  # original scripts: 1 = real
        {"index": 7, "prediction": 0},  # 0 = fake
        {"index": 8, "image": "8.png", "prediction": "fake", "prob_fake": 0.93},  # predict-dir
    ]
    pf = read_predictions(write(tmp_path, doc))
    assert pf.format == HARD_LABELS and pf.out_of_fold is None
    got = [(e.key, e.path, e.index, e.prob_fake, e.hard) for e in pf.entries]
    assert got == [
        ("real_images/a.png", "real_images/a.png", None, 1.0, True),
        ("real_images/b.png", "real_images/b.png", None, 0.0, True),
        ("fake_images/c.png", "fake_images/c.png", None, 0.0, True),
        ("index 7", None, 7, 1.0, True),
        ("8.png", "8.png", None, 0.93, False),
    ]


def test_plain_mapping(tmp_path: Path) -> None:
    pf = read_predictions(write(tmp_path, {"real_images/a.png": "fake", "fake_images/b.png": 0.2}))
    assert pf.format == MAPPING
    assert [(e.path, e.prob_fake, e.hard) for e in pf.entries] == [
        ("real_images/a.png", 1.0, True),
        ("fake_images/b.png", 0.2, False),
    ]


BAD = [
    # (document, words the one-line error must contain)
    (v1({"path": "a.png", "prob_fake": 1.2}), ["entry #0", "'a.png'", "outside [0, 1]"]),
    (v1({"path": "a.png", "prob_fake": -0.1}), ["entry #0", "outside [0, 1]"]),
    (
        '{"format": "cleaner.predictions.v1", "predictions": [{"path": "a", "prob_fake": NaN}]}',
        ["entry #0", "nan"],
    ),
    (v1({"path": "a.png", "prob_fake": "0.3"}), ["not a number"]),
    (v1({"path": "a.png", "prob_fake": True}), ["not a number"]),
    (v1({"path": "a.png", "label": "dog", "prob_fake": 0.3}), ["unknown class 'dog'"]),
    (v1({"path": "a.png"}), ["no prob_fake"]),
    (v1({"path": "a.png", "prob_fake": 0.3, "sha256": "xyz"}), ["not a sha256"]),
    (v1(classes=["real", "dog"]), ["unknown classes"]),
    ({"format": "other.v9", "predictions": []}, ["unknown format 'other.v9'"]),
    (v1({"path": "../../etc/passwd", "prob_fake": 0.3}), ["entry #0", "outside ROOT"]),
    (v1({"path": "real_images/../../x.png", "prob_fake": 0.3}), ["outside ROOT"]),
    (v1({"path": "/etc/passwd", "prob_fake": 0.3}), ["absolute", "outside ROOT"]),
    (
        v1({"path": "a.png", "prob_fake": 0.3}, {"path": "./a.png", "prob_fake": 0.9}),
        ["entry #1", "twice with different values"],
    ),
    ([{"path": "a.png", "prediction": "real"}, {"image": "a.png", "prediction": 0}], ["twice"]),
    ([{"index": 3, "prediction": 1}, {"index": 3, "prediction": "fake"}], ["index 3", "twice"]),
    ([{"path": "a.png", "prediction": "dog"}], ["unknown class 'dog'", "0 (fake) or 1 (real)"]),
    ([{"path": "a.png", "prediction": 2}], ["unknown class 2"]),
    ([{"path": "a.png"}], ["has no prediction"]),
    ([{"prediction": "real"}], ["names no image"]),
    (["a.png"], ["is not an object"]),
    ({"a.png": "dog"}, ["unknown class 'dog'"]),
    ({"a.png": 3}, ["outside [0, 1]"]),
    ({"a.png": [0.3]}, ["neither a class nor a probability"]),
    ({"predictions": [{"path": "a.png", "prob_fake": 0.1}]}, ["no 'format'"]),
    ("42", ["fits no predictions format"]),
    ('{"format": "cleaner.predictions.v1", "predictions": [', ["not valid JSON", "line 1"]),
]


@pytest.mark.parametrize(("doc", "words"), BAD)
def test_bad_files_are_refused_whole_with_one_line(
    tmp_path: Path, doc: Any, words: list[str]
) -> None:
    (tmp_path / "R" / "real_images").mkdir(parents=True)
    path = write(tmp_path, doc, "bad.json")
    with pytest.raises(PredictionsError) as e:
        read_predictions(path, ws=Workspace.open(tmp_path / "R"))
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    for w in words:
        assert w in msg


def test_identical_repeats_are_harmless(tmp_path: Path) -> None:
    pf = read_predictions(write(tmp_path, {"a.png": 0.3, "./a.png": 0.3}))
    assert len(pf.entries) == 1


def test_missing_file_and_non_utf8(tmp_path: Path) -> None:
    with pytest.raises(PredictionsError, match="does not exist"):
        read_predictions(tmp_path / "nope.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(PredictionsError, match="not UTF-8"):
        read_predictions(tmp_path / "bin.json")


def test_symlink_leading_out_of_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "R"
    (root / "real_images").mkdir(parents=True)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"x")
    (root / "real_images" / "link.png").symlink_to(secret)
    (root / "real_images" / "dir").symlink_to(tmp_path)
    for p in ("real_images/link.png", "real_images/dir/secret.png"):
        path = write(tmp_path, v1({"path": p, "prob_fake": 0.9}))
        with pytest.raises(PredictionsError, match="outside ROOT through a symlink"):
            read_predictions(path, ws=Workspace.open(root))


def test_absolute_path_inside_root_is_made_relative(tmp_path: Path) -> None:
    root = tmp_path / "R"
    (root / "real_images").mkdir(parents=True)
    path = write(tmp_path, v1({"path": str(root / "real_images" / "a.png"), "prob_fake": 0.9}))
    (e,) = read_predictions(path, ws=Workspace.open(root)).entries
    assert e.path == "real_images/a.png"


def test_matching_sha256_first_then_path(tmp_path: Path) -> None:
    rows = [
        Row("fake_images/moved.png", SHA_A),  # was real_images/moved.png when predicted
        Row("real_images/b.png", SHA_B),
        Row("real_images/changed.png", "c" * 64),
        Row("real_images/s/7.png", "d" * 64),
        Row("real_images/dup1.png", "e" * 64),
        Row("fake_images/dup2.png", "e" * 64),
        Row("real_images/x/n.png", "f" * 64),
        Row("fake_images/y/n.png", "9" * 64),
    ]
    pf = read_predictions(
        write(
            tmp_path,
            v1(
                {"path": "real_images/moved.png", "sha256": SHA_A, "prob_fake": 0.9},
                {"path": "real_images/b.png", "prob_fake": 0.2},  # no sha: by path
                {"path": "real_images/changed.png", "sha256": "1" * 64, "prob_fake": 0.9},
                {"path": "real_images/gone.png", "sha256": "2" * 64, "prob_fake": 0.9},
                # one sha256 twice must carry one value (different ones refuse the file)
                {"path": "real_images/dup9.png", "sha256": "e" * 64, "prob_fake": 0.8},
                {"path": "real_images/dup1.png", "sha256": "e" * 64, "prob_fake": 0.8},
            ),
        )
    )
    m = match_entries(pf, rows)
    assert m.probs == {
        "fake_images/moved.png": 0.9,
        "real_images/b.png": 0.2,
        "real_images/dup1.png": 0.8,
    }
    assert (m.matched, m.unmatched, m.stale, m.ambiguous) == (3, 1, 1, 1)
    assert any("changed since predicted" in x for x in m.examples)
    s = m.summary()
    assert s["matched"] == 3 and s["format"] == FORMAT_V1

    hard = read_predictions(
        write(tmp_path, [{"index": 7, "prediction": 0}, {"image": "n.png", "prediction": 1}])
    )
    mh = match_entries(hard, rows)
    assert mh.probs == {"real_images/s/7.png": 1.0}  # unique stem; 'n.png' is ambiguous
    assert (mh.matched, mh.ambiguous) == (1, 1)
