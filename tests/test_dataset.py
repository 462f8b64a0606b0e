"""ROOT, class folders by alias, walking without leaving ROOT, and path confinement."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleaner.dataset import (
    CLASS_ALIASES,
    check_relpath,
    find_class_dirs,
    open_dataset,
    other_label,
    resolve_inside,
)
from cleaner.errors import DatasetError, PathEscapeError
from tests import image_factory as F


def _files(ds_root: Path) -> dict[str, str]:
    ds = open_dataset(ds_root)
    return {e.relpath: e.label for e in ds.walk()}


def test_aliases_are_found(tmp_path: Path) -> None:
    F.make_jpeg(tmp_path / "REAL" / "a.jpg")
    F.make_jpeg(tmp_path / "ai" / "b.jpg")
    F.make_jpeg(tmp_path / "training_fake" / "c.jpg")
    (tmp_path / "unrelated").mkdir()
    ds = open_dataset(tmp_path)
    assert ds.class_dirs == {"real": ("REAL",), "fake": ("ai", "training_fake")}
    assert _files(tmp_path) == {
        "REAL/a.jpg": "real",
        "ai/b.jpg": "fake",
        "training_fake/c.jpg": "fake",
    }
    assert ds.class_dir("fake") == "ai"
    assert ds.label_of("training_fake/x/y.png") == "fake"
    assert ds.label_of("unrelated/x.png") is None


@pytest.mark.parametrize(
    ("label", "alias"), [(label, a) for label, names in CLASS_ALIASES.items() for a in names]
)
def test_every_alias_maps_to_its_label(tmp_path: Path, label: str, alias: str) -> None:
    (tmp_path / alias).mkdir()
    found = find_class_dirs(tmp_path)
    assert found[label] == (alias,)
    assert found[other_label(label)] == ()


def test_moves_go_to_existing_folder_or_preferred_name(tmp_path: Path) -> None:
    (tmp_path / "REAL").mkdir()
    ds = open_dataset(tmp_path)
    assert ds.moved_path("REAL/sub/a.jpg", "fake") == "fake_images/sub/a.jpg"
    assert ds.moved_path("fake_images/a.jpg", "real") == "REAL/a.jpg"
    assert other_label("real") == "fake" and other_label("fake") == "real"
    with pytest.raises(ValueError):
        other_label("other")
    with pytest.raises(PathEscapeError):
        ds.moved_path("a.jpg", "fake")


def test_open_dataset_errors_name_the_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        open_dataset(tmp_path / "f.txt")
    with pytest.raises(DatasetError, match="no class folder"):
        open_dataset(tmp_path)
    assert open_dataset(tmp_path, require_classes=False).class_dirs == {"real": (), "fake": ()}


def test_walk_skips_state_and_quarantine_and_keeps_subfolders(tmp_path: Path) -> None:
    F.make_jpeg(tmp_path / "real_images" / "a.jpg")
    F.make_jpeg(tmp_path / "real_images" / "deep" / "er" / "b.jpg")
    F.make_jpeg(tmp_path / "real_images" / "quarantine" / "user_folder.jpg")  # a user's folder
    F.make_jpeg(tmp_path / "real_images" / ".cleaner" / "state.jpg")
    F.make_jpeg(tmp_path / "quarantine" / "duplicates" / "real_images" / "c.jpg")
    F.make_jpeg(tmp_path / ".cleaner" / "cache.jpg")
    F.make_jpeg(tmp_path / "fake_images" / "d.png")
    assert _files(tmp_path) == {
        "real_images/a.jpg": "real",
        "real_images/deep/er/b.jpg": "real",
        "real_images/quarantine/user_folder.jpg": "real",
        "fake_images/d.png": "fake",
    }


def test_walk_survives_loops_and_never_leaves_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    secret = F.make_jpeg(outside / "secret.jpg")
    root = tmp_path / "root"
    F.make_jpeg(root / "real_images" / "a.jpg")
    F.make_jpeg(root / "fake_images" / "b.jpg")
    F.make_symlink_out_of_root(root / "real_images" / "out.jpg", secret)
    os.symlink(outside, root / "real_images" / "outdir")  # folder outside: not entered
    F.make_symlink_loop(root / "real_images" / "loops")
    os.symlink(root, root / "real_images" / "to_root")  # would list every class again
    os.symlink(root / "fake_images", root / "real_images" / "to_fake")  # another class
    F.make_jpeg(root / "shared" / "s.jpg")
    os.symlink(root / "shared", root / "fake_images" / "shared")  # inside ROOT: followed
    entries = {e.relpath: e for e in open_dataset(root).walk()}
    assert set(entries) == {
        "real_images/a.jpg",
        "real_images/out.jpg",
        "real_images/loops/loop_a.jpg",
        "real_images/loops/loop_b.jpg",
        "fake_images/b.jpg",
        "fake_images/shared/s.jpg",
        # folder links not entered are entries too (scan gives them a row), never walked
        "real_images/outdir",
        "real_images/to_root",
        "real_images/to_fake",
    }
    assert entries["real_images/outdir"].escapes_root
    assert entries["real_images/to_fake"].folder_link
    assert entries["real_images/to_fake"].link_target == "fake_images"
    assert entries["real_images/to_root"].folder_link
    assert entries["real_images/out.jpg"].escapes_root
    assert not entries["real_images/a.jpg"].escapes_root
    assert not entries["real_images/loops/loop_a.jpg"].escapes_root
    assert entries["fake_images/shared/s.jpg"].label == "fake"


@pytest.mark.parametrize(
    "bad", ["", "/etc/passwd", "..", "../x", "a/../../x", "C:/x", "c:\\x", ".", "a/..", "\x00"]
)
def test_check_relpath_refuses(bad: str) -> None:
    with pytest.raises(PathEscapeError):
        check_relpath(bad)


@pytest.mark.parametrize(
    ("good", "norm"),
    [
        ("a/b.jpg", "a/b.jpg"),
        ("./a//b.jpg", "a/b.jpg"),
        ("a/x/../b.jpg", "a/b.jpg"),
        ("a\\b", "a/b"),
    ],
)
def test_check_relpath_normalises(good: str, norm: str) -> None:
    assert check_relpath(good).as_posix() == norm


@pytest.fixture(scope="module")
def trap_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ROOT with symlinks that lead out (file and folder), a loop, and an inside link."""
    base = tmp_path_factory.mktemp("trap")
    outside = base / "outside"
    F.make_jpeg(outside / "secret.jpg")
    root = base / "root"
    F.make_jpeg(root / "real_images" / "a.jpg")
    os.symlink(outside, root / "real_images" / "out")
    os.symlink(outside / "secret.jpg", root / "real_images" / "s.jpg")
    os.symlink("..", root / "real_images" / "up")
    os.symlink("../..", root / "real_images" / "upup")
    os.symlink("real_images", root / "inner")
    return root


