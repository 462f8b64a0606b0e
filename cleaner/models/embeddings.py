"""Frozen-backbone features, cached on disk by content so a backbone never runs twice over the
same image.

Layout: ``R/.cleaner/cache/embeddings/<backbone>-<key>/`` where ``key`` hashes the backbone
name, the weights' checksum (:meth:`Backbone.weights_id`) and the preprocessing (input size,
crop policy, normalisation). Inside, ``meta.json`` says what the key stands for and each run
that computes something adds shards ``shard-*.npz`` (``sha256`` and ``features`` arrays),
one per :data:`SHARD_IMAGES` images computed, each written atomically: a crash loses at most
the images of the shard being computed (a rerun computes only those), and two processes never
write the same file. The features of a call are filled into one array, shard by shard, so
memory holds them once (plus one shard), not twice. Images are found by the sha256 of their
bytes, so a moved or renamed image is still a hit, and an edited one is a miss.

On the Ray engine the backbone runs on an actor pool (:func:`cleaner.engine.map_with_model`,
one network per actor, a GPU each when the cluster has GPUs); the results stream back in
order and this process, the driver, alone writes the shards, one per :data:`SHARD_IMAGES`
images as before: a killed run resumes with only what is missing on either engine.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cleaner.dataset import Workspace, state_path
from cleaner.engine import MODEL_CALL_BATCHES, Engine, current, map_with_model
from cleaner.errors import CleanerError
from cleaner.models import projection as P
from cleaner.models import runtime as RT
from cleaner.models.backbones import Backbone
from cleaner.models.inputs import Row, numpy_batches, predict_paths
from cleaner.models.projection import HeadFeatures, choose_head_features


@dataclass(frozen=True)
class EmbeddingSpec:
    """What identifies a set of features: backbone, weights, input size, crop policy, and
    whether the image is seen mirrored (the augmented view frozen heads also train on)."""

    backbone: Backbone
    weights: str
    image_size: int
    crop: str
    mirror: bool = False
    view: str = ""
    """A view of the image (:mod:`cleaner.models.views`: a robust training view, a laundering
    condition); ``""``: the image as it is."""

    @property
    def weights_id(self) -> str:
        return self.backbone.weights_id(self.weights)

    @property
    def preprocessing(self) -> str:
        key = self.backbone.preprocessing_key(self.image_size, self.crop)
        key = key + "|mirror" if self.mirror else key
        return key + f"|view={self.view}" if self.view else key

    def mirrored(self) -> EmbeddingSpec:
        """The same features of the left-right mirrored images."""
        return dataclasses.replace(self, mirror=True)

    def viewed(self, view: str) -> EmbeddingSpec:
        """The same features of the images under ``view``."""
        return dataclasses.replace(self, view=view)

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


def cache_root(ws: Workspace) -> Path:
    return state_path(ws, "cache", "embeddings")


SHARD_IMAGES = 4096
"""Images per shard while computing (Lite2's texture features: 325 MB): what a crash can cost,
and the most a cache read holds beside the features it fills."""


def _shards(directory: Path) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(sha256s, features)`` of each readable shard in ``directory``, one at a time."""
    if not directory.is_dir():
        return
    for shard in sorted(directory.glob("shard-*.npz")):
        try:
            with np.load(shard, allow_pickle=False) as z:
                shas, feats = z["sha256"], z["features"]
        except (OSError, ValueError, KeyError):
            continue  # a damaged shard is a cache miss, never an error
        if feats.ndim != 2 or len(shas) != len(feats):
            continue  # so is one whose arrays do not belong together
        yield shas, feats


def _rows_by_sha(shas: Sequence[str]) -> dict[str, list[int]]:
    """sha256 -> the rows it fills (byte-identical files share one feature vector)."""
    rows_of: dict[str, list[int]] = {}
    for row, sha in enumerate(shas):
        rows_of.setdefault(sha, []).append(row)
    return rows_of


def _meta_dim(directory: Path) -> int | None:
    """The feature width ``meta.json`` records, or None when it is missing or unreadable."""
    try:
        dim = json.loads((directory / "meta.json").read_text())["dim"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dim if isinstance(dim, int) else None


def _fill_from_cache(
    directory: Path, rows_of: dict[str, list[int]], n: int
) -> tuple[np.ndarray | None, set[str]]:
    """The cached features of the sha256s in ``rows_of`` (sha256 -> its rows of the result,
    ``n`` rows): ``(array or None when nothing was found, the sha256s found)``."""
    out: np.ndarray | None = None
    found: set[str] = set()
    dim = _meta_dim(directory)
    for shas, feats in _shards(directory):
        width = dim if dim is not None else (out.shape[1] if out is not None else None)
        if width is not None and feats.shape[1] != width:
            continue  # features of another width than meta.json's are not these: a miss
        for i, s in enumerate(shas):
            s = str(s)
            if s in rows_of and s not in found:
                if out is None:
                    out = np.zeros((n, feats.shape[1]), np.float32)
                out[rows_of[s]] = feats[i]
                found.add(s)
    return out, found


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
    model: Any = None,
) -> tuple[np.ndarray, list[str]]:
    """Run the backbone over ``paths`` (no cache): ``(features, errors)``; ``model``: the
    backbone's network, already built (else it is built here, on the runtime
    :func:`cleaner.models.runtime.resolve` picks)."""
    bb = spec.backbone
    if bb.numpy_features is not None:
        feats: list[np.ndarray] = []
        errors: list[str] = []
        batches = numpy_batches(
            paths,
            spec.image_size,
            crop=spec.crop,
            batch_size=batch_size,
            mirror=spec.mirror,
            view=spec.view,
        )
        for b in batches:
            feats.append(bb.numpy_features(b.images))
            errors.extend(b.errors)
            if progress is not None:
                progress(len(b.errors))
        out = np.concatenate(feats) if feats else np.zeros((0, 1), np.float32)
        return out.astype(np.float32), errors
    model = _network(spec, RT.resolve()) if model is None else model
    return predict_paths(
        model,
        paths,
        spec.image_size,
        crop=spec.crop,
        batch_size=batch_size,
        progress=progress,
        mirror=spec.mirror,
        view=spec.view,
    )


def _network(spec: EmbeddingSpec, runtime: RT.Runtime) -> Any:
    """The backbone's feature extractor on ``runtime`` (see :mod:`cleaner.models.runtime`)."""
    return RT.load(spec.backbone, spec.weights, spec.image_size, runtime)


def embedder(
    spec: EmbeddingSpec, batch_size: int, runtime: RT.Runtime = RT.Runtime.AUTO
) -> Callable[[Sequence[str | os.PathLike[str]]], list[Row]]:
    """Built once per worker of :func:`cleaner.engine.map_with_model`: the backbone's network
    (none for a numpy backbone) on the runtime the driver was asked for (``runtime``, resolved
    here: an ``auto`` actor with a GPU runs Keras) and a pure batch function, paths -> a
    feature row and an error per image (:func:`compute_features` over that batch)."""
    bb = spec.backbone
    model = _network(spec, RT.resolve(runtime)) if bb.numpy_features is None else None

    def run(paths: Sequence[str | os.PathLike[str]]) -> list[Row]:
        feats, errs = compute_features(spec, paths, batch_size=batch_size, model=model)
        return list(zip(feats, errs, strict=True))

    return run


def _computed(
    spec: EmbeddingSpec,
    paths: Sequence[str | os.PathLike[str]],
    *,
    batch_size: int,
    progress: Callable[[int], None] | None,
    model: Any = None,
) -> Iterator[tuple[np.ndarray, list[str]]]:
    """``(features, errors)`` of ``paths`` in order, :data:`SHARD_IMAGES` at a time (each
    becomes one shard): in this process on the local engine, on an actor pool on Ray.
    ``model``: the backbone's network, already built (local engine; else built here)."""
    if current().kind is Engine.RAY:
        rows: list[Row] = []
        make = functools.partial(embedder, spec, batch_size, RT.requested())
        call = batch_size * MODEL_CALL_BATCHES
        for out in map_with_model(make, paths, batch_size=call, progress=progress):
            rows.extend(out)
            while len(rows) >= SHARD_IMAGES:
                yield _stacked(rows[:SHARD_IMAGES])
                del rows[:SHARD_IMAGES]
        if rows:
            yield _stacked(rows)
        return
    for at in range(0, len(paths), SHARD_IMAGES):
        if model is None and spec.backbone.numpy_features is None:
            model = _network(spec, RT.resolve())
        yield compute_features(
            spec,
            paths[at : at + SHARD_IMAGES],
            batch_size=batch_size,
            progress=progress,
            model=model,
        )


def _stacked(rows: Sequence[Row]) -> tuple[np.ndarray, list[str]]:
    return np.stack([f for f, _ in rows]).astype(np.float32), [e for _, e in rows]


def _compute_missing(
    directory: Path | None,
    spec: EmbeddingSpec,
    items: Sequence[tuple[str | os.PathLike[str], str]],
    rows_of: Mapping[str, list[int]],
    todo: Sequence[str],
    *,
    batch_size: int,
    progress: Callable[[int], None] | None,
    model: Any = None,
) -> Iterator[tuple[Sequence[str], np.ndarray, list[str]]]:
    """Compute the features of the sha256s ``todo`` (each read from its first item's path),
    :data:`SHARD_IMAGES` at a time, writing each shard's decoded rows to ``directory`` (None:
    no cache) before yielding ``(its sha256s, features, errors)``: the one place a computed
    feature reaches the cache, for :func:`embed` and :func:`fill_cache` alike."""
    at = 0
    paths = [items[rows_of[s][0]][0] for s in todo]
    computed = _computed(spec, paths, batch_size=batch_size, progress=progress, model=model)
    for feats, errs in computed:
        piece = todo[at : at + len(errs)]
        at += len(errs)
        good = [i for i, err in enumerate(errs) if not err]
        if directory is not None and good:
            _write_shard(directory, spec, [piece[i] for i in good], feats[good])
        yield piece, feats, errs


def embed(
    ws: Workspace | None,
    items: Sequence[tuple[str | os.PathLike[str], str]],
    spec: EmbeddingSpec,
    *,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
    model: Any = None,
) -> Embeddings:
    """Features for ``items`` (``(path to read, sha256)`` pairs), from the cache under ROOT
    where present, computing (once per distinct sha256) and caching the rest. ``ws=None``
    turns the cache off; ``model``: the backbone's network when the caller has it built."""
    t0 = time.perf_counter()
    directory = cache_root(ws) / spec.key if ws is not None else None
    rows_of = _rows_by_sha([sha for _, sha in items])
    out, ok = _fill_from_cache(directory, rows_of, len(items)) if directory else (None, set())
    n_cached = sum(len(rows_of[s]) for s in ok)
    todo = [s for s in rows_of if s not in ok]
    new_errors: dict[str, str] = {}
    for piece, feats, errs in _compute_missing(
        directory, spec, items, rows_of, todo, batch_size=batch_size, progress=progress,
        model=model,
    ):  # fmt: skip
        if out is None:
            out = np.zeros((len(items), feats.shape[1]), np.float32)
        for i, s in enumerate(piece):
            if errs[i]:
                new_errors[s] = errs[i]
            else:
                out[rows_of[s]] = feats[i]
                ok.add(s)
    if out is None:
        out = np.zeros((len(items), 1), np.float32)
    errors = ["" if sha in ok else new_errors.get(sha, "not decoded") for _, sha in items]
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
    ws: Workspace | None,
    backbone: str,
    weights: str,
    image_size: int,
    shas: Sequence[str],
    *,
    crop: str = "center",
) -> np.ndarray | None:
    """Features of ``shas`` from ROOT's cache when *all* are there, else None (``ws`` None:
    there is no cache to read)."""
    from cleaner.models.backbones import get_backbone

    if ws is None:
        return None
    spec = EmbeddingSpec(get_backbone(backbone), weights, image_size, crop)
    rows_of = _rows_by_sha(shas)
    out, found = _fill_from_cache(cache_root(ws) / spec.key, rows_of, len(shas))
    if out is None or len(found) < len(rows_of):
        return None
    return out


