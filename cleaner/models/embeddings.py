"""Frozen-backbone features, cached on disk by content so a backbone never runs twice over the
same image.

Layout: ``R/.cleaner/cache/embeddings/<backbone>-<key>/`` where ``key`` hashes the backbone
name, the weights' checksum (:meth:`Backbone.weights_id`) and the preprocessing (input size,
crop policy, normalisation). Inside, ``meta.json`` says what the key stands for and each run
that computed something adds one shard ``shard-*.npz`` (``sha256`` and ``features`` arrays),
written atomically: a crash loses at most the shard being written, and two processes never
write the same file. Images are found by the sha256 of their bytes, so a moved or renamed image
is still a hit, and an edited one is a miss.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cleaner.dataset import STATE_DIR
from cleaner.models.backbones import Backbone
from cleaner.models.inputs import numpy_batches, predict_paths


@dataclass(frozen=True)
class EmbeddingSpec:
    """What identifies a set of features: backbone, weights, input size, crop policy, and
    whether the image is seen mirrored (the augmented view frozen heads also train on)."""

    backbone: Backbone
    weights: str
    image_size: int
    crop: str
    mirror: bool = False

    @property
    def weights_id(self) -> str:
        return self.backbone.weights_id(self.weights)

    @property
    def preprocessing(self) -> str:
        key = self.backbone.preprocessing_key(self.image_size, self.crop)
        return key + "|mirror" if self.mirror else key

    def mirrored(self) -> EmbeddingSpec:
        """The same features of the left-right mirrored images."""
        return dataclasses.replace(self, mirror=True)

    @property
    def key(self) -> str:
        text = "\n".join((self.backbone.name, self.weights_id, self.preprocessing))
        return f"{self.backbone.name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


@dataclass
class Embeddings:
    """Features for a list of images, in its order (a failed image's row is zeros)."""

    features: np.ndarray
    errors: list[str]
    """``""`` for an image that decoded, else its status and reason."""
    computed: int = 0
    """Images the backbone ran on in this call."""
    cached: int = 0
    """Images whose features came from the cache."""
    cache_dir: Path | None = None
    seconds: float = 0.0
    spec: EmbeddingSpec | None = field(default=None, repr=False)

    @property
    def ok(self) -> np.ndarray:
        return np.array([not e for e in self.errors], dtype=bool)


def cache_root(root: str | os.PathLike[str]) -> Path:
    return Path(root) / STATE_DIR / "cache" / "embeddings"


def load_cache(directory: Path, wanted: set[str] | None = None) -> dict[str, np.ndarray]:
    """sha256 -> features from every shard in ``directory`` (only ``wanted`` ones if given)."""
    found: dict[str, np.ndarray] = {}
    if not directory.is_dir():
        return found
    for shard in sorted(directory.glob("shard-*.npz")):
        try:
            with np.load(shard, allow_pickle=False) as z:
                shas, feats = z["sha256"], z["features"]
        except (OSError, ValueError, KeyError):
            continue  # a damaged shard is a cache miss, never an error
        for i, s in enumerate(shas):
            s = str(s)
            if wanted is None or s in wanted:
                found[s] = feats[i]
    return found


def _write_shard(directory: Path, spec: EmbeddingSpec, shas: list[str], feats: np.ndarray) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    meta = directory / "meta.json"
    if not meta.exists():
        info = {
            "backbone": spec.backbone.name,
            "weights": spec.weights_id,
            "preprocessing": spec.preprocessing,
            "dim": int(feats.shape[1]),
        }
        tmp_meta = directory / f".meta.{os.getpid()}.tmp"
        tmp_meta.write_text(json.dumps(info, indent=1) + "\n")
        os.replace(tmp_meta, meta)
    name = f"shard-{time.time_ns()}-{os.getpid()}.npz"
    tmp = directory / f".{name}.tmp.npz"
    np.savez(tmp, sha256=np.array(shas, dtype="U64"), features=feats.astype(np.float32))
    os.replace(tmp, directory / name)


def compute_features(
    spec: EmbeddingSpec,
    paths: Sequence[str | os.PathLike[str]],
    *,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Run the backbone over ``paths`` (no cache): ``(features, errors)``."""
    bb = spec.backbone
    if bb.numpy_features is not None:
        feats: list[np.ndarray] = []
        errors: list[str] = []
        batches = numpy_batches(
            paths, spec.image_size, crop=spec.crop, batch_size=batch_size, mirror=spec.mirror
        )
        for b in batches:
            feats.append(bb.numpy_features(b.images))
            errors.extend(b.errors)
            if progress is not None:
                progress(len(b.errors))
        out = np.concatenate(feats) if feats else np.zeros((0, 1), np.float32)
        return out.astype(np.float32), errors
    model = bb.build(spec.weights, spec.image_size)
    return predict_paths(
        model,
        paths,
        spec.image_size,
        crop=spec.crop,
        batch_size=batch_size,
        progress=progress,
        mirror=spec.mirror,
    )


def embed(
    root: str | os.PathLike[str] | None,
    items: Sequence[tuple[str | os.PathLike[str], str]],
    spec: EmbeddingSpec,
    *,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> Embeddings:
    """Features for ``items`` (``(path to read, sha256)`` pairs), from the cache under ROOT
    where present, computing (once per distinct sha256) and caching the rest. ``root=None``
    turns the cache off."""
    t0 = time.perf_counter()
    directory = cache_root(root) / spec.key if root is not None else None
    wanted = {sha for _, sha in items}
    hits = load_cache(directory, wanted) if directory is not None else {}
    todo: dict[str, str | os.PathLike[str]] = {}
    for path, sha in items:
        if sha not in hits and sha not in todo:
            todo[sha] = path
    new_errors: dict[str, str] = {}
    if todo:
        shas = list(todo)
        feats, errs = compute_features(
            spec, [todo[s] for s in shas], batch_size=batch_size, progress=progress
        )
        good = [i for i, e in enumerate(errs) if not e]
        for i, s in enumerate(shas):
            if errs[i]:
                new_errors[s] = errs[i]
            else:
                hits[s] = feats[i]
        if directory is not None and good:
            _write_shard(directory, spec, [shas[i] for i in good], feats[good])
    dim = next((len(v) for v in hits.values()), 1)
    out = np.zeros((len(items), dim), np.float32)
    errors: list[str] = []
    for row, (_, sha) in enumerate(items):
        if sha in hits:
            out[row] = hits[sha]
            errors.append("")
        else:
            errors.append(new_errors.get(sha, "not decoded"))
    n_cached = sum(1 for _, sha in items if sha not in todo)
    return Embeddings(
        features=out,
        errors=errors,
        computed=len(todo),
        cached=n_cached,
        cache_dir=directory,
        seconds=time.perf_counter() - t0,
        spec=spec,
    )


def cached_features(
    backbone: str,
    weights: str,
    image_size: int,
    shas: Sequence[str],
    *,
    root: str | os.PathLike[str] | None = None,
    crop: str = "center",
) -> np.ndarray | None:
    """Features of ``shas`` from ROOT's cache when *all* are there, else None (for
    ``cleaner train``'s head phase: pass ``root``; without it there is no cache to read)."""
    from cleaner.models.backbones import get_backbone

    if root is None:
        return None
    spec = EmbeddingSpec(get_backbone(backbone), weights, image_size, crop)
    found = load_cache(cache_root(root) / spec.key, set(shas))
    if any(s not in found for s in shas):
        return None
    return np.stack([found[s] for s in shas]).astype(np.float32) if shas else None
