"""The embedding cache: a hit runs no backbone, the key separates what changes features, a
moved image is still a hit, an edited one is a miss."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cleaner.hashing import file_sha256
from cleaner.models import embeddings as E
from cleaner.models import runtime as RT
from cleaner.models.backbones import get_backbone
from tests.models_helpers import make_image, make_root


def _items(root: Path) -> list[tuple[Path, str]]:
    files = sorted(root.glob("*_images/*.png"))
    return [(p, file_sha256(p)) for p in files]


@pytest.fixture()
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts backbone runs (compute_features) and networks made for them (runtime.load: a
    Keras build, or the fast runtime's converted model)."""
    calls = {"compute": 0, "images": 0, "build": 0}
    real_compute = E.compute_features
    real_load = RT.load

    def compute(spec: E.EmbeddingSpec, paths: list[Path], **kw: object) -> object:
        calls["compute"] += 1
        calls["images"] += len(paths)
        return real_compute(spec, paths, **kw)  # type: ignore[arg-type]

    def load(*a: object, **kw: object) -> object:
        calls["build"] += 1
        return real_load(*a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(E, "compute_features", compute)
    monkeypatch.setattr(RT, "load", load)
    return calls


def test_cache_hit_runs_no_backbone(tmp_path: Path, counted: dict[str, int]) -> None:
    root = make_root(tmp_path / "R", 4, size=40)
    items = _items(root)
    spec = E.EmbeddingSpec(get_backbone("simple-cnn"), "none", 32, "resize")
    first = E.embed(root, items, spec, batch_size=3)
    assert (first.computed, first.cached) == (8, 0)
    assert counted == {"compute": 1, "images": 8, "build": 1}
    assert first.features.shape == (8, 128) and first.ok.all()

    second = E.embed(root, items, spec)
    assert (second.computed, second.cached) == (0, 8)
    assert counted["compute"] == 1 and counted["build"] == 1  # nothing ran
    np.testing.assert_allclose(second.features, first.features, rtol=1e-6)
    assert first.cache_dir is not None
    assert first.cache_dir.is_relative_to(root / ".cleaner" / "cache")


def test_a_crash_loses_only_the_shard_being_computed(
    tmp_path: Path, counted: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Features are written a shard at a time: a run killed in its second shard leaves the
    first one's images cached, the rerun computes the rest only, on one network build."""
    root = make_root(tmp_path / "R", 4, size=40)
    items = _items(root)
    spec = E.EmbeddingSpec(get_backbone("simple-cnn"), "none", 32, "resize")
    monkeypatch.setattr(E, "SHARD_IMAGES", 3)
    seen = []

    def crash_in_second_shard(n: int) -> None:
        seen.append(n)
        if sum(seen) > 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        E.embed(root, items, spec, batch_size=3, progress=crash_in_second_shard)
    assert counted["build"] == 1
    again = E.embed(root, items, spec, batch_size=3)
    assert (again.cached, again.computed) == (3, 5)
    assert counted["build"] == 2 and counted["compute"] == 2 + 2  # 2 shards before, 2 now
    assert again.cache_dir is not None and len(list(again.cache_dir.glob("shard-*.npz"))) == 3
    whole = E.embed(None, items, spec)  # no cache: computed afresh in one go
    np.testing.assert_allclose(again.features, whole.features, rtol=1e-5, atol=1e-6)
    # duplicated bytes: one computation, every row filled
    twice = E.embed(root, [*items, items[0]], spec)
    assert twice.cached == 9 and twice.computed == 0
    np.testing.assert_array_equal(twice.features[-1], twice.features[0])


def test_moved_is_a_hit_edited_is_a_miss(tmp_path: Path, counted: dict[str, int]) -> None:
    root = make_root(tmp_path / "R", 3, size=48)
    spec = E.EmbeddingSpec(get_backbone("spectrum"), "none", 48, "center")
    E.embed(root, _items(root), spec)
    # move one image to the other class, rewrite another with new pixels
    src = root / "real_images" / "r000.png"
    shutil.move(src, root / "fake_images" / "moved.png")
    make_image(np.random.default_rng(99), 48, True).save(root / "real_images" / "r001.png")
    again = E.embed(root, _items(root), spec)
    assert again.computed == 1 and again.cached == 5
    assert counted["images"] == 6 + 1


def test_key_separates_weights_size_and_crop(tmp_path: Path) -> None:
    bb = get_backbone("efficientnet-lite0")
    keys = {
        E.EmbeddingSpec(bb, "none", 224, "center").key,
        E.EmbeddingSpec(bb, "none", 160, "center").key,
        E.EmbeddingSpec(bb, "none", 224, "resize").key,
        E.EmbeddingSpec(bb, "imagenet", 224, "center").key,
        E.EmbeddingSpec(get_backbone("efficientnetb0"), "none", 224, "center").key,
    }
    assert len(keys) == 5
    w = tmp_path / "a.weights.h5"
    w.write_bytes(b"one")
    k1 = E.EmbeddingSpec(bb, str(w), 224, "center").key
    w.write_bytes(b"two")  # same path, other weights: another key
    assert E.EmbeddingSpec(bb, str(w), 224, "center").key != k1


def test_bad_image_is_reported_not_cached(tmp_path: Path, counted: dict[str, int]) -> None:
    root = make_root(tmp_path / "R", 2, size=48)
    bad = root / "fake_images" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    items = _items(root)
    spec = E.EmbeddingSpec(get_backbone("spectrum"), "none", 48, "center")
    out = E.embed(root, items, spec)
    i = [p for p, _ in items].index(bad)
    assert not out.ok[i] and out.errors[i] and out.ok.sum() == 4
    assert not out.features[i].any()
    again = E.embed(root, items, spec)  # the good ones hit; the bad one is tried again
    assert again.cached == 4 and again.computed == 1


def test_damaged_shard_is_a_miss_not_an_error(tmp_path: Path) -> None:
    root = make_root(tmp_path / "R", 2, size=48)
    spec = E.EmbeddingSpec(get_backbone("spectrum"), "none", 48, "center")
    first = E.embed(root, _items(root), spec)
    assert first.cache_dir is not None
    for shard in first.cache_dir.glob("shard-*.npz"):
        shard.write_bytes(b"garbage")
    again = E.embed(root, _items(root), spec)
    assert again.computed == 4
    np.testing.assert_allclose(again.features, first.features, rtol=1e-6)


def test_mismatched_shards_are_misses_not_errors(tmp_path: Path) -> None:
    """A shard whose arrays disagree in length, or whose features have another width, is
    skipped like a damaged one."""
    root = make_root(tmp_path / "R", 2, size=48)
    spec = E.EmbeddingSpec(get_backbone("spectrum"), "none", 48, "center")
    items = _items(root)
    first = E.embed(root, items, spec)
    assert first.cache_dir is not None
    (shard,) = first.cache_dir.glob("shard-*.npz")
    shas = np.array([sha for _, sha in items], dtype="U64")
    shard.unlink()
    np.savez(first.cache_dir / "shard-0-bad.npz", sha256=shas, features=np.ones((2, 5)))
    np.savez(first.cache_dir / "shard-1-wide.npz", sha256=shas[:1], features=np.ones((1, 999)))
    again = E.embed(root, items, spec)
    assert again.computed == 4 and again.ok.all()
    np.testing.assert_allclose(again.features, first.features, rtol=1e-6)


def test_both_input_pipelines_agree_in_order_and_report_bad_files(tmp_path: Path) -> None:
    from cleaner.models.inputs import numpy_batches, tf_dataset

    root = make_root(tmp_path / "R", 3, size=40)
    paths = [p for p, _ in _items(root)]
    paths.insert(2, root / "missing.png")
    got = [b for b in numpy_batches(paths, 32, crop="center", batch_size=4)]
    arr = np.concatenate([b.images for b in got])
    errs = [e for b in got for e in b.errors]
    assert arr.shape == (7, 32, 32, 3) and arr.dtype == np.uint8
    assert [bool(e) for e in errs] == [False, False, True, False, False, False, False]
    tf_imgs, tf_errs = [], []
    for images, e in tf_dataset(paths, 32, crop="center", batch_size=3):
        tf_imgs.append(images.numpy())
        tf_errs += [x.decode() for x in e.numpy()]
    np.testing.assert_array_equal(np.concatenate(tf_imgs), arr.astype(np.float32))
    assert tf_errs == errs
    # the center policy keeps native pixels: a 40 px image's 32 px crop is its middle
    from PIL import Image

    full = np.asarray(Image.open(paths[0]).convert("RGB"))
    np.testing.assert_array_equal(arr[0], full[4:36, 4:36])


def test_cached_features_for_training(tmp_path: Path) -> None:
    root = make_root(tmp_path / "R", 2, size=48)
    items = _items(root)
    shas = [s for _, s in items]
    assert E.cached_features(root, "spectrum", "none", 48, shas) is None
    first = E.embed(root, items, E.EmbeddingSpec(get_backbone("spectrum"), "none", 48, "center"))
    got = E.cached_features(root, "spectrum", "none", 48, shas[::-1])
    assert got is not None
    np.testing.assert_allclose(got, first.features[::-1], rtol=1e-6)
    assert E.cached_features(root, "spectrum", "none", 48, [*shas, "f" * 64]) is None
    assert E.cached_features(None, "spectrum", "none", 48, shas) is None  # no root, no cache
