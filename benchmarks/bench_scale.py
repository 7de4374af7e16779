"""Rounds of 1,000 to 100,000 clients: server CPU per client, client CPU, memory, bytes.

Each configuration runs once in a fresh child process (so its peak resident set is its
own): n clients on the Harary graph of the degree ``choose_parameters(n, dropout_rate=0.1,
corrupt_fraction=0.05)`` picks (threshold: that one or a majority of a neighbourhood, whichever
is higher), 10% of them dropping out (half before sending their masked
input, half before answering the unmask request), inputs made lazily one client at a time,
and the recovered sum checked exactly against the survivors' inputs. The graph's seed is the
server's (the protocol's named opt-out ``server_graph_seed``): the default commit-reveal
sends every client 72 B per client in the round, n^2 * 72 B in all (7.2 GB at n = 10,000),
which is the cost docs/protocol.md ("The graph seed") gives that opt-out for.

    python benchmarks/bench_scale.py                       # n = 1,000 and 10,000; d = 10^4, 10^5
    python benchmarks/bench_scale.py --n 100000 --d 10000  # the 100,000-client round
    python benchmarks/bench_scale.py --n 1000 10000 --d 100000 --workers 1 2

Server CPU is the process CPU time (all threads) spent inside the server session's
``receive`` and ``close_stage``; client CPU is the median of the clients' own compute.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from secureagg.protocol import Stage, choose_parameters, default_threshold, simulate_round
from secureagg.protocol._client import ClientSession
from secureagg.protocol._server import ServerSession

INPUT_BITS = 16  # each client's elements lie in [0, 2^16)


class LazyInputs(Mapping[int, np.ndarray]):
    """Client u's input, made when asked for (so n * d never sits in memory)."""

    def __init__(self, n: int, d: int, bits: int) -> None:
        self.n, self.d, self.bits = n, d, bits

    def __getitem__(self, u: int) -> np.ndarray:
        rng = np.random.default_rng(u)
        return rng.integers(0, 2**INPUT_BITS, self.d, dtype=np.uint64)

    def __iter__(self) -> Iterator[int]:
        return iter(range(1, self.n + 1))

    def __len__(self) -> int:
        return self.n

    def total(self, members: frozenset[int]) -> np.ndarray:
        acc = np.zeros(self.d, np.uint64)
        for u in members:
            acc += self[u]
        return acc % np.uint64(1 << self.bits) if self.bits < 64 else acc


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM)."""
    return _status_mb("VmHWM:") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mb(field: str) -> float | None:
    """A size field of /proc/self/status in MB (None where there is none)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class _StageMemory:
    """The resident set (now and peak so far) each time a stage closes: where the memory
    goes, stage by stage."""

    def __init__(self) -> None:
        self.at_close: dict[str, list[float | None]] = {}

    def install(self) -> None:
        original = ServerSession.close_stage_lazily

        def recorded(session: ServerSession) -> Any:
            stage = session.stage
            if stage is not None:
                self.at_close[stage.name] = [_status_mb("VmRSS:"), _status_mb("VmHWM:")]
            return original(session)

        ServerSession.close_stage_lazily = recorded  # type: ignore[method-assign]


