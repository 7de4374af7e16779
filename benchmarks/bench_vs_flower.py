"""secureagg.flower against Flower's own SecAgg+, over the same Flower messages and wire format.

Both run in this process on the same nodes, inputs, neighbour count and threshold:

* Flower: its ``SecAggPlusWorkflow`` (legacy FedAvg) and ``secaggplus_mod`` in front of a
  NumPyClient ClientApp (``_flower_secaggplus.py``);
* secureagg: ``SecureAggregation(FedAvg(...))`` started with ``strategy.start`` and
  ``secureagg_mod`` in front of a ``@app.train()`` ClientApp.

Every message goes through the loopback Grid of ``_flower_loopback.py``: Flower's real
serialisation both ways (metadata protobuf, object tree, deflated objects; inflated on the
other side), and each node's Context loaded and saved through its protobuf per message.
Node u's "training" returns a fixed model (global + a uniform(-1, 1) vector) with a fixed
example count, so both sides run the same trivial user code.

Per-client time: median over nodes of each node's own side over the round (unpack the
instruction, load context, ClientApp with its mod, save context, pack the reply). Server
time: wall time of the round (Flower: the workflow call; secureagg: ``strategy.start`` for
one round) minus all nodes' time and the loopback grid's own copies of the nodes' Contexts
(made before and read back after each delivery, so tests can change a live Context: neither
side's work), so the server's own packing and unpacking is in it.
Bytes: packed message sizes; per client sent + received (median), server all messages.
Every secureagg node keeps its journal in a file (node config ``secureagg-journal``, in a
temporary folder per row), appended and fsynced before each committing reply, as in a
deployment; the file lasts over the row's rounds as a node's lasts over its rounds (the
row's first round creates it and syncs its folder). Its cost (reading it, appending to it
and the fdatasync) is in the client times and printed per round, next to the median of
plain fdatasync calls on the same disk (it varies tenfold with other processes' load).

    python benchmarks/bench_vs_flower.py               # 4 rows + the dropout round
    python benchmarks/bench_vs_flower.py --repeat 5
    python benchmarks/bench_vs_flower.py --quick       # tiny n and d (the test runs this)
    python benchmarks/bench_vs_flower.py --rows 1 3    # only those rows (1-based)
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _flower_loopback import LoopbackGrid
from _flower_secaggplus import flower_error, run_flower_round

MAX_EXAMPLES = 100  # secureagg's public bound on a client's example count
DROPPED = 3  # the node that drops out in the dropout round
SERVER_TARGET = 10.0
CLIENT_TARGET = 3.0


@dataclass(frozen=True)
class Row:
    n: int
    d: int
    neighbours: int | None  # None: complete graph (n - 1 neighbours)
    threshold: int

    @property
    def name(self) -> str:
        k = "complete" if self.neighbours is None else f"k={self.neighbours}"
        return f"n={self.n} d={self.d:,} {k} t={self.threshold}"

    @property
    def flower_shares(self) -> int:
        """Flower's num_shares counts the node itself."""
        return self.n if self.neighbours is None else self.neighbours + 1


def rows(quick: bool) -> tuple[list[Row], Row]:
    """The benchmark rows and the dropout round's configuration."""
    if quick:
        return [Row(5, 1000, None, 3), Row(7, 1000, 4, 3)], Row(5, 1000, None, 3)
    return [
        Row(10, 100_000, None, 6),
        Row(50, 100_000, None, 26),
        Row(50, 100_000, 10, 6),
        Row(10, 1_000_000, None, 6),
    ], Row(10, 100_000, None, 6)


@dataclass
class Inputs:
    global_model: npt.NDArray[np.float32]
    models: dict[int, npt.NDArray[np.float32]]
    weights: dict[int, int]


