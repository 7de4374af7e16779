"""One secure aggregation round: per-client compute, server compute, bytes, server memory.

Prints a table of medians for the four configurations of issue 3, next to Flower's own
SecAgg+ (flwr 1.42) run in this same process over a loopback transport (see
_flower_secaggplus.py) and the figures the issue quotes for Flower.

    python benchmarks/bench_round.py              # everything (Flower's complete graph is slow)
    python benchmarks/bench_round.py --no-flower  # ours only
    python benchmarks/bench_round.py --reps 3

Memory is the peak resident set of a fresh child process running the round, minus its
resident set just before the round: an upper bound on the server's memory (the clients'
transient state is in it too). Inputs are generated lazily, one client at a time.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from secureagg.protocol import Stage, choose_parameters, default_threshold, simulate_round

BITS = 32  # 4-byte elements: the width of float32, the baseline sent in clear


@dataclass(frozen=True)
class Config:
    name: str
    n: int
    d: int
    degree: int | None
    threshold: int
    late_dropout: float = 0.0
    target_client_ms: float | None = None
    target_server_s: float | None = None
    target_wall_s: float | None = None
    flower_issue: tuple[float, float] | None = None  # (ms per client, server s) from the issue


def configs() -> list[Config]:
    helper = choose_parameters(1000, dropout_rate=0.1, corrupt_fraction=0.05)
    return [
        Config("1 complete", 50, 100_000, None, 26, 0.0, 25, 0.3, None, (398, 13.0)),
        Config("2 degree 10", 50, 100_000, 10, 6, 0.0, 8, 0.15, None, (38, 1.4)),
        Config(
            "3 complete",
            10,
            1_000_000,
            None,
            default_threshold(9),
            0.0,
            40,
            0.1,
            None,
            (137, 0.489),
        ),
        Config("4 helper", 1000, 100_000, helper.degree, helper.threshold, 0.1, None, None, 60),
    ]


class LazyInputs(Mapping[int, np.ndarray]):
    """Client u's input, made when asked for (so n * d never sits in memory)."""

    def __init__(self, n: int, d: int) -> None:
        self.n, self.d = n, d

    def __getitem__(self, u: int) -> np.ndarray:
        return np.random.default_rng(u).integers(0, 2**BITS, self.d, dtype=np.uint32)

    def __iter__(self) -> Iterator[int]:
        return iter(range(1, self.n + 1))

    def __len__(self) -> int:
        return self.n

    def total(self, members: frozenset[int]) -> np.ndarray:
        acc = np.zeros(self.d, np.uint32)
        for u in members:
            acc += self[u]
        return acc


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; ru_maxrss would carry the parent's over exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_once(cfg: Config) -> dict[str, Any]:
    inputs = LazyInputs(cfg.n, cfg.d)
    late = (
        list(range(1, cfg.n + 1))[:: max(1, round(1 / cfg.late_dropout))]
        if cfg.late_dropout
        else []
    )
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    res = simulate_round(
        inputs,
        bits=BITS,
        degree=cfg.degree,
        threshold=cfg.threshold,
        dropouts={Stage.UNMASK: late},
    )
    wall = time.perf_counter() - start
    rss_peak = peak_rss_mb()
    if not np.array_equal(res.total, inputs.total(res.survivors)):
        raise RuntimeError(f"config {cfg.name}: wrong sum")
    costs = list(res.client_cost.values())
    return {
        "wall_s": wall,
        "client_ms": statistics.median(1000 * c.seconds for c in costs),
        "server_s": res.server_cost.seconds,
        "sent": statistics.median(c.bytes_sent for c in costs),
        "received": statistics.median(c.bytes_received for c in costs),
        "rss_growth_mb": rss_peak - rss_before,
        "rss_peak_mb": rss_peak,
        "survivors": len(res.survivors),
        "late": len(late),
    }


def child(index: int) -> None:
    """Run one configuration once in this (fresh) process; print its figures as JSON."""
    print(json.dumps(run_once(configs()[index])))


