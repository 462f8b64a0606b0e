"""Tiny generated datasets and models for the models-area tests (tests/test_backbones.py,
test_lite.py, test_embeddings.py, test_folds.py, test_predict.py).

"Fake" images carry a periodic high-frequency pattern (the trace generator up-sampling leaves)
and a red tint; "real" ones are smooth noise with a blue tint. Saved as PNG (lossless), so both
the spectrum backbone and a tiny colour model can tell them apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_image(rng: np.random.Generator, size: int, fake: bool) -> Image.Image:
    coarse = rng.uniform(40, 170, (4, 4, 3)).astype(np.uint8)
    base = np.asarray(
        Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32
    )
    base += rng.normal(0, 2, base.shape)
    yy, xx = np.mgrid[0:size, 0:size]
    if fake:
        base += (((yy + xx) % 2) * 2 - 1)[..., None] * 10.0
        base[..., 0] += 60
    else:
        base[..., 2] += 60
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def make_root(root: Path, n_per_class: int = 12, *, size: int = 48, seed: int = 0) -> Path:
    """ROOT with real_images/ and fake_images/ PNGs named r000.png / f000.png."""
    rng = np.random.default_rng(seed)
    for label, folder in (("real", "real_images"), ("fake", "fake_images")):
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            make_image(rng, size, label == "fake").save(d / f"{label[0]}{i:03d}.png")
    return root


def colour_model(path: Path, size: int = 32) -> Path:
    """A saved .keras classifier, 0..255 RGB in, prob_fake out: sigmoid of (red - blue) mean.
    No training: its weights are set by hand, so what it predicts is known."""
    import keras

    inp = keras.Input((size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(inp)
    out = keras.layers.Dense(1, activation="sigmoid", name="prob_fake")(x)
    model = keras.Model(inp, out)
    model.get_layer("prob_fake").set_weights(
        [np.array([[0.2], [0.0], [-0.2]], np.float32), np.zeros(1, np.float32)]
    )
    model.save(path)
    return path
