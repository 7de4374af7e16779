"""apply_masks and the thread pool under calls from several threads at once (two sessions
closing in one process)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from secureagg.hazmat import MaskBuffer, _parallel, _prg, apply_masks, element_dtype


def test_concurrent_apply_masks_calls_do_not_share_vectors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two threads unmasking at once (two sessions in one process): each call's pool
    threads add into vectors no other call holds. With one kept vector per pool thread, a
    thread could zero and refill it for call B before call A added it: wrong sums, no error."""
    monkeypatch.setattr(_prg, "PARALLEL_MIN_D", 1 << 18)  # threads at this d (as when written)
    d, bits, k = _prg.PARALLEL_MIN_D, 21, max(2, _prg.PARALLEL_MIN // _prg.PARALLEL_MIN_D)
    rng = np.random.default_rng(7)
    cases = []
    for _ in range(4):
        seeds = [os.urandom(32) for _ in range(k)]
        start = rng.integers(0, 2**bits, d).astype(element_dtype(bits))
        want = start.copy()
        MaskBuffer(d, bits).apply(want, add=seeds[: k // 2], subtract=seeds[k // 2 :])
        cases.append((seeds, start, want))
    wrong: list[int] = []

    def calls(who: int) -> None:
        for i in range(12):
            seeds, start, want = cases[(i + who) % len(cases)]
            got = start.copy()
            apply_masks(got, bits, add=seeds[: k // 2], subtract=seeds[k // 2 :], workers=2)
            if not np.array_equal(got, want):
                wrong.append(i)

    threads = [threading.Thread(target=calls, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong


def test_growing_the_pool_leaves_a_concurrent_caller_its_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call that took the pool before another call grew it still runs its parts (the old
    pool is not shut down under it)."""
    monkeypatch.setattr(_parallel, "_POOL", None)
    monkeypatch.setattr(_parallel, "_POOL_SIZE", 0)
    took = threading.Event()
    grown = threading.Event()
    real_pool = _parallel._pool

    def slow_pool(threads: int):  # type: ignore[no-untyped-def]
        pool = real_pool(threads)
        if threads == 1:  # the first call: wait until the second has grown the pool
            took.set()
            grown.wait(5)
        return pool

    monkeypatch.setattr(_parallel, "_pool", slow_pool)
    errors: list[BaseException] = []
    done: list[int] = []

    def first() -> None:
        try:
            _parallel.run_parts(lambda lo, hi: time.sleep(0.001), [(0, 1), (1, 2)], 2)
            done.append(2)
        except BaseException as exc:  # recorded and asserted below
            errors.append(exc)

    t = threading.Thread(target=first)
    t.start()
    assert took.wait(5)
    _parallel.run_parts(lambda lo, hi: None, [(i, i + 1) for i in range(4)], 4)  # grows it
    grown.set()
    t.join()
    assert not errors and done == [2]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_inherit_a_held_free_list_lock() -> None:
    """A fork while another thread holds apply_masks' free-list lock: the child gets a fresh
    lock (else its next threaded apply_masks would block forever)."""
    with _prg._FREE_LOCK:
        pid = os.fork()
        if pid == 0:  # the child: exit 0 only if the lock can be taken
            os._exit(0 if _prg._FREE_LOCK.acquire(timeout=2) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
