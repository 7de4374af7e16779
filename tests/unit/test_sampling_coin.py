"""The sampling coins are really flipped, with bias q, from the OS CSPRNG (``secrets``):
``coin()`` (visible and hidden sampling) and ``HiddenCoin`` (hidden sampling's client).

Every check below on real coins has a false-failure probability under 1e-8 (stated at
each), so the tests are not flaky."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
import pytest
import torch

import secureagg.fl._sampling as sampling
from secureagg.fl._sampling import HiddenCoin, coin
from secureagg.privacy import LocalUpdate

SCALE = 1 << 53


def test_the_coin_is_decided_by_the_os_csprng(monkeypatch: pytest.MonkeyPatch) -> None:
    """coin(q) is True exactly when secrets.randbelow(2^53) falls below floor(q 2^53)."""
    draws: list[int] = []

    def fixed(value: int) -> object:
        def randbelow(k: int) -> int:
            draws.append(k)
            return value

        return randbelow

    for q in (0.25, 0.5, 1e-3):
        cut = math.floor(q * SCALE)
        for value, heads in ((0, True), (cut - 1, True), (cut, False), (SCALE - 1, False)):
            monkeypatch.setattr(sampling.secrets, "randbelow", fixed(value))
            assert coin(q) is heads, (q, value)
    assert draws == [SCALE] * len(draws) and len(draws) == 12  # one 53-bit draw per coin


def test_real_coins_have_bias_q_and_do_not_repeat() -> None:
    n, q = 20_000, 0.25
    heads = sum(coin(q) for _ in range(n))
    sd = math.sqrt(n * q * (1 - q))  # 61.2
    # binomial: outside 6 sd with probability < 2e-9
    assert abs(heads - q * n) < 6 * sd
    # a seeded or constant coin repeats: two runs of 64 fair coins agree with prob. 2^-64
    assert [coin(0.5) for _ in range(64)] != [coin(0.5) for _ in range(64)]


class _Spy:
    """A trainer that counts the rounds it was asked to train."""

    num_examples, last_steps, grad_sample_mode = 3, 0, "none"

    def __init__(self) -> None:
        self.calls = 0

    def can_train(self) -> bool:
        return True

    def train_round(self, global_state: Mapping[str, torch.Tensor]) -> LocalUpdate:
        self.calls += 1
        self.last_steps = 7
        return LocalUpdate(np.ones(4, np.float32), 3, 7, norm=2.0)


def test_the_hidden_coin_is_flipped_each_round_with_bias_q() -> None:
    spy = _Spy()
    client = HiddenCoin(spy, 0.25, 4)
    n = 4000
    outs = [client.train_round({}) for _ in range(n)]
    sd = math.sqrt(n * 0.25 * 0.75)  # 27.4
    # binomial: outside 6 sd with probability < 2e-9 (an unflipped coin trains 4000 times,
    # an inverted one about 3000, a constant seeded one 0 or 4000)
    assert abs(spy.calls - 0.25 * n) < 6 * sd
    trained = [u for u in outs if u.vector.any()]
    assert len(trained) == spy.calls
    zeros = [u for u in outs if not u.vector.any()]
    assert all(u.vector.shape == (4,) and u.vector.dtype == np.float32 for u in zeros)
    assert all(u.num_examples == 3 for u in outs)  # the same weight whatever the coin


def test_the_hidden_client_reports_no_steps() -> None:
    spy = _Spy()
    client = HiddenCoin(spy, 0.5, 4)
    for _ in range(64):  # both sides of the coin with probability 1 - 2^-63
        client.train_round({})
        assert client.last_steps == 0  # the inner trainer's 7 would show a heads coin
    assert 0 < spy.calls < 64


class _Broken:
    """A trainer whose training fails one way or another (only a sampled client trains)."""

    num_examples, last_steps, grad_sample_mode = 3, 0, "none"

    def __init__(self, how: str) -> None:
        self.how = how

    def can_train(self) -> bool:
        return True

    def train_round(self, global_state: Mapping[str, torch.Tensor]) -> LocalUpdate:
        vector = np.full(8, 0.1, np.float32)
        if self.how == "raises":
            raise RuntimeError("out of memory")
        if self.how == "nan":
            vector[3] = np.nan
        if self.how == "inf":
            vector[0] = -np.inf
        if self.how == "short":
            vector = vector[:5]
        return LocalUpdate(vector, 3, 1)


@pytest.mark.parametrize("how", ["raises", "nan", "inf", "short"])
def test_a_sampled_client_whose_training_fails_sends_zeros_like_an_unsampled_one(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, only a sampled client could fail (its error, or the encoder refusing a
    non-finite update, ended its round): its failure showed its coin. Now the round goes on
    as if the coin said no, with a warning on the client's side only."""
    from secureagg.fl import DistributedDP, SecureAggConfig, SecureAggregator
    from secureagg.fl._round import LocalTrainer, run_round

    settings = DistributedDP(
        epsilon=8.0, delta=1e-5, update_clip=0.5, rounds=2, bits=20, sample_rate=0.5,
        sampling="hidden",
    )  # fmt: skip
    agg = SecureAggregator(
        {"w": torch.zeros(8)}, SecureAggConfig(threshold=4), max_clients=5, max_examples=3,
        distributed=settings,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    outcomes = {}
    for heads in (True, False):
        monkeypatch.setattr(sampling, "coin", lambda q, heads=heads: heads)
        inner: dict[int, LocalTrainer] = {c: _Broken("ok") for c in range(1, 5)}
        inner[5] = _Broken(how)
        clients: dict[int, LocalTrainer] = {c: HiddenCoin(t, 0.5, 8) for c, t in inner.items()}
        if heads:
            with pytest.warns(RuntimeWarning, match="sampled but .*zero update"):
                out = run_round(clients, {"w": torch.zeros(8)}, aggregator=agg, rng=rng)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)  # tails: nothing to warn of
                out = run_round(clients, {"w": torch.zeros(8)}, aggregator=agg, rng=rng)
        assert not out.aborted and out.members == [1, 2, 3, 4, 5]
        assert out.trained[5].vector.shape == (8,) and not out.trained[5].vector.any()
        assert out.trained[5].num_examples == 3
        outcomes[heads] = (out.members, out.dropped, out.dropouts, out.client_bytes)
    assert outcomes[True] == outcomes[False]
