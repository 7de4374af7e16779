"""The demo's data: a bundled scikit-learn dataset, a held-out test set, skewed client shares."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader, TensorDataset

from secureagg._exceptions import ConfigError
from secureagg.demo._config import DATASETS

__all__ = ["ClientData", "DemoData", "dirichlet_split", "load_dataset", "make_loaders", "prepare"]

_SPLIT_TRIES = 1000

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ClientData:
    """One simulated hospital's training examples (already standardised)."""

    x: F32
    y: I64

    @property
    def size(self) -> int:
        """Number of training examples."""
        return int(self.y.shape[0])


@dataclass(frozen=True)
class DemoData:
    """Client shares (ids 1..n) and a held-out test set that no client trains on."""

    dataset: str
    class_names: tuple[str, ...]
    clients: dict[int, ClientData]
    x_test: F32
    y_test: I64

    @property
    def n_features(self) -> int:
        """Input width."""
        return int(self.x_test.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of labels."""
        return len(self.class_names)

    def label_counts(self, client_id: int) -> list[int]:
        """How many examples of each class the client holds."""
        y = self.clients[client_id].y
        return [int(np.count_nonzero(y == k)) for k in range(self.n_classes)]


def load_dataset(name: str) -> tuple[F32, I64, tuple[str, ...]]:
    """Features, integer labels and class names of a dataset bundled with scikit-learn."""
    from sklearn import datasets

    if name == "breast-cancer":
        bunch: Any = datasets.load_breast_cancer()
        names = tuple(str(c) for c in bunch.target_names)
    elif name == "digits":
        bunch = datasets.load_digits()
        names = tuple(str(c) for c in bunch.target_names)
    else:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    x = np.asarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    return x, y, names


def dirichlet_split(
    y: I64, n_clients: int, *, skew: float, min_examples: int, rng: np.random.Generator
) -> list[I64]:
    """Indices of ``y`` for each client: per class, shares drawn from Dirichlet(skew).

    Small ``skew`` gives very unequal, label-skewed shares; large ``skew`` tends to an
    even split. Redraws until every client has ``min_examples``; ConfigError if it cannot.
    """
    n = int(y.shape[0])
    if n_clients * min_examples > n:
        raise ConfigError(
            f"{n} training examples cannot give {n_clients} clients {min_examples} each: "
            "lower --clients"
        )
    classes = np.unique(y)
    for _ in range(_SPLIT_TRIES):
        parts: list[list[int]] = [[] for _ in range(n_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(y == c))
            share = rng.dirichlet(np.full(n_clients, skew))
            cuts = np.floor(np.cumsum(share)[:-1] * idx.shape[0]).astype(np.int64)
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].extend(int(i) for i in chunk)
        if min(len(p) for p in parts) >= min_examples:
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise ConfigError(
        f"no split in {_SPLIT_TRIES} draws gave all {n_clients} clients {min_examples} examples "
        f"(skew={skew}): lower --clients or raise --skew"
    )


def _stratified_holdout(y: I64, fraction: float, rng: np.random.Generator) -> tuple[I64, I64]:
    test: list[int] = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        take = max(1, round(fraction * idx.shape[0]))
        test.extend(int(i) for i in idx[:take])
    mask = np.zeros(y.shape[0], dtype=bool)
    mask[test] = True
    return np.flatnonzero(~mask).astype(np.int64), np.flatnonzero(mask).astype(np.int64)


def prepare(
    dataset: str,
    n_clients: int,
    *,
    test_fraction: float,
    skew: float,
    min_examples: int,
    seed: int,
) -> DemoData:
    """Hold out a stratified test set, standardise with training statistics, split the rest.

    The test set is drawn first and never reaches a client. Standardisation uses the
    pooled training mean and deviation (a preprocessing shortcut outside the DP guarantee;
    see docs/demo.md).
    """
    x, y, names = load_dataset(dataset)
    rng = np.random.default_rng([seed, 0xDA7A])
    train, test = _stratified_holdout(y, test_fraction, rng)
    mean = x[train].mean(axis=0)
    scale = x[train].std(axis=0)
    scale[scale == 0] = 1.0
    xs = ((x - mean) / scale).astype(np.float32)
    parts = dirichlet_split(y[train], n_clients, skew=skew, min_examples=min_examples, rng=rng)
    clients = {k + 1: ClientData(xs[train[p]], y[train[p]]) for k, p in enumerate(parts)}
    return DemoData(dataset, names, clients, xs[test], y[test])


def batch_size_for(n: int, sample_rate: float) -> int:
    """ceil(n * sample_rate): Opacus then samples at 1 / ceil(n / batch), not always the rate.

    Not always the same: n = 11, rate 0.1 gives batch 2, 6 batches, rate 1/6; n = 26,
    rate 0.3 gives batch 8, 4 batches, rate 1/4. The trainer accounts for the real rate.
    """
    return max(1, math.ceil(n * sample_rate))


def make_loaders(data: DemoData, sample_rate: float, seed: int) -> dict[int, DataLoader[Any]]:
    """One loader per client; Opacus turns each into Poisson sampling at 1 / len(loader)."""
    loaders: dict[int, DataLoader[Any]] = {}
    for cid, part in data.clients.items():
        ds = TensorDataset(torch.from_numpy(part.x), torch.from_numpy(part.y))
        gen = torch.Generator().manual_seed(seed * 1009 + cid)
        loaders[cid] = DataLoader(
            ds, batch_size=batch_size_for(part.size, sample_rate), shuffle=True, generator=gen
        )
    return loaders
