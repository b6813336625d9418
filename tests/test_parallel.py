"""WorkerPool: results in input order, one start-up per worker for several maps, errors
re-raised."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from k12tune.parallel import RESULT_PIPE_BYTES, WorkerPool, collection_paused, read_ahead

_SETUP: dict[str, int] = {}


def setup(value: int) -> None:
    _SETUP["value"] = value
    _SETUP["setups"] = _SETUP.get("setups", 0) + 1


def work(x: int) -> tuple[int, int, int, int]:
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x * x, _SETUP["value"], _SETUP["setups"], os.getpid()


@pytest.mark.parametrize("workers", [1, 2])
def test_maps_in_order_with_workers_set_up_once(workers: int) -> None:
    with WorkerPool(workers, setup, (7,)) as pool:
        first = list(pool.map(work, range(50)))
        second = list(pool.map(work, range(50, 60)))
    assert [r[0] for r in first + second] == [x * x for x in range(60)]
    assert {r[1] for r in first + second} == {7}
    assert {r[2] for r in first + second} == {1}  # the initializer ran once per process
    pids = {r[3] for r in first + second}
    if workers == 1:
        assert pids == {os.getpid()}
    else:
        assert os.getpid() not in pids and 1 <= len(pids) <= 2


def large(x: int) -> bytes:
    return bytes([x]) * (3 << 20)


def test_the_result_pipe_is_widened_and_carries_results_larger_than_it() -> None:
    allowed = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    with WorkerPool(2, setup, (1,)) as pool:
        assert pool.result_pipe_bytes == min(allowed, RESULT_PIPE_BYTES) > 64 << 10
        assert list(pool.map(large, range(6))) == [large(x) for x in range(6)]
    with WorkerPool(1, setup, (1,)) as pool:
        assert pool.result_pipe_bytes is None  # no pipe: the work runs here


def test_an_error_in_a_worker_is_raised_here() -> None:
    with WorkerPool(2, setup, (1,)) as pool, pytest.raises(ValueError, match="negative: -3"):
        list(pool.map(work, [1, 2, -3, 4]))


def blas_threads(_: int) -> tuple[int, str | None]:
    """The threads of a worker once numpy (and its OpenBLAS) is loaded there."""
    import numpy  # noqa: F401

    return len(os.listdir("/proc/self/task")), os.environ.get("OPENBLAS_NUM_THREADS")


def test_workers_run_one_thread_and_the_environment_is_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    with WorkerPool(2, setup, (1,)) as pool:
        results = list(pool.map(blas_threads, range(4)))
    assert {threads for threads, _ in results} == {1}
    assert {value for _, value in results} == {"1"}
    assert "OPENBLAS_NUM_THREADS" not in os.environ
    assert os.environ["MKL_NUM_THREADS"] == "3"  # a value the user set is left alone


def _numbers(n: int, produced: list[int], fail_at: int | None = None):
    try:
        for k in range(n):
            if k == fail_at:
                raise OSError(f"cannot read item {k}")
            produced.append(k)
            yield k
    finally:
        produced.append(-1)  # closed


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the read-ahead thread did not get there"
        time.sleep(0.001)


def test_read_ahead_keeps_the_order_and_stays_within_its_capacity() -> None:
    produced: list[int] = []
    items = read_ahead(_numbers(100, produced), lambda k: 3 if k % 10 == 0 else 1, capacity=5)
    assert next(items) == 0
    # 1..5 (weight 5) wait in the queue; the thread holds 6 while it waits for room
    _wait_until(lambda: len(produced) == 7)
    time.sleep(0.05)
    assert produced == [0, 1, 2, 3, 4, 5, 6]
    assert [next(items) for _ in range(6)] == [1, 2, 3, 4, 5, 6]
    # 7, 8, 9 (weight 3) fit; 10 (weight 3) does not, and waits in the thread's hand
    _wait_until(lambda: len(produced) == 11)
    time.sleep(0.05)
    assert produced[-4:] == [7, 8, 9, 10]
    assert list(items) == list(range(7, 100))
    assert produced[-1] == -1


def test_read_ahead_raises_the_producers_error_after_the_items_before_it() -> None:
    produced: list[int] = []
    taken = []
    with pytest.raises(OSError, match="cannot read item 7"):
        for k in read_ahead(_numbers(100, produced, fail_at=7), lambda k: 1, capacity=4):
            taken.append(k)
    assert taken == list(range(7))
    assert produced[-1] == -1


def test_closing_read_ahead_stops_and_closes_the_producer() -> None:
    produced: list[int] = []
    items = read_ahead(_numbers(1000, produced), lambda k: 1, capacity=4)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert produced[-1] == -1  # closed before `close` returned
    assert len(produced) - 1 <= 3 + 4 + 1  # taken, waiting, and one blocked on the capacity


def test_read_ahead_raises_an_error_of_iter_or_close() -> None:
    class Unreadable:
        def __iter__(self):
            raise PermissionError("no access")

    with pytest.raises(PermissionError, match="no access"):
        list(read_ahead(Unreadable(), lambda k: 1, capacity=4))

    def closes_badly():
        try:
            yield 1
        finally:
            raise OSError("close failed")

    with pytest.raises(OSError, match="close failed"):
        list(read_ahead(closes_badly(), lambda k: 1, capacity=4))


def test_leaving_read_ahead_early_does_not_wait_for_a_stalled_read() -> None:
    def stalls():
        yield 1
        time.sleep(5)  # a hub download that hangs
        yield 2

    items = read_ahead(stalls(), lambda k: 1, capacity=4)
    assert next(items) == 1
    started = time.monotonic()
    items.close()
    assert time.monotonic() - started < 3


def test_an_item_heavier_than_the_capacity_still_passes_alone() -> None:
    produced: list[int] = []
    assert list(read_ahead(_numbers(5, produced), lambda k: 10, capacity=4)) == [0, 1, 2, 3, 4]


_PRELOAD_CHECK = """
import sys
from k12tune.parallel import WorkerPool

def loaded_before_setup():
    return "k12tune.data.warmup" in sys.modules

def setup():
    global BEFORE
    BEFORE = loaded_before_setup()

def work(_):
    return BEFORE

if __name__ == "__main__":
    with WorkerPool(2, setup, preload=("k12tune.data.warmup",)) as pool:
        print(sorted(set(pool.map(work, range(4)))), loaded_before_setup())
"""


def test_preloaded_modules_are_in_the_workers_before_their_setup(tmp_path: Path) -> None:
    """The fork server imports `preload` once; the workers it forks have it, and the main
    process does not import it."""
    script = tmp_path / "check.py"
    script.write_text(_PRELOAD_CHECK)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["[True]", "False"]


def test_collection_is_paused_inside_and_restored_after() -> None:
    assert gc.isenabled()
    with collection_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()
    with pytest.raises(RuntimeError), collection_paused():
        raise RuntimeError
    assert gc.isenabled()
