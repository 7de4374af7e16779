"""bench_distributed_dp's setting: the digits split, the model, central DP-FedAvg's noise
multiplier and the paired-difference summary (see bench_distributed_dp.py)."""

from __future__ import annotations

import math
import statistics

import dp_accounting
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from secureagg.fl import PlainTrainer
from secureagg.privacy import LocalUpdate
from secureagg.privacy.distributed import ORDERS, subsampled_rdp

CLIP, DELTA, LOCAL_LR, LOCAL_EPOCHS = 0.5, 1e-4, 0.5, 5


def split(clients: int) -> tuple[list[TensorDataset], torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    order = np.random.default_rng(0).permutation(len(xtr))
    parts = [
        TensorDataset(
            torch.tensor(xtr[p], dtype=torch.float32), torch.tensor(ytr[p], dtype=torch.long)
        )
        for p in np.array_split(order, clients)
    ]
    return parts, torch.tensor(xte, dtype=torch.float32), torch.tensor(yte)


def model_fn() -> nn.Module:
    return nn.Linear(64, 10)


def accuracy(state: dict[str, torch.Tensor], xte: torch.Tensor, yte: torch.Tensor) -> float:
    logits = xte @ state["weight"].T + state["bias"]
    return float((logits.argmax(1) == yte).float().mean())


def gaussian_z(eps: float, q: float, rounds: int, zhu_wang: bool) -> float:
    """Noise multiplier of the sampled Gaussian reaching eps (bisection)."""

    def eps_of(z: float) -> float:
        if zhu_wang:

            def gauss(a: np.ndarray) -> np.ndarray:
                out: np.ndarray = a / (2 * z * z)
                return out

            rdp = subsampled_rdp(gauss, q) * rounds
            a = np.asarray(ORDERS, dtype=np.float64)
            return float(np.min(rdp + np.log1p(-1 / a) - np.log(DELTA * a) / (a - 1)))
        acc = dp_accounting.rdp.RdpAccountant(list(ORDERS))
        acc.compose(
            dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), rounds
        )
        return float(acc.get_epsilon(DELTA))

    lo, hi = 0.1, 100.0
    while hi - lo > 1e-4:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if eps_of(mid) > eps else (lo, mid)
    return hi


def plain_trainers(parts: list[TensorDataset]) -> list[PlainTrainer]:
    out = []
    for ds in parts:
        m = model_fn()
        out.append(
            PlainTrainer(
                m,
                torch.optim.SGD(m.parameters(), lr=LOCAL_LR),
                DataLoader(ds, batch_size=len(ds)),
                local_epochs=LOCAL_EPOCHS,
            )
        )
    return out


def clipped(u: LocalUpdate) -> np.ndarray:
    v = u.vector.astype(np.float64)
    n = float(np.linalg.norm(v))
    return v * (CLIP / n) if n > CLIP else v


def paired(a: str, b: str, xs: list[float], ys: list[float]) -> None:
    """Print the per-seed differences a - b (points), their mean and a 95% t-interval."""
    from scipy import stats

    diff = [100 * (x - y) for x, y in zip(xs, ys, strict=True)]
    mean = statistics.mean(diff)
    if len(diff) > 1:
        half = stats.t.ppf(0.975, len(diff) - 1) * statistics.stdev(diff) / math.sqrt(len(diff))
        ci = f"95% CI [{mean - half:.2f}, {mean + half:.2f}]"
    else:
        ci = "one seed: no interval"
    print(
        f"{a} - {b}: mean {mean:.2f} points, {ci}, {len(diff)} seeds"
        f" (per seed {' '.join(f'{d:.1f}' for d in diff)})"
    )