def in_child(index: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(Path(__file__)), "--child", str(index)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def flower(cfg: Config) -> tuple[float, float] | None:
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from _flower_secaggplus import run_flower_round
    except ImportError:
        return None
    shares = cfg.n if cfg.degree is None else cfg.degree + 1  # Flower counts the client itself
    r = run_flower_round(cfg.n, cfg.d, shares, cfg.threshold)
    return statistics.median(r.client_ms), r.server_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--no-flower", action="store_true")
    parser.add_argument("--only", type=int, nargs="*", help="configurations to run (1-4)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return
    rows = []
    for i, cfg in enumerate(configs()):
        if args.only and i + 1 not in args.only:
            continue
        mem = in_child(i)  # fresh process: peak RSS, and for config 4 the timed run itself
        reps = [mem] if cfg.n >= 1000 else [run_once(cfg) for _ in range(args.reps)]
        med = {
            k: statistics.median(r[k] for r in reps)
            for k in ("client_ms", "server_s", "sent", "received", "wall_s")
        }
        fl = None if args.no_flower or cfg.n >= 1000 else flower(cfg)
        rows.append((cfg, med, mem, fl))
        print(f"done {cfg.name}", file=sys.stderr, flush=True)
    print_table(rows)


def fmt(x: float | None, spec: str) -> str:
    return format("-", spec.rstrip("f").split(".")[0]) if x is None else format(x, spec)


def print_table(rows: list[tuple[Config, dict[str, float], dict[str, Any], Any]]) -> None:
    print(f"\nsecureagg round benchmark, medians (b = {BITS}, element width 4 bytes)")
    head = (
        f"{'config':<12} {'n':>5} {'d':>9} {'k':>4} {'t':>3} | {'ms/client':>9} {'target':>6} "
        f"| {'server s':>8} {'target':>6} | {'round s':>7} | {'KB sent':>8} {'KB recv':>8} "
        f"{'f32 KB':>7} | {'srv MB':>6} {'peak MB':>7} | {'Flower here ms/s':>17} {'ratio':>11} "
        f"| {'Flower issue':>12}"
    )
    print(head)
    print("-" * len(head))
    for cfg, med, mem, fl in rows:
        k = cfg.n - 1 if cfg.degree is None else cfg.degree
        here = f"{fl[0]:.0f} / {fl[1]:.2f}" if fl else "-"
        ratio = f"{fl[0] / med['client_ms']:.0f}x / {fl[1] / med['server_s']:.0f}x" if fl else "-"
        issue = (
            f"{cfg.flower_issue[0]:.0f} / {cfg.flower_issue[1]:.2f}" if cfg.flower_issue else "-"
        )
        print(
            f"{cfg.name:<12} {cfg.n:>5} {cfg.d:>9} {k:>4} {cfg.threshold:>3} | "
            f"{med['client_ms']:>9.1f} {fmt(cfg.target_client_ms, '>6.0f')} | "
            f"{med['server_s']:>8.3f} {fmt(cfg.target_server_s, '>6.2f')} | "
            f"{med['wall_s']:>7.1f} | {med['sent'] / 1000:>8.1f} {med['received'] / 1000:>8.1f} "
            f"{4 * cfg.d / 1000:>7.1f} | {mem['rss_growth_mb']:>6.0f} {mem['rss_peak_mb']:>7.0f} | "
            f"{here:>17} {ratio:>11} "
            f"| {issue:>12}"
        )
    print(
        "\nms/client: median over clients of each client's own compute (all stages).\n"
        "server s: the server session's compute (receive + close_stage), not the clients'.\n"
        "round s: wall time of the whole simulated round in one process (target 60 s for 4).\n"
        "KB sent/recv: median per client; f32 KB: the same vector sent as float32 in clear.\n"
        "  Overhead bound (unsigned mode): sent <= ceil(b*d/8) + 234 B per neighbour + 380 B;\n"
        "  received <= 241 B per neighbour + 300 B.\n"
        "srv MB: growth of the peak RSS of a fresh process over the round (server and all\n"
        "  clients: an upper bound on the server's own memory); peak MB: that process's whole\n"
        "  peak RSS, Python, numpy and cryptography included (target < 300 MB for config 4).\n"
        "Flower here: flwr 1.42 SecAgg+ in this process (ms per client / server s); ratio is\n"
        "  Flower / secureagg. Flower issue: the figures quoted in issue 3.",
        flush=True,
    )


if __name__ == "__main__":
    main()
