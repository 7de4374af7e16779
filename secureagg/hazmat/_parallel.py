"""Running independent parts of one call on several threads, all ended before it returns.

numpy's ufuncs and copies on large arrays, and cryptography's AES, release the GIL, so
parts of one vector operation run on separate cores. The threads are kept in one pool per
process (started on first use; a forked child starts its own), so a call costs a hand-off,
not a thread start.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["PARALLEL_MIN_D", "run_parts"]

# vectors shorter than this are summed and unmasked on one thread (PackedSum, apply_masks):
# at bench_vs_flower's d = 10^5 and 10^6 two threads made rounds slower whenever other
# processes kept the cores busy
PARALLEL_MIN_D = 1 << 22

_LOCK = threading.Lock()
_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0


def _pool(threads: int) -> ThreadPoolExecutor:
    """The process's pool, with at least ``threads`` threads."""
    global _POOL, _POOL_SIZE
    with _LOCK:
        if _POOL is None or threads > _POOL_SIZE:
            # The old pool is dropped, not shut down: a concurrent call that took it may
            # still submit to it; its idle threads exit once nothing refers to it.
            _POOL = ThreadPoolExecutor(threads, thread_name_prefix="secureagg")
            _POOL_SIZE = threads
        return _POOL


def _forget_pool() -> None:
    """In a forked child: the parent's threads do not exist there."""
    global _POOL, _POOL_SIZE, _LOCK
    _POOL, _POOL_SIZE, _LOCK = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def run_parts(
    part: Callable[[int, int], None], ranges: Sequence[tuple[int, int]], threads: int
) -> None:
    """``part(lo, hi)`` once for every range, on up to ``threads`` threads (the caller's and
    the pool's); returns once every part has ended, raising the first error raised.

    Each thread takes the next range not yet taken, the caller too, so a pool thread that
    does not get a core in time leaves its ranges to the caller instead of holding it up:
    a pool thread that has not started when the ranges run out is cancelled, not waited for.
    """
    helpers = min(threads, len(ranges)) - 1
    if helpers < 1:
        for lo, hi in ranges:
            part(lo, hi)
        return
    todo = iter(ranges)
    take = threading.Lock()
    failed: list[BaseException] = []

    def work() -> None:
        while not failed:
            with take:
                job = next(todo, None)
            if job is None:
                return
            try:
                part(*job)
            except BaseException as exc:  # the others stop taking ranges; raised below
                failed.append(exc)

    pool = _pool(helpers)
    futures: list[Future[None]] = [pool.submit(work) for _ in range(helpers)]
    work()
    for future in futures:
        if not future.cancel():
            future.result()  # a part in progress: wait for it (work() itself never raises)
    if failed:
        raise failed[0]
