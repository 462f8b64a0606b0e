"""Views: an image's pixels changed before the model's usual input view is taken from them.

A view is named by a string (``""``: the image as it is) that :mod:`cleaner.models.augment`
(robust training views, ``robust:...``) or :mod:`cleaner.models.launder` (laundering
conditions, ``launder:...``) defines; the name is part of the embedding cache key
(:class:`cleaner.models.embeddings.EmbeddingSpec`), so every view's features are cached apart.
:func:`view_source` turns a file into the bytes of its view, which the loaders decode as they
decode a file (:func:`cleaner.models.inputs.load_one`).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from cleaner.errors import CleanerError
from cleaner.models import augment, launder


def check_view(view: str) -> str:
    """``view`` when it names a known view; a :class:`CleanerError` otherwise."""
    try:
        if not view or augment.parse_view(view) or launder.parse_view(view):
            return view
    except (ValueError, KeyError):
        pass
    raise CleanerError(f"unknown image view {view!r}")


def view_source(path: str | os.PathLike[str], view: str, size: int) -> bytes:
    """The bytes (PNG, lossless) of ``path``'s image under ``view``; ``size``: the model's
    input side (a robust view starts from the image at its own size, a huge one capped at twice
    ``size`` on its long side, as the model's view caps it). Raises
    :class:`cleaner.images.ImageError` as decoding does."""
    from cleaner.images import load_rgb

    data = Path(path).read_bytes()
    robust = augment.parse_view(view)
    if robust is not None:
        im = augment.robust_image(
            load_rgb(data, max_side=2 * size), augment.view_seed(view, data), robust
        )
    else:
        condition = launder.parse_view(view)
        if condition is None:
            raise CleanerError(f"unknown image view {view!r}")
        im = launder.launder_image(load_rgb(data), condition)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
