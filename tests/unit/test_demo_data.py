"""The demo's data: held-out test set, skewed client split, loaders' sample rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secureagg import ConfigError
from secureagg.demo import prepare
from secureagg.demo._data import batch_size_for, dirichlet_split, load_dataset, make_loaders


@pytest.mark.parametrize(
    ("name", "shape", "classes"), [("breast-cancer", (569, 30), 2), ("digits", (1797, 64), 10)]
)
def test_bundled_datasets_load_without_download(
    name: str, shape: tuple[int, int], classes: int
) -> None:
    x, y, names = load_dataset(name)
    assert x.shape == shape and x.dtype == np.float32
    assert y.shape == (shape[0],) and set(np.unique(y)) == set(range(classes))
    assert len(names) == classes


def test_unknown_dataset_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(30, 300),
    classes=st.integers(2, 5),
    clients=st.integers(2, 12),
    skew=st.floats(0.05, 50.0),
    min_examples=st.integers(1, 8),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_is_a_partition_meeting_the_minimum(
    n: int, classes: int, clients: int, skew: float, min_examples: int, seed: int
) -> None:
    y = np.random.default_rng(seed).integers(0, classes, size=n).astype(np.int64)
    try:
        parts = dirichlet_split(
            y, clients, skew=skew, min_examples=min_examples, rng=np.random.default_rng(seed)
        )
    except ConfigError as exc:
        assert "lower --clients" in str(exc)
        return
    assert len(parts) == clients
    joined = np.concatenate(parts)
    assert np.array_equal(np.sort(joined), np.arange(n))  # disjoint and complete
    assert min(p.size for p in parts) >= min_examples


def test_split_refuses_too_many_clients() -> None:
    y = np.zeros(20, dtype=np.int64)
    with pytest.raises(ConfigError, match="cannot give 5 clients 10 each"):
        dirichlet_split(y, 5, skew=1.0, min_examples=10, rng=np.random.default_rng(0))


def test_small_skew_gives_unequal_label_skewed_shares() -> None:
    data = prepare("breast-cancer", 8, test_fraction=0.25, skew=0.3, min_examples=10, seed=3)
    sizes = [c.size for c in data.clients.values()]
    assert max(sizes) >= 2 * min(sizes)
    positive = [data.label_counts(c)[1] / data.clients[c].size for c in data.clients]
    assert max(positive) - min(positive) > 0.3


def test_test_set_is_held_out_and_standardised_with_training_statistics() -> None:
    data = prepare("breast-cancer", 8, test_fraction=0.25, skew=1.0, min_examples=10, seed=0)
    train_x = np.concatenate([c.x for c in data.clients.values()])
    assert train_x.shape[0] + data.x_test.shape[0] == 569
    assert abs(data.x_test.shape[0] - 0.25 * 569) <= 2
    # no test row appears among the training rows
    train_rows = {row.tobytes() for row in train_x}
    assert not any(row.tobytes() in train_rows for row in data.x_test)
    # standardised with the training pool: its mean is 0 and deviation 1, the test set's is not
    assert np.allclose(train_x.mean(axis=0), 0.0, atol=1e-4)
    assert np.allclose(train_x.std(axis=0), 1.0, atol=1e-3)
    assert not np.allclose(data.x_test.mean(axis=0), 0.0, atol=1e-3)


def test_same_seed_same_split_other_seed_other_split() -> None:
    a = prepare("digits", 5, test_fraction=0.2, skew=1.0, min_examples=10, seed=7)
    b = prepare("digits", 5, test_fraction=0.2, skew=1.0, min_examples=10, seed=7)
    c = prepare("digits", 5, test_fraction=0.2, skew=1.0, min_examples=10, seed=8)
    assert all(np.array_equal(a.clients[k].y, b.clients[k].y) for k in a.clients)
    assert np.array_equal(a.x_test, b.x_test)
    assert not all(np.array_equal(a.clients[k].y, c.clients[k].y) for k in a.clients)


@pytest.mark.parametrize("rate", [1.0, 0.5, 0.25, 0.1])
def test_loaders_give_every_client_the_asked_sample_rate(rate: float) -> None:
    data = prepare("breast-cancer", 4, test_fraction=0.25, skew=5.0, min_examples=40, seed=1)
    loaders = make_loaders(data, rate, seed=1)
    for cid, loader in loaders.items():
        n = data.clients[cid].size
        assert loader.batch_size == batch_size_for(n, rate)
        assert len(loader) == math.ceil(1 / rate)  # Opacus samples at 1 / len(loader)