class _ServerClock:
    """Process CPU time spent inside ServerSession.receive and close_stage (and building
    each streamed message, where close_stage_lazily exists)."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.wall = 0.0
        self.inside = False

    def install(self) -> None:
        from secureagg.protocol import _server

        outbox = getattr(_server, "Outbox", None)  # messages built when read (streamed)
        methods = [(ServerSession, "receive"), (ServerSession, "close_stage")]
        if outbox is not None:
            methods += [(ServerSession, "close_stage_lazily"), (outbox, "__getitem__")]
        for cls, name in methods:
            original = getattr(cls, name)

            def timed(*args: Any, _f: Any = original, **kwargs: Any) -> Any:
                if self.inside:  # close_stage calls close_stage_lazily: count once
                    return _f(*args, **kwargs)
                self.inside = True
                c, w = time.process_time(), time.perf_counter()
                try:
                    return _f(*args, **kwargs)
                finally:
                    self.cpu += time.process_time() - c
                    self.wall += time.perf_counter() - w
                    self.inside = False

            setattr(cls, name, timed)


class _ClientClock:
    """Process CPU time of each client session (advertise, provide_input, receive)."""

    def __init__(self) -> None:
        self.cpu: dict[int, float] = {}

    def install(self) -> None:
        for name in ("advertise", "provide_input", "receive"):
            original = getattr(ClientSession, name)

            def timed(session: Any, *args: Any, _f: Any = original, **kwargs: Any) -> Any:
                c = time.process_time()
                try:
                    return _f(session, *args, **kwargs)
                finally:
                    key = id(session)
                    self.cpu[key] = self.cpu.get(key, 0.0) + time.process_time() - c

            setattr(ClientSession, name, timed)


def run_once(n: int, d: int, bits: int, workers: int | None) -> dict[str, Any]:
    params = choose_parameters(n, dropout_rate=0.1, corrupt_fraction=0.05)
    threshold = max(params.threshold, default_threshold(params.degree))  # clients want a majority
    inputs = LazyInputs(n, d, bits)
    gone = list(range(1, n + 1, 10))  # every tenth client drops out
    dropouts = {Stage.MASKED_INPUT: gone[::2], Stage.UNMASK: gone[1::2]}
    clock = _ServerClock()
    clock.install()
    client_clock = _ClientClock()
    client_clock.install()
    stages = _StageMemory()
    stages.install()
    if workers is not None:
        _set_workers(workers)
    rss_before = peak_rss_mb()
    start, cpu0 = time.perf_counter(), time.process_time()
    res = simulate_round(
        inputs,
        bits=bits,
        degree=params.degree,
        threshold=threshold,
        dropouts=dropouts,
        server_graph_seed=True,  # the opt-out for very large rounds (module docstring)
    )
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    rss_peak = peak_rss_mb()
    exact = bool(np.array_equal(res.total.astype(np.uint64), inputs.total(res.survivors)))
    if not exact:
        raise RuntimeError(f"n={n} d={d}: wrong sum")
    costs = list(res.client_cost.values())
    sent = [c.bytes_sent for u, c in res.client_cost.items() if u in res.survivors]
    return {
        "n": n,
        "d": d,
        "bits": bits,
        "k": params.degree,
        "t": threshold,
        "server_workers": _workers(),
        "workers": workers,
        "round_s": wall,
        "process_cpu_s": cpu,
        "server_cpu_s": clock.cpu,
        "server_wall_s": clock.wall,
        "server_cpu_ms_per_client": 1000 * clock.cpu / n,
        "client_ms": statistics.median(1000 * c.seconds for c in costs),
        "client_cpu_ms": statistics.median(1000 * c for c in client_clock.cpu.values()),
        "bytes_sent": statistics.median(sent),
        "masked_input_bytes": _masked_bytes(d, bits),
        "rss_growth_mb": rss_peak - rss_before,
        "rss_peak_mb": rss_peak,
        "rss_at_close_mb": stages.at_close,  # stage -> [resident now, peak so far]
        "survivors": len(res.survivors),
        "exact": exact,
    }


def _masked_bytes(d: int, bits: int) -> int | None:
    """The wire size of one masked input, from the codec (None where it cannot say)."""
    try:
        from secureagg.protocol._codec import masked_input_size
    except ImportError:
        return None
    return int(masked_input_size(d, bits, round_id_len=32, excluded=0))


def _workers() -> int | None:
    """The mask-removal threads a new ServerSession uses (None where it has no such knob)."""
    from secureagg.protocol import _server

    value = getattr(_server, "_DEFAULT_WORKERS", None)
    return value if isinstance(value, int) else None


def _set_workers(workers: int) -> None:
    try:
        from secureagg.protocol._server import set_server_workers
    except ImportError:
        return
    set_server_workers(workers)


def in_child(n: int, d: int, bits: int, workers: int | None) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__)), "--child", str(n), str(d), str(bits)]
    if workers is not None:
        cmd.append(str(workers))
    out = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd[2:])} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def wire_sizes(d: int = 1_000_000) -> None:
    """A real encoded masked input at d = 10^6 against b*d/8 and the old 2/4/8-byte words."""
    from secureagg.hazmat import element_dtype
    from secureagg.protocol import MaskedInput, encode, new_round_id

    print(f"\nmasked input on the wire, d = {d:,} (one encoded message, as a client sends it)")
    print(f"{'b':>3} {'bytes':>10} {'b*d/8':>10} {'header':>6} {'ratio':>8} {'words':>10} {'x':>5}")
    for bits in (21, 34):
        vec = np.random.default_rng(bits).integers(0, 2**bits, d, dtype=np.uint64)
        vec = vec.astype(element_dtype(bits))
        size = len(encode(MaskedInput(new_round_id(), 1, (), vec, bits)))
        ideal = -(-bits * d // 8)
        words = element_dtype(bits).itemsize * d
        print(
            f"{bits:>3} {size:>10,} {ideal:>10,} {size - ideal:>6} {size / ideal:>8.5f} "
            f"{words:>10,} {words / ideal:>5.2f}"
        )
    print("ratio: bytes / (b*d/8); words: the same elements in 2/4/8-byte words (wire v1).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="*", default=[1000, 10_000])
    parser.add_argument("--d", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="*", default=None)
    parser.add_argument("--reps", type=int, default=1, help="runs per configuration (median)")
    parser.add_argument("--json", action="store_true", help="also print each run as JSON")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        n, d, bits = (int(x) for x in args.child[:3])
        w = int(args.child[3]) if len(args.child) > 3 else None
        print(json.dumps(run_once(n, d, bits, w)))
        return
    rows = []
    for d in args.d:
        for n in args.n:
            for w in args.workers or [None]:
                runs = [in_child(n, d, args.bits, w) for _ in range(args.reps)]
                if args.json:
                    for r in runs:
                        print(json.dumps(r), flush=True)
                rows.append(_median(runs))
                print(f"done n={n} d={d} workers={w}", file=sys.stderr, flush=True)
    print_table(rows, args.bits)
    wire_sizes()


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, float):
            out[key] = statistics.median(r[key] for r in runs)
    return out


def print_table(rows: list[dict[str, Any]], bits: int) -> None:
    print(
        f"\nsecureagg scale benchmark (b = {bits}, 10% dropouts: 5% at masked input, 5% at unmask)"
    )
    head = (
        f"{'n':>7} {'d':>7} {'k':>3} {'t':>3} {'wk':>3} | {'round s':>8} | {'srv CPU s':>9} "
        f"{'ms/client':>9} {'x n=1k':>6} | {'client CPU ms':>13} | {'B sent':>9} {'b*d/8':>9} | "
        f"{'peak MB':>7} {'growth':>7}"
    )
    print(head)
    print("-" * len(head))
    first: dict[tuple[int, Any], float] = {}
    for r in rows:
        key = (r["d"], r["workers"])
        first.setdefault(key, r["server_cpu_ms_per_client"])
        ratio = r["server_cpu_ms_per_client"] / first[key]
        wk = "-" if r["workers"] is None else str(r["workers"])
        print(
            f"{r['n']:>7} {r['d']:>7} {r['k']:>3} {r['t']:>3} {wk:>3} | {r['round_s']:>8.1f} | "
            f"{r['server_cpu_s']:>9.2f} {r['server_cpu_ms_per_client']:>9.3f} {ratio:>6.2f} | "
            f"{r.get('client_cpu_ms', r['client_ms']):>13.2f} | {r['bytes_sent']:>9.0f} "
            f"{math.ceil(bits * r['d'] / 8):>9} | "
            f"{r['rss_peak_mb']:>7.0f} {r['rss_growth_mb']:>7.0f}"
        )
    for r in rows:
        closes = r.get("rss_at_close_mb")
        if closes:
            marks = ", ".join(
                f"{stage} {now:.0f}/{peak:.0f}" for stage, (now, peak) in closes.items()
            )
            print(f"  n={r['n']} d={r['d']} MB resident/peak when each stage closed: {marks}")
    print(
        "\nsrv CPU s: process CPU (all threads) inside the server session's receive and\n"
        "  close_stage; ms/client: that over n; x n=1k: against the first n of the same d.\n"
        "client CPU ms: median over clients of each client's own CPU time (all stages).\n"
        "B sent: median bytes a surviving client sends in the whole round (all stages).\n"
        "peak MB: the child process's peak resident set (server and all n simulated clients);\n"
        "  growth: its rise over the round. resident/peak when each stage closed: once the\n"
        "  stage's client messages were all in, just before the server closed it.",
        flush=True,
    )


if __name__ == "__main__":
    main()
