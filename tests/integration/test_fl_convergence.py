"""Federated DP + secure aggregation learns sklearn's digits about as well as plain FedAvg."""

from __future__ import annotations

import math

import dp_accounting as dpa
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from secureagg.fl import FederatedResult, SecureAggConfig, run_federated
from secureagg.privacy import PrivacyConfig, PrivacyLedger

# Stated setting: 5 clients (~287 examples each), 15 rounds, 1 local epoch, expected batch
# 128 (Poisson), noise 3.0, per-example clip 1.0, update L2 clip 10.0, delta 1e-5:
# epsilon 3.40 per client (dp-accounting PLD, the headline accountant; RDP says 3.72). The
# seed fixes the split and initialisation only: the DP noise is fresh every run, so the
# private accuracy varies from run to run (see the test's docstring).
ROUNDS, BATCH, NOISE, DELTA = 15, 128, 3.0, 1e-5
TRAIN_SIZES = [len(p) for p in np.array_split(np.arange(1797 - 360), 5)]  # digits minus test


def epsilon_stated() -> float:
    """The stated epsilon from dp-accounting's own PLD accountant (its default, finer
    discretisation), not from secureagg's code.

    Opacus's Poisson loader samples each example with q = 1/len(loader) and takes 1/q steps
    per epoch, so a client takes ceil(n/128) steps per round at q = 1/ceil(n/128).
    """
    epsilons = []
    for n in TRAIN_SIZES:
        batches = math.ceil(n / BATCH)
        accountant = dpa.pld.PLDAccountant()
        event = dpa.PoissonSampledDpEvent(1 / batches, dpa.GaussianDpEvent(NOISE))
        accountant.compose(event, ROUNDS * batches)
        epsilons.append(accountant.get_epsilon(DELTA))
    return max(epsilons)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _federation(dp: bool) -> FederatedResult:
    x, y = load_digits(return_X_y=True)
    xt = torch.tensor(x / 16.0, dtype=torch.float32)
    yt = torch.tensor(y)
    assert len(xt) == 1797
    perm = torch.randperm(len(xt), generator=torch.Generator().manual_seed(0))
    test, train = perm[:360], perm[360:]
    loaders = {
        i + 1: DataLoader(TensorDataset(xt[p], yt[p]), batch_size=BATCH, shuffle=True)
        for i, p in enumerate(np.array_split(train.numpy(), 5))
    }

    def accuracy(model: nn.Module) -> float:
        return float((model(xt[test]).argmax(1) == yt[test]).float().mean())

    return run_federated(
        lambda: nn.Sequential(nn.Linear(64, 10)),
        loaders,
        rounds=ROUNDS,
        optimizer_fn=lambda p: torch.optim.SGD(p, lr=3.0),
        privacy=PrivacyConfig(
            noise_multiplier=NOISE, max_grad_norm=1.0, update_clip=10.0, delta=DELTA
        )
        if dp
        else None,
        secure=SecureAggConfig() if dp else None,
        evaluate=accuracy,
        ledger=PrivacyLedger(accountants=("dpa_pld",)) if dp else None,
        seed=0,
    )


def test_dp_secure_run_is_within_7_points_of_the_plain_run() -> None:
    """With fresh noise every run, 11 runs on 2026-12-04 gave 0.878 to 0.911 against 0.931
    (gap 2.0 to 5.3 points, mean 3.1): 7 points leaves room for the spread, and a run whose
    DP or aggregation broke learning still fails."""
    private = _federation(dp=True)
    plain = _federation(dp=False)
    acc_private = private.rounds[-1].accuracy
    acc_plain = plain.rounds[-1].accuracy
    assert acc_private is not None and acc_plain is not None
    eps = max(private.rounds[-1].epsilon.values())
    print(f"digits: DP+secure {acc_private:.3f} vs plain {acc_plain:.3f} at epsilon {eps:.2f}")
    assert acc_plain > 0.9  # the task is learnt at all
    assert acc_private >= acc_plain - 0.07
    stated = epsilon_stated()
    assert stated == pytest.approx(3.40, abs=0.005)  # the figure docs/privacy.md states
    assert stated <= eps <= stated + 1e-3  # ours: coarser, pessimistic discretisation
    assert all(m.max_abs_error <= m.error_bound for m in private.rounds)
    assert all(m.members == [1, 2, 3, 4, 5] for m in private.rounds)
