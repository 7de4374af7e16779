"""End to end through the simulator: what the server sees, weighted sums, costs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from secureagg import ConfigError, RoundAborted
from secureagg.hazmat import dequantize_sum, make_config, quantize
from secureagg.protocol import Stage, choose_parameters, simulate_round

BITS = 16


def test_masked_vector_of_an_all_zero_input_looks_uniform() -> None:
    d, n = 40_000, 6
    rng = np.random.default_rng(3)
    inputs = {u: rng.integers(0, 2**BITS, d, dtype=np.uint16) for u in range(1, n + 1)}
    inputs[2] = np.zeros(d, np.uint16)
    res = simulate_round(inputs, bits=BITS, capture=[2])
    seen = res.captured[2]
    bins = 64
    counts = np.bincount(seen >> (BITS - 6), minlength=bins)
    assert chisquare(counts).pvalue > 1e-6
    low = np.bincount(seen & 63, minlength=bins)  # the low bits too
    assert chisquare(low).pvalue > 1e-6
    # the same statistic flags a structured vector at once (so the test can fail)
    structured = (np.arange(d) % 2**BITS).astype(np.uint16) // 3
    assert chisquare(np.bincount(structured >> (BITS - 6), minlength=bins)).pvalue < 1e-6
    total = sum(inputs[u].astype(np.uint64) for u in inputs) % 2**BITS
    assert np.array_equal(res.total, total)


def test_weighted_average_with_the_weight_as_a_masked_coordinate() -> None:
    """FedAvg by example count: the client appends its weight; the server sees only sums."""
    n, d = 5, 50
    rng = np.random.default_rng(4)
    updates = {u: rng.uniform(-0.5, 0.5, d) for u in range(1, n + 1)}
    weights = {u: float(rng.integers(1, 100)) for u in updates}
    scale = 1.0 / 100  # weights are bounded by 100 examples, updates by 0.5
    cfg = make_config(max_clients=n, clip=1.0, frac_bits=16)
    encoded = {
        u: quantize(np.append(weights[u] * scale * updates[u], weights[u] * scale), cfg, rng)
        for u in updates
    }
    res = simulate_round(encoded, bits=cfg.bits, capture=[1], dropouts={Stage.MASKED_INPUT: [5]})
    summed = dequantize_sum(res.total, cfg)
    members = sorted(res.survivors)
    assert members == [1, 2, 3, 4]
    want = sum(weights[u] * updates[u] for u in members) / sum(weights[u] for u in members)
    got = summed[:-1] / summed[-1]
    assert np.max(np.abs(got - want)) < 1e-3
    # the weight travelled masked: the server's copy of client 1's last coordinate is not it
    assert int(res.captured[1][-1]) != int(encoded[1][-1])


def test_signed_round_and_costs() -> None:
    n, d = 8, 1000
    inputs = {u: np.full(d, u, np.uint16) for u in range(1, n + 1)}
    res = simulate_round(inputs, bits=BITS, signed=True, dropouts={Stage.UNMASK: [3]})
    assert res.survivors == frozenset(range(1, n + 1))
    assert np.array_equal(res.total, np.full(d, sum(range(1, n + 1)), np.uint16))
    assert res.dropouts == {3: Stage.UNMASK}
    for cost in res.client_cost.values():
        assert cost.seconds > 0 and cost.bytes_received > 0
        # d words of 2 bytes, plus at most 400 bytes per neighbour (signed mode)
        assert 2 * d < cost.bytes_sent <= 2 * d + 400 * (n - 1)
    assert res.server_cost.bytes_received == sum(c.bytes_sent for c in res.client_cost.values())


def test_sparse_round_with_helper_parameters_and_late_dropouts() -> None:
    n = 60
    p = choose_parameters(n, dropout_rate=0.1, corrupt_fraction=0.05)
    inputs = {u: np.full(4, u, np.uint16) for u in range(1, n + 1)}
    late = list(range(1, n + 1, 10))
    res = simulate_round(
        inputs,
        bits=BITS,
        degree=p.degree,
        threshold=p.threshold,
        dropouts={Stage.UNMASK: late},
        allow_minority_threshold=True,  # the helper picks t for a semi-honest server
    )
    assert res.survivors == frozenset(range(1, n + 1))
    assert int(res.total[0]) == sum(range(1, n + 1)) % 2**BITS


def test_too_few_clients_abort_cleanly() -> None:
    inputs = {u: np.ones(3, np.uint16) for u in range(1, 6)}
    with pytest.raises(RoundAborted):
        simulate_round(inputs, bits=BITS, dropouts={Stage.MASKED_INPUT: [1, 2, 3]})
    with pytest.raises(ConfigError):
        simulate_round({1: np.ones(3, np.uint16)}, bits=BITS)


@pytest.mark.parametrize(
    ("n", "degree", "bits"), [(12, None, 32), (20, 6, 16), (9, None, 64), (10, None, 21), (8, 4, 5)]
)
def test_bytes_per_client_within_the_stated_bound(n: int, degree: int | None, bits: int) -> None:
    """docs/protocol.md: sent <= ceil(b*d/8) + 234 B per neighbour + 380 B; received <=
    241k + 300; a Harary graph's commit-reveal adds 100 B sent and 72 B per client in the
    round + 43 B received. The masked vector travels in exactly b bits per element."""
    d = 500
    dtype = np.uint16 if bits <= 16 else np.uint32 if bits <= 32 else np.uint64
    packed = (bits * d + 7) // 8
    inputs = {u: np.full(d, u % 2**bits, dtype) for u in range(1, n + 1)}
    res = simulate_round(inputs, bits=bits, degree=degree)
    k = n - 1 if degree is None else degree
    sent_extra, received_extra = (0, 0) if degree is None else (100, 72 * n + 43)
    for cost in res.client_cost.values():
        assert packed < cost.bytes_sent <= packed + 234 * k + 380 + sent_extra
        assert cost.bytes_received <= 241 * k + 300 + received_extra
