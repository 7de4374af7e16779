"""Two Flower runs against one node budget, in Flower's own simulation engine (Ray actors).

Each node's ClientApp trains with ``train_privately`` (real Opacus DP-SGD) behind
``secureagg_mod`` and keeps its privacy ledger in a file of its own, with a budget that fits
four rounds and not five. The ServerApp (``SecureAggregation(FedAvg)``) asks for three rounds,
and the test starts it twice: two Flower runs, each with a fresh run id and fresh node
Contexts, so only the ledger file carries the first run's spend into the second. The second
run must train one round and then see every node decline (the round aborts); no ledger
record may ever pass the budget. A node that counted only its run's Context (the code before
issue 13) trains all six rounds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("ray")

import _flower_sim as sim  # tests/integration is on sys.path under pytest
import dp_accounting
import torch
from flwr.app import ArrayRecord, Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from secureagg import PrivacyConfig
from secureagg.flower import SecureAggregation, secureagg_mod, train_privately

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

N = 4
ROUNDS = 3  # per run
EXAMPLES = 16  # per node, one full batch: sample rate 1, one DP-SGD step a round
Z = 2.0
DELTA = 1e-5
STAGE_TIMEOUT = 300.0
"""SecureAggregation's wait per protocol stage: the first stage of each run waits for Ray to
start the ClientApp actors, which took up to 74 s for the second run on a loaded 2-core
machine (a stage ends as soon as every node has replied)."""


def _pld_epsilon(steps: int) -> float:
    """dp-accounting's own PLD figure for ``steps`` full-batch Gaussian steps (add/remove)."""
    acc = dp_accounting.pld.PLDAccountant()
    acc.compose(dp_accounting.GaussianDpEvent(Z), steps)
    return float(acc.get_epsilon(DELTA))


BUDGET = (_pld_epsilon(4) + _pld_epsilon(5)) / 2  # four rounds fit, a fifth does not


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(5, 2)


def _client_app(ledgers: Path) -> ClientApp:
    app = ClientApp(mods=[secureagg_mod])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        partition = int(context.node_config["partition-id"])
        g = torch.Generator().manual_seed(partition)
        x = torch.randn(EXAMPLES, 5, generator=g)
        y = (x[:, 0] > 0).long()
        loader = DataLoader(TensorDataset(x, y), batch_size=EXAMPLES)
        model = _model()
        privacy = PrivacyConfig(noise_multiplier=Z, delta=DELTA, budget_epsilon=BUDGET)
        return train_privately(
            msg,
            context,
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            loader,
            privacy,
            ledger=ledgers / f"ledger-{partition}.json",
        )

    return app


def _server_app(out: Path) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = SecureAggregation(
            sim.fedavg(N), max_examples=50, threshold=3, timeout=STAGE_TIMEOUT
        )
        start = ArrayRecord(_model().state_dict())
        strategy.start(grid=grid, initial_arrays=start, num_rounds=ROUNDS)
        sim.save_reports(strategy, out)

    return app


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[int, Any]]]:
    root = tmp_path_factory.mktemp("flower-budget")
    ledgers = root / "ledgers"
    ledgers.mkdir()
    reports = []
    with pytest.MonkeyPatch.context() as mp:
        sim.quiet_home(root, mp.setenv)
        for name in ("first", "second"):  # two Flower runs, one after the other
            out = root / name
            out.mkdir()
            sim.simulate(_server_app(out), _client_app(ledgers), N)
            reports.append(sim.load_reports(out))
    return ledgers, reports


def test_the_budget_fits_four_rounds_by_dp_accountings_pld() -> None:
    assert _pld_epsilon(4) < BUDGET < _pld_epsilon(5)


def test_the_second_run_trains_until_the_budget_then_every_node_declines(
    runs: tuple[Path, list[dict[int, Any]]],
) -> None:
    _, (first, second) = runs
    assert sorted(first) == sorted(second) == [1, 2, 3]
    for rep in first.values():  # run 1: three rounds, every node in the sum
        assert rep["aborted"] is None and rep["declined"] == {} and len(rep["survivors"]) == N
    assert second[1]["aborted"] is None and len(second[1]["survivors"]) == N  # the 4th round
    for r in (2, 3):  # a 5th would pass the budget: all decline before training, it aborts
        assert second[r]["aborted"] is not None
        assert len(second[r]["declined"]) == N, second[r]
        assert all("privacy budget spent" in why for why in second[r]["declined"].values())


def test_the_node_ledgers_carry_the_spend_across_runs_and_never_pass_the_budget(
    runs: tuple[Path, list[dict[int, Any]]],
) -> None:
    ledgers, _ = runs
    for partition in range(N):
        doc = json.loads((ledgers / f"ledger-{partition}.json").read_text())
        records = doc["clients"][str(partition)]["records"]
        run_ids = list(dict.fromkeys(r["run"] for r in records))
        assert len(run_ids) == 2  # two Flower runs, each its own run id
        first, second = run_ids
        keys = [(r["run"], r["round"], r["participated"]) for r in records]
        trained = [(first, 1, True), (first, 2, True), (first, 3, True), (second, 1, True)]
        assert keys == [*trained, (second, 2, False), (second, 3, False)]
        assert all(r["reason"] == "budget" for r in records if not r["participated"])
        assert sum(r["steps"] for r in records if r["participated"]) == 4
        spent = [r["epsilon"]["dpa_pld"] for r in records]
        assert max(spent) <= BUDGET
        assert np.isclose(spent[3], _pld_epsilon(4), rtol=1e-3)  # the 4th round's spend counted
        assert spent[3] > 1.1 * _pld_epsilon(1)  # not a fresh start in the second run