# ---------------------------------------------------------------------------------------------
# the heads at a million images: features streamed from the shards, never all in memory


@dataclass
class ReducedEmbeddings(Embeddings):
    """:class:`Embeddings` whose rows are a projection's coordinates (``projection``; None when
    they are the full features)."""

    projection: P.Projection | None = None


def _shard_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("shard-*.npz")) if directory.is_dir() else []


def _shard_index(shard: Path) -> tuple[list[str], tuple[int, ...]] | None:
    """A shard's sha256s and its features' shape, without reading the features (the npy
    header inside the npz); None when it is damaged (a cache miss, as in :func:`_shards`)."""
    try:
        with np.load(shard, allow_pickle=False) as z:
            shas = [str(s) for s in z["sha256"]]
        with zipfile.ZipFile(shard) as zf, zf.open("features.npy") as f:
            version = np.lib.format.read_magic(f)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape = read(f)[0]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    if len(shape) != 2 or shape[0] != len(shas):
        return None
    return shas, tuple(int(x) for x in shape)


def _cached_shas(directory: Path) -> tuple[set[str], int | None]:
    """The sha256s whose features the cache holds (at ``meta.json``'s width) and that width."""
    dim = _meta_dim(directory)
    found: set[str] = set()
    for shard in _shard_files(directory):
        index = _shard_index(shard)
        if index is None:
            continue
        shas, shape = index
        dim = shape[1] if dim is None else dim
        if shape[1] == dim:
            found.update(shas)
    return found, dim


