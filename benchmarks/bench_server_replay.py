"""The server alone: record every client message of one simulated round, replay them into a
fresh ServerSession, and time only the server.

In a whole simulated round (``bench_scale.py``) the server shares its process with all n
clients, whose work and objects slow it down (caches, the garbage collector). Here the
client messages are recorded once, in order with the stage closes, and replayed into a new
``ServerSession`` as many times as asked, so the server's CPU time is measured alone. The
rounds are ``bench_scale.py``'s (Harary graph from ``choose_parameters``, 10% dropouts).

    python benchmarks/bench_server_replay.py record 1000 10000 /tmp/r1k.bin
    python benchmarks/bench_server_replay.py record 10000 10000 /tmp/r10k.bin
    python benchmarks/bench_server_replay.py replay /tmp/r1k.bin /tmp/r10k.bin --reps 3

``replay`` prints the server CPU per client of each recording (median of ``--reps``) and
each one's ratio to the first, the flatness of the server's cost per client in n;
``--no-gc`` times it with Python's cyclic garbage collector off as well. A recording holds
the round's config bytes and the client messages in the wire format, so it replays only
into code of the same wire version.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scale

from secureagg.protocol import RoundConfig
from secureagg.protocol._server import ServerSession

MAGIC = b"SARP1"
_RECORD = struct.Struct(">BI")  # kind (0: receive, 1: close), length of the data
_RECEIVE, _CLOSE = 0, 1


def record(n: int, d: int, bits: int, path: Path) -> None:
    """Run one bench_scale round and write its config and the server's inputs to ``path``."""
    configs: list[RoundConfig] = []
    events: list[tuple[int, bytes]] = []
    init, receive, close = (
        ServerSession.__init__,
        ServerSession.receive,
        ServerSession.close_stage_lazily,
    )

    def logged_init(self: ServerSession, config: RoundConfig, *a: Any, **k: Any) -> None:
        configs.append(config)
        init(self, config, *a, **k)

    def logged_receive(self: ServerSession, data: bytes, **k: Any) -> None:
        events.append((_RECEIVE, bytes(data)))
        receive(self, data, **k)

    def logged_close(self: ServerSession) -> Any:
        events.append((_CLOSE, b""))
        return close(self)

    ServerSession.__init__ = logged_init  # type: ignore[method-assign]
    ServerSession.receive = logged_receive  # type: ignore[method-assign]
    ServerSession.close_stage_lazily = logged_close  # type: ignore[method-assign]
    try:
        result = bench_scale.run_once(n, d, bits, None)
    finally:
        ServerSession.__init__ = init  # type: ignore[method-assign]
        ServerSession.receive = receive  # type: ignore[method-assign]
        ServerSession.close_stage_lazily = close  # type: ignore[method-assign]
    raw = configs[0].to_bytes()
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack(">I", len(raw)) + raw)
        for kind, data in events:
            f.write(_RECORD.pack(kind, len(data)) + data)
    print(f"recorded n={n} d={d} b={bits}: {len(events)} events, exact sum {result['exact']}")


def load(path: Path) -> tuple[RoundConfig, list[tuple[int, bytes]]]:
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise SystemExit(f"{path}: not a recording of this benchmark")
    pos = len(MAGIC)
    (size,) = struct.unpack_from(">I", data, pos)
    config = RoundConfig.from_bytes(data[pos + 4 : pos + 4 + size])
    pos += 4 + size
    events = []
    while pos < len(data):
        kind, length = _RECORD.unpack_from(data, pos)
        pos += _RECORD.size
        events.append((kind, data[pos : pos + length]))
        pos += length
    return config, events


def replay_once(config: RoundConfig, events: list[tuple[int, bytes]], *, no_gc: bool) -> float:
    """Server CPU seconds (all threads) for one replay."""
    gc.collect()
    if no_gc:
        gc.disable()
    try:
        server = ServerSession(config)
        start = time.process_time()
        for kind, data in events:
            if kind == _RECEIVE:
                server.receive(data)
            else:
                out = server.close_stage_lazily()
                for u in out:
                    out[u]  # each message built as a transport would send it
                del out
        spent = time.process_time() - start
        server.result  # noqa: B018 (the round must have finished)
        return spent
    finally:
        gc.enable()


def replay(paths: list[Path], reps: int, no_gc: bool) -> None:
    rows = []
    for path in paths:
        config, events = load(path)
        n = len(config.graph.ids)
        for off in [False, True] if no_gc else [False]:
            times = [replay_once(config, events, no_gc=off) for _ in range(reps)]
            rows.append((path.name, n, config.d, off, 1000 * statistics.median(times) / n))
        del events
    print(
        f"\nserver alone, CPU per client (median of {reps}); ratio to the first row of the same GC"
    )
    print(f"{'recording':<24} {'n':>7} {'d':>8} {'gc':>4} {'ms/client':>10} {'ratio':>6}")
    first: dict[bool, float] = {}
    for name, n, d, off, ms in rows:
        first.setdefault(off, ms)
        gc_label = "off" if off else "on"
        print(f"{name:<24} {n:>7} {d:>8} {gc_label:>4} {ms:>10.4f} {ms / first[off]:>6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record", help="run one round and record the server's inputs")
    rec.add_argument("n", type=int)
    rec.add_argument("d", type=int)
    rec.add_argument("path", type=Path)
    rec.add_argument("--bits", type=int, default=32)
    rep = sub.add_parser("replay", help="replay recordings into a fresh server")
    rep.add_argument("paths", type=Path, nargs="+")
    rep.add_argument("--reps", type=int, default=3)
    rep.add_argument("--no-gc", action="store_true", help="also time with the GC off")
    args = parser.parse_args()
    if args.cmd == "record":
        record(args.n, args.d, args.bits, args.path)
    else:
        replay(args.paths, args.reps, args.no_gc)


if __name__ == "__main__":
    main()
