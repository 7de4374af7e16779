"""run_parts: every range once, every part ended before it returns, a busy pool never waited for."""

from __future__ import annotations

import threading
import time

import pytest

from secureagg.hazmat import _parallel
from secureagg.hazmat._parallel import run_parts


@pytest.mark.parametrize("threads", [1, 2, 3, 5])
@pytest.mark.parametrize("count", [0, 1, 2, 7, 40])
def test_every_range_runs_once(threads: int, count: int) -> None:
    ranges = [(i, i + 1) for i in range(count)]
    seen: list[int] = []
    lock = threading.Lock()
    callers: set[int] = set()

    def part(lo: int, hi: int) -> None:
        time.sleep(0.0005)  # long enough for pool threads to take some
        with lock:
            seen.extend(range(lo, hi))
            callers.add(threading.get_ident())

    run_parts(part, ranges, threads)
    assert sorted(seen) == list(range(count))
    if threads == 1 or count <= 1:
        assert callers <= {threading.get_ident()}  # no pool thread used


def test_an_error_is_raised_after_every_part_ended() -> None:
    """One part fails while slower ones run (in the caller or the pool): nothing may still
    run when the error comes out."""
    for failing in range(4):
        _check_error_waits(failing)


def _check_error_waits(failing: int) -> None:
    running = [0]
    lock = threading.Lock()

    def part(lo: int, hi: int) -> None:
        with lock:
            running[0] += 1
        try:
            time.sleep(0.005)
            if lo == failing:
                raise ValueError(f"part {lo}")
            time.sleep(0.03)
        finally:
            with lock:
                running[0] -= 1

    with pytest.raises(ValueError, match=f"part {failing}"):
        run_parts(part, [(i, i + 1) for i in range(6)], 3)
    assert running[0] == 0


def test_a_busy_pool_leaves_every_range_to_the_caller() -> None:
    """Pool threads that never get to run (here: all busy) are cancelled, not waited for."""
    release = threading.Event()
    pool = _parallel._pool(2)
    blockers = [pool.submit(release.wait, 10) for _ in range(_parallel._POOL_SIZE)]
    try:
        me = threading.get_ident()
        who: list[int] = []
        start = time.perf_counter()
        run_parts(lambda lo, hi: who.append(threading.get_ident()), [(0, 1), (1, 2), (2, 3)], 3)
        assert time.perf_counter() - start < 5
        assert who == [me, me, me]
    finally:
        release.set()
        for blocker in blockers:
            blocker.result()
