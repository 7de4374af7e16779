"""Timing helpers the benchmarks share: interleaved repeats and paired ratios."""

from __future__ import annotations

import statistics
from collections.abc import Callable


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, clock: Callable[[], float]
) -> dict[str, list[float]]:
    """Time each variant once per repeat, round-robin, so all see the same machine load.

    Each function runs once first as a warm-up (CUDA kernels, allocator, caches); the times
    are ``clock`` differences in ms.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = clock()
            fn()
            times[k].append((clock() - t0) * 1e3)
    return times


def paired(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over repeats of the ratio a / b within the same repeat."""
    return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))
