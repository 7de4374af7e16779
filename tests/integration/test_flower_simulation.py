"""secureagg inside Flower's own simulation engine: 10 SuperNodes, 3 rounds, nodes that drop.

One secure run (``SecureAggregation(FedAvg)`` + ``secureagg_mod``) and one plain run
(Flower's ``FedAvg``, the nodes that were out of the secure sum failing their training),
both through ``flwr.simulation.run_simulation`` with Ray. A secure round is four train
messages per node: "setup" (keys) and "share-keys", sent by ``SecureAggregation`` within
``configure_train``, then "masked-input" (FedAvg's train message: the node trains, and its
update leaves masked) and "unmask". Misbehaviour comes from a test mod placed before
``secureagg_mod`` (tests/integration/_flower_apps.py):

- round 1: node 3 fails (error reply) at share-keys, before training: the one dropout of
  that round, never sent the model;
- round 2: node 9 replies with no content at share-keys (never sent the model); at
  masked-input node 6 trains, then sends random bytes, and node 7 a well-formed masked
  vector one element short;
- round 3: node 0 fails at setup; at masked-input node 5 says nothing until ``start()``'s
  timeout (in the last round: when it wakes, the engine writes back its stale node state);
  at unmask node 2 fails and node 8 sends random bytes, after their masked inputs arrived:
  both stay in the sum.

Each round's model must equal plain FedAvg over the nodes in the sum within the reported
quantisation bound (plus float32 rounding), from the secure run's own start model and,
accumulated over rounds, against the plain run (local training is a contraction, so a
start-model difference never grows).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("ray")

import _flower_apps as apps  # tests/integration is on sys.path under pytest
import _flower_sim as sim
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from secureagg.flower import SecureAggregation

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

N = 10
ROUNDS = 3
STAGE_TIMEOUT = 60.0  # SecureAggregation's, per protocol stage; the first one starts Ray's actors
TRAIN_TIMEOUT = 6.0  # start()'s: the masked-input (train) message, where node 5 is silent
SLEEP = TRAIN_TIMEOUT + 2.0  # the silent node answers only after the stage has closed
MAX_EXAMPLES = 50
F32_SLACK = 1e-6
"""Float32 rounding per round: the stored model (|values| < 1, half an ulp is 3e-8) and
Flower's FedAvg, which accumulates 10 float32 products (at most 10 more ulps)."""

SECURE_PLAN = {
    (3, 1, "share-keys"): apps.RAISE,
    (9, 2, "share-keys"): apps.EMPTY,
    (6, 2, "masked-input"): apps.GARBAGE,
    (7, 2, "masked-input"): apps.SHORT,
    (0, 3, "setup"): apps.RAISE,
    (5, 3, "masked-input"): apps.SLEEP,
    (2, 3, "unmask"): apps.RAISE,
    (8, 3, "unmask"): apps.GARBAGE,
}
DROPPED = {  # partition -> stage it is reported dropped at
    1: {3: "share-keys"},
    2: {9: "share-keys", 6: "masked-input", 7: "masked-input"},
    3: {0: "advertise", 5: "masked-input", 2: "unmask", 8: "unmask"},
}
OUT_OF_SUM = {1: {3}, 2: {6, 7, 9}, 3: {0, 5}}
NO_MODEL = {1: {3}, 2: {9}, 3: {0}}  # out before their shares were routed: never sent the model
PLAIN_PLAN = {(p, r, "train"): apps.RAISE for r, ps in OUT_OF_SUM.items() for p in ps}


def _one(partition: int) -> int:
    """Every node reports one example: Flower's weighted FedAvg (the plain run) is then the
    uniform mean the secure run computes (uniform weighting, the default; nodes send no
    count unless their node config opts in, which the simulation engine cannot set)."""
    return 1


