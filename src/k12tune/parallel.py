"""An ordered, bounded parallel map over a stream, for CPU-bound batch work.

Results come back in input order, so output files are byte-identical whatever the number of
workers. At most `2 * workers` inputs are in flight, so a stream larger than memory stays
bounded (`multiprocessing.Pool.imap` would read its whole input ahead). With one worker
nothing is spawned: the function runs in this process, which is also what tests and small
inputs use.

Worker processes run without automatic garbage collection: a task allocates and frees many
objects (parsed JSON, records), and the collector kept traversing them, and every module's
objects, in collections that found almost nothing (reference counting frees acyclic objects);
that cost a fifth of the data stage's time. Each worker collects the youngest generation once
after each task instead: the objects that task allocated and left behind, cycles included.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


def available_cpus() -> int:
    """CPUs this process may run on (respects affinity masks and container CPU sets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _start_worker(initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
    initializer(*initargs)
    gc.disable()


def _run_task(fn: Callable[[In], Out], item: In) -> Out:
    try:
        return fn(item)
    finally:
        gc.collect(0)


def ordered_map(
    fn: Callable[[In], Out],
    inputs: Iterable[In],
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...] = (),
) -> Iterator[Out]:
    """`map(fn, inputs)` over `workers` processes, each set up once by `initializer(*initargs)`.
    `fn` and the inputs must be picklable; the first exception raised by `fn` is re-raised."""
    if workers <= 1:
        initializer(*initargs)
        yield from map(fn, inputs)
        return
    # forkserver: workers start from a clean, single-threaded server process instead of a copy
    # of this one (fork would copy any threads' locks held at that instant).
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(initializer, initargs)
    ) as pool:
        pending: deque[Future[Out]] = deque()
        try:
            for item in inputs:
                pending.append(pool.submit(_run_task, fn, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