def make_inputs(n: int, d: int) -> Inputs:
    g = np.random.default_rng(1000).uniform(-0.5, 0.5, d).astype(np.float32)
    models = {
        u: (g + np.random.default_rng(u).uniform(-1, 1, d)).astype(np.float32)
        for u in range(1, n + 1)
    }
    return Inputs(g, models, {u: 10 + 7 * u % 23 for u in range(1, n + 1)})


@dataclass
class Measured:
    client_ms: float = 0.0  # median over nodes
    client_cpu_ms: float = 0.0  # median over nodes, CPU time of the node's side
    server_s: float = 0.0
    client_app_ms: float = 0.0  # median over nodes, inside the ClientApp only
    server_core_s: float = 0.0  # server time less its own packing and unpacking
    client_kb: float = 0.0  # median over nodes, sent + received
    server_mb: float = 0.0
    completed: bool = False
    survivors: list[int] = field(default_factory=list)
    error: float = float("inf")
    bound: float = 0.0
    outcome: str = ""
    journal_ms: float = 0.0  # secureagg: per client and round, reading + appending + fsync
    journal_wait_ms: float = 0.0  # secureagg: of which not on the CPU (the fdatasync's wait)
    journal_bytes: float = 0.0  # secureagg: median bytes a round appends to a client's journal


def secureagg_error(
    model: npt.NDArray[np.float32], inputs: Inputs, members: list[int], reported: float
) -> tuple[float, float]:
    """Max error against global + the average update of ``members`` (uniform weighting, the
    strategy's default), and the bound: the round's reported error bound plus float32
    rounding of the update and the model."""
    g = inputs.global_model.astype(np.float64)
    total = len(members)
    avg = np.zeros_like(g)
    top = 0.0
    for u in members:
        x = inputs.models[u].astype(np.float64) - g
        avg += x
        top = max(top, float(np.max(np.abs(x))))
    expected = g + avg / total
    eps = float(np.finfo(np.float32).eps)
    bound = reported + eps * (float(np.max(np.abs(expected))) + top)
    return float(np.max(np.abs(model.astype(np.float64) - expected))), bound


