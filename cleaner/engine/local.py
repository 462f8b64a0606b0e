"""The local engine: a batch function over many items in this process, or on a process pool of
this machine, with a progress bar. The default; needs nothing beyond the standard library.

Stages are pure functions ``fn(batch: list[T]) -> list[R]`` over small batches of records
(picklable, module-level), so :mod:`cleaner.engine.ray_data` runs the same stages on Ray.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Worker processes to use: the CPUs this process may run on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _mp_context() -> multiprocessing.context.BaseContext | None:
    """``fork`` (the fast default) unless a threaded runtime is loaded: forking a process that
    runs TensorFlow's or PyTorch's threads can deadlock the children, so those get
    ``forkserver``."""
    if any(m in sys.modules for m in ("tensorflow", "torch", "jax")):
        return multiprocessing.get_context("forkserver")
    return None


WATCH_PARENT_S = 0.2
"""How often a pool worker checks that the process that started it is still alive."""


def _watch_parent(parent: int) -> None:
    """Exit (at once, no cleanup) when the parent process is gone."""
    while os.getppid() == parent:
        time.sleep(WATCH_PARENT_S)
    os._exit(1)


def _worker_init(parent: int) -> None:
    """Each pool worker dies with the process that started it.

    A worker blocked on the pool's queue never sees its parent die (it holds the queue's write
    end itself), so after ``kill -9`` of a command the workers would live on, reading files for
    nobody. A daemon thread watches the parent pid and exits the worker when it changes (the
    worker was re-parented); a parent already gone before this ran is caught the same way."""
    ppid = os.getppid()
    if parent and ppid != parent:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(ppid,), daemon=True).start()


def _pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers die with this process (see :func:`_worker_init`)."""
    ctx = _mp_context()
    # forked workers' parent is this process; forkserver's are children of the fork server
    parent = os.getpid() if ctx is None else 0
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_worker_init, initargs=(parent,)
    )


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``items`` of at most ``size``."""
    for i in range(0, len(items), max(1, size)):
        yield items[i : i + size]


def map_batches(
    fn: Callable[[Sequence[T]], list[R]],
    items: Sequence[T],
    *,
    batch_size: int = 64,
    workers: int | None = None,
    desc: str = "",
    progress: bool | None = None,
    on_crash: Callable[[T, BaseException], R] | None = None,
) -> Iterator[list[R]]:
    """Yield ``fn(batch)`` for each batch of ``items``, in input order.

    ``workers=1`` (or a single batch) runs in this process; otherwise a process pool keeps at
    most ``2 * workers`` batches in flight, so memory stays bounded on 100,000 files. The progress
    bar counts items and shows on a terminal only unless ``progress`` says otherwise.

    ``on_crash``: when a worker process dies (a decoder segfault, the OOM killer), the batches
    that were in flight are re-run one at a time in a fresh process, bisected down to the item
    that kills it, whose result is ``on_crash(item, error)``; then a new pool goes on. Without
    it, the error (``BrokenProcessPool``) propagates.
    """
    n_workers = default_workers() if workers is None else max(1, workers)
    show = sys.stderr.isatty() if progress is None else progress
    batches = list(batched(items, batch_size))
    with tqdm(total=len(items), desc=desc, unit="img", disable=not show, leave=False) as bar:
        if n_workers == 1 or len(batches) <= 1:
            for b in batches:
                out = fn(b)
                bar.update(len(b))
                yield out
            return
        done: dict[int, list[R]] = {}
        next_submit = next_yield = 0
        while next_yield < len(batches):
            pending: dict[int, Future[list[R]]] = {}
            pool = _pool(n_workers)
            try:
                while next_yield < len(batches):
                    while next_submit < len(batches) and len(pending) < 2 * n_workers:
                        pending[next_submit] = pool.submit(fn, batches[next_submit])
                        next_submit += 1
                    if pending:
                        finished, _ = wait(list(pending.values()), return_when=FIRST_COMPLETED)
                        for i, fut in list(pending.items()):
                            if fut in finished:
                                done[i] = fut.result()
                                bar.update(len(batches[i]))
                                del pending[i]
                    while next_yield in done:
                        yield done.pop(next_yield)
                        next_yield += 1
            except BrokenProcessPool:
                if on_crash is None:
                    raise
                pool.shutdown(wait=True, cancel_futures=True)
                for i in sorted(pending):
                    done[i] = _isolated(fn, list(batches[i]), on_crash)
                    bar.update(len(batches[i]))
            finally:
                pool.shutdown(wait=True, cancel_futures=True)


def _isolated(
    fn: Callable[[Sequence[T]], list[R]],
    batch: list[T],
    on_crash: Callable[[T, BaseException], R],
) -> list[R]:
    """``fn(batch)`` in a fresh one-worker process, bisected until the item that kills the
    worker is alone (its result is ``on_crash``)."""
    with _pool(1) as pool:
        try:
            return pool.submit(fn, batch).result()
        except BrokenProcessPool as e:
            if len(batch) == 1:
                return [on_crash(batch[0], e)]
    mid = len(batch) // 2
    return _isolated(fn, batch[:mid], on_crash) + _isolated(fn, batch[mid:], on_crash)
