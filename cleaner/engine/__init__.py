"""Runs pure batch functions over records, on one of two engines:

- ``local`` (the default): this process, or a process pool of this machine
  (:mod:`cleaner.engine.local`); needs nothing beyond the standard library.
- ``ray``: Ray Data on the cluster named by ``CLEANER_RAY_ADDRESS`` (or ``--ray-address``), or
  a Ray started on this machine when none is named (:mod:`cleaner.engine.ray_data`, the only
  module that imports Ray, and only when chosen). Installed with ``pip install 'cleaner[ray]'``.

Two entry points, the same on both engines, results in input order:

- :func:`map_batches` ``(fn, items)``: a stateless stage (scan, hashing, thumbnails, decoding);
  ``fn(batch) -> list`` is a module-level pure function.
- :func:`map_with_model` ``(make_fn, items)``: a model stage; ``make_fn()`` builds the network
  once per worker (an actor on Ray, one per GPU when the cluster has GPUs) and returns the
  batch function.

Which engine runs: the ``engine=`` argument, else :func:`configure`'s choice (the CLI's
``--engine``), else ``CLEANER_ENGINE``, else ``local``. Stages never write state files: the
caller (the driver) does, so a worker that dies can never leave a torn file.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from cleaner.engine.local import batched, default_workers
from cleaner.engine.local import map_batches as local_map_batches
from cleaner.errors import CleanerError

__all__ = [
    "ADDRESS_ENV",
    "ENGINE_ENV",
    "MODEL_CALL_BATCHES",
    "Engine",
    "EngineConfig",
    "batched",
    "configure",
    "current",
    "default_workers",
    "idle_address",
    "map_batches",
    "map_with_model",
    "using",
]

T = TypeVar("T")
R = TypeVar("R")

MODEL_CALL_BATCHES = 8
"""Model batches per call of a model stage on Ray: a call decodes its next batch while the
network runs on this one (:func:`cleaner.models.inputs.numpy_batches`)."""

ENGINE_ENV = "CLEANER_ENGINE"
ADDRESS_ENV = "CLEANER_RAY_ADDRESS"


class Engine(StrEnum):
    """Where batch functions run."""

    LOCAL = "local"
    RAY = "ray"


@dataclass(frozen=True)
class EngineConfig:
    """An engine and, for Ray, the cluster's address (None: a Ray started on this machine)."""

    kind: Engine = Engine.LOCAL
    address: str | None = None


_chosen: EngineConfig | None = None


def parse_engine(name: str | Engine) -> Engine:
    """The engine named, or a CleanerError naming the choices."""
    try:
        return Engine(str(name).strip().lower())
    except ValueError:
        choices = ", ".join(e.value for e in Engine)
        raise CleanerError(
            f"engine {name!r} is not one of {choices} (check --engine or {ENGINE_ENV})"
        ) from None


def _from_env() -> EngineConfig:
    kind = parse_engine(os.environ.get(ENGINE_ENV) or Engine.LOCAL)
    return EngineConfig(kind, os.environ.get(ADDRESS_ENV) or None)


def configure(kind: Engine | str | None = None, address: str | None = None) -> EngineConfig:
    """Set this process's engine (the CLI calls it with ``--engine``); ``None`` keeps the
    environment's. Refuses ``ray`` when Ray is not installed, and an ``address`` with the
    local engine (it would be ignored), before any work starts."""
    env = _from_env()
    cfg = EngineConfig(
        parse_engine(kind) if kind is not None else env.kind,
        address if address is not None else env.address,
    )
    if address is not None and cfg.kind is Engine.LOCAL:
        raise CleanerError(
            f"--ray-address {address} names a Ray cluster, but the engine is local (it would be "
            f"ignored); add --engine ray (or set {ENGINE_ENV}=ray), or drop --ray-address"
        )
    if cfg.kind is Engine.RAY and importlib.util.find_spec("ray") is None:
        raise CleanerError(
            "--engine ray needs Ray, which is not installed: pip install 'cleaner[ray]' "
            "(or use --engine local)"
        )
    global _chosen
    _chosen = cfg
    return cfg


def idle_address(cfg: EngineConfig) -> str:
    """The warning for an address the engine will not use: ``CLEANER_RAY_ADDRESS`` (the
    Makefile's ``RAY_ADDRESS=``) set while the engine is local; '' otherwise. A warning, not a
    refusal: the variable may be set for other commands (``--ray-address`` is refused)."""
    if cfg.kind is Engine.LOCAL and cfg.address:
        return (
            f"{ADDRESS_ENV}={cfg.address} is ignored: the engine is local; set "
            f"{ENGINE_ENV}=ray (make ENGINE=ray) or pass --engine ray to run on that cluster"
        )
    return ""


@contextlib.contextmanager
def using(kind: Engine | str, address: str | None = None) -> Iterator[EngineConfig]:
    """:func:`configure` for a ``with`` block (scripts, tests); the previous choice after."""
    global _chosen
    before = _chosen
    try:
        yield configure(kind, address)
    finally:
        _chosen = before


def current() -> EngineConfig:
    """The engine this process uses when a call names none."""
    return _chosen if _chosen is not None else _from_env()


def map_batches(
    fn: Callable[[Sequence[T]], list[R]],
    items: Sequence[T],
    *,
    batch_size: int = 64,
    workers: int | None = None,
    desc: str = "",
    progress: bool | None = None,
    on_crash: Callable[[T, BaseException], R] | None = None,
    engine: EngineConfig | None = None,
) -> Iterator[list[R]]:
    """Yield ``fn(batch)`` for each batch of ``items``, in input order, on the chosen engine.

    See :func:`cleaner.engine.local.map_batches` for ``workers`` and ``on_crash``; on Ray a
    dead worker's task is retried by Ray, and an item that kills every retry falls back to the
    local engine's isolation when ``on_crash`` is given."""
    cfg = engine or current()
    if cfg.kind is Engine.RAY:
        from cleaner.engine import ray_data

        yield from ray_data.map_batches(
            fn,
            items,
            batch_size=batch_size,
            workers=workers,
            desc=desc,
            progress=progress,
            on_crash=on_crash,
            address=cfg.address,
        )
        return
    yield from local_map_batches(
        fn,
        items,
        batch_size=batch_size,
        workers=workers,
        desc=desc,
        progress=progress,
        on_crash=on_crash,
    )


def map_with_model(
    make_fn: Callable[[], Callable[[Sequence[T]], list[R]]],
    items: Sequence[T],
    *,
    batch_size: int = 32,
    desc: str = "",
    progress: bool | Callable[[int], None] | None = None,
    engine: EngineConfig | None = None,
) -> Iterator[list[R]]:
    """Yield ``fn(batch)`` per batch of ``items`` in input order, where ``fn = make_fn()`` is
    built once per worker: in this process on the local engine (the model uses every core),
    once per actor of an actor pool on Ray (a GPU per actor when the cluster has GPUs).
    ``make_fn`` must pickle (a module-level function or a ``functools.partial`` of one).
    ``progress``: a callable is told the number of items done after each batch."""
    cfg = engine or current()
    if cfg.kind is Engine.RAY:
        from cleaner.engine import ray_data

        yield from ray_data.map_with_model(
            make_fn,
            items,
            batch_size=batch_size,
            desc=desc,
            progress=progress,
            address=cfg.address,
        )
        return
    fn = make_fn()
    for batch in batched(items, batch_size):
        out = fn(batch)
        if callable(progress):
            progress(len(batch))
        yield out