def run_secureagg(
    row: Row, inputs: Inputs, drop_at: Mapping[int, int] | None = None, folder: str | None = None
) -> Measured:
    """One secureagg.flower round through the loopback Grid; the nodes' journals are files in
    ``folder`` (kept: a later round appends to them), else in a temporary folder."""
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.serverapp.strategy import FedAvg
    from flwr.supercore.task_identity import TaskIdentity

    from secureagg.flower import SecureAggregation, secureagg_mod

    TaskIdentity.run_id = 1
    TaskIdentity.task_id = 1
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    app = ClientApp(mods=[secureagg_mod])

    @app.train()  # type: ignore[misc]
    def train(msg: Message, context: Context) -> Message:
        u = int(context.node_id)
        content = RecordDict(
            {
                "arrays": ArrayRecord([inputs.models[u]]),
                "metrics": MetricRecord({"num-examples": inputs.weights[u]}),
            }
        )
        return Message(content, reply_to=msg)

    from secureagg.protocol import _journal

    nodes = list(range(1, row.n + 1))
    temporary = tempfile.TemporaryDirectory(prefix="secureagg-bench-") if folder is None else None
    where = temporary.name if temporary is not None else folder
    assert where is not None
    journals = {u: os.path.join(where, f"node{u}.journal") for u in nodes}

    def size(path: str) -> int:
        return os.path.getsize(path) if os.path.exists(path) else 0

    before = {u: size(p) for u, p in journals.items()}
    grid = LoopbackGrid(
        app, nodes, drop_at=drop_at, node_config=lambda u: {"secureagg-journal": journals[u]}
    )
    spent = [0.0, 0.0]  # wall, CPU
    depth = [0]  # only the outermost journal call counts (record and lookup may read the file)
    real = {name: getattr(_journal.FileJournal, name) for name in ("_load", "record", "lookup")}

    def timed(fn: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            depth[0] += 1
            t, c = time.perf_counter(), time.thread_time()
            try:
                return fn(*args)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent[0] += time.perf_counter() - t
                    spent[1] += time.thread_time() - c

        return wrapper

    for name, fn in real.items():
        setattr(_journal.FileJournal, name, timed(fn))
    strategy = SecureAggregation(
        FedAvg(
            fraction_train=1.0,
            fraction_evaluate=0.0,
            min_train_nodes=row.n,
            min_available_nodes=row.n,
        ),
        max_examples=MAX_EXAMPLES,
        threshold=row.threshold,
        degree=row.neighbours,
    )
    initial = ArrayRecord([inputs.global_model])
    m = Measured()
    t0 = time.perf_counter()
    try:
        result = strategy.start(grid=grid, initial_arrays=initial, num_rounds=1)
    except Exception as exc:  # report, do not crash the benchmark
        m.outcome = f"raised {type(exc).__name__}: {exc}"
        result = None
    finally:
        for name, fn in real.items():
            setattr(_journal.FileJournal, name, fn)
    wall = time.perf_counter() - t0
    fill_costs(m, grid, wall)
    m.journal_ms = 1000 * spent[0] / row.n
    m.journal_wait_ms = 1000 * (spent[0] - spent[1]) / row.n
    sizes = [size(p) - before[u] for u, p in journals.items() if os.path.exists(p)]
    m.journal_bytes = statistics.median(sizes) if sizes else 0.0
    if temporary is not None:
        temporary.cleanup()
    report = strategy.reports.get(1)
    if result is None or report is None:
        return m
    if report.aborted is not None or not report.survivors:
        m.outcome = f"aborted: {report.aborted}"
        return m
    m.completed = True
    m.survivors = list(report.survivors)
    model = result.arrays["0"].numpy()
    m.error, m.bound = secureagg_error(model, inputs, m.survivors, report.error_bound)
    dropped = ", ".join(f"node {k} at {v}" for k, v in report.dropouts.items()) or "none"
    m.outcome = f"completed with {len(m.survivors)} of {row.n} nodes (dropped: {dropped})"
    return m


def run_flower(row: Row, inputs: Inputs, drop_at: Mapping[int, int] | None = None) -> Measured:
    """One Flower SecAgg+ round through the same loopback Grid."""
    r = run_flower_round(
        row.n,
        row.d,
        row.flower_shares,
        row.threshold,
        models=inputs.models,
        weights=inputs.weights,
        global_model=inputs.global_model,
        drop_at=drop_at,
        check=False,
    )
    m = Measured(
        client_ms=statistics.median(r.client_ms),
        client_cpu_ms=statistics.median(r.client_cpu_ms),
        server_s=r.server_s,
        client_app_ms=statistics.median(r.client_app_ms),
        server_core_s=r.server_s - r.server_transport_s,
        client_kb=statistics.median(r.client_bytes) / 1000,
        server_mb=r.server_bytes / 1e6,
    )
    members = [u for u in range(1, row.n + 1) if not drop_at or u not in drop_at]
    if r.completed:
        m.completed = True
        m.survivors = members
        m.error, m.bound = flower_error(
            r.model, inputs.global_model, inputs.models, inputs.weights, members
        )
        m.outcome = f"completed with {len(members)} of {row.n} nodes"
    else:
        errs = sorted({e for errors in r.client_errors.values() for e in errors})
        m.outcome = f"failed: {r.failure}" + (
            f" (client errors: {'; '.join(errs)[:200]})" if errs else ""
        )
    return m


def fill_costs(m: Measured, grid: LoopbackGrid, wall: float) -> None:
    used = [c for c in grid.cost.values() if c.messages]
    m.server_s = wall - grid.client_seconds - grid.emulation_seconds
    m.client_ms = statistics.median(1000 * c.seconds for c in used) if used else 0.0
    m.client_cpu_ms = statistics.median(1000 * c.cpu_seconds for c in used) if used else 0.0
    m.client_app_ms = statistics.median(1000 * c.app_seconds for c in used) if used else 0.0
    m.server_core_s = m.server_s - grid.server_transport_seconds
    m.client_kb = (
        statistics.median(c.bytes_sent + c.bytes_received for c in used) / 1000 if used else 0.0
    )
    m.server_mb = grid.server_bytes / 1e6


def sync_probe(folder: str, count: int = 10) -> list[float]:
    """Milliseconds of ``count`` fdatasync calls, each after an 8-byte append, in ``folder``."""
    out = []
    fd = os.open(os.path.join(folder, "probe"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(count):
            os.write(fd, bytes(8))
            t = time.perf_counter()
            getattr(os, "fdatasync", os.fsync)(fd)
            out.append(1000 * (time.perf_counter() - t))
    finally:
        os.close(fd)
    return out


def exact(m: Measured, n: int) -> bool:
    return m.completed and len(m.survivors) == n and m.error <= m.bound


def median_of(runs: list[Measured]) -> Measured:
    out = Measured(**{**asdict(runs[0])})
    for k in (
        "client_ms",
        "client_cpu_ms",
        "server_s",
        "client_app_ms",
        "server_core_s",
        "client_kb",
        "server_mb",
        "journal_ms",
        "journal_wait_ms",
    ):
        setattr(out, k, statistics.median(getattr(r, k) for r in runs))
    out.error = max(r.error for r in runs)  # the worst run's error, with its bound
    out.bound = min(r.bound for r in runs)
    out.completed = all(r.completed for r in runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds per row (median)")
    parser.add_argument("--quick", action="store_true", help="tiny n and d, one repeat")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--rows", type=int, nargs="+", help="only these rows (1-based)")
    args = parser.parse_args()
    repeat = 1 if args.quick else max(1, args.repeat)
    from flwr.common.logger import FLOWER_LOGGER

    FLOWER_LOGGER.setLevel(logging.ERROR)  # Flower's per-round info lines; outcomes are printed
    logging.getLogger("secureagg.flower").setLevel(logging.ERROR)
    table, drop_row = rows(args.quick)
    if args.rows:
        if not all(1 <= i <= len(table) for i in args.rows):
            parser.error(f"--rows takes numbers from 1 to {len(table)}")
        table = [table[i - 1] for i in args.rows]
    load0 = os.getloadavg()
    print(
        f"secureagg.flower vs Flower 1.42 SecAgg+, medians of {repeat}, "
        f"load average {load0[0]:.2f} on {os.cpu_count()} cores",
        flush=True,
    )
    warm = Row(4, 100, None, 3)  # first calls load code paths and caches; not measured
    run_secureagg(warm, make_inputs(warm.n, warm.d))
    run_flower(warm, make_inputs(warm.n, warm.d))
    results: list[dict[str, Any]] = []
    syncs: list[float] = []
    for row in table:
        inputs = make_inputs(row.n, row.d)
        ours: list[Measured] = []
        theirs: list[Measured] = []
        with tempfile.TemporaryDirectory(prefix="secureagg-bench-") as folder:
            for rep in range(repeat):
                for side in ("secureagg", "flower") if rep % 2 == 0 else ("flower", "secureagg"):
                    gc.collect()
                    if side == "secureagg":
                        ours.append(run_secureagg(row, inputs, folder=folder))
                    else:
                        theirs.append(run_flower(row, inputs))
            syncs += sync_probe(folder)
        results.append({"row": row, "secureagg": median_of(ours), "flower": median_of(theirs)})
        print(f"done {row.name}", file=sys.stderr, flush=True)
    print_table(results)
    print(
        f"fdatasync alone on that disk (an 8-byte append, {len(syncs)} calls after the rows): "
        f"median {statistics.median(syncs):.2f} ms, max {max(syncs):.2f} ms"
    )

    inputs = make_inputs(drop_row.n, drop_row.d)
    drop = {DROPPED: 1}  # answers the first message (keys advertised), not share-keys on
    ours_drop = run_secureagg(drop_row, inputs, drop)
    theirs_drop = run_flower(drop_row, inputs, drop)
    rest = drop_row.n - 1
    ok = (
        ours_drop.completed
        and len(ours_drop.survivors) == rest
        and DROPPED not in ours_drop.survivors
        and ours_drop.error <= ours_drop.bound
    )
    print(
        f"\nDropout round ({drop_row.name}): node {DROPPED} answers the first message "
        "(its keys: secureagg's advertise, Flower's setup) and nothing after (share-keys on);\n"
        "both send the model only with the masked-input stage, so it is never sent the model."
    )
    print(f"dropout secureagg: {ours_drop.outcome}")
    if ours_drop.completed:
        print(
            f"  exact sum of the other {rest}: {'yes' if ok else 'NO'} "
            f"(max error {ours_drop.error:.3g}, bound {ours_drop.bound:.3g})"
        )
    print(f"dropout Flower: {theirs_drop.outcome}")
    if theirs_drop.completed:
        print(f"  max error {theirs_drop.error:.3g}, bound {theirs_drop.bound:.3g}")
    load1 = os.getloadavg()
    print(f"\nload average at the end {load1[0]:.2f} (1 min), {load1[1]:.2f} (5 min)")
    if args.json:
        out = {
            "repeat": repeat,
            "load": [load0[0], load1[0]],
            "fdatasync_ms": statistics.median(syncs),
            "rows": [
                {
                    "row": asdict(r["row"]),
                    "secureagg": asdict(r["secureagg"]),
                    "flower": asdict(r["flower"]),
                }
                for r in results
            ],
            "dropout": {
                "row": asdict(drop_row),
                "secureagg": asdict(ours_drop),
                "secureagg_exact": ok,
                "flower": asdict(theirs_drop),
            },
        }
        args.json.write_text(json.dumps(out, indent=1, default=float))
    if not ok or not all(exact(r["secureagg"], r["row"].n) for r in results):
        sys.exit("secureagg did not return the exact sum on every row")


def ratio(theirs: float, ours: float) -> float:
    return theirs / ours if ours > 0 else float("inf")


def meets(row: Row, s: Measured, server_ratio: float, client_ratio: float) -> str:
    met = server_ratio >= SERVER_TARGET and client_ratio >= CLIENT_TARGET and exact(s, row.n)
    return "met" if met else "NOT met"


def print_table(results: list[dict[str, Any]]) -> None:
    head = (
        f"{'row':<34} | {'ms per client':^24} | {'server s':^24} | {'KB per client':^15} "
        f"| {'server MB':^13} | {'max error (bound)':^37} | target"
    )
    sub = (
        f"{'':<34} | {'secagg':>7} {'Flower':>8} {'ratio':>7} | {'secagg':>7} {'Flower':>8} "
        f"{'ratio':>7} | {'secagg':>7} {'Flower':>7} | {'secagg':>6} {'Flower':>6} | "
        f"{'secureagg':>18} {'Flower':>18} | 10x / 3x"
    )
    print()
    print(head)
    print(sub)
    print("-" * len(sub))
    for r in results:
        row, s, f = r["row"], r["secureagg"], r["flower"]
        cr, sr = ratio(f.client_ms, s.client_ms), ratio(f.server_s, s.server_s)
        err_s = f"{s.error:.2g} ({s.bound:.2g})" if s.completed else "FAILED"
        err_f = f"{f.error:.2g} ({f.bound:.2g})" if f.completed else "FAILED"
        print(
            f"{row.name:<34} | {s.client_ms:>7.1f} {f.client_ms:>8.1f} {cr:>6.1f}x | "
            f"{s.server_s:>7.3f} {f.server_s:>8.3f} {sr:>6.1f}x | {s.client_kb:>7.0f} "
            f"{f.client_kb:>7.0f} | {s.server_mb:>6.1f} {f.server_mb:>6.1f} | "
            f"{err_s:>18} {err_f:>18} | {meets(row, s, sr, cr)}"
        )
    print(
        "\nratio: Flower / secureagg. target: server time >= 10x and per-client time >= 3x\n"
        "lower than Flower's, with the exact sum (secureagg within its reported bound plus\n"
        "float32 rounding; Flower within its quantisation bound). Both times include\n"
        "Flower's serialisation on that side. KB per client: sent + received (median);\n"
        "server MB: what the server uploads (a broadcast object once) plus the replies."
    )
    print(
        f"\nThe same rounds without Flower's transport (client: inside the ClientApp only;\n"
        f"server: less its own packing and unpacking), and the server's transport itself:\n"
        f"{'row':<34} | {'ms per client':^24} | {'server s':^24} | target   | "
        f"{'server transport ms':^19} | {'10x leaves':^10}\n"
        f"{'':<34} | {'secagg':>7} {'Flower':>8} {'ratio':>7} | {'secagg':>7} {'Flower':>8} "
        f"{'ratio':>7} | 10x / 3x | {'secagg':>9} {'Flower':>9} | {'ms':>10}"
    )
    for r in results:
        row, s, f = r["row"], r["secureagg"], r["flower"]
        cr, sr = ratio(f.client_app_ms, s.client_app_ms), ratio(f.server_core_s, s.server_core_s)
        ours_t = 1000 * (s.server_s - s.server_core_s)
        theirs_t = 1000 * (f.server_s - f.server_core_s)
        print(
            f"{row.name:<34} | {s.client_app_ms:>7.1f} {f.client_app_ms:>8.1f} {cr:>6.1f}x | "
            f"{s.server_core_s:>7.3f} {f.server_core_s:>8.3f} {sr:>6.1f}x | "
            f"{meets(row, s, sr, cr):<8} | {ours_t:>9.1f} {theirs_t:>9.1f} | "
            f"{100 * f.server_s - ours_t:>10.1f}"
        )
    print(
        "server transport: Flower's own packing of the server's messages and unpacking of\n"
        "the replies (the same serialisation for both). 10x leaves: Flower's server time / 10\n"
        "less secureagg's transport, the most a 10x server may spend on everything else."
    )
    print(
        "\nThe client journal (a file per node, fsynced before each committing reply; in the\n"
        "secureagg client times above):"
    )
    for r in results:
        row, s, f = r["row"], r["secureagg"], r["flower"]
        share = 100 * s.journal_ms / s.client_ms if s.client_ms > 0 else 0.0
        print(
            f"  {row.name:<32} | journal {s.journal_ms:>6.2f} ms per client per round "
            f"({share:.0f}% of its {s.client_ms:.1f} ms), {s.journal_bytes:>5.0f} B appended"
        )
    five = all(ratio(r["flower"].client_ms, r["secureagg"].client_ms) >= 5 for r in results)
    print(
        f"client at least 5x faster than Flower's SecAgg+ on every row, journal included: "
        f"{'yes' if five else 'NO'}"
    )
    print(
        "\nPer-client CPU time (the node's thread; its waits, the fdatasync included, left out:\n"
        "no run queue, but memory-bound work still slows when other processes load the\n"
        "machine) and, for secureagg, CPU plus the time its journal spent off the CPU:"
    )
    for r in results:
        row, s, f = r["row"], r["secureagg"], r["flower"]
        both = s.client_cpu_ms + s.journal_wait_ms
        print(
            f"  {row.name:<32} | CPU ms secureagg {s.client_cpu_ms:6.1f}, Flower "
            f"{f.client_cpu_ms:6.1f}: {ratio(f.client_cpu_ms, s.client_cpu_ms):5.1f}x | "
            f"secureagg CPU + journal wait {both:6.1f} ms: {ratio(f.client_cpu_ms, both):5.1f}x"
        )


if __name__ == "__main__":
    main()
