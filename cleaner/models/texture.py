"""Global texture statistics of a CNN's feature maps: the features that tell GAN faces apart.

GramNet (Liu et al., "Global Texture Enhancement for Fake Face Detection in the Wild", CVPR
2020) showed that generated faces differ from real ones in *global texture*, which the Gram
matrices (channel covariances) of a CNN's feature maps capture and which survives resizing and
JPEG. The last layer of an ImageNet network pools that away: it keeps "what" and drops "how it
is rendered". So ``efficientnet-lite{0,1,2}-gram`` read EfficientNet-Lite at every block:

- every block's output: per-channel mean and standard deviation over the image (Lite0: 16
  blocks + the 1x1 head, 6,176 numbers);
- the last block of stages 1 to 4 (Lite0: blocks 2, 4, 7, 10 with 24, 40, 80, 112 channels;
  Lite1 and Lite2: blocks 3, 6, 10, 14): the Gram matrix of the centred map, upper triangle
  (Lite0: 10,432 numbers).

Measured on faces140k (2,200 faces, 5-fold logistic regression, bench/README "Texture
features"): out-of-fold accuracy 0.892 for Lite0 at 256 px (0.902 with the texture heads' C),
against 0.757 for Lite0's pooled 1,280 features on the same input; Lite2 at 384 px 0.938. The
layer is differentiable, so ``cleaner train`` can fine-tune through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras

GRAM_STAGES = (1, 2, 3, 4)
"""Stages whose last block's Gram matrix is kept (up to 112 channels in Lite0, 120 in Lite2:
Lite0's blocks 2, 4, 7, 10; the 192- and 320-channel maps would add 70,000 numbers per image
for little: see the module doc)."""

QUAD_GRID = 2
"""The ``-gram-quad`` backbones' grid: the statistics of each quadrant of every feature map,
four rows per image for the frozen heads (:attr:`cleaner.models.backbones.Backbone.regions`),
whose logits are averaged. Four times the training rows of a face from one backbone pass,
better than one row on clean and on flipped labels; a 3 x 3 grid and nine overlapping windows
were worse (the Gram statistics of smaller cells are noisier). Figures and command:
bench/README.md "Texture features"."""


def gram_blocks(index: int = 0) -> tuple[int, ...]:
    """The blocks of Lite``index`` whose Gram matrix is kept (Lite0: 2, 4, 7, 10; Lite1 and
    Lite2: 3, 6, 10, 14)."""
    from cleaner.models import lite

    ends = lite.variant(index).stage_ends()
    return tuple(ends[s] for s in GRAM_STAGES)


def _layer_class() -> type:
    """``TextureStats``, defined on first use so that importing this module needs no Keras."""
    global _TEXTURE_STATS
    if _TEXTURE_STATS is not None:
        return _TEXTURE_STATS
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="cleaner")
    class TextureStats(keras.layers.Layer):
        """Feature maps -> [mean, std of every map] + [Gram upper triangle of the chosen maps]."""

        def __init__(self, gram: Sequence[bool], grid: int = 1, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.gram = [bool(g) for g in gram]
            self.grid = int(grid)

        def _stats(self, maps: Sequence[Any]) -> list[Any]:
            parts = []
            for fmap, with_gram in zip(maps, self.gram, strict=True):
                x = ops.cast(fmap, "float32")
                mean = ops.mean(x, axis=(1, 2))
                centred = x - mean[:, None, None, :]
                parts += [mean, ops.sqrt(ops.mean(centred * centred, axis=(1, 2)) + 1e-6)]
                if with_gram:
                    c = int(fmap.shape[-1])
                    flat = ops.reshape(centred, (ops.shape(x)[0], -1, c))
                    n = ops.cast(ops.shape(flat)[1], "float32")
                    gram = ops.einsum("bnc,bnd->bcd", flat, flat) / n
                    rows, cols = np.triu_indices(c, 1)
                    parts.append(ops.take(ops.reshape(gram, (-1, c * c)), rows * c + cols, axis=1))
            return parts

        def call(self, maps: Sequence[Any]) -> Any:
            parts = []
            for i, j in region_cells(self.grid):
                cells = []
                for fmap in maps:
                    (r0, r1), (c0, c1) = (
                        cell_bounds(int(fmap.shape[1]), self.grid, i),
                        cell_bounds(int(fmap.shape[2]), self.grid, j),
                    )
                    cells.append(fmap[:, r0:r1, c0:c1, :])
                parts += self._stats(cells)
            return ops.concatenate(parts, axis=-1)

        def compute_output_shape(self, shapes: Sequence[tuple[int | None, ...]]) -> tuple:
            dim = feature_dim([int(s[-1] or 0) for s in shapes], self.gram)
            return (shapes[0][0], dim * self.grid * self.grid)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "gram": self.gram, "grid": self.grid}

    _TEXTURE_STATS = TextureStats
    return TextureStats


_TEXTURE_STATS: type | None = None


def region_cells(grid: int) -> list[tuple[int, int]]:
    """The cells of a ``grid x grid`` split, row by row: the order of the feature rows."""
    return [(i, j) for i in range(grid) for j in range(grid)]


def cell_bounds(size: int, grid: int, i: int) -> tuple[int, int]:
    """Rows (or columns) ``[lo, hi)`` of cell ``i`` of a map side of ``size`` cut in ``grid``:
    never empty (a map smaller than the grid gives its last row to the cells past it)."""
    lo = min(i * size // grid, size - 1)
    return lo, max((i + 1) * size // grid, lo + 1)


def register() -> None:
    """Make ``TextureStats`` known to ``keras.models.load_model`` (call before loading)."""
    _layer_class()


def feature_dim(channels: Sequence[int], gram: Sequence[bool]) -> int:
    """Length of the feature vector for maps of ``channels`` with Gram matrices where ``gram``."""
    return sum(2 * c + (c * (c - 1) // 2 if g else 0) for c, g in zip(channels, gram, strict=True))


def lite_gram(
    image_size: int = 256, *, index: int = 0, weights: str = "imagenet", grid: int = 1
) -> keras.Model:
    """Lite``index`` (0..255 RGB in) -> texture statistics of every block (Lite0: 16,608
    numbers; Lite1: 17,504; Lite2: 19,844); ``grid=2``: the same statistics of each quadrant
    of every map, the four vectors one after the other (see :data:`QUAD_GRID`)."""
    import keras

    from cleaner.models import lite

    net = lite.load(image_size, index=index, include_top=True, weights=weights)
    last: dict[int, str] = {}
    for layer in net.layers:
        if layer.name.startswith("_blocks."):
            last[int(layer.name.split(".")[1])] = layer.name
    maps = [net.get_layer(last[b]).output for b in sorted(last)]
    maps.append(net.get_layer("head_act").output)
    keep = gram_blocks(index)
    gram = [b in keep for b in sorted(last)] + [False]
    stats = _layer_class()(gram, grid, name="texture_stats")(maps)
    suffix = "" if grid == 1 else f"_grid{grid}"
    return keras.Model(net.input, stats, name=f"efficientnet_lite{index}_gram{suffix}")
