"""Client-level distributed DP through the real secure-aggregation round and run_federated."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from secureagg import ConfigError, RoundAborted
from secureagg.fl import DistributedDP, SecureAggConfig, SecureAggregator, run_federated
from secureagg.privacy import DistributedLedger, LocalUpdate, PrivacyConfig, parameters_of
from secureagg.protocol import Stage

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SETTINGS = DistributedDP(epsilon=4.0, delta=1e-5, update_clip=0.5, rounds=20, bits=16)


def model_fn() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 4))


def loader(cid: int, n: int = 48) -> DataLoader:
    g = torch.Generator().manual_seed(100 + cid)
    x = torch.randn(n, 10, generator=g)
    return DataLoader(TensorDataset(x, x[:, :4].argmax(1)), batch_size=16)


@pytest.fixture(scope="module")
def aggregator() -> SecureAggregator:
    return SecureAggregator(model_fn(), max_clients=8, max_examples=100, distributed=SETTINGS)


def _updates(d: int, n: int, norm: float) -> dict[int, LocalUpdate]:
    rng = np.random.default_rng(n)
    out = {}
    for cid in range(1, n + 1):
        v = rng.normal(size=d).astype(np.float32)
        out[cid] = LocalUpdate(v * np.float32(norm / np.linalg.norm(v)), 10, 1)
    return out


def test_plan_matches_the_settings(aggregator: SecureAggregator) -> None:
    dist = aggregator.distributed
    assert dist is not None
    assert aggregator.threshold == 5 and dist.n_min == 5  # majority of 8, no colluders
    assert dist.epsilon_after(SETTINGS.rounds) == pytest.approx(SETTINGS.epsilon, abs=1e-3)
    assert dist.length == 256 and aggregator.bits == 16  # 244 parameters padded


def test_the_modulus_holds_k_standard_deviations_of_a_full_sum(
    aggregator: SecureAggregator,
) -> None:
    """Noise for the floor of 5 honest shares, bit width for max_clients = 8 in a sum: with
    the modulus solved for 5, a full round would wrap about 8 times as many coordinates."""
    dist = aggregator.distributed
    assert dist is not None and dist.n_min == 5 and dist.plan.n_sum == 8
    p = dist.plan
    sd = math.sqrt(p.clip**2 * 64 / p.dim + 8 * (p.gamma**2 / 4 + p.local_std**2)) / p.gamma
    assert 2.0 ** (p.bits - 1) >= p.k * sd * (1 - 1e-6)


def test_decoded_average_carries_the_planned_noise_with_dropouts(
    aggregator: SecureAggregator,
) -> None:
    dist = aggregator.distributed
    assert dist is not None
    errs = []
    for _ in range(6):  # several rounds: fresh rotation seeds, fresh noise
        updates = _updates(dist.d, 8, 0.4)
        encoded = {cid: aggregator.encode(u) for cid, u in updates.items()}
        agg = aggregator.simulate(encoded, dropouts={Stage.MASKED_INPUT: [3]})
        assert agg.members == [1, 2, 4, 5, 6, 7, 8]
        ref = aggregator.reference_average([updates[c] for c in agg.members])
        errs.append((agg.vector - ref) / dist.noise_std(len(agg.members)))
    z = np.concatenate(errs)
    # noise of 7 survivors' shares; rounding adds gamma^2/4 per client at most (tiny here)
    rounding = 7 * dist.plan.gamma**2 / 4 / 49 / dist.noise_std(7) ** 2
    tol = 5 * math.sqrt(2 / z.size)
    assert 1 - tol <= float(np.mean(z**2)) <= 1 + rounding + tol


def test_too_few_clients_in_the_sum_is_refused(aggregator: SecureAggregator) -> None:
    dist = aggregator.distributed
    assert dist is not None
    total = np.zeros(dist.length, dtype=np.uint16)
    with pytest.raises(RoundAborted):
        dist.decode(total, dist.n_min - 1)


def test_rotation_seed_is_fresh_each_round(aggregator: SecureAggregator) -> None:
    dist = aggregator.distributed
    assert dist is not None
    before = dist.seed
    updates = _updates(dist.d, 6, 0.1)
    aggregator.simulate({c: aggregator.encode(u) for c, u in updates.items()})
    assert dist.seed != before


def test_run_federated_in_distributed_mode_with_client_sampling() -> None:
    settings = DistributedDP(
        epsilon=8.0, delta=1e-5, update_clip=0.5, rounds=3, bits=16, sample_rate=0.6
    )
    ledger = DistributedLedger()
    res = run_federated(
        model_fn,
        {cid: loader(cid) for cid in range(1, 11)},
        rounds=3,
        optimizer_fn=lambda p: torch.optim.SGD(p, lr=0.2),
        privacy=None,
        secure=SecureAggConfig(threshold=3),
        distributed=settings,
        distributed_ledger=ledger,
    )
    assert len(res.rounds) == 3
    recs = ledger.rounds()
    assert [r.round for r in recs] == [1, 2, 3]  # rounds are numbered from 1
    for m, rec in zip(res.rounds, recs, strict=True):
        assert rec.members == ([] if m.aborted else sorted(m.members))
    # every released sum had at least n_min honest shares: at most the planned epsilon
    assert ledger.epsilon() <= settings.epsilon + 1e-9
    for m in res.rounds:
        assert set(m.participants) <= set(range(1, 11))
        assert m.aborted or len(m.members) >= 3
    # each client's own coin: all 30 landing heads has probability 0.6^30 ~ 2e-7
    assert any(len(m.participants) < 10 for m in res.rounds)
    before = parameters_of(model_fn())
    assert set(parameters_of(res.model)) == set(before)


def test_distributed_mode_needs_secure_aggregation_and_no_dp_sgd() -> None:
    kw = dict(rounds=1, optimizer_fn=lambda p: torch.optim.SGD(p, lr=0.1), distributed=SETTINGS)
    with pytest.raises(ConfigError):
        run_federated(model_fn, {1: loader(1)}, privacy=None, secure=None, **kw)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        run_federated(
            model_fn,
            {1: loader(1)},
            privacy=PrivacyConfig(noise_multiplier=1.0, update_clip=0.5),
            secure=SecureAggConfig(),
            **kw,  # type: ignore[arg-type]
        )


def test_colluders_raise_the_floor_of_a_sum() -> None:
    settings = DistributedDP(epsilon=4.0, delta=1e-5, update_clip=0.5, rounds=5, colluders=2)
    agg = SecureAggregator(model_fn(), max_clients=8, max_examples=100, distributed=settings)
    dist = agg.distributed
    assert dist is not None and dist.n_min == 3  # threshold 5 minus 2 colluders
    total = np.zeros(dist.length, dtype=np.uint16)
    with pytest.raises(RoundAborted):
        dist.decode(total, 4)  # 4 members may hold only 2 honest shares
    dist.decode(total, 5)


def test_colluders_beyond_the_threshold_are_refused() -> None:
    bad = DistributedDP(epsilon=4.0, delta=1e-5, update_clip=0.5, rounds=5, colluders=5)
    with pytest.raises(ConfigError):
        SecureAggregator(model_fn(), max_clients=8, max_examples=100, distributed=bad)


def _transport_round(
    aggregator: SecureAggregator, updates: dict[int, LocalUpdate]
) -> tuple[np.ndarray, list[int]]:
    from secureagg import SecureAggClient, SecureAggServer

    dist = aggregator.distributed
    assert dist is not None
    server = SecureAggServer(aggregator, list(updates))
    assert aggregator.client_encoder() is dist
    clients = {u: SecureAggClient(aggregator.client_encoder(), u) for u in updates}
    for u, c in clients.items():
        c.provide_update(updates[u])  # before join: encoded once the round id is known
        server.receive(u, c.join(server.config_bytes))
    out = server.close_stage()
    while server.stage is not None:
        for u, msg in out.items():
            server.receive(u, clients[u].receive(msg))
        out = server.close_stage()
    agg = server.result()
    return agg.vector, agg.members


def test_transport_recipes_in_distributed_mode(aggregator: SecureAggregator) -> None:
    dist = aggregator.distributed
    assert dist is not None
    errs = []
    for _ in range(4):
        updates = _updates(dist.d, 7, 0.4)
        vec, members = _transport_round(aggregator, updates)
        assert members == sorted(updates)
        ref = aggregator.reference_average(list(updates.values()))
        errs.append((vec - ref) / dist.noise_std(7))
    z = np.concatenate(errs)
    tol = 5 * math.sqrt(2 / z.size)
    assert 1 - tol <= float(np.mean(z**2)) <= 1 + tol + 0.01


def test_clients_refuse_a_round_with_less_noise_than_planned(
    aggregator: SecureAggregator,
) -> None:
    import dataclasses

    from secureagg import SecureAggClient, SecureAggServer

    dist = aggregator.distributed
    assert dist is not None
    server = SecureAggServer(aggregator, list(range(1, 9)))
    assert server.config.threshold >= dist.floor
    # a server that lowers the threshold (fewer honest shares) or the noise is refused
    low = dataclasses.replace(server.config, threshold=dist.floor - 1)
    quieter = dataclasses.replace(
        server.config, encoding={**server.config.encoding, "variance": dist.params.variance / 4}
    )
    for cfg in (low, quieter):
        client = SecureAggClient(dist, 1, allow_minority_threshold=True)
        why = r"refuses the round: (threshold|the round's variance)"
        with pytest.raises(RoundAborted, match=why):
            client.join(cfg.to_bytes())
    SecureAggClient(dist, 1).join(server.config_bytes)  # the honest config is accepted


# Public weights: each client sends w_i / max(w) times its clipped update (at most the clip),
# the noise share is the same for everyone, and the server divides by the members' weights.

QUIET = DistributedDP(epsilon=2000.0, delta=1e-5, update_clip=0.5, rounds=1, bits=20)
WEIGHTS = {cid: float(cid) for cid in range(1, 9)}  # scaled by the largest: cid / 8


def _opposed_updates(d: int) -> dict[int, LocalUpdate]:
    """Clients 1-4 send +u, 5-8 send -u: uniform mean 0, weighted mean -16/36 u."""
    u = np.random.default_rng(7).normal(size=d)
    u *= 0.4 / np.linalg.norm(u)
    return {c: LocalUpdate((u if c <= 4 else -u).astype(np.float32), 10, 1) for c in range(1, 9)}


def test_public_weights_give_the_weighted_average() -> None:
    import dataclasses

    settings = dataclasses.replace(QUIET, weights=WEIGHTS)
    agg = SecureAggregator(model_fn(), max_clients=8, max_examples=100, distributed=settings)
    dist = agg.distributed
    assert dist is not None and dist.weights is not None
    assert dist.weights[8] == 1.0 and dist.weights[2] == 0.25
    updates = _opposed_updates(dist.d)
    encoded = {c: agg.encode(u, client=c) for c, u in updates.items()}
    out = agg.simulate(encoded, dropouts={Stage.MASKED_INPUT: [3]})
    members = [1, 2, 4, 5, 6, 7, 8]
    assert out.members == members and out.total_examples == pytest.approx(33 / 8)
    weighted = agg.reference_average([updates[c] for c in members], members)
    uniform = np.mean([dist.clipped(updates[c]) for c in members], axis=0)
    u = updates[1].vector.astype(np.float64)
    assert weighted == pytest.approx((7 - 26) / 33 * u)  # sum of w x over the sum of w
    assert uniform == pytest.approx((3 - 4) / 7 * u)
    # along u the decoded average is the weighted one up to the noise and rounding (the
    # projection's std is the coordinates' std over |u|), far from the uniform one
    along = float(out.vector @ u / (u @ u))
    sd = (dist.noise_std(members) + dist.plan.gamma) / float(np.linalg.norm(u))
    assert abs(along - (7 - 26) / 33) < 6 * sd
    assert abs(along - (3 - 4) / 7) > 0.4 > 30 * sd


def test_public_weights_leave_the_plan_and_the_sensitivity_unchanged() -> None:
    import dataclasses

    plain = SecureAggregator(model_fn(), max_clients=8, max_examples=100, distributed=SETTINGS)
    settings = dataclasses.replace(SETTINGS, weights={c: 10.0 * c for c in range(1, 9)})
    weighted = SecureAggregator(model_fn(), max_clients=8, max_examples=100, distributed=settings)
    a, b = plain.distributed, weighted.distributed
    assert a is not None and b is not None
    assert a.params == b.params and a.epsilon_after(20) == b.epsilon_after(20)
    # one client moves the sum by at most the clip, whatever its weight: the heaviest
    # client's scaled weight is 1 and its update is clipped first
    big = LocalUpdate(np.full(b.d, 5.0, dtype=np.float32), 10, 1)
    for c in range(1, 9):
        assert float(np.linalg.norm(b.clipped(big) * b.weight(c))) <= settings.update_clip * (
            1 + 1e-9
        )
    # the average's noise is the sum's over the members' summed weight
    assert b.noise_std([8]) == a.noise_std(1) and b.noise_std([4]) == 2 * a.noise_std(1)


@pytest.mark.parametrize(
    "weights", [{1: 0.0, 2: 1.0}, {1: -1.0}, {1: math.nan}, {1: True}, {"1": 1.0}, {}]
)
def test_bad_public_weights_are_refused(weights: dict) -> None:  # type: ignore[type-arg]
    import dataclasses

    bad = dataclasses.replace(SETTINGS, weights=weights)
    with pytest.raises(ConfigError):
        SecureAggregator(model_fn(), max_clients=8, max_examples=100, distributed=bad)


def test_clients_without_a_public_weight_are_refused() -> None:
    import dataclasses

    from secureagg import SecureAggServer

    settings = dataclasses.replace(SETTINGS, weights={c: 1.0 for c in range(1, 8)})
    agg = SecureAggregator(model_fn(), max_clients=8, max_examples=100, distributed=settings)
    with pytest.raises(ConfigError, match=r"\[8\] have no public weight"):
        SecureAggServer(agg, list(range(1, 9)))
    dist = agg.distributed
    assert dist is not None
    with pytest.raises(ConfigError):
        dist.encode(LocalUpdate(np.zeros(dist.d, dtype=np.float32), 1, 1))  # no client id
    with pytest.raises(ConfigError):
        dist.decode(np.zeros(dist.length, dtype=np.uint16), 8)  # a count, not the ids
    with pytest.raises(ConfigError, match="no public weight"):
        run_federated(
            model_fn,
            {cid: loader(cid) for cid in range(1, 9)},
            rounds=1,
            optimizer_fn=lambda p: torch.optim.SGD(p, lr=0.1),
            privacy=None,
            secure=SecureAggConfig(),
            distributed=settings,
        )


def test_public_weights_over_the_transport_recipes_and_their_pin() -> None:
    import dataclasses

    from secureagg import SecureAggClient, SecureAggServer

    settings = dataclasses.replace(QUIET, weights=WEIGHTS)
    agg = SecureAggregator(model_fn(), max_clients=8, max_examples=100, distributed=settings)
    dist = agg.distributed
    assert dist is not None
    updates = _opposed_updates(dist.d)
    vec, members = _transport_round(agg, updates)
    assert members == list(range(1, 9))
    u = updates[1].vector.astype(np.float64)
    along = float(vec @ u / (u @ u))  # weighted: (10 - 26) / 36; uniform: 0
    sd = (dist.noise_std(members) + dist.plan.gamma) / float(np.linalg.norm(u))
    assert abs(along - (10 - 26) / 36) < 6 * sd and 30 * sd < 0.4
    # the weight table is bound into the round config: a client refuses another one
    server = SecureAggServer(agg, list(range(1, 9)))
    other = dataclasses.replace(
        server.config, encoding={**server.config.encoding, "weights": "0" * 64}
    )
    with pytest.raises(RoundAborted, match="refuses the round"):
        SecureAggClient(dist, 1).join(other.to_bytes())
    SecureAggClient(dist, 1).join(server.config_bytes)


def test_run_federated_with_public_weights() -> None:
    import dataclasses

    settings = dataclasses.replace(SETTINGS, rounds=2, weights={c: 1.0 + c for c in range(1, 9)})
    res = run_federated(
        model_fn,
        {cid: loader(cid) for cid in range(1, 9)},
        rounds=2,
        optimizer_fn=lambda p: torch.optim.SGD(p, lr=0.1),
        privacy=None,
        secure=SecureAggConfig(),
        distributed=settings,
        keep_vectors=True,
    )
    for m in res.rounds:
        assert not m.aborted and m.members == list(range(1, 9))
        assert m.reference is not None
        w = np.array([1.0 + c for c in m.members])
        x = np.array([m.updates[c].vector.astype(np.float64) for c in m.members])
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x * np.minimum(1.0, 0.5 / norms)
        assert m.reference == pytest.approx((w @ x) / w.sum())
