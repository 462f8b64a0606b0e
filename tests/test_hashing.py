"""Hashes: imagehash's bits as uint64, the fast path, mirrors and crops, the sha256 cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image

from cleaner import hashing
from cleaner.dataset import Workspace
from cleaner.hashindex import hamming
from cleaner.images import load_rgb
from tests.dedupe_helpers import TRANSFORMS, picture, save_jpeg, transformed
from tests.image_factory import make_truncated_jpeg

IMAGEHASH_FNS = {
    "phash": imagehash.phash,
    "dhash": imagehash.dhash,
    "whash": imagehash.whash,
    "ahash": imagehash.average_hash,
}


def dist(a: int, b: int) -> int:
    return int(hamming(np.array([a], np.uint64), np.array([b], np.uint64))[0])


@pytest.mark.parametrize("method", hashing.METHODS)
def test_hash_is_imagehash_bits_as_uint64(tmp_path: Path, method: str) -> None:
    path = save_jpeg(picture(1, 128), tmp_path / "a.jpg")
    grey = hashing.small_grey(path)
    assert grey.size == (hashing.HASH_SIDE, hashing.HASH_SIDE)
    expected = int(str(IMAGEHASH_FNS[method](grey)), 16)
    assert hashing.perceptual_hash(path, method) == expected
    assert hashing.int_to_hex(expected) == str(IMAGEHASH_FNS[method](grey))


def test_fast_path_agrees_with_full_decode(tmp_path: Path) -> None:
    path = save_jpeg(picture(2, 256), tmp_path / "big.jpg")
    full = int(str(imagehash.phash(load_rgb(path))), 16)
    assert dist(hashing.perceptual_hash(path), full) <= 4


@pytest.mark.parametrize("kind", TRANSFORMS)
def test_transformed_copies_stay_close(tmp_path: Path, kind: str) -> None:
    im = picture(3, 128)
    a = hashing.image_hashes(save_jpeg(im, tmp_path / "a.jpg"))
    t, q = transformed(im, kind, seed=3)
    b = hashing.image_hashes(save_jpeg(t, tmp_path / "b.jpg", q))
    other = hashing.image_hashes(save_jpeg(picture(99, 128), tmp_path / "c.jpg"))
    best = min(dist(x, b.hash) for x in (a.hash, a.mirror, a.crop, *a.corners))
    assert best <= 6
    assert dist(a.hash, other.hash) > 16
    if kind == "mirror":
        assert dist(a.mirror, b.hash) <= 4


def test_cache_hashes_only_new_contents(tmp_path: Path) -> None:
    root = tmp_path / "root"
    paths = [save_jpeg(picture(s), root / f"{s}.jpg") for s in range(4)]
    items = [(str(p), hashing.file_sha256(p)) for p in paths]
    ws = Workspace.open(root, require_classes=False)
    first = hashing.hash_files(items, ws=ws, workers=1)
    assert (first.computed, first.reused, len(first.table)) == (4, 0, 4)
    assert hashing.cache_path(ws, "phash").exists()
    again = hashing.hash_files(items, ws=ws, workers=1)
    assert (again.computed, again.reused) == (0, 4)
    assert np.array_equal(again.table.hash, first.table.hash)
    new = save_jpeg(picture(10), root / "new.jpg")
    more = hashing.hash_files([*items, (str(new), hashing.file_sha256(new))], ws=ws, workers=1)
    assert (more.computed, more.reused) == (1, 4)
    # another method has its own cache; a byte copy is one content
    dup = root / "dup.jpg"
    shutil.copy(paths[0], dup)
    d = hashing.hash_files([*items, (str(dup), items[0][1])], "dhash", ws=ws, workers=1)
    assert (d.computed, len(d.table)) == (4, 4)


def test_broken_cache_is_rebuilt_not_fatal(tmp_path: Path) -> None:
    p = save_jpeg(picture(5), tmp_path / "a.jpg")
    ws = Workspace.open(tmp_path, require_classes=False)
    hashing.cache_path(ws, "phash").parent.mkdir(parents=True)
    hashing.cache_path(ws, "phash").write_bytes(b"not an npz")
    run = hashing.hash_files([(str(p), "s1")], ws=ws, workers=1)
    assert run.computed == 1 and len(run.table) == 1


def test_undecodable_file_is_reported(tmp_path: Path) -> None:
    bad = make_truncated_jpeg(tmp_path / "bad.jpg", size=64, keep=0.3)
    good = save_jpeg(picture(6), tmp_path / "good.jpg")
    run = hashing.hash_files([(str(bad), "bad"), (str(good), "good")], workers=1)
    assert list(run.table.sha256) == ["good"]
    assert set(run.failed) == {"bad"}


def test_pixel_digest_same_pixels_different_bytes(tmp_path: Path) -> None:
    im = picture(7)
    png, bmp = tmp_path / "a.png", tmp_path / "a.bmp"
    im.save(png)
    im.save(bmp)
    other = tmp_path / "b.png"
    picture(8).save(other)
    items = [(str(p), hashing.file_sha256(p)) for p in (png, bmp, other)]
    assert items[0][1] != items[1][1]
    ws = Workspace.open(tmp_path, require_classes=False)
    d = hashing.pixel_digests(items, ws=ws, workers=1)
    assert d[items[0][1]] == d[items[1][1]] != d[items[2][1]]
    assert (tmp_path / ".cleaner" / "cache" / "pixel-digests.csv").exists()
    # cached: a second call returns the same without decoding (file removed)
    png.unlink()
    assert hashing.pixel_digests(items[:1], ws=ws, workers=1) == {items[0][1]: d[items[0][1]]}


def test_grey_kept_for_confirmation(tmp_path: Path) -> None:
    p = save_jpeg(picture(9), tmp_path / "a.jpg")
    run = hashing.hash_files([(str(p), "x")], workers=1)
    assert run.table.grey.shape == (1, hashing.GREY_PIXELS)
    assert np.array_equal(
        run.table.grey[0], np.asarray(hashing.small_grey(p), dtype=np.uint8).ravel()
    )
    assert Image.open(p).size == (96, 96)


def test_batched_phash_is_bit_identical_to_imagehash(tmp_path: Path) -> None:
    greys = [
        hashing.small_grey(save_jpeg(picture(s, 80 + s), tmp_path / f"{s}.jpg")) for s in range(12)
    ]
    hs = hashing.hashes_of_greys(greys, "phash")
    windows = hashing.crop_windows(np.stack([np.asarray(g) for g in greys]))
    side = hashing.HASH_SIDE
    for g, h, w in zip(greys, hs, windows, strict=True):
        assert h.hash == int(str(imagehash.phash(g)), 16)
        flipped = g.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        assert h.mirror == int(str(imagehash.phash(flipped)), 16)
        crops = (h.crop, *h.corners)
        for k, value in enumerate(crops):
            assert value == int(str(imagehash.phash(Image.fromarray(w[k], "L"))), 16)
        # the windows are Pillow's Lanczos crops (as matrices, so a stack costs two products)
        keep = hashing.CROP_KEEP
        for k, (fx, fy) in enumerate(((0.5, 0.5), *hashing.CORNERS)):
            m = side * (1 - keep)
            box = (fx * m, fy * m, fx * m + side * keep, fy * m + side * keep)
            ref = np.asarray(g.resize((side, side), Image.Resampling.LANCZOS, box=box), np.int16)
            assert np.abs(ref - w[k].astype(np.int16)).max() <= 2
    assert len({h.hash for h in hs}) == len(hs)
