"""Hidden sampling: every client is in every sum with its noise share; its secret coin
decides only whether its update or zeros go in, so neither the wire nor the sum's noise
tells the coin, and the server divides by the fixed q x population."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import secureagg.fl._sampling as sim
from secureagg import ConfigError
from secureagg.fl import DistributedDP, SecureAggConfig, SecureAggregator, run_federated
from secureagg.fl._round import LocalTrainer, run_round
from secureagg.hazmat import ddp_decode
from secureagg.privacy import DistributedLedger, LocalUpdate

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _settings(sampling: str, **kw: object) -> DistributedDP:
    args: dict[str, object] = dict(
        epsilon=8.0, delta=1e-5, update_clip=0.5, rounds=2, bits=20, sample_rate=0.5
    )
    args.update(kw)
    return DistributedDP(sampling=sampling, **args)  # type: ignore[arg-type]


def model_fn() -> nn.Module:
    return nn.Linear(10, 4)


def loader(cid: int) -> DataLoader:
    g = torch.Generator().manual_seed(100 + cid)
    x = torch.randn(16, 10, generator=g)
    return DataLoader(TensorDataset(x, x[:, :4].argmax(1)), batch_size=16)


def _run_hidden(clients: int, threshold: int, rounds: int = 1, **kw: Any) -> Any:
    """run_federated under hidden sampling over clients 1..``clients``."""
    return run_federated(
        model_fn,
        {cid: loader(cid) for cid in range(1, clients + 1)},
        rounds=rounds,
        optimizer_fn=lambda p: torch.optim.SGD(p, lr=0.2),
        privacy=None,
        secure=SecureAggConfig(threshold=threshold),
        distributed=_settings("hidden", rounds=max(2, rounds)),
        **kw,
    )


def test_a_hidden_round_sends_the_same_sizes_whatever_the_coins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sizes = {}
    for heads in (True, False):
        monkeypatch.setattr(sim, "coin", lambda q, heads=heads: heads)
        ledger = DistributedLedger()
        res = _run_hidden(5, 4, distributed_ledger=ledger, capture_client=True)
        m = res.rounds[0]
        assert not m.aborted and m.members == [1, 2, 3, 4, 5]  # every client, every round
        assert ledger.rounds()[0].members == [1, 2, 3, 4, 5]
        assert ledger.rounds()[0].sampling == "hidden"
        assert m.captured is not None
        _, masked, plain = m.captured
        sizes[heads] = (dict(m.client_bytes), masked.shape, masked.dtype, plain.dtype)
    assert sizes[True] == sizes[False]
    assert len(set(sizes[True][0].values())) == 1  # and the same for every client


class _Fixed:
    """A client whose update the observer knows (the DP adversary knows the others' data)."""

    num_examples, last_steps, grad_sample_mode = 1, 0, "none"

    def __init__(self, vector: np.ndarray) -> None:
        self.vector = vector

    def can_train(self) -> bool:
        return True

    def train_round(self, global_state: Mapping[str, torch.Tensor]) -> LocalUpdate:
        return LocalUpdate(self.vector, 1, 1)


D = 1 << 14


def _noise_shares(sampling: str, target_heads: bool, monkeypatch: pytest.MonkeyPatch) -> float:
    """The variance attack: the released sum minus the others' known updates, in shares.

    Client 5's update is zero, so only its participation can show, through the noise.
    """
    settings = _settings(sampling, epsilon=4.0, rounds=1)
    like = {"w": torch.zeros(D)}
    agg = SecureAggregator(
        like, SecureAggConfig(threshold=3), max_clients=5, max_examples=1, distributed=settings
    )
    assert agg.distributed is not None
    rng = np.random.default_rng(7)
    known = {c: (rng.normal(size=D) * 0.3 / math.sqrt(D)).astype(np.float32) for c in range(1, 5)}
    trainers: dict[int, LocalTrainer] = {c: _Fixed(v) for c, v in known.items()}
    trainers[5] = _Fixed(np.zeros(D, dtype=np.float32))
    monkeypatch.setattr(sim, "coin", lambda q: True)
    if sampling == "hidden":  # everyone is in; client 5's own coin picks zeros or its update
        clients: Mapping[int, LocalTrainer] = {
            c: sim.HiddenCoin(t, 0.5, D) for c, t in trainers.items()
        }
        monkeypatch.setattr(sim, "coin", lambda q: target_heads)
        denominator = agg.distributed.denominator
    else:  # the coin decides who joins
        clients = {c: t for c, t in trainers.items() if c != 5 or target_heads}
    out = run_round(clients, {"w": torch.zeros(D)}, aggregator=agg, rng=rng)
    assert out.recovered is not None
    total = out.recovered * (denominator if sampling == "hidden" else len(out.members))
    noise = total - np.sum(list(known.values()), axis=0)
    return float(np.var(noise) / agg.distributed.plan.local_std**2)


def test_the_variance_attack_tells_visible_participation_but_not_a_hidden_coin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # relative standard error of a variance over 2^14 coordinates: sqrt(2 / 2^14) ~ 1.1%
    visible = {h: _noise_shares("visible", h, monkeypatch) for h in (True, False)}
    assert visible[True] == pytest.approx(5, rel=0.06)  # five shares: client 5 took part
    assert visible[False] == pytest.approx(4, rel=0.06)  # four: it did not
    hidden = {h: _noise_shares("hidden", h, monkeypatch) for h in (True, False)}
    assert hidden[True] == pytest.approx(5, rel=0.06)
    assert hidden[False] == pytest.approx(5, rel=0.06)  # five shares either way


def test_the_server_divides_by_the_fixed_public_denominator() -> None:
    settings = _settings("hidden", sample_rate=0.25)
    agg = SecureAggregator(
        model_fn(), SecureAggConfig(threshold=6), max_clients=8, max_examples=1,
        distributed=settings,
    )  # fmt: skip
    enc = agg.distributed
    assert enc is not None and enc.denominator == pytest.approx(0.25 * 8)
    assert enc.public_settings()["denominator"] == pytest.approx(2.0)
    rng = np.random.default_rng(3)
    ups = {c: LocalUpdate(rng.normal(size=enc.d).astype(np.float32) * 0.01, 1, 1) for c in range(8)}
    ups.update({c: LocalUpdate(np.zeros(enc.d, dtype=np.float32), 1, 0) for c in (5, 6, 7)})
    total = sum(
        (enc.encode(u).astype(np.uint64) for u in ups.values()),
        start=np.zeros(enc.length, np.uint64),
    ) % np.uint64(1 << enc.bits)
    total = total.astype(enc.encode(ups[0]).dtype)
    # the same denominator whoever is in the sum: 5 sampled updates or 8 members, it is q N
    for members in (list(range(8)), list(range(7))):
        dec = enc.decode(total, members)
        assert dec.total_examples == pytest.approx(2.0)
        assert np.allclose(dec.average * 2.0, ddp_decode(total, enc.params, enc.seed)[: enc.d])
    ref = agg.reference_average(list(ups.values()), list(range(8)))
    assert np.allclose(ref, np.sum([u.vector for u in ups.values()], axis=0) / 2.0, atol=1e-7)
    assert enc.noise_std(8) == pytest.approx(math.sqrt(8) * enc.plan.local_std / 2.0)


def test_hidden_sampling_plans_with_the_poisson_subsampled_bound() -> None:
    from secureagg.privacy.distributed import plan

    agg = SecureAggregator(
        model_fn(), SecureAggConfig(threshold=6), max_clients=8, max_examples=1,
        distributed=_settings("hidden"),
    )  # fmt: skip
    assert agg.distributed is not None
    want = plan(
        "dgauss", epsilon=8.0, delta=1e-5, clip=0.5, bits=20, n_min=6, d=agg.distributed.d,
        rounds=2, sample_rate=0.5, n_sum=8, amplification="zhu-wang",
    )  # fmt: skip
    assert agg.distributed.plan == want
    assert agg.distributed.epsilon_after(2) <= 8.0 + 1e-6
    with pytest.raises(ConfigError, match="sample_rate"):
        DistributedDP(epsilon=1.0, delta=1e-5, update_clip=1.0, rounds=1, sampling="hidden")
    with pytest.raises(ConfigError, match="sampling"):
        _settings("secret")


def test_run_federated_flips_each_clients_real_coin_every_round() -> None:
    """No coin patched: the OS coins of 8 clients x 4 rounds at q = 1/2 decide who trains.

    Every client is in every sum; a client that trained sent a nonzero update, one that did
    not sent zeros. All 32 coins landing the same way (a never-flipped or constant coin)
    has probability 2 x 2^-32 ~ 5e-10 for real coins.
    """
    ledger = DistributedLedger()
    res = _run_hidden(8, 7, rounds=4, distributed_ledger=ledger, keep_vectors=True)
    trained = []
    for m in res.rounds:
        assert m.members == list(range(1, 9)) and sorted(m.updates) == list(range(1, 9))
        trained += [bool(u.vector.any()) for u in m.updates.values()]
    assert len(trained) == 32 and 0 < sum(trained) < 32
    assert all(r.members == list(range(1, 9)) for r in ledger.rounds())


def test_hidden_settings_are_refused_where_no_coin_is_flipped() -> None:
    """The transport recipes and a bare run_round flip no coin: every real update would go
    in, divided by q N, under a config (and a ledger) claiming hidden sampling."""
    from secureagg.fl import SecureAggClient, SecureAggServer

    agg = SecureAggregator(
        {"w": torch.zeros(8)}, SecureAggConfig(threshold=5), max_clients=6, max_examples=1,
        distributed=_settings("hidden", sample_rate=0.25),
    )  # fmt: skip
    with pytest.raises(ConfigError, match="run_federated"):
        SecureAggServer(agg, range(1, 7))
    with pytest.raises(ConfigError, match="run_federated"):
        SecureAggClient(agg.client_encoder(), 1)
    plain: dict[int, LocalTrainer] = {c: _Fixed(np.full(8, 0.3, np.float32)) for c in range(1, 7)}
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="run_federated"):
        run_round(plain, {"w": torch.zeros(8)}, aggregator=agg, rng=rng)
    # the same with a coin in every client runs; visible settings run everywhere
    coins = {c: sim.HiddenCoin(t, 0.25, 8) for c, t in plain.items()}
    assert not run_round(coins, {"w": torch.zeros(8)}, aggregator=agg, rng=rng).aborted
    visible = SecureAggregator(
        {"w": torch.zeros(8)}, SecureAggConfig(threshold=5), max_clients=6, max_examples=1,
        distributed=_settings("visible", sample_rate=0.25),
    )  # fmt: skip
    SecureAggServer(visible, range(1, 7))
    SecureAggClient(visible.client_encoder(), 1)
    assert not run_round(plain, {"w": torch.zeros(8)}, aggregator=visible, rng=rng).aborted


