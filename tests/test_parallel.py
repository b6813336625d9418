"""WorkerPool: results in input order, one start-up per worker for several maps, errors
re-raised."""

from __future__ import annotations

import os

import pytest

from k12tune.parallel import WorkerPool

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
