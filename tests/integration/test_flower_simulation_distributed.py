"""Client-level distributed DP inside Flower's own simulation engine: 6 SuperNodes, 2 rounds.

``SecureAggregation(FedAvg, threshold=3, distributed=DistributedDP(...))`` with
``secureagg_mod`` on the nodes, through ``flwr.simulation.run_simulation`` (Ray). Each node
clips, rotates, rounds and adds its planned noise share inside the masked sum; in round 2
node 4 fails at share-keys (before training, out of the sum). Each round's model must be the
uniform FedAvg of the members' (unclipped: clip 5 is above every update) local models plus
the decoded noise, which the run's plan says has std ``noise_std(members)``; the server's
distributed-DP ledger records both rounds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("ray")

import _flower_apps as apps  # tests/integration is on sys.path under pytest
import _flower_sim as sim
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from secureagg.fl import DistributedDP, DistributedEncoder
from secureagg.flower import SecureAggregation
from secureagg.privacy import DistributedLedger

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

N = 6
ROUNDS = 2
THRESHOLD = 3
SETTINGS = DistributedDP(epsilon=40.0, delta=1e-5, update_clip=5.0, rounds=ROUNDS, bits=20)
PLAN = {(4, 2, "share-keys"): apps.RAISE}
MEMBERS = {1: list(range(N)), 2: [0, 1, 2, 3, 5]}


def _server_app(out: Path) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = SecureAggregation(
            sim.fedavg(N),
            max_examples=50,
            threshold=THRESHOLD,
            timeout=60.0,
            distributed=SETTINGS,
            distributed_ledger=DistributedLedger(out / "server-ledger.json"),
        )

        strategy.start(
            grid=grid,
            initial_arrays=apps.to_record(apps.initial_arrays()),
            num_rounds=ROUNDS,
            timeout=60.0,
            evaluate_fn=sim.model_saver(out),
        )
        sim.save_reports(strategy, out)

    return app


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, float]]:
    root = tmp_path_factory.mktemp("flower-sim-ddp")
    (root / "nodes").mkdir()
    script = apps.Script(PLAN, str(root / "nodes"))
    with pytest.MonkeyPatch.context() as mp:
        sim.quiet_home(root, mp.setenv)
        client_app = apps.client_app(script, secure=True, count=lambda p: 1)
        seconds = sim.simulate(_server_app(root), client_app, N)
    yield root, seconds


def test_each_round_is_the_members_average_plus_the_planned_noise(
    run: tuple[Path, float],
) -> None:
    root, seconds = run
    reports = sim.load_reports(root)
    partition_of = {node: p for p, node in sim.node_ids(root / "nodes").items()}
    d = sum(int(np.prod(s)) for s in apps.SHAPES.values())
    enc = DistributedEncoder(d, SETTINGS, THRESHOLD, N)  # the plan the strategy made
    start = apps.initial_arrays()
    z = []
    for r in (1, 2):
        rep = reports[r]
        assert rep["aborted"] is None, rep
        assert sorted(partition_of[n] for n in rep["survivors"]) == MEMBERS[r]
        model = sim.saved_model(root, r)
        want = apps.plain_fedavg(start, MEMBERS[r], count=lambda p: 1)
        sigma = enc.noise_std(len(MEMBERS[r])) + enc.plan.gamma  # noise, plus rounding
        for k in apps.SHAPES:
            z.append((model[k].astype(np.float64) - want[k]).ravel() / sigma)
        start = model
    zz = np.concatenate(z)
    assert float(np.max(np.abs(zz))) < 6.0  # 32 values, each within 6 standard deviations
    assert float(np.mean(zz**2)) > 0.05  # and the noise is there
    recs = DistributedLedger.load(root / "server-ledger.json").rounds()
    assert [len(rec.members) for rec in recs] == [6, 5]
    assert recs[-1].epsilon <= SETTINGS.epsilon
    print(f"distributed-DP simulation: {seconds:.1f} s")
