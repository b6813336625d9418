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

import fcntl
import gc
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


# What the workers' environment sets, unless the user's environment already does. The
# workers do no linear algebra; without this, the OpenBLAS that numpy loads (and the one that
# scipy loads when numba checks its version) starts a thread per CPU in every process, and
# each such thread spins for about 0.1 s before it first sleeps (perf: 1.5% of the data
# stage's samples, on the same cores as the work).
WORKER_ENV: dict[str, str] = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# The largest buffer `WorkerPool` gives the pipe that carries results back (`_widen_result_pipe`).
RESULT_PIPE_BYTES = 4 << 20


def available_cpus() -> int:
    """CPUs this process may run on (respects affinity masks and container CPU sets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def collection_paused() -> Iterator[None]:
    """No automatic garbage collection inside (as in the workers): for a loop in the main
    process that allocates little that is cyclic but many objects (a set of a million
    digests, unpickled results), where the collector's passes over everything that the
    imports left (perf: 1.3% of the data stage's samples) find nothing to free. Restored on
    the way out; cycles made inside are collected by the next collection after it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _start_worker(initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
    initializer(*initargs)
    gc.disable()


def _run_task(fn: Callable[[In], Out], item: In) -> Out:
    try:
        return fn(item)
    finally:
        gc.collect(0)


class WorkerPool:
    """Worker processes, each set up once by `initializer(*initargs)`, for the whole of a
    stage: `map` can be called several times (the data stage judges batches, then copies the
    training file in windows) without paying the start-up again. With one worker nothing is
    spawned and the work runs in this process."""

    def __init__(
        self,
        workers: int,
        initializer: Callable[..., None],
        initargs: tuple[Any, ...] = (),
        preload: tuple[str, ...] = (),
    ) -> None:
        self.workers = workers
        self.initializer, self.initargs = initializer, initargs
        # Modules that the fork server imports once, before it forks the workers (see
        # `data.warmup`): what they load, every worker starts with. Only the pool that starts
        # the process's fork server sets what it preloads (and the setting stays for a later
        # start of it); a preload only saves time.
        self.preload = preload
        self._pool: ProcessPoolExecutor | None = None
        self.result_pipe_bytes: int | None = None  # see `_widen_result_pipe`
        self._saved_env: dict[str, str | None] = {}

    def __enter__(self) -> WorkerPool:
        if self.workers <= 1:
            self.initializer(*self.initargs)
            return self
        # forkserver: workers start from a single-threaded server process (`preload` at most
        # imports into it; `WORKER_ENV` keeps OpenBLAS to one thread there) instead of a copy
        # of this one (fork would copy any threads' locks held at that instant).
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        # Set while the pool lives: its processes (and the fork server, when this pool is the
        # first to start it) take the environment when they start, on the first `map`.
        self._saved_env = {name: os.environ.get(name) for name in WORKER_ENV}
        for name, value in WORKER_ENV.items():
            os.environ.setdefault(name, value)
        context = multiprocessing.get_context(method)
        if method == "forkserver" and self.preload:
            context.set_forkserver_preload(list(self.preload))
        self._pool = ProcessPoolExecutor(
            self.workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(self.initializer, self.initargs),
        )
        self.result_pipe_bytes = _widen_result_pipe(self._pool)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}

    def map(self, fn: Callable[[In], Out], inputs: Iterable[In]) -> Iterator[Out]:
        """`map(fn, inputs)` in the workers, results in input order, at most `2 * workers`
        inputs in flight. `fn` and the inputs must be picklable; the first exception raised
        by `fn` is re-raised."""
        if self._pool is None:
            yield from map(fn, inputs)
            return
        pending: deque[Future[Out]] = deque()
        try:
            for item in inputs:
                pending.append(self._pool.submit(_run_task, fn, item))
                if len(pending) >= 2 * self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _widen_result_pipe(pool: ProcessPoolExecutor) -> int | None:
    """Give the pipe that carries the results back to this process a buffer of
    `RESULT_PIPE_BYTES`, or as much as this system lets a process set (Linux:
    /proc/sys/fs/pipe-max-size, 1 MiB by default), instead of 64 KiB. Returns the new size,
    or None where it cannot be set (not Linux, another executor's internals).

    A worker writes its pickled result into the pipe and waits while the pipe is full, until
    the executor's reader thread here has read it, a thread that shares the CPUs with the
    workers and this process's main thread (a shorter GIL switch interval changed nothing).
    The data stage's results are about 2 MiB per batch (its reject lines): each of 2 workers
    spent 0.40 to 0.48 s per million records waiting in such writes, 0.21 to 0.26 s with
    1 MiB."""
    set_size, get_size = getattr(fcntl, "F_SETPIPE_SZ", None), getattr(fcntl, "F_GETPIPE_SZ", None)
    if set_size is None or get_size is None:
        return None
    try:
        fd = pool._result_queue._reader.fileno()  # type: ignore[attr-defined]
        allowed = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        fcntl.fcntl(fd, set_size, min(allowed, RESULT_PIPE_BYTES))
        return fcntl.fcntl(fd, get_size)
    except (AttributeError, OSError, ValueError):
        return None


_END = object()
# How long leaving `read_ahead` early waits for the item its thread is reading (a stalled hub
# download must not hold up Ctrl-C or an error).
_ABANDON_AFTER = 1.0


def read_ahead(items: Iterable[In], weight: Callable[[In], int], capacity: int) -> Iterator[In]:
    """`items`, produced by a thread of this process while the caller works on earlier ones:
    at most `capacity` (summed `weight`) wait to be taken, plus the one item the thread holds
    while it waits for room (an item heavier than `capacity` waits alone). For reading that
    mostly waits or runs outside the GIL (file reads, hashing, numpy), such as the data
    stage's chunking of its input, which then uses a CPU that would otherwise wait for the
    worker processes to start. An exception raised by `items` is raised here, after the items
    before it. Leaving the iteration (its end, `close`, an error) stops the thread, which
    closes `items`; on an error or `close`, this waits at most `_ABANDON_AFTER` seconds for the
    item the thread is reading, then leaves it to finish alone (it is a daemon thread)."""
    queue: deque[tuple[In, int]] = deque()
    held = [0]
    done: list[Any] = []  # the end: [_END] or [exception]
    stop = threading.Event()
    changed = threading.Condition()

    def produce() -> None:
        end: Any = _END
        source: Iterator[In] | None = None
        try:
            source = iter(items)
            for item in source:
                w = weight(item)
                with changed:
                    changed.wait_for(lambda w=w: stop.is_set() or held[0] == 0 or held[0] + w <= capacity)
                    if stop.is_set():
                        break
                    queue.append((item, w))
                    held[0] += w
                    changed.notify_all()
        except BaseException as exc:  # handed to the consumer, raised there
            end = exc
        finally:
            try:
                close = getattr(source, "close", None)
                if close is not None:
                    close()
            except BaseException as exc:
                end = exc if end is _END else end
            with changed:
                done.append(end)
                changed.notify_all()

    thread = threading.Thread(target=produce, name="read_ahead", daemon=True)
    thread.start()
    finished = False
    try:
        while True:
            with changed:
                changed.wait_for(lambda: bool(queue) or bool(done))
                if queue:
                    item, w = queue.popleft()
                    held[0] -= w
                    changed.notify_all()
                elif done[0] is _END:
                    finished = True
                    return
                else:
                    finished = True
                    raise done[0]
            yield item
    finally:
        with changed:
            stop.set()
            changed.notify_all()
        thread.join(None if finished else _ABANDON_AFTER)