def _stream(directory: Path, wanted: set[str], dim: int) -> P.Shards:
    """A pass over the shards: the rows of the sha256s in ``wanted``, each once."""

    def passes() -> Iterator[tuple[list[str], np.ndarray]]:
        seen: set[str] = set()
        for shas, feats in _shards(directory):
            if feats.shape[1] != dim:
                continue
            keys = [str(s) for s in shas]
            pick = [i for i, s in enumerate(keys) if s in wanted and s not in seen]
            if pick:
                seen.update(keys[i] for i in pick)
                yield [keys[i] for i in pick], feats[pick]

    return passes


def fill_cache(
    ws: Workspace,
    items: Sequence[tuple[str | os.PathLike[str], str]],
    spec: EmbeddingSpec,
    *,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, str], int, int, int | None]:
    """Compute into ROOT's cache the features of ``items`` it lacks, :data:`SHARD_IMAGES` at a
    time on the current engine (memory: one shard), without reading any cached features.
    Returns ``(errors by sha256, images computed, images cached, feature width)``."""
    directory = cache_root(ws) / spec.key
    have, dim = _cached_shas(directory)
    rows_of = _rows_by_sha([sha for _, sha in items])
    todo = [s for s in rows_of if s not in have]
    errors: dict[str, str] = {}
    for piece, feats, errs in _compute_missing(
        directory, spec, items, rows_of, todo, batch_size=batch_size, progress=progress
    ):
        errors.update({sha: err for sha, err in zip(piece, errs, strict=True) if err})
        if not all(errs):
            dim = int(feats.shape[1])
    n_cached = sum(len(rows_of[s]) for s in rows_of if s in have)
    return errors, len(todo), n_cached, dim


