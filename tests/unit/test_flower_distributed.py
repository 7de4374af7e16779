"""Client-level distributed DP over Flower, on the loopback grid of test_flower_loopback.py.

The strategy plans the noise and binds it into every round config; each node checks it,
clips, rotates, rounds and adds its share inside the masked sum, and charges the round in
its own ledger before the reply leaves; the server decodes with the round id as the public
rotation seed and keeps its own ledger.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

import test_flower_loopback as lb
from flwr.serverapp.strategy import FedAvg

from secureagg import ConfigError
from secureagg.fl import DistributedDP
from secureagg.flower import SecureAggregation
from secureagg.flower._ddp_node import NodeDistributed
from secureagg.privacy import DistributedLedger
from secureagg.privacy.distributed import epsilon
from secureagg.protocol import RoundConfig

pytestmark = pytest.mark.usefixtures("flower_task_identity")

BIG = {"w": (20, 30), "b": (30,)}  # 630 values, padded to 1024
SETTINGS = DistributedDP(epsilon=8.0, delta=1e-5, update_clip=1.0, rounds=3, bits=16)


@pytest.fixture
def big_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lb, "SHAPES", BIG)


def _strategy(settings: DistributedDP = SETTINGS, **kw: Any) -> SecureAggregation:
    fedavg = FedAvg(fraction_evaluate=0.0, min_available_nodes=2, min_train_nodes=2)
    return SecureAggregation(
        fedavg, max_examples=lb.MAX_EXAMPLES, threshold=3, distributed=settings, **kw
    )


def _clipped_mean(start: dict[str, np.ndarray], members: list[int], rnd: int) -> np.ndarray:
    keys = list(lb.SHAPES)
    flat = np.concatenate([start[k].astype(np.float64).ravel() for k in keys])
    ups = []
    for p in members:
        step = lb._step(start, p, rnd)
        u = np.concatenate([step[k].astype(np.float64).ravel() for k in keys]) - flat
        ups.append(u * min(1.0, SETTINGS.update_clip / float(np.linalg.norm(u))))
    return flat + np.mean(ups, axis=0)


def _flat(model: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([model[k].astype(np.float64).ravel() for k in lb.SHAPES])


@pytest.mark.usefixtures("big_model")
def test_rounds_carry_the_planned_noise_and_both_ledgers_record_them(tmp_path: Path) -> None:
    grid = lb.LoopbackGrid(lb._app(), 5)
    for p, ctx in enumerate(grid.contexts.values()):
        ctx.node_config["secureagg-ddp-ledger"] = str(tmp_path / f"node{p}.json")
        ctx.node_config["secureagg-ddp-delta"] = 1e-5
    server_book = DistributedLedger(tmp_path / "server.json")
    strategy = _strategy(distributed_ledger=server_book)
    models = lb._run(grid, strategy, 3)
    assert strategy.distributed is not None
    enc = strategy.distributed.encoder(630)
    sigma = enc.noise_std(5)  # the average of 5 shares
    z = []
    for rnd in (1, 2, 3):
        report = strategy.reports[rnd]
        assert report.aborted is None and len(report.survivors) == 5
        want = _clipped_mean(models[rnd - 1], list(range(5)), rnd)
        z.append((_flat(models[rnd]) - want) / sigma)
    zz = np.concatenate(z)
    # the decoded average is the clipped mean plus the noise of 5 shares (rounding adds at
    # most gamma^2/4 per share; float32 storage of the model adds nothing visible)
    rounding = 5 * enc.plan.gamma**2 / 4 / 25 / sigma**2
    tol = 5 * math.sqrt(2 / zz.size)
    assert 1 - tol <= float(np.mean(zz**2)) <= 1 + rounding + tol
    assert abs(float(np.mean(zz))) < 5 / math.sqrt(zz.size)
    # the server's ledger: every decoded round, its survivors, the planned guarantee
    recs = DistributedLedger.load(tmp_path / "server.json").rounds()
    assert [r.members for r in recs] == [sorted(grid.contexts)] * 3  # Flower node ids
    assert recs[-1].epsilon <= SETTINGS.epsilon
    # each node's ledger charges its 3 rounds at the floor n_min = 3, whoever survived:
    # the composition of 3 rounds at n = 3 (privacy.distributed.epsilon, computed apart)
    p = enc.params
    floor = epsilon(
        p.mechanism, clip=p.clip, gamma=p.gamma, variance=p.variance, n=3, dim=p.padded,
        rounds=3, delta=1e-5,
    )  # fmt: skip
    for q in range(5):
        book = DistributedLedger.load(tmp_path / f"node{q}.json")
        assert len(book.rounds()) == 3
        assert book.epsilon() == pytest.approx(floor, rel=1e-9)
    assert floor == pytest.approx(SETTINGS.epsilon, rel=1e-3)  # the plan is for n_min = 3


def test_every_parameter_is_in_the_round_config_and_the_model_size_binds_it() -> None:
    grid = lb.LoopbackGrid(lb._app(), 4)
    strategy = _strategy()
    lb._run(grid, strategy, 1)
    cfg = RoundConfig.from_bytes(grid.sent[0].content[lb.RECORD_KEY]["config"])
    enc = strategy.distributed.encoder(9) if strategy.distributed else None
    assert enc is not None
    for key, value in enc.public_settings().items():
        assert cfg.encoding[key] == value, key
    assert cfg.encoding["model-size"] == 9 and cfg.d == 16 and cfg.bits == 16
    assert cfg.threshold >= 3 and cfg.encoding["n-min"] == 3


def _config(**changes: Any) -> RoundConfig:
    grid = lb.LoopbackGrid(lb._app(), 4)
    lb._run(grid, _strategy(), 1)
    cfg = RoundConfig.from_bytes(grid.sent[0].content[lb.RECORD_KEY]["config"])
    threshold = changes.pop("threshold", cfg.threshold)
    return dataclasses.replace(cfg, threshold=threshold, encoding={**cfg.encoding, **changes})


def test_a_node_refuses_a_threshold_below_its_floor_or_noise_beyond_its_budget() -> None:
    cfg = _config()
    NodeDistributed(cfg, {})  # the honest config
    quiet = dataclasses.replace(cfg, encoding={**cfg.encoding, "n-min": cfg.threshold + 1})
    with pytest.raises(ConfigError, match="below n-min \\+ colluders"):
        NodeDistributed(quiet, {})
    with pytest.raises(ConfigError, match="assumes 0 colluders, this node at least 1"):
        NodeDistributed(cfg, {"secureagg-ddp-colluders": 1})
    budget = {"secureagg-ddp-epsilon": 8.0, "secureagg-ddp-delta": 1e-5}
    NodeDistributed(cfg, {**budget, "secureagg-ddp-rounds": 3})  # the plan meets 8 over 3
    with pytest.raises(ConfigError, match="above this node's budget"):
        NodeDistributed(cfg, {**budget, "secureagg-ddp-rounds": 5})
    quieter = _config(variance=float(cfg.encoding["variance"]) / 4)
    with pytest.raises(ConfigError, match="above this node's budget"):
        NodeDistributed(quieter, {**budget, "secureagg-ddp-rounds": 3})
    with pytest.raises(ConfigError, match="model size"):
        NodeDistributed(_config(**{"model-size": 30}), {})
    with pytest.raises(ConfigError, match="needs secureagg-ddp-delta"):
        NodeDistributed(cfg, {"secureagg-ddp-epsilon": 8.0, "secureagg-ddp-rounds": 3})


def test_nodes_whose_ledger_is_spent_decline_before_training(tmp_path: Path) -> None:
    calls: list[int] = []
    grid = lb.LoopbackGrid(lb._app(calls=calls), 4)
    for p, ctx in enumerate(grid.contexts.values()):
        ctx.node_config["secureagg-ddp-ledger"] = str(tmp_path / f"node{p}.json")
        ctx.node_config["secureagg-ddp-delta"] = 1e-5
        ctx.node_config["secureagg-ddp-epsilon"] = 6.5  # two floor rounds fit, not three
    strategy = _strategy()
    lb._run(grid, strategy, 3)
    assert strategy.reports[1].aborted is None and strategy.reports[2].aborted is None
    third = strategy.reports[3]
    assert third.aborted is not None and len(third.declined) == 4
    assert all("above this node's budget" in why for why in third.declined.values())
    assert len(calls) == 8  # trained in rounds 1 and 2 only
    for p in range(4):
        book = DistributedLedger.load(tmp_path / f"node{p}.json")
        assert len(book.rounds()) == 2 and book.epsilon() <= 6.5


def test_a_node_that_pins_distributed_dp_declines_a_plain_round() -> None:
    grid = lb.LoopbackGrid(lb._app(), 4)
    for ctx in grid.contexts.values():
        ctx.node_config["secureagg-mode"] = "distributed-dp"
    plain = SecureAggregation(
        FedAvg(fraction_evaluate=0.0, min_available_nodes=2, min_train_nodes=2),
        max_examples=lb.MAX_EXAMPLES,
    )
    lb._run(grid, plain, 1)
    report = plain.reports[1]
    assert report.aborted is not None and len(report.declined) == 4
    assert all("mode" in why for why in report.declined.values())
    lb._run(grid, _strategy(), 1)  # the same nodes take part in a distributed-DP round


def test_the_update_clip_has_its_own_key_and_a_node_can_pin_it() -> None:
    # the round config's "clip" is the per-coordinate bound of plain rounds; the L2 bound
    # of a whole update travels as "update-clip", which a node pins as secureagg-update-clip
    cfg = _config()
    assert cfg.encoding["update-clip"] == SETTINGS.update_clip
    assert "clip" not in cfg.encoding or cfg.encoding["clip"] != SETTINGS.update_clip
    grid = lb.LoopbackGrid(lb._app(), 4)
    for ctx in grid.contexts.values():
        ctx.node_config["secureagg-update-clip"] = 2 * SETTINGS.update_clip
    looser = _strategy()
    lb._run(grid, looser, 1)
    report = looser.reports[1]
    assert report.aborted is not None and len(report.declined) == 4
    assert all("update-clip" in why for why in report.declined.values())
    for ctx in grid.contexts.values():
        ctx.node_config["secureagg-update-clip"] = SETTINGS.update_clip
    agreed = _strategy()
    lb._run(grid, agreed, 1)  # the same nodes take part when the values agree
    assert agreed.reports[1].aborted is None and not agreed.reports[1].declined


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"threshold": None}, "needs threshold"),
        ({"distributed": dataclasses.replace(SETTINGS, sample_rate=0.1)}, "sample_rate=None"),
        ({"distributed": dataclasses.replace(SETTINGS, weights={1: 1.0})}, "uniformly"),
        ({"weighting": "examples-public"}, "uniformly"),
        ({"distributed": dataclasses.replace(SETTINGS, colluders=3)}, "no honest node"),
    ],
)
def test_settings_flower_cannot_honour_are_refused(kw: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"threshold": 3, "distributed": SETTINGS, **kw}
    fedavg = FedAvg(fraction_evaluate=0.0, min_available_nodes=2, min_train_nodes=2)
    with pytest.raises(ConfigError, match=message):
        SecureAggregation(fedavg, max_examples=lb.MAX_EXAMPLES, **args)