_PARTS = st.sampled_from(
    ["..", ".", "", "real_images", "a.jpg", "out", "s.jpg", "up", "upup", "inner", "secret.jpg",
     "/", "\\", "x"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(_PARTS, max_size=7), lead=st.sampled_from(["", "/", "./", "../"]))
def test_nothing_ever_resolves_outside_root(trap_root: Path, parts: list[str], lead: str) -> None:
    rel = lead + "/".join(parts)
    try:
        p = resolve_inside(trap_root, rel)
    except PathEscapeError:
        return
    real = Path(os.path.realpath(p))
    assert real.is_relative_to(Path(os.path.realpath(trap_root)))
    try:
        checked = check_relpath(rel)
    except PathEscapeError:  # resolve_inside read a backslash as part of an existing name
        checked = check_relpath(rel, backslash_is_separator=False)
    assert not checked.is_absolute()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_check_relpath_never_climbs(text: str) -> None:
    try:
        rel = check_relpath(text)
    except PathEscapeError:
        return
    assert not rel.is_absolute()
    assert ".." not in rel.parts
    assert rel.parts


def test_class_folder_linked_from_outside_is_named_not_followed(tmp_path: Path) -> None:
    F.make_jpeg(tmp_path / "big" / "real" / "a.jpg")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(tmp_path / "big" / "real", root / "real_images")
    with pytest.raises(DatasetError, match=r"real_images .*symlinks leading out of ROOT"):
        open_dataset(root)
    F.make_jpeg(root / "fake_images" / "b.jpg")
    ds = open_dataset(root)
    assert ds.outside_links == ("real_images",)
    assert [e.relpath for e in ds.walk()] == ["fake_images/b.jpg"]