def test_the_run_report_does_not_show_the_coins(monkeypatch: pytest.MonkeyPatch) -> None:
    """All heads vs all tails: every per-client figure the round report gives (outside the
    vectors kept on request) is free of the coin. Training moves the clock on by 10^6 s
    (a fake clock: no sleep, nothing to flake), so a report that counted it would show each
    sampled client as at least 10^9 ms; the protocol's own part is real milliseconds."""
    from secureagg.fl import _plain

    real = _plain.PlainTrainer.train_round
    real_clock = time.perf_counter
    jumped = [0.0]

    def clock() -> float:
        return real_clock() + jumped[0]

    def slow(self: _plain.PlainTrainer, state: Mapping[str, torch.Tensor]) -> LocalUpdate:
        jumped[0] += 1e6  # training "takes" 10^6 s on every perf_counter read across it
        return real(self, state)

    monkeypatch.setattr(time, "perf_counter", clock)
    monkeypatch.setattr(_plain.PlainTrainer, "train_round", slow)
    seen = {}
    for heads in (True, False):
        monkeypatch.setattr(sim, "coin", lambda q, heads=heads: heads)
        before = jumped[0]  # the clock only moves forward
        res = _run_hidden(5, 4)
        m = res.rounds[0]
        assert jumped[0] - before == (5e6 if heads else 0.0)  # only sampled clients train
        # the protocol part only: no client's time spans a training (that would be >= 10^9 ms)
        assert sorted(m.client_ms) == [1, 2, 3, 4, 5]
        assert all(ms < 1e6 for ms in m.client_ms.values()), m.client_ms
        seen[heads] = (m.participants, m.members, m.dropped, m.dropouts, m.client_bytes,
                       m.update_norms, m.grad_sample_mode, m.epsilon)  # fmt: skip
    assert seen[True] == seen[False]
    assert seen[True][5] == {}  # no update norms: a zero norm is a tails coin


