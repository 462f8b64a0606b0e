"""The one decoder: every bad-input kind gets a status (or decodes truly), never a crash/warning."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cleaner import images
from tests import image_factory as F


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return F.make_all(tmp_path_factory.mktemp("kinds"))


@pytest.mark.parametrize("kind", sorted(F.BAD_KINDS))
def test_probe_gives_each_kind_its_status(kind: str, kinds: dict[str, Path]) -> None:
    spec = F.BAD_KINDS[kind]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = images.probe(kinds[kind])
    assert caught == [], [str(w.message) for w in caught]
    assert info.status == spec.expect_status, info
    if spec.expect_status == images.OK:
        assert info.format == spec.expect_format
        if spec.expect_size is not None:
            assert (info.width, info.height) == spec.expect_size
    else:
        assert info.reason, "a non-ok status always comes with a reason"
        assert (info.width, info.height) == (0, 0)


@pytest.mark.parametrize("kind", sorted(F.BAD_KINDS))
def test_load_rgb_agrees_with_probe(kind: str, kinds: dict[str, Path]) -> None:
    """What probe calls ok loads as upright 8-bit RGB (full and fast path); the rest raises
    ImageError with the same status, and nothing else escapes."""
    spec = F.BAD_KINDS[kind]
    info = images.probe(kinds[kind])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if info.status == images.OK:
            im = images.load_rgb(kinds[kind])
            assert im.mode == "RGB"
            assert im.size == (info.width, info.height)
            small = images.load_rgb(kinds[kind], max_side=16)
            assert small.mode == "RGB" and max(small.size) == 16
        else:
            with pytest.raises(images.ImageError) as err:
                images.load_rgb(kinds[kind])
            assert err.value.status == spec.expect_status
            assert err.value.reason
    assert caught == []


def test_format_comes_from_bytes_not_extension(kinds: dict[str, Path]) -> None:
    info = images.probe(kinds["webp_named_png"])
    assert info.format == "WEBP"
    assert info.extension_mismatch
    assert "PNG" in info.reason and "WEBP" in info.reason
    assert not images.probe(kinds["grayscale"]).extension_mismatch
    # a broken file still names the format its bytes claim
    assert images.probe(kinds["truncated_jpeg"]).format == "JPEG"


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # stored 40 wide x 20 high: left half red, right half blue; orientation 6 = rotate 90° CW
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "rot.jpg"
    Image.fromarray(arr).save(p, quality=95, exif=exif.tobytes())
    im = images.load_rgb(p)
    assert im.size == (20, 40)
    a = np.asarray(im).astype(int)
    assert a[5, 10, 0] > 200 and a[5, 10, 2] < 60  # top is what was on the left: red
    assert a[35, 10, 2] > 200 and a[35, 10, 0] < 60  # bottom: blue
    info = images.probe(p)
    assert (info.width, info.height) == (20, 40)


def test_palette_transparency_composites_on_white(kinds: dict[str, Path]) -> None:
    raw = Image.open(kinds["palette_transparency"])
    idx = np.asarray(raw)
    assert (idx == 0).any() and (idx != 0).any()
    rgb = np.asarray(images.load_rgb(kinds["palette_transparency"]))
    assert (rgb[idx == 0] == 255).all()
    assert not (rgb[idx != 0] == 255).all()


def test_rgba_alpha_zero_is_white_and_opaque_kept(kinds: dict[str, Path]) -> None:
    raw = np.asarray(Image.open(kinds["rgba"]))
    rgb = np.asarray(images.load_rgb(kinds["rgba"])).astype(int)
    assert raw[0, 0, 3] == 0 and (rgb[0, 0] == 255).all()
    assert raw[-1, -1, 3] == 255
    assert np.abs(rgb[-1, -1] - raw[-1, -1, :3].astype(int)).max() <= 1


def test_16bit_uses_the_whole_range(kinds: dict[str, Path]) -> None:
    a = np.asarray(images.load_rgb(kinds["png16"]))
    assert a.dtype == np.uint8
    assert a.min() <= 1 and a.max() >= 254
    assert (a[..., 0] == a[..., 1]).all()


def test_cmyk_converts_to_close_colours(kinds: dict[str, Path]) -> None:
    a = np.asarray(images.load_rgb(kinds["cmyk_jpeg"])).astype(int)
    ref = np.asarray(F.rgb_image(32)).astype(int)
    assert np.abs(a - ref).mean() < 25


def test_animation_gives_first_frame(kinds: dict[str, Path]) -> None:
    info = images.probe(kinds["animated_gif"])
    assert info.frames == 3
    first = np.asarray(Image.open(kinds["animated_gif"]).convert("RGB"))
    assert (np.asarray(images.load_rgb(kinds["animated_gif"])) == first).all()


def test_bomb_is_refused_from_the_header(kinds: dict[str, Path]) -> None:
    assert kinds["bomb"].stat().st_size < 200
    with pytest.raises(images.ImageError) as err:
        images.thumbnail(kinds["bomb"])
    assert err.value.status == images.TOO_LARGE
    assert "60000x60000" in err.value.reason


def test_pixel_limit_is_a_parameter(kinds: dict[str, Path]) -> None:
    assert images.probe(kinds["rgba"], max_pixels=32 * 32).status == images.OK
    assert images.probe(kinds["rgba"], max_pixels=32 * 32 - 1).status == images.TOO_LARGE


def test_draft_fast_path_matches_full_decode(tmp_path: Path) -> None:
    p = F.make_jpeg(tmp_path / "big.jpg", size=256, quality=95)
    fast = images.load_rgb(p, max_side=32)
    assert fast.size == (32, 32)
    full = Image.open(p).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR)
    diff = np.abs(np.asarray(fast).astype(int) - np.asarray(full).astype(int))
    assert diff.mean() < 8
    # draft really decoded fewer pixels: Pillow's draft reports the reduced size
    im = Image.open(p)
    im.draft("RGB", (64, 64))
    assert im.size[0] < 256


def test_load_array_shapes(kinds: dict[str, Path]) -> None:
    a = images.load_array(kinds["exif_rotated"], 24)
    assert a.shape == (24, 24, 3) and a.dtype == np.uint8
    c = images.load_array(kinds["exif_rotated"], 16, crop="center")
    assert c.shape == (16, 16, 3)
    assert images.load_array(kinds["exif_rotated"]).shape == (48, 32, 3)
    with pytest.raises(ValueError):
        images.load_array(kinds["exif_rotated"], 16, crop="nope")


def test_bytes_and_file_objects_are_sources(kinds: dict[str, Path]) -> None:
    data = kinds["grayscale"].read_bytes()
    assert images.probe(data).status == images.OK
    assert images.load_rgb(io.BytesIO(data)).size == (32, 32)


def test_unreadable_path(tmp_path: Path) -> None:
    info = images.probe(tmp_path / "missing.jpg")
    assert info.status == images.UNREADABLE and "cannot read" in info.reason
    assert images.probe(tmp_path).status == images.UNREADABLE  # a folder


def test_pixel_digest_ignores_encoding(tmp_path: Path) -> None:
    im = F.rgb_image(40)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    im.save(a, compress_level=1)
    im.save(b, compress_level=9, optimize=True)
    assert a.read_bytes() != b.read_bytes()
    assert images.pixel_digest(images.load_rgb(a)) == images.pixel_digest(images.load_rgb(b))
    other = images.pixel_digest(F.rgb_image(40, seed=1))
    assert other != images.pixel_digest(images.load_rgb(a))


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"\xff\xd8\xff\xe0" + b"\0" * 12, "JPEG"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 8, "PNG"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "WEBP"),
        (b"GIF89a" + b"\0" * 10, "GIF"),
        (b"\0\0\0\x18ftypheic\0\0\0\0", "HEIF"),
        (b"\0\0\0\x18ftypavif\0\0\0\0", "AVIF"),
        (b"hello, world....", None),
    ],
)
def test_sniff_format(head: bytes, fmt: str | None) -> None:
    assert images.sniff_format(head) == fmt
