"""The secure path's average equals the plain weighted average within the promised bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from secureagg import ConfigError
from secureagg.fl import SecureAggConfig, SecureAggregator, plain_average, run_federated
from secureagg.privacy import LocalUpdate, PrivacyConfig, PrivateTrainer, parameters_of
from secureagg.protocol import Stage

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def model_fn() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 4))


def data(cid: int, n: int) -> DataLoader:
    g = torch.Generator().manual_seed(100 + cid)
    x = torch.randn(n, 10, generator=g)
    return DataLoader(TensorDataset(x, x[:, :4].argmax(1)), batch_size=16)


@pytest.fixture(scope="module")
def opacus_updates() -> tuple[dict[str, torch.Tensor], dict[int, LocalUpdate]]:
    torch.manual_seed(0)
    server = parameters_of(model_fn())
    updates = {}
    for cid, n in {1: 64, 2: 96, 3: 48, 4: 80, 5: 32}.items():
        model = model_fn()
        t = PrivateTrainer(
            model,
            torch.optim.SGD(model.parameters(), lr=0.5),
            data(cid, n),
            noise_multiplier=0.8,
            update_clip=0.5,
        )
        updates[cid] = t.train_round(server)
    return server, updates


@pytest.mark.parametrize(
    "stage", [None, Stage.ADVERTISE, Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASK]
)
def test_secure_average_matches_plain_on_opacus_updates(
    opacus_updates: tuple[dict[str, torch.Tensor], dict[int, LocalUpdate]], stage: Stage | None
) -> None:
    server, updates = opacus_updates
    agg = SecureAggregator(
        server, SecureAggConfig(), max_clients=5, max_examples=96, update_clip=0.5
    )
    rng = np.random.default_rng(7)
    encoded = {cid: agg.encode(u, rng) for cid, u in updates.items()}
    dropouts = {} if stage is None else {stage: [3]}
    out = agg.simulate(encoded, dropouts=dropouts)
    expect = (
        [1, 2, 4, 5]
        if stage in (Stage.ADVERTISE, Stage.SHARE_KEYS, Stage.MASKED_INPUT)
        else [1, 2, 3, 4, 5]
    )
    assert out.members == expect
    plain = plain_average([updates[c] for c in expect])
    err = float(np.max(np.abs(out.vector - plain)))
    assert err <= out.error_bound < 1e-3
    assert out.total_examples == pytest.approx(len(expect), abs=1e-3)  # uniform: clients
    assert set(out.average) == set(server)
    for name, t in out.average.items():
        assert t.shape == server[name].shape
    # the update really is Opacus-trained and not trivially zero
    assert min(np.linalg.norm(u.vector) for u in updates.values()) > 1e-3


def test_client_encoder_is_the_client_side_of_the_same_encoding(
    opacus_updates: tuple[dict[str, torch.Tensor], dict[int, LocalUpdate]],
) -> None:
    server, updates = opacus_updates
    agg = SecureAggregator(server, max_clients=5, max_examples=96, update_clip=0.5)
    encoder = agg.client_encoder()
    assert (encoder.bits, encoder.length) == (agg.encoder.bits, agg.encoder.length)
    encoded = {cid: encoder.encode(u) for cid, u in updates.items()}  # the OS seeds rounding
    out = agg.simulate(encoded)
    plain = plain_average(list(updates.values()))
    assert float(np.max(np.abs(out.vector - plain))) <= out.error_bound


def test_model_shape_mismatch_is_a_config_error(
    opacus_updates: tuple[dict[str, torch.Tensor], dict[int, LocalUpdate]],
) -> None:
    server, updates = opacus_updates
    small = parameters_of(nn.Linear(10, 4))
    agg = SecureAggregator(small, max_clients=5, max_examples=96)
    with pytest.raises(ConfigError, match="models differ"):
        agg.encode(updates[1], np.random.default_rng())
    good = SecureAggregator(server, max_clients=5, max_examples=96)
    with pytest.raises(ConfigError, match="models differ"):
        good.simulate({1: np.zeros(3, dtype=np.uint32), 2: np.zeros(3, dtype=np.uint32)})


def test_run_federated_reports_error_within_bound_and_captures_masked_input() -> None:
    ids = (0, 7, 9, 11, 12)  # any ids: mapped to protocol ids 1..n
    loaders = {cid: data(cid, 48) for cid in ids}
    res = run_federated(
        model_fn,
        loaders,
        rounds=3,
        optimizer_fn=lambda p: torch.optim.SGD(p, lr=0.3),
        privacy=PrivacyConfig(noise_multiplier=1.0, update_clip=0.5),
        secure=SecureAggConfig(),
        dropout_rate=1.0,
        seed=5,
        capture_client=True,
    )
    for m in res.rounds:
        assert m.error_bound > 0 and m.max_abs_error <= m.error_bound
        assert len(m.members) >= 4 and set(m.members) <= set(ids)
        assert len(m.dropped) <= 1
        assert all(why.startswith("dropout:") for why in m.dropped.values())
        # dropout_rate 1: every round lists its dropout, including one at unmask (a member)
        [(who, stage)] = m.dropouts.items()
        assert m.in_sum(who) == (stage == "unmask") == (who in m.members)
        assert m.dropped == ({} if stage == "unmask" else {who: f"dropout:{stage}"})
        assert m.bits is not None and m.server_ms > 0
        assert set(m.client_bytes) == set(m.participants)
        assert m.captured is not None
        cid, masked, true = m.captured
        assert cid in m.members
        assert masked.shape == true.shape and not np.array_equal(masked, true)


class Canned:
    """A client whose every round returns the same update."""

    def __init__(self, u: LocalUpdate) -> None:
        self.u, self.num_examples, self.last_steps, self.grad_sample_mode = u, 1, 1, "x"

    def can_train(self) -> bool:
        return True

    def train_round(self, global_state: dict[str, torch.Tensor]) -> LocalUpdate:
        return self.u


@pytest.mark.parametrize("stage", [Stage.ADVERTISE, Stage.MASKED_INPUT, Stage.UNMASK])
def test_run_round_lists_every_dropout_with_its_stage(
    opacus_updates: tuple[dict[str, torch.Tensor], dict[int, LocalUpdate]], stage: Stage
) -> None:
    from secureagg.fl import run_round

    server, updates = opacus_updates
    agg = SecureAggregator(server, max_clients=5, max_examples=96, update_clip=0.5)
    clients = {c: Canned(u) for c, u in updates.items()}
    out = run_round(
        clients, server, aggregator=agg, dropout=(3, stage), rng=np.random.default_rng()
    )
    names = {
        Stage.ADVERTISE: "advertise",
        Stage.SHARE_KEYS: "share-keys",
        Stage.MASKED_INPUT: "masked-input",
        Stage.CONSISTENCY: "consistency",
        Stage.UNMASK: "unmask",
    }
    name = names[stage]  # the Flower tags' names (test_flower_records): one name per stage
    assert out.dropouts == {3: name}
    if stage is Stage.UNMASK:  # input already sent: a member, not "dropped"
        assert out.members == [1, 2, 3, 4, 5] and out.dropped == {}
    else:
        assert out.members == [1, 2, 4, 5] and out.dropped == {3: f"dropout:{name}"}


def test_an_aborted_round_leaves_the_model_unchanged_and_says_why(
    opacus_updates: tuple[dict[str, torch.Tensor], dict[int, LocalUpdate]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from secureagg import RoundAborted
    from secureagg.fl import run_round

    server, updates = opacus_updates
    agg = SecureAggregator(server, max_clients=5, max_examples=96, update_clip=0.5)

    def abort(*a: object, **k: object) -> None:
        raise RoundAborted("too few")

    monkeypatch.setattr(agg, "simulate", abort)
    clients = {c: Canned(u) for c, u in updates.items()}
    out = run_round(
        clients, server, aggregator=agg, dropout=(2, Stage.SHARE_KEYS), rng=np.random.default_rng()
    )
    assert out.aborted and out.average is None and out.members == []
    assert out.dropped == {
        1: "aborted",
        2: "dropout:share-keys",
        3: "aborted",
        4: "aborted",
        5: "aborted",
    }
    assert out.dropouts == {2: "share-keys"}  # the injected dropout, not the aborted rest


def test_secure_aggregation_without_dp_matches_plain_fedavg() -> None:
    loaders = {cid: data(cid, 32 + 8 * cid) for cid in range(1, 6)}
    kw = {"rounds": 2, "optimizer_fn": lambda p: torch.optim.SGD(p, lr=0.1), "privacy": None}
    secure = run_federated(model_fn, loaders, secure=SecureAggConfig(frac_bits=20), **kw)
    plain = run_federated(model_fn, loaders, secure=None, **kw)
    assert secure.ledger is None and plain.ledger is None
    for m in secure.rounds:
        assert m.members == [1, 2, 3, 4, 5] and m.epsilon == {}
        assert 0 < m.max_abs_error <= m.error_bound
    a = torch.cat([p.detach().reshape(-1) for p in secure.model.parameters()])
    b = torch.cat([p.detach().reshape(-1) for p in plain.model.parameters()])
    assert float((a - b).abs().max()) < 1e-3  # same seeds, same data: same run up to rounding