def test_run_round_refuses_a_hidden_coin_that_differs_from_the_settings() -> None:
    """A coin of another bias than the settings' (the ledger's amplification and the q N
    denominator assume the settings' rate), a coin outside hidden sampling, or a coin of
    another length (only unsampled clients' zeros would fail to encode) is refused."""
    agg = SecureAggregator(
        {"w": torch.zeros(8)}, SecureAggConfig(threshold=5), max_clients=6, max_examples=1,
        distributed=_settings("hidden", sample_rate=0.25),
    )  # fmt: skip
    visible = SecureAggregator(
        {"w": torch.zeros(8)}, SecureAggConfig(threshold=5), max_clients=6, max_examples=1,
        distributed=_settings("visible", sample_rate=0.25),
    )  # fmt: skip
    plain = {c: _Fixed(np.full(8, 0.3, np.float32)) for c in range(1, 7)}
    rng = np.random.default_rng(0)

    def coins(rate: float, d: int = 8, last: float | None = None) -> dict[int, LocalTrainer]:
        out: dict[int, LocalTrainer] = {c: sim.HiddenCoin(t, rate, d) for c, t in plain.items()}
        if last is not None:
            out[6] = sim.HiddenCoin(plain[6], last, d)
        return out

    state = {"w": torch.zeros(8)}
    for bad in (coins(0.5), coins(0.25, last=0.3), coins(1.0)):
        with pytest.raises(ConfigError, match="sample_rate"):
            run_round(bad, state, aggregator=agg, rng=rng)
    with pytest.raises(ConfigError, match="sends 9 zeros"):
        run_round(coins(0.25, d=9), state, aggregator=agg, rng=rng)
    for other in (visible, None):
        with pytest.raises(ConfigError, match="not under"):
            run_round(coins(0.25), state, aggregator=other, rng=rng)
    assert not run_round(coins(0.25), state, aggregator=agg, rng=rng).aborted


