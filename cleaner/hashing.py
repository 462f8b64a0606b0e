"""Exact and perceptual hashes of images, as batch functions, cached by sha256."""

from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in chunks: the identity of an image everywhere in cleaner
    (manifest, predictions, caches, journal checks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
