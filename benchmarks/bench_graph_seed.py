"""What the SecAgg+ graph seed's commit-reveal costs, against the server-seed opt-out.

Whole simulated rounds (every client and the server in this process, over the real wire
bytes) on the Harary graph, once with the default commit-reveal and once with
``server_graph_seed=True``, interleaved so both see the same load. Prints, per n, the
median client compute (ms), the server's compute (s), the bytes a client receives, and the
ratios commit-reveal / opt-out (medians over the repeats of the ratio within a repeat).

    python benchmarks/bench_graph_seed.py             # n = 100 (k = 10), 1,000 (k = 36)
    python benchmarks/bench_graph_seed.py --quick     # n = 100 only, 2 repeats
"""

from __future__ import annotations

import argparse
import os
import statistics

import numpy as np

from secureagg.protocol import RoundResult, simulate_round

ROWS = ((100, 10), (1000, 36))


def one_round(n: int, k: int, d: int, *, server_seed: bool) -> RoundResult:
    inputs = {u: np.full(d, u, np.uint32) for u in range(1, n + 1)}
    return simulate_round(inputs, bits=32, degree=k, server_graph_seed=server_seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 100 only, 2 repeats")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--d", type=int, default=1000)
    args = parser.parse_args()
    rows = ROWS[:1] if args.quick else ROWS
    repeats = 2 if args.quick else args.repeats
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    for n, k in rows:
        runs: dict[bool, list[RoundResult]] = {True: [], False: []}
        for _ in range(repeats):
            for server_seed in (True, False):
                runs[server_seed].append(one_round(n, k, args.d, server_seed=server_seed))

        def client_ms(r: RoundResult) -> float:
            return 1000 * statistics.median(c.seconds for c in r.client_cost.values())

        def received(r: RoundResult) -> float:
            return statistics.median(c.bytes_received for c in r.client_cost.values())

        for server_seed, label in ((True, "server seed (opt-out)"), (False, "commit-reveal")):
            rs = runs[server_seed]
            print(
                f"n={n} k={k} d={args.d} {label}: client "
                f"{statistics.median(client_ms(r) for r in rs):.2f} ms, server "
                f"{statistics.median(r.server_cost.seconds for r in rs):.3f} s, client receives "
                f"{received(rs[0]):.0f} B"
            )
        pairs = list(zip(runs[False], runs[True], strict=True))
        client = statistics.median(client_ms(a) / client_ms(b) for a, b in pairs)
        server = statistics.median(a.server_cost.seconds / b.server_cost.seconds for a, b in pairs)
        print(
            f"n={n} commit-reveal / opt-out: client {client:.2f}x, server {server:.2f}x, "
            f"bytes received {received(pairs[0][0]) / received(pairs[0][1]):.1f}x"
        )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
