"""EfficientNet-Lite0/1/2 from PyTorch checkpoints without PyTorch: the reader, its refusal of
foreign code, the one-time conversion, and the check that each converted network sees a cat."""

from __future__ import annotations

import io
import pickle
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cleaner.errors import CleanerError
from cleaner.models import lite


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("CLEANER_CACHE", str(d))
    return d


@pytest.mark.parametrize("index", sorted(lite.VARIANTS))
def test_reads_the_shipped_checkpoint_without_torch(index: int) -> None:
    sd = lite.read_state_dict(lite.checkpoint_path(index))
    assert "torch" not in sys.modules
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_fc.weight"].shape == (1000, lite.FEATURES)
    assert all(np.isfinite(v).all() for v in sd.values() if v.dtype.kind == "f")
    # the stage table matches the checkpoint: every block, with its kernel and widths
    v = lite.variant(index)
    b = 0
    for kernel, _, expand, c_in, c_out, repeats in v.stages:
        for r in range(repeats):
            cin = c_in if r == 0 else c_out
            assert sd[f"_blocks.{b}._depthwise_conv.weight"].shape == (
                cin * expand,
                1,
                kernel,
                kernel,
            )
            assert sd[f"_blocks.{b}._project_conv.weight"].shape[:2] == (c_out, cin * expand)
            b += 1
    assert f"_blocks.{b}._depthwise_conv.weight" not in sd
    assert v.stage_ends()[-1] == b - 1


def test_an_unknown_variant_is_one_clear_error() -> None:
    with pytest.raises(CleanerError, match="Lite7 is not known"):
        lite.variant(7)


def _fake_torch_zip(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """A checkpoint in PyTorch's zip layout, pickled against a stand-in ``torch`` module."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args: object) -> None:  # only its name is pickled
        raise AssertionError

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch.FloatStorage = FloatStorage  # type: ignore[attr-defined]
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]

    class S:
        def __init__(self, key: str, size: int) -> None:
            self.key, self.size = key, size

    class T:
        def __init__(self, key: str, arr: np.ndarray) -> None:
            self.key, self.arr = key, arr

        def __reduce__(self) -> object:
            strides = tuple(s // self.arr.itemsize for s in self.arr.strides)
            storage = S(self.key, self.arr.size)
            return (_rebuild_tensor_v2, (storage, 0, self.arr.shape, strides, False, {}))

    class P(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            if isinstance(obj, S):
                return ("storage", FloatStorage, obj.key, "cpu", obj.size)
            return None

    saved = {m: sys.modules.get(m) for m in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    try:
        buf = io.BytesIO()
        objs = {k: T(str(i), v) for i, (k, v) in enumerate(tensors.items())}
        P(buf, protocol=2).dump(objs)
    finally:
        for m, v in saved.items():
            if v is None:
                sys.modules.pop(m, None)
            else:
                sys.modules[m] = v
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        for k, t in objs.items():
            z.writestr(f"archive/data/{t.key}", tensors[k].ravel(order="K").tobytes())


def test_reads_the_zip_layout_too(tmp_path: Path) -> None:
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.linspace(-1, 1, 5).astype(np.float32)
    p = tmp_path / "new.pth"
    _fake_torch_zip(p, {"a.weight": a, "b.bias": b, "c.weight": a.T})  # a.T: strided view
    sd = lite.read_state_dict(p)
    np.testing.assert_array_equal(sd["c.weight"], a.T)
    np.testing.assert_array_equal(sd["a.weight"], a)
    np.testing.assert_array_equal(sd["b.bias"], b)


def test_refuses_a_checkpoint_that_would_run_code(tmp_path: Path) -> None:
    import os

    p = tmp_path / "evil.pth"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(os.system, protocol=2))
    with pytest.raises(CleanerError, match="not allowed"):
        lite.read_state_dict(p)


def test_converts_once_and_caches_by_checksum(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = lite.converted_weights()
    assert first.parent == cache and first.is_file()
    assert lite.weights_checksum()[:16] in first.name

    def boom(path: object) -> object:
        raise AssertionError("converted twice")

    monkeypatch.setattr(lite, "read_state_dict", boom)
    assert lite.converted_weights() == first


@pytest.mark.parametrize("index", sorted(lite.VARIANTS))
def test_the_converted_network_sees_a_cat(cache: Path, index: int) -> None:
    """scikit-image's `chelsea` (a tabby cat) must get an ImageNet cat class (281-285)."""
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    im = Image.fromarray(data.chelsea())
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2)).resize((224, 224))
    model = lite.load(224, index=index, include_top=True)
    probs = np.asarray(model(np.asarray(im, np.float32)[None], training=False))[0]
    top5 = set(np.argsort(-probs)[:5].tolist())
    assert top5 & {281, 282, 283, 284, 285}, top5
    # and a flat grey picture is no confident cat
    grey = np.full((1, 224, 224, 3), 128, np.float32)
    assert np.asarray(model(grey, training=False))[0][281:286].sum() < probs[281:286].sum()
