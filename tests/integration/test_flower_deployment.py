"""examples/flower_app in Flower's deployment engine: a SuperLink and 3 SuperNodes as real
processes on 127.0.0.1, the app run against them with ``flwr run`` for 2 secure rounds.

It took 157 s on the shared 2-core development machine (every message starts a fresh
ClientApp process on each node; the protocol stages' processes do not load torch; see
docs/benchmarks.md); it runs in ``make test``, and ``make e2e`` runs it alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("flwr")
from _flower_engine import APP, Engine, check_results, free_ports, run_config

from secureagg.protocol import FileJournal

NODES = 3
ROUNDS = 2


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_app_runs_on_a_superlink_and_three_supernodes(tmp_path: Path) -> None:
    engine = Engine(tmp_path)
    try:
        link, *node_ports = free_ports(1 + NODES)
        engine.superlink(link)
        names = [f"supernode-{i}" for i in range(NODES)]
        for i, (name, port) in enumerate(zip(names, node_ports, strict=True)):
            journal = tmp_path / f"node{i}.journal"  # on the node's disk, named in its config
            ledger = tmp_path / f"ledger-{i}.json"  # so is its privacy ledger
            engine.supernode(
                name,
                link,
                port,
                f"partition-id={i} num-partitions={NODES} secureagg-journal='{journal}' "
                f"secureagg-ledger='{ledger}'",
            )
        engine.wait_connected(names)
        out = engine.flwr_run(
            str(APP),
            "test",  # the SuperLink connection Engine.superlink wrote
            "--stream",
            *run_config(
                num_server_rounds=ROUNDS,
                results_path=str(tmp_path / "results.json"),
            ),
            timeout=720,
        )
        logs = {name: engine.log(name) for name in names}
    finally:
        engine.close()
    assert "Traceback" not in out, out[-4000:]
    assert out.count(f"'secureagg-survivors': {NODES}") == ROUNDS
    check_results(
        tmp_path, rounds=ROUNDS, ledgers=[tmp_path / f"ledger-{i}.json" for i in range(NODES)]
    )
    for name, log in logs.items():
        # per round: setup (keys), share-keys, masked-input (trains) and unmask
        assert log.count("Receiving: train message") == 4 * ROUNDS, name
        assert log.count("Receiving: evaluate message") == ROUNDS, name
        assert "Traceback" not in log, log[-3000:]
    for i in range(NODES):  # masked input and unmask answer of each round, synced to disk
        assert len(FileJournal(tmp_path / f"node{i}.journal")._entries) == 2 * ROUNDS
