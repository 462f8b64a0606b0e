"""The Ray engine: the same pure batch functions as the local engine, run by Ray Data.

Records travel as rows ``{"i": batch number, "rec": the batch's records, pickled}`` of a Ray
dataset, one row per batch of ``batch_size`` records, so a stage sees exactly the batches the
local engine gives it. A stateless stage's Ray task takes a block of several such rows (up to
:data:`TASK_RECORDS` records, at least :data:`TASKS_PER_CPU` tasks per CPU while there are
batches enough) and calls the stage once per row: a Ray Data task costs tens of milliseconds,
as much as decoding a batch of 32 small files, so one task per batch halved the throughput of
scan and hashing. A model stage keeps one batch per task (its batches are heavy, and its
results stream back batch by batch). The driver reads the results as they stream in and
yields them in input order, batch by batch, as the local engine does, so callers (and the
caches they write) cannot tell the engines apart. Stages never write state: the driver does.

Stateless stages run as Ray tasks (one CPU each); a model stage runs on an actor pool whose
actors build the network once (``make_fn()``), one actor per GPU when the cluster has GPUs,
else one per node (a network already uses every core of its node). A worker that dies (OOM
killer, a decoder's segfault, a lost node) is replaced and its task re-run by Ray (at most
:data:`RETRIES` times); only that task's batches are computed twice.

The session: ``ray.init(address)`` for a named cluster (``CLEANER_RAY_ADDRESS``, else Ray's
own ``RAY_ADDRESS``: ``ray://head:10001``, or ``auto`` for the one ``ray start`` runs here);
with no address, a Ray of this run's own on this machine, one CPU per core this process may
use (never a stranger's cluster found by chance). A session already running in this process
(a test's, a notebook's) is used as it is.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from cleaner.engine.local import batched, default_workers
from cleaner.engine.local import map_batches as local_map_batches

T = TypeVar("T")
R = TypeVar("R")

RETRIES = 3
"""Times Ray re-runs a task whose worker died before the run gives up."""

TASK_RECORDS = 1024
"""At most this many records per Ray task of a stateless stage (whole batches; one batch when a
batch is larger): enough that a task's own cost (tens of milliseconds) is a few per cent of
its work on cheap stages (scan: about 0.3 s a CPU for 1,024 small files), few enough that a
task's results (thumbnails for ``report`` are the largest) stay a modest block."""

TASKS_PER_CPU = 4
"""Tasks per cluster CPU at least, when the batches allow: fewer, larger tasks leave CPUs idle
at the end of a run and stream results back in coarser steps."""


def ensure_session(address: str | None = None, workers: int | None = None) -> None:
    """Connect to the cluster at ``address``, or start a Ray on this machine; quiet Ray Data's
    own progress bars and logs (the engine shows one bar)."""
    import ray

    if not ray.is_initialized():
        # Ray's own chatter stays in its session logs (/tmp/ray/session_latest/logs): start-up
        # notes and the workers' stderr (TensorFlow's banners, once per actor); a failed batch
        # still reaches this process as an exception
        common: dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": logging.ERROR,
            "log_to_driver": False,
        }
        address = address or os.environ.get("RAY_ADDRESS") or "local"
        if address == "local":  # a Ray of our own, even when a `ray start` one runs here
            ray.init(address="local", num_cpus=workers or default_workers(), **common)
        else:
            ray.init(address=address, **common)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    ctx.execution_options.preserve_order = True
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no per-dataset INFO lines
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


@contextlib.contextmanager
def _retry_args_quietly() -> Iterator[None]:
    """Ray Data warns that ``max_retries`` & co. will move to named parameters (Ray 2.64), which
    do not exist yet for them: pass them without the warning."""
    from ray.util.annotations import RayDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RayDeprecationWarning)
        yield


def cluster_gpus() -> int:
    """GPUs the cluster has (0 on a CPU cluster)."""
    import ray

    return int(ray.cluster_resources().get("GPU", 0))


def _apply(fn: Callable[[Sequence[Any]], list[Any]], rows: dict[str, np.ndarray]) -> dict[str, Any]:
    """Ray rows through a stage: each row is one batch of records (pickled); its results come
    back pickled the same way."""
    outs = np.empty(len(rows["rec"]), dtype=object)
    for k, blob in enumerate(rows["rec"]):
        records = pickle.loads(blob)
        out = fn(records)
        if len(out) != len(records):
            raise ValueError(f"a stage returned {len(out)} results for {len(records)} records")
        outs[k] = pickle.dumps(list(out), protocol=pickle.HIGHEST_PROTOCOL)
    return {"i": rows["i"], "out": outs}


class _Task:
    """A stateless stage as a Ray Data function (picklable: holds a module-level function)."""

    def __init__(self, fn: Callable[[Sequence[Any]], list[Any]]) -> None:
        self.fn = fn

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, Any]:
        return _apply(self.fn, rows)


class _ModelActor:
    """A model stage's actor: builds the network once, then runs batch after batch."""

    def __init__(self, make_fn: Callable[[], Callable[[Sequence[Any]], list[Any]]]) -> None:
        self.fn = make_fn()

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, Any]:
        return _apply(self.fn, rows)