def test_hidden_sampling_refuses_weights_for_ids_that_are_not_clients() -> None:
    """The weight table is the population under hidden sampling (the sum is divided by q x
    its total weight): an id beyond the clients would bias every decoded mean down."""
    kw: dict[str, object] = dict(
        rounds=1,
        optimizer_fn=lambda p: torch.optim.SGD(p, lr=0.2),
        privacy=None,
        secure=SecureAggConfig(threshold=3),
    )
    loaders = {cid: loader(cid) for cid in range(1, 5)}
    table = {1: 1.0, 2: 2.0, 3: 1.0, 4: 1.0}
    with pytest.raises(ConfigError, match=r"ids \[7, 9\].*not clients"):
        run_federated(
            model_fn, loaders, distributed=_settings("hidden", weights={**table, 9: 1.0, 7: 3.0}),
            **kw,  # type: ignore[arg-type]
        )  # fmt: skip
    with pytest.raises(ConfigError, match=r"clients \[4\] have no public weight"):
        run_federated(
            model_fn, loaders, distributed=_settings("hidden", weights={1: 1.0, 2: 1.0, 3: 1.0}),
            **kw,  # type: ignore[arg-type]
        )  # fmt: skip
    # exactly the clients: runs; visible sampling keeps a larger table (its divisor is the
    # sampled members' weight, not the table's)
    for sampling, weights in (("hidden", table), ("visible", {**table, 9: 1.0})):
        res = run_federated(
            model_fn, loaders, distributed=_settings(sampling, weights=weights),
            **kw,  # type: ignore[arg-type]
        )  # fmt: skip
        assert len(res.rounds) == 1