def _server_app(out: Path, *, secure: bool) -> ServerApp:
    """A ServerApp that saves the global model after each round (and the secure reports)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        fedavg = sim.fedavg(N)
        strategy = (
            SecureAggregation(fedavg, max_examples=MAX_EXAMPLES, timeout=STAGE_TIMEOUT)
            if secure
            else fedavg
        )

        strategy.start(
            grid=grid,
            initial_arrays=apps.to_record(apps.initial_arrays()),
            num_rounds=ROUNDS,
            timeout=TRAIN_TIMEOUT if secure else 3600.0,
            evaluate_fn=sim.model_saver(out),
        )
        if isinstance(strategy, SecureAggregation):
            sim.save_reports(strategy, out)

    return app


def _simulate(out: Path, *, secure: bool) -> float:
    out.mkdir()
    (out / "nodes").mkdir()
    (out / "events").mkdir()
    plan = SECURE_PLAN if secure else PLAIN_PLAN
    script = apps.Script(plan, str(out / "nodes"), sleep=SLEEP, events_dir=str(out / "events"))
    return sim.simulate(
        _server_app(out, secure=secure), apps.client_app(script, secure=secure, count=_one), N
    )


class Runs:
    def __init__(self, root: Path, seconds: dict[str, float]) -> None:
        self.root = root
        self.seconds = seconds
        self.reports: dict[int, dict[str, Any]] = sim.load_reports(root / "secure")
        self.node_of = sim.node_ids(root / "secure" / "nodes")
        self.partition_of = {n: p for p, n in self.node_of.items()}

    def events(self, run: str, partition: int, server_round: int) -> list[str]:
        """What the node received (stage tags) and when it trained, in that round, in order."""
        lines = (self.root / run / "events" / str(partition)).read_text().splitlines()
        return [e for r, e in (line.split() for line in lines) if int(r) == server_round]

    def model(self, run: str, server_round: int) -> dict[str, np.ndarray]:
        return sim.saved_model(self.root / run, server_round)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    root = tmp_path_factory.mktemp("flower-sim")
    with pytest.MonkeyPatch.context() as mp:
        sim.quiet_home(root, mp.setenv)
        seconds = {
            "secure": _simulate(root / "secure", secure=True),
            "plain": _simulate(root / "plain", secure=False),
        }
    yield Runs(root, seconds)


def _members(server_round: int) -> list[int]:
    return sorted(set(range(N)) - OUT_OF_SUM[server_round])


def _max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a)


def test_every_round_completes_with_the_expected_survivors(runs: Runs) -> None:
    assert sorted(runs.node_of) == list(range(N))
    assert sorted(runs.reports) == [1, 2, 3]
    for r, rep in runs.reports.items():
        assert rep["aborted"] is None, rep
        assert sorted(rep["nodes"]) == sorted(runs.node_of.values())
        survivors = sorted(runs.partition_of[n] for n in rep["survivors"])
        assert survivors == _members(r), (r, rep)
        dropped = {runs.partition_of[int(n)]: s for n, s in rep["dropouts"].items()}
        assert dropped == DROPPED[r], (r, rep)
        assert rep["error_bound"] > 0.0


def test_keys_and_shares_come_before_the_model_and_training(runs: Runs) -> None:
    """Every node of a round gets setup, then share-keys, then the model; it trains once,
    inside the masked-input message. A node out before its shares were routed never gets
    the model; one silent or failing later has trained."""
    full = ["setup", "share-keys", "masked-input", "trained", "unmask"]
    for r in range(1, ROUNDS + 1):
        for p in range(N):
            got = runs.events("secure", p, r)
            if p in NO_MODEL[r]:
                want = ["setup"] if DROPPED[r][p] == "advertise" else ["setup", "share-keys"]
                assert got == want, (r, p, got)
            elif DROPPED[r].get(p) == "masked-input" and p != 5:
                assert got == full[:4], (r, p, got)  # trained, then its masked input was bad
            elif p == 5 and r == 3:  # silent past the timeout: it may train after the round
                assert got[:3] == full[:3] and "unmask" not in got, got
            else:
                assert got == full, (r, p, got)
        # The plain run: one train message per node and round.
        for p in range(N):
            want = ["train"] if p in OUT_OF_SUM[r] else ["train", "trained"]
            assert runs.events("plain", p, r) == want


def test_silent_garbage_short_empty_and_failing_nodes_are_dropped_not_fatal(runs: Runs) -> None:
    """The reasons the reports give match what each node did."""

    def declined(r: int) -> dict[int, str]:
        return {runs.partition_of[int(n)]: why for n, why in runs.reports[r]["declined"].items()}

    def rejected(r: int) -> str:
        return " | ".join(runs.reports[r]["rejected"])

    assert list(declined(1)) == [3] and "error reply" in declined(1)[3]
    assert rejected(1) == ""
    assert list(declined(2)) == [9] and "without secureagg's record" in declined(2)[9]
    assert f"node {runs.node_of[6]}: malformed message" in rejected(2)
    assert f"node {runs.node_of[7]}: vector of length" in rejected(2)
    assert sorted(declined(3)) == [0, 2] and "error reply" in declined(3)[2]
    assert "error reply" in declined(3)[0] and "fails at round 3, stage setup" in declined(3)[0]
    assert f"node {runs.node_of[8]}: malformed message" in rejected(3)
    assert str(runs.node_of[5]) not in rejected(3)  # it sent nothing in time: a plain dropout


def test_each_round_is_fedavg_of_its_survivors_from_its_start_model(runs: Runs) -> None:
    """From the secure run's own start model, within that round's bound."""
    for r in range(1, ROUNDS + 1):
        start = runs.model("secure", r - 1)
        got = runs.model("secure", r)
        want = apps.plain_fedavg(start, _members(r), count=_one)
        bound = runs.reports[r]["error_bound"]
        assert bound < 1e-3
        diff = _max_diff(got, want)
        assert diff <= bound + F32_SLACK, (r, diff, bound)
        if OUT_OF_SUM[r]:  # the tolerance is far tighter than what a dropped update moves
            everyone = apps.plain_fedavg(start, list(range(N)), count=_one)
            assert _max_diff(got, everyone) > 100 * (bound + F32_SLACK)


def test_secure_run_matches_flowers_fedavg_run_every_round(runs: Runs) -> None:
    """Against the plain run: the bounds add up over rounds (training is a contraction)."""
    assert apps.CONTRACTION <= 1.0
    tolerance = 0.0
    assert _max_diff(runs.model("secure", 0), runs.model("plain", 0)) == 0.0
    for r in range(1, ROUNDS + 1):
        tolerance += runs.reports[r]["error_bound"] + F32_SLACK
        diff = _max_diff(runs.model("secure", r), runs.model("plain", r))
        assert diff <= tolerance, (r, diff, tolerance)