def _dataset(items: Sequence[Any], batch_size: int, blocks: int | None = None) -> Any:
    """The records as a Ray dataset of one row per batch (``batch_size`` records, pickled), in
    ``blocks`` blocks of consecutive rows (None: one block per row). Every call of the stage
    sees exactly the batch the local engine gives it (the same numbers from a network whose
    results depend on the batch), whatever the block it travels in."""
    import ray

    rows = [
        {"i": k, "rec": pickle.dumps(list(b), protocol=pickle.HIGHEST_PROTOCOL)}
        for k, b in enumerate(batched(items, batch_size))
    ]
    return ray.data.from_items(rows, override_num_blocks=min(len(rows), blocks or len(rows)))


def _task_blocks(n_batches: int, batch_size: int) -> int:
    """Blocks (Ray tasks) for a stateless stage of ``n_batches`` batches: batches grouped up to
    :data:`TASK_RECORDS` records a task, but at least :data:`TASKS_PER_CPU` tasks per CPU of
    the cluster while there are batches enough."""
    import ray

    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    per_task = max(1, TASK_RECORDS // max(1, batch_size))
    per_task = min(per_task, max(1, n_batches // (TASKS_PER_CPU * cpus)))
    return math.ceil(n_batches / per_task)


def _in_order(
    stream: Iterator[dict[str, np.ndarray]], n_batches: int, bar: tqdm[Any]
) -> Iterator[list[Any]]:
    """Each batch's results, in input order, as soon as it and those before it arrived."""
    got: dict[int, bytes] = {}
    next_batch = 0
    for block in stream:
        for k, blob in zip(block["i"], block["out"], strict=True):
            got[int(k)] = blob
        while next_batch in got:
            out = pickle.loads(got.pop(next_batch))
            bar.update(len(out))
            yield out
            next_batch += 1
    if next_batch < n_batches:
        raise RuntimeError(f"Ray returned {next_batch} of {n_batches} batches")


def _actors() -> tuple[int, dict[str, Any]]:
    """How many model actors, and what each asks for: one per GPU on a GPU cluster; else one
    per node, with the CPUs of the smallest node (a network runs its own threads on every
    core it has, so two actors on one node only fight over it)."""
    import ray

    gpus = cluster_gpus()
    if gpus:
        return gpus, {"num_gpus": 1}
    nodes = [n for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) >= 1]
    if not nodes:
        return 1, {"num_cpus": 1}
    return len(nodes), {"num_cpus": min(int(n["Resources"]["CPU"]) for n in nodes)}


def map_batches(
    fn: Callable[[Sequence[T]], list[R]],
    items: Sequence[T],
    *,
    batch_size: int = 64,
    workers: int | None = None,
    desc: str = "",
    progress: bool | None = None,
    on_crash: Callable[[T, BaseException], R] | None = None,
    address: str | None = None,
) -> Iterator[list[R]]:
    """:func:`cleaner.engine.map_batches` on Ray Data tasks. When Ray gives up on a batch (its
    worker died :data:`RETRIES` times) and ``on_crash`` is given, the batches not yet yielded
    run on the local engine, which isolates the item that kills its worker."""
    import sys

    if not items:
        return
    ensure_session(address, workers)
    size = max(1, batch_size)
    n_batches = math.ceil(len(items) / size)
    with _retry_args_quietly():
        # batch_size=None: the task's whole block in one call, which runs the stage per row
        ds = _dataset(items, size, _task_blocks(n_batches, size)).map_batches(
            _Task(fn), batch_size=None, batch_format="numpy", num_cpus=1, max_retries=RETRIES
        )
    show = sys.stderr.isatty() if progress is None else progress
    done = 0
    with tqdm(total=len(items), desc=desc, unit="img", disable=not show, leave=False) as bar:
        try:
            stream = ds.iter_batches(batch_size=None, batch_format="numpy")
            for out in _in_order(stream, n_batches, bar):
                done += len(out)
                yield out
        except Exception:
            if on_crash is None:
                raise
            rest = items[done:]
            yield from local_map_batches(
                fn, rest, batch_size=size, workers=workers, progress=False, on_crash=on_crash
            )


def map_with_model(
    make_fn: Callable[[], Callable[[Sequence[T]], list[R]]],
    items: Sequence[T],
    *,
    batch_size: int = 32,
    desc: str = "",
    progress: bool | Callable[[int], None] | None = None,
    address: str | None = None,
) -> Iterator[list[R]]:
    """:func:`cleaner.engine.map_with_model` on a Ray Data actor pool: one actor per GPU on a
    GPU cluster (each asks for one GPU), else one per CPU."""
    import sys

    import ray

    if not items:
        return
    ensure_session(address)
    size = max(1, batch_size)
    n_batches = math.ceil(len(items) / size)
    n_actors, resources = _actors()
    with _retry_args_quietly():
        ds = _dataset(items, size).map_batches(
            _ModelActor,
            fn_constructor_args=(make_fn,),
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=max(1, min(n_batches, n_actors))),
            max_restarts=-1,
            max_task_retries=RETRIES,
            **resources,
        )
    show = (sys.stderr.isatty() if progress is None else progress) is True
    with tqdm(total=len(items), desc=desc, unit="img", disable=not show, leave=False) as bar:
        stream = ds.iter_batches(batch_size=None, batch_format="numpy")
        for out in _in_order(stream, n_batches, bar):
            if callable(progress):
                progress(len(out))
            yield out
