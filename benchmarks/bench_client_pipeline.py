"""A Flower node's masked-input step: the in-place pipeline against the plain one, in one process.

From the global model and the app's returned model (Flower ArrayRecords of one float32
array, d values) to the masked input's wire bytes, with the session's shares delivery of
a complete round of n clients. Both give the same bytes (checked on every repetition):

* plain: ``Array.numpy()`` of both models (np.load copies), a fresh float32 update, a fresh
  encoding, the session's own copy of it, masked, packed;
* in place (what ``secureagg_mod`` does): both models read in place from their bytes, the
  update written into the words it is quantised into, the session masking that buffer.

Per step: CPU time of the thread and its minor page faults (a fresh model-sized buffer
costs about 2 ms of page faults at d = 10^6 on the development VM), medians over the
repetitions, the two alternating.

    python benchmarks/bench_client_pipeline.py              # d = 10^5 and 10^6, n = 10
    python benchmarks/bench_client_pipeline.py --d 100000 --repeat 41
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import sys
import time

import numpy as np

from secureagg.fl import UpdateEncoder
from secureagg.flower._mod import _encoded
from secureagg.privacy import LocalUpdate
from secureagg.protocol import (
    ClientSession,
    Graph,
    MemoryJournal,
    RoundConfig,
    ServerSession,
    Stage,
    new_round_id,
)


def _faults() -> int:
    return resource.getrusage(getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)).ru_minflt


def shares_delivery(config: RoundConfig) -> tuple[bytes, bytes]:
    """Client 1's saved session and the server's shares delivery to it: an honest round of
    every client of ``config`` up to the masked-input stage."""
    clients = {u: ClientSession(config, u) for u in config.graph.ids}
    server = ServerSession(config)
    for c in clients.values():
        server.receive(c.advertise())
    out = server.close_stage()
    while server.stage is not Stage.MASKED_INPUT:
        for u, data in out.items():
            server.receive(clients[u].receive(data))
        out = server.close_stage()
    return clients[1].export_state(), out[1]


def measure(d: int, n: int, repeat: int) -> None:
    """Print both pipelines' medians at one d."""
    from flwr.app import ArrayRecord

    enc = UpdateEncoder(d, max_clients=n, max_examples=100, clip=1.0, frac_bits=16)
    g = np.random.default_rng(1).uniform(-0.5, 0.5, d).astype(np.float32)
    local = (g + np.random.default_rng(2).uniform(-1, 1, d)).astype(np.float32)
    start, trained = ArrayRecord([g]), ArrayRecord([local])
    ids = list(range(1, n + 1))
    config = RoundConfig(new_round_id(), enc.bits, enc.length, n // 2 + 1, Graph.complete(ids))
    blob, delivery = shares_delivery(config)

    def plain(seed: int) -> bytes:
        x = trained[next(iter(trained))].numpy()
        y = start[next(iter(start))].numpy()
        vector = np.empty(d, np.float32)
        np.subtract(x.ravel(), y.ravel(), out=vector)
        session = ClientSession.restore_state(blob, journal=MemoryJournal())
        update = LocalUpdate(vector, 1, 0)
        session.provide_input(enc.encode(update, np.random.default_rng(seed)))
        return session.receive(delivery)

    def in_place(seed: int) -> bytes:
        words = _encoded(enc, trained, start, 1, np.random.default_rng(seed))
        session = ClientSession.restore_state(blob, journal=MemoryJournal())
        session.provide_input(words, copy=False)
        return session.receive(delivery)

    times: dict[str, list[float]] = {"plain": [], "in place": []}
    faults: dict[str, list[int]] = {"plain": [], "in place": []}
    for rep in range(repeat + 1):
        out: dict[str, bytes] = {}
        for name, step in (("plain", plain), ("in place", in_place))[:: 1 if rep % 2 else -1]:
            f0, t0 = _faults(), time.thread_time()
            out[name] = step(rep)
            if rep:  # the first repetition warms up
                times[name].append(1000 * (time.thread_time() - t0))
                faults[name].append(_faults() - f0)
        if out["plain"] != out["in place"]:
            sys.exit(f"d={d}: the two pipelines sent different bytes")
    base = statistics.median(times["plain"])
    for name in times:
        ms = statistics.median(times[name])
        print(
            f"d = {d:>9,}  {name:<8}  {ms:7.2f} ms CPU  "
            f"{statistics.median(faults[name]):6.0f} page faults  "
            f"plain / this {base / ms:4.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--n", type=int, default=10, help="clients in the round (complete graph)")
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    logging.getLogger("secureagg.flower").setLevel(logging.ERROR)
    load = os.getloadavg()[0]
    print(f"masked-input step of one node, n = {args.n}, medians of {args.repeat}, load {load:.2f}")
    for d in args.d:
        measure(d, args.n, args.repeat)
    print(f"load average at the end {os.getloadavg()[0]:.2f}; the same bytes every time")


if __name__ == "__main__":
    main()
