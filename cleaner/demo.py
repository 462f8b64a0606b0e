"""``cleaner demo``: a small seeded real/fake dataset with known problems, to run the whole chain.

Both classes draw scenes from one distribution (a colour gradient and a few soft-edged
shapes), so content says nothing about the class. What differs is how the pixels were made,
the kind of evidence real detectors use:

- **real**: the scene at full resolution with natural 1/f ("pink") texture and a little
  independent sensor noise in every pixel.
- **fake**: the same kind of scene rendered at half resolution, then upsampled x2 as a
  generator's decoder does: resize-convolution (pixel replication, then smoothing: too little
  high-frequency power) or transposed convolution (uneven per-phase gains: a faint checkerboard
  at the Nyquist frequency), and almost no sensor noise. Both leave a signature in the radial
  power spectrum (a logistic regression on a 32-bin radial spectrum separates the originals
  about 95% of the time) and in 2x2 pixel statistics that a small CNN learns.

Planted problems, all listed in ``DIR/ground_truth.json`` (paths relative to DIR):

- ``label_errors``: a stated fraction of each class saved in the other class's folder (plus the
  cross-class copies below, which also sit in the wrong folder);
- ``duplicates``: exact byte copies and near duplicates (resized, JPEG-recompressed), within a
  class and across classes, each naming its original;
- ``corrupt``: a truncated PNG, a truncated JPEG, a zero-byte file, random bytes, a text file
  named ``.jpg``.

``bias`` (:class:`Bias`) plants one shortcut for ``cleaner audit`` to find, following the folder
a file sits in (as a scraper that fetched each class from another source would): ``format``
(real folder JPEG, fake folder PNG), ``size`` (fakes one fixed square size, reals 4:3 landscape),
``names`` (``IMG_0042.png`` against ``ComfyUI_00042_.png``), ``exif`` (camera EXIF on the real
folder's files only).

Same seed and parameters -> byte-identical tree (PNG and JPEG as Pillow writes them carry no
timestamp; the JSON is written with sorted keys). File names are neutral (``img_00042.png``):
they say nothing about class or role.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from cleaner.choices import Label
from cleaner.dataset import LABELS
from cleaner.errors import CleanerError

FORMAT = "cleaner.demo.v1"
REAL_DIR, FAKE_DIR = "real_images", "fake_images"
SUBFOLDER = "batch_2"
"""A few files go one level down, so the chain's "keep the path below the class folder" is
exercised too."""

CORRUPT_KINDS: tuple[str, ...] = (
    "truncated-png",
    "truncated-jpeg",
    "zero-bytes",
    "random-bytes",
    "text-named-jpg",
)


class Bias(StrEnum):
    """A shortcut the demo can plant (see the module docstring)."""

    NONE = "none"
    FORMAT = "format"
    SIZE = "size"
    NAMES = "names"
    EXIF = "exif"


CAMERA = ("Canon", "Canon EOS 5D Mark IV")
"""The camera the ``exif`` bias writes into the real folder's files."""


@dataclass(frozen=True)
class DemoParams:
    """Every knob of the demo (all recorded in ground_truth.json)."""

    n: int = 400
    """Original images, half real and half fake."""
    noise: float = 0.10
    """Fraction of each class saved in the wrong folder."""
    exact: int = 10
    """Exact (byte-for-byte) duplicates; about a third across classes."""
    near: int = 12
    """Near duplicates (resized, recompressed, or both); about a third across classes."""
    corrupt: int = 5
    """Broken files, cycling through :data:`CORRUPT_KINDS`."""
    min_size: int = 64
    max_size: int = 96
    subfolder_fraction: float = 0.15
    bias: Bias = Bias.NONE
    """One planted shortcut (none by default)."""


@dataclass
class DemoResult:
    root: Path
    ground_truth: Path
    files: int
    counts: dict[str, int]
    seed: int = 0

    def summary(self) -> dict[str, Any]:
        """What ``cleaner demo --json`` prints."""
        return {
            "root": str(self.root),
            "ground_truth": str(self.ground_truth),
            "seed": self.seed,
            **self.counts,
        }


# ----------------------------------------------------------------------------- pixels


