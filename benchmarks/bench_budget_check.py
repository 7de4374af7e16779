"""The per-round budget check of PrivateTrainer: its PLD figure against the library from scratch.

Run: .venv/bin/python benchmarks/bench_budget_check.py [--rounds R] [--steps K] [--q Q] [--z Z]

A trainer with ``budget_epsilon`` computes, before every round, the headline epsilon
(dp-accounting PLD) of its whole history plus one round. The history grows every round,
so each check is a new figure. secureagg builds each ``(z, q)`` step's PLD once per process
and self-composes it (``accounting._dpa_pld_under``); the baseline runs dp-accounting's
``PLDAccountant`` on the same history from scratch, as the code did before. Both give the
same figure (checked here and in test_accounting_unit). Prints the median CPU time per
check over R rounds (this process's CPU time) and the ratio, in the same process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from secureagg.privacy import accounting
from secureagg.privacy.accounting import Step, canonical, epsilon


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--steps", type=int, default=8, help="DP-SGD steps per round")
    p.add_argument("--q", type=float, default=256 / 50_000, help="Poisson sample rate")
    p.add_argument("--z", type=float, default=1.1, help="noise multiplier")
    p.add_argument("--delta", type=float, default=1e-5)
    a = p.parse_args(argv)
    accounting.clear_cache()
    epsilon([Step(a.z, a.q, a.steps)], a.delta)  # the trainer's first check builds the step
    cached: list[float] = []
    fresh: list[float] = []
    for r in range(1, a.rounds + 1):
        history = [Step(a.z, a.q, a.steps * r), Step(a.z, a.q, a.steps)]
        t0 = time.process_time()
        ours = epsilon(history, a.delta)
        cached.append(time.process_time() - t0)
        t0 = time.process_time()
        theirs = accounting._dpa_pld_reference(canonical(history), a.delta)
        fresh.append(time.process_time() - t0)
        if ours != theirs:
            print(f"round {r}: figures differ: {ours!r} != {theirs!r}")
            return 1
    c, f = statistics.median(cached) * 1e3, statistics.median(fresh) * 1e3
    print(
        f"budget check (z={a.z:g}, q={a.q:.4g}, {a.steps} steps a round, rounds 1-{a.rounds}), "
        f"median CPU ms: secureagg {c:.1f}, PLDAccountant from scratch {f:.1f}; "
        f"ratio {f / c:.2f}x; figures identical"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