def embed_for_heads(
    ws: Workspace,
    items: Sequence[tuple[str | os.PathLike[str], str]],
    spec: EmbeddingSpec,
    *,
    mode: HeadFeatures = HeadFeatures.AUTO,
    pca_dim: int = P.DIM,
    regions: int = 1,
    projection: P.Projection | None = None,
    copies: int = 1,
    seed: int = 0,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> ReducedEmbeddings:
    """The frozen heads' features of ``items``: first every missing one computed into ROOT's
    cache (:func:`fill_cache`), then, by ``mode`` (:func:`choose_head_features`), either the
    full features (read from the cache as :func:`embed` does) or their projection, read from the
    shards in two passes (a ``projection`` given, e.g. the one fitted on the unmirrored
    features: one pass). Memory for ``pca``: the ``(N, regions * pca_dim)`` result, one shard,
    and the fit's sample."""
    t0 = time.perf_counter()
    errors, computed, cached, dim = fill_cache(
        ws, items, spec, batch_size=batch_size, progress=progress
    )
    chosen = HeadFeatures.PCA if projection is not None else mode
    chosen = choose_head_features(chosen, len(items), dim or 0, copies)
    directory = cache_root(ws) / spec.key
    rows_of = _rows_by_sha([sha for _, sha in items])
    wanted = set(rows_of) - set(errors)
    if chosen is HeadFeatures.FULL or dim is None:
        full, found = _fill_from_cache(directory, {s: rows_of[s] for s in wanted}, len(items))
        return ReducedEmbeddings(
            features=np.zeros((len(items), 1), np.float32) if full is None else full,
            errors=["" if sha in found else errors.get(sha, "not decoded") for _, sha in items],
            computed=computed, cached=cached, cache_dir=directory,
            seconds=time.perf_counter() - t0, spec=spec,
        )  # fmt: skip
    if dim % regions:
        raise CleanerError(
            f"features of width {dim} are not {regions} equal regions; "
            "delete R/.cleaner/cache/embeddings and predict again"
        )
    stream = _stream(directory, wanted, dim)
    if projection is None:
        keys = P.sample_keys(wanted, P.SAMPLE_ROWS, regions, seed)
        projection = P.fit_streamed(stream, keys, regions=regions, dim=pca_dim)
    out, found = P.project_streamed(stream, rows_of, len(items), projection, regions=regions)
    errs = ["" if sha in found else errors.get(sha, "not decoded") for _, sha in items]
    return ReducedEmbeddings(
        features=out, errors=errs, computed=computed, cached=cached, cache_dir=directory,
        seconds=time.perf_counter() - t0, spec=spec, projection=projection,
    )  # fmt: skip