def _pink_noise(rng: np.random.Generator, h: int, w: int, beta: float) -> np.ndarray:
    """Zero-mean, unit-std noise whose power falls as 1/f^(2*beta): natural-image texture."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spec = (rng.standard_normal((h, w // 2 + 1)) + 1j * rng.standard_normal((h, w // 2 + 1))) / (
        f**beta
    )
    spec[0, 0] = 0
    out = np.fft.irfft2(spec, s=(h, w))
    return out / (out.std() + 1e-9)


def _scene(rng: np.random.Generator) -> dict[str, Any]:
    """A scene from the one distribution both classes share (resolution-free: rendered later)."""
    c0, c1 = rng.uniform(20, 235, (2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    shapes = []
    for _ in range(int(rng.integers(2, 6))):
        shapes.append(
            {
                "cx": rng.uniform(0.1, 0.9),
                "cy": rng.uniform(0.1, 0.9),
                "rx": rng.uniform(0.08, 0.35),
                "ry": rng.uniform(0.08, 0.35),
                "rect": bool(rng.random() < 0.4),
                "edge": rng.uniform(0.01, 0.05),
                "color": rng.uniform(0, 255, 3),
            }
        )
    tex = {"beta": rng.uniform(0.9, 1.3), "amp": rng.uniform(6, 14), "chroma": rng.uniform(0, 3)}
    return {"c0": c0, "c1": c1, "angle": angle, "shapes": shapes, "tex": tex}


def _render(desc: dict[str, Any], n: int, rng: np.random.Generator) -> np.ndarray:
    """Render a scene at ``n x n`` (float RGB 0..255) with 1/f texture at that resolution."""
    yy, xx = (np.mgrid[0:n, 0:n].astype(np.float64) + 0.5) / n
    t = np.cos(desc["angle"]) * xx + np.sin(desc["angle"]) * yy
    t = (t - t.min()) / (np.ptp(t) + 1e-9)
    img = desc["c0"] + (desc["c1"] - desc["c0"]) * t[..., None]
    for s in desc["shapes"]:
        dx, dy = (xx - s["cx"]) / s["rx"], (yy - s["cy"]) / s["ry"]
        d = np.maximum(np.abs(dx), np.abs(dy)) if s["rect"] else np.sqrt(dx * dx + dy * dy)
        m = 1.0 / (1.0 + np.exp(np.clip((d - 1.0) / (s["edge"] / max(s["rx"], s["ry"])), -50, 50)))
        img = img * (1 - m[..., None]) + s["color"] * m[..., None]
    tex = desc["tex"]
    lum = _pink_noise(rng, n, n, tex["beta"]) * tex["amp"]
    chroma = np.stack([_pink_noise(rng, n, n, tex["beta"]) for _ in range(3)], -1) * tex["chroma"]
    return img + lum[..., None] + chroma


def _to_u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def make_real(rng: np.random.Generator, size: int) -> np.ndarray:
    """Full-resolution scene, 1/f texture, independent sensor noise."""
    desc = _scene(rng)
    img = _render(desc, size, rng)
    img += rng.normal(0, rng.uniform(2.5, 4.5), img.shape)
    return _to_u8(img)


def make_fake(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    """Half-resolution scene upsampled x2 like a generator's decoder; returns (pixels, method).

    ``resize-conv``: pixel replication then a 3x3 smoothing convolution (a deficit of high
    frequencies and 2x2 blocks); ``transposed-conv``: a stride-2 transposed convolution, whose
    output phases see different parts of the kernel, so gains alternate in a 2x2 pattern (a
    checkerboard: a peak at the Nyquist frequency)."""
    desc = _scene(rng)
    small = _render(desc, size // 2, rng)
    up = small.repeat(2, axis=0).repeat(2, axis=1)
    pad = np.pad(up, ((1, 1), (1, 1), (0, 0)), mode="edge")
    blur = sum(pad[i : i + size, j : j + size] for i in range(3) for j in range(3)) / 9.0
    if rng.random() < 0.5:
        method = "resize-conv"
        alpha = rng.uniform(0.5, 0.9)
        up = (1 - alpha) * up + alpha * blur
    else:
        method = "transposed-conv"
        g = rng.uniform(0.03, 0.06)
        gain = np.array([[1 + g, 1 - g / 2], [1 - g / 2, 1 - g]])
        tile = np.tile(gain, (size // 2, size // 2))[..., None]
        up = (0.6 * up + 0.4 * blur) * tile
    up += rng.normal(0, 0.6, up.shape)  # generators' outputs are nearly noiseless
    return _to_u8(up), method


# ----------------------------------------------------------------------------- files


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _jpeg(arr: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _camera_exif() -> Image.Exif:
    ex = Image.Exif()
    ex[0x010F], ex[0x0110] = CAMERA
    return ex


def _encode(arr: np.ndarray, label: str, bias: Bias, quality: int | None) -> tuple[bytes, str]:
    """(bytes, extension) of one image saved in ``label``'s folder: PNG, or JPEG at ``quality``
    (a recompressed near duplicate), with the folder's planted shortcut applied."""
    if bias is Bias.SIZE:
        h, w = arr.shape[:2]
        size = (w * 4 // 3, h) if label == "real" else (96, 96)
        arr = np.asarray(Image.fromarray(arr, "RGB").resize(size, Image.Resampling.LANCZOS))
    if bias is Bias.FORMAT:
        quality = 90 if label == "real" else None
    im = Image.fromarray(arr, "RGB")
    buf = io.BytesIO()
    extra: dict[str, Any] = (
        {"exif": _camera_exif()} if bias is Bias.EXIF and label == "real" else {}
    )
    if quality is None:
        im.save(buf, format="PNG", optimize=False, compress_level=6, **extra)
        return buf.getvalue(), ".png"
    im.save(buf, format="JPEG", quality=quality, **extra)
    return buf.getvalue(), ".jpg"


def _name(label: str, number: int, bias: Bias) -> str:
    if bias is Bias.NAMES:
        return f"IMG_{number:04d}" if label == "real" else f"ComfyUI_{number:05d}_"
    return f"img_{number:05d}"


def _resize(arr: np.ndarray, scale: float) -> np.ndarray:
    h, w = arr.shape[:2]
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    return np.asarray(Image.fromarray(arr, "RGB").resize(size, Image.Resampling.LANCZOS))


def _corrupt_bytes(kind: str, arr: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """(bytes, extension) of a broken file of ``kind``."""
    if kind == "truncated-png":
        data = _png(arr)
        return data[: len(data) * 6 // 10], ".png"
    if kind == "truncated-jpeg":
        data = _jpeg(arr, 90)
        return data[: len(data) // 2], ".jpg"
    if kind == "zero-bytes":
        return b"", ".jpg"
    if kind == "random-bytes":
        return rng.integers(0, 256, 3000, dtype=np.uint8).tobytes(), ".png"
    if kind == "text-named-jpg":
        return b"<html><head><title>403 Forbidden</title></head><body>403</body></html>\n", ".jpg"
    raise ValueError(f"unknown corrupt kind {kind!r}")


def _other(label: str) -> str:
    return Label(label).other


def build_demo(out_dir: str | os.PathLike[str], params: DemoParams, *, seed: int = 0) -> DemoResult:
    """Write the demo dataset and ``ground_truth.json`` into ``out_dir`` (absent or empty).

    Raises :class:`CleanerError` when ``out_dir`` holds files (nothing is ever overwritten) or a
    parameter is out of range.
    """
    _check(params)
    root = Path(out_dir)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise CleanerError(
            f"{str(root)!r} exists and is not an empty folder; pick a new DIR or remove it first"
        )
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    n_real = params.n // 2
    true_labels = [Label.REAL] * n_real + [Label.FAKE] * (params.n - n_real)
    sizes = rng.integers(params.min_size // 2, params.max_size // 2 + 1, params.n) * 2
    # which originals sit in the wrong folder: exactly round(noise * n_class) per class
    wrong = np.zeros(params.n, dtype=bool)
    for lo, hi in ((0, n_real), (n_real, params.n)):
        k = round(params.noise * (hi - lo))
        wrong[rng.choice(np.arange(lo, hi), size=k, replace=False)] = True
    in_sub = rng.random(params.n) < params.subfolder_fraction
    total = params.n + params.exact + params.near + params.corrupt
    names = rng.permutation(total) + 1  # neutral, shuffled numbers: names leak nothing
    demo = _Demo(params, rng, iter(int(x) for x in names))
    demo.originals(true_labels, sizes, wrong, in_sub)
    demo.copies(true_labels, wrong)
    demo.broken()
    demo.write(root)
    counts = {
        "files": len(demo.files),
        "originals": params.n,
        "label_errors": len(demo.label_errors),
        "duplicates": len(demo.duplicates),
        "corrupt": len(demo.corrupt),
    }
    truth = {
        "format": FORMAT,
        "seed": seed,
        "params": asdict(params),
        "counts": counts,
        "label_errors": sorted(demo.label_errors, key=lambda e: e["path"]),
        "duplicates": sorted(demo.duplicates, key=lambda e: e["path"]),
        "corrupt": sorted(demo.corrupt, key=lambda e: e["path"]),
        "images": sorted(demo.images, key=lambda e: e["path"]),
    }
    gt = root / "ground_truth.json"
    gt.write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return DemoResult(root=root, ground_truth=gt, files=len(demo.files), counts=counts, seed=seed)


@dataclass
class _Demo:
    """The demo's files as they are made, and what is true of each (``ground_truth.json``).

    Why a class: the steps (originals, copies, broken files) share the seeded generator and the
    shuffled names, and must draw from them in a fixed order so a seed always makes the same
    dataset."""

    params: DemoParams
    rng: np.random.Generator
    names: Iterator[int]
    files: dict[str, bytes] = field(default_factory=dict)
    images: list[dict[str, Any]] = field(default_factory=list)
    label_errors: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    corrupt: list[dict[str, Any]] = field(default_factory=list)
    pixels: list[np.ndarray] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def place(self, label: str, sub: bool, ext: str) -> str:
        mid = f"{SUBFOLDER}/" if sub else ""
        folder = REAL_DIR if label == Label.REAL else FAKE_DIR
        return f"{folder}/{mid}{_name(label, next(self.names), self.params.bias)}{ext}"

    def originals(
        self, true_labels: list[Label], sizes: np.ndarray, wrong: np.ndarray, in_sub: np.ndarray
    ) -> None:
        """One image per original, in its true folder or (``wrong``) in the other one."""
        child_seeds = self.rng.integers(0, 2**63 - 1, self.params.n)
        for i, true in enumerate(true_labels):
            irng = np.random.default_rng(int(child_seeds[i]))
            if true == Label.REAL:
                arr, method = make_real(irng, int(sizes[i])), "camera"
            else:
                arr, method = make_fake(irng, int(sizes[i]))
            in_label = _other(true) if wrong[i] else true
            data, ext = _encode(arr, in_label, self.params.bias, None)
            path = self.place(in_label, bool(in_sub[i]), ext)
            self.files[path] = data
            self.pixels.append(arr)
            self.paths.append(path)
            self.images.append(
                {"path": path, "true_label": true, "made_by": method, "role": "original"}
            )
            if wrong[i]:
                self.label_errors.append(
                    {"path": path, "true_label": true, "planted": "wrong-folder"}
                )

    def copies(self, true_labels: list[Label], wrong: np.ndarray) -> None:
        """Duplicates of correctly placed originals; every third one goes to the other class."""
        p, rng = self.params, self.rng
        correct = [i for i in range(p.n) if not wrong[i]]
        dup_src = rng.choice(correct, size=p.exact + p.near, replace=False)
        near_kinds = ("resized", "recompressed", "resized+recompressed")
        for j, src in enumerate(int(s) for s in dup_src):
            true = true_labels[src]
            cross = j % 3 == 2
            in_label = _other(true) if cross else true
            if j < p.exact:
                kind, data = "exact", self.files[self.paths[src]]
                ext = PurePosixPath(self.paths[src]).suffix
            else:
                kind = near_kinds[(j - p.exact) % len(near_kinds)]
                arr = self.pixels[src]
                if "resized" in kind:
                    arr = _resize(arr, float(rng.choice([0.75, 1.25, 1.5])))
                quality = int(rng.integers(70, 86)) if "recompressed" in kind else None
                data, ext = _encode(arr, in_label, p.bias, quality)
            path = self.place(in_label, False, ext)
            self.files[path] = data
            entry = {"path": path, "original": self.paths[src], "kind": kind, "cross_class": cross}
            self.duplicates.append(entry)
            self.images.append(
                {"path": path, "true_label": true, "made_by": kind, "role": "duplicate"}
            )
            if cross:
                self.label_errors.append(
                    {"path": path, "true_label": true, "planted": "cross-class-copy"}
                )

    def broken(self) -> None:
        """Files that do not decode, one kind after another, alternating the class folders."""
        for j in range(self.params.corrupt):
            kind = CORRUPT_KINDS[j % len(CORRUPT_KINDS)]
            data, ext = _corrupt_bytes(kind, self.pixels[j % len(self.pixels)], self.rng)
            path = self.place(LABELS[j % 2], False, ext)
            self.files[path] = data
            self.corrupt.append({"path": path, "kind": kind})

    def write(self, out_dir: Path) -> None:
        """Every file under ``out_dir``, and both class folders even when one stays empty."""
        for path, data in self.files.items():
            p = out_dir / path
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        for d in (REAL_DIR, FAKE_DIR):
            (out_dir / d).mkdir(parents=True, exist_ok=True)


def _check(p: DemoParams) -> None:
    if p.n < 4:
        raise CleanerError(f"--n {p.n} is too small; use at least 4 images")
    if not 0 <= p.noise < 0.5:
        raise CleanerError(f"--noise {p.noise} must be in [0, 0.5): a fraction of each class")
    if p.min_size < 16 or p.max_size < p.min_size:
        raise CleanerError(
            f"image sizes {p.min_size}..{p.max_size} are invalid; need 16 <= min <= max"
        )
    if min(p.exact, p.near, p.corrupt) < 0:
        raise CleanerError("--exact, --near and --corrupt must be >= 0")
    if p.exact + p.near > p.n * 0.5:
        raise CleanerError(
            f"--exact + --near ({p.exact + p.near}) must be at most half of --n ({p.n})"
        )
