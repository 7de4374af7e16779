"""Distributed-DP integer pipeline: rotation, conditional rounding, params, real secure sums."""

from __future__ import annotations

import math
import os
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import hadamard

from secureagg import ConfigError, DecodeError
from secureagg.hazmat import (
    BETA,
    DDPParams,
    NoiseStream,
    ddp_decode,
    ddp_encode,
    fwht,
    padded_length,
    rotation_signs,
    rounded_l2_bound,
)
from secureagg.hazmat._ddp import _round_conditionally
from secureagg.protocol import Stage, simulate_round


@pytest.mark.parametrize("k", range(9))
def test_fwht_is_the_orthonormal_hadamard_transform(k: int) -> None:
    n = 1 << k
    x = np.random.default_rng(k).normal(size=n)
    want = hadamard(n) @ x / math.sqrt(n)
    np.testing.assert_allclose(fwht(x), want, rtol=0, atol=1e-12 * max(1.0, abs(x).sum()))
    np.testing.assert_allclose(fwht(fwht(x)), x, atol=1e-12)


def _butterflies(x: np.ndarray) -> np.ndarray:
    """The textbook in-place transform, one level per pass (the reference)."""
    y = x.astype(np.float64)
    h = 1
    while h < y.size:
        pairs = y.reshape(-1, 2, h)
        a, b = pairs[:, 0, :].copy(), pairs[:, 1, :].copy()
        pairs[:, 0, :], pairs[:, 1, :] = a + b, a - b
        h *= 2
    return y / math.sqrt(y.size)


@pytest.mark.parametrize("k", [13, 16, 18])
def test_fwht_of_long_vectors_matches_the_butterflies(k: int) -> None:
    """Lengths where the 8 x 8 products run in several blocks (and 2^13 ends on a 2 x 2)."""
    x = np.random.default_rng(k).normal(size=1 << k)
    keep = x.copy()
    y = fwht(x)
    np.testing.assert_allclose(y, _butterflies(x), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(x, keep)  # the input is left alone
    np.testing.assert_allclose(fwht(y), x, rtol=0, atol=1e-12)


def test_fwht_refuses_non_power_of_two() -> None:
    with pytest.raises(ConfigError):
        fwht(np.zeros(6))


def test_rotation_signs_are_public_and_seeded() -> None:
    a, b = rotation_signs(b"round-1", 4096), rotation_signs(b"round-1", 4096)
    assert np.array_equal(a, b)
    assert set(np.unique(a)) == {-1.0, 1.0}
    assert abs(a.mean()) < 5 / math.sqrt(4096)
    assert not np.array_equal(a, rotation_signs(b"round-2", 4096))
    assert np.array_equal(rotation_signs(b"round-1", 100), a[:100])


def test_rounded_l2_bound_matches_the_paper() -> None:
    # KLS21 Theorem 1 with beta = exp(-1/2): sqrt(2 ln(1/beta)) = 1
    for norm, dim in [(10.0, 16), (1000.0, 2**20), (3.5, 1)]:
        second = math.sqrt(norm**2 + dim / 4 + (norm + math.sqrt(dim) / 2))
        assert rounded_l2_bound(norm, dim) == pytest.approx(min(norm + math.sqrt(dim), second))
    assert rounded_l2_bound(10.0, 16, 0.0) == 14.0


@given(
    n=st.integers(1, 300),
    scale=st.floats(0.01, 50.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_conditional_rounding_respects_the_bound(n: int, scale: float, seed: int) -> None:
    z = np.random.default_rng(seed).normal(size=n)
    z *= scale / np.linalg.norm(z)
    bound = rounded_l2_bound(scale, n)
    q = _round_conditionally(z, bound, NoiseStream(seed.to_bytes(32, "little")))
    assert float(np.dot(q, q)) <= bound**2
    assert np.all(np.abs(q - z) < 1)


def test_conditional_rounding_is_unbiased() -> None:
    z = np.array([0.25, -1.75, 3.5, 0.0, 10.9])
    stream = NoiseStream(bytes(32))
    mean = np.mean([_round_conditionally(z, 1e9, stream) for _ in range(20_000)], axis=0)
    np.testing.assert_allclose(mean, z, atol=5 * 0.5 / math.sqrt(20_000))


def _params(mechanism: str = "dgauss", **kw: object) -> DDPParams:
    base: dict[str, object] = dict(d=1000, bits=16, clip=1.0, gamma=1e-3, variance=400.0)
    base.update(kw)
    return DDPParams(mechanism, **base)  # type: ignore[arg-type]


def test_params_bytes_round_trip_and_are_canonical() -> None:
    p = _params()
    assert DDPParams.from_bytes(p.to_bytes()) == p
    assert p.beta == BETA
    others = [
        _params("skellam"),
        _params(d=1001),
        _params(bits=17),
        _params(clip=1.5),
        _params(gamma=2e-3),
        _params(variance=401.0),
        DDPParams("dgauss", 1000, 16, 1.0, 1e-3, 400.0, beta=0.0),
    ]
    assert len({p.to_bytes()} | {o.to_bytes() for o in others}) == len(others) + 1
    data = p.to_bytes()
    for bad in (data[:-1], data + b"\0", b"XXXX" + data[4:], data[:4] + b"\x02" + data[5:]):
        with pytest.raises(DecodeError):
            DDPParams.from_bytes(bad)
    nan = data[:-8] + struct.pack(">d", float("nan"))
    with pytest.raises(DecodeError):
        DDPParams.from_bytes(nan)


@pytest.mark.parametrize(
    "kw",
    [
        {"d": 0},
        {"bits": 63},
        {"clip": -1.0},
        {"gamma": 0.0},
        {"variance": float("inf")},
        {"gamma": 1e-12},  # clip / gamma too large for the integer norm check
    ],
)
def test_bad_params_are_config_errors(kw: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        _params(**kw)
    with pytest.raises(ConfigError):
        DDPParams("laplace", 10, 16, 1.0, 1e-3, 1.0)


def _clients(n: int, d: int, norm: float) -> list[np.ndarray]:
    rng = np.random.default_rng(n * 7919 + d)
    xs = [rng.normal(size=d) for _ in range(n)]
    return [x * (norm / np.linalg.norm(x)) for x in xs]


def test_pipeline_through_secure_aggregation_without_noise_decodes_the_sum() -> None:
    p = _params(d=3000, bits=20, gamma=1e-4, clip=1.0)
    seed = os.urandom(24)
    xs = _clients(5, p.d, 0.9)
    xs.append(xs[0] * 10)  # over the clip: enters as its clipped version
    enc = {i + 1: ddp_encode(x, p, seed, noise=False) for i, x in enumerate(xs)}
    res = simulate_round(enc, bits=p.bits)
    got = ddp_decode(res.total, p, seed)
    want = sum(xs[:5]) + xs[0] * (1.0 / 0.9)  # the sixth is clipped to norm 1
    err = got - want
    n, dim = len(xs), p.padded
    assert np.linalg.norm(err) <= n * p.gamma * math.sqrt(dim)  # every rounding < 1 level
    assert np.linalg.norm(err) <= 1.2 * p.gamma * math.sqrt(n * dim / 4)  # independent ones
    # linearity and exactness of the secure sum: decoding each input and adding agrees
    parts = sum(ddp_decode(e, p, seed) for e in enc.values())
    np.testing.assert_allclose(got, parts, atol=1e-9)


@pytest.mark.parametrize("mechanism", ["dgauss", "skellam"])
def test_noise_variance_of_the_decoded_sum_with_dropouts(mechanism: str) -> None:
    p = _params(mechanism, d=30_000, bits=24, gamma=1e-3, variance=400.0)
    seed = os.urandom(24)
    xs = _clients(8, p.d, 1.0)
    enc = {i + 1: ddp_encode(x, p, seed) for i, x in enumerate(xs)}
    res = simulate_round(enc, bits=p.bits, dropouts={Stage.MASKED_INPUT: [2, 5]})
    assert res.survivors == {1, 3, 4, 6, 7, 8}
    err = ddp_decode(res.total, p, seed) - sum(xs[u - 1] for u in res.survivors)
    # only survivors' noise is in the sum: 6 shares of variance s, plus rounding (<= 1/4 each)
    theory = len(res.survivors) * p.variance * p.gamma**2
    rounding = len(res.survivors) * 0.25 * p.gamma**2
    ratio = float(np.mean(err**2)) / theory
    tol = 5 * math.sqrt(2 / p.d)
    assert 1 - tol <= ratio <= 1 + rounding / theory + tol, ratio
    assert abs(float(np.mean(err))) < 5 * math.sqrt(theory / p.d)


def test_modular_clipping_wraps_beyond_the_range() -> None:
    p = _params(d=1, bits=8, gamma=1.0, clip=100.0, variance=1.0)
    half = 1 << (p.bits - 1)
    total = np.array([half + 3], dtype=np.uint16)  # read as -(half - 3)
    assert ddp_decode(total, p, b"s")[0] == -(half - 3) * rotation_signs(b"s", 1)[0]


def test_encode_rejects_bad_input() -> None:
    p = _params()
    for bad in (np.zeros(999), np.full(1000, np.nan), np.zeros(1000, dtype=np.int64)):
        with pytest.raises(ConfigError):
            ddp_encode(bad, p, b"seed")
    with pytest.raises(ConfigError):
        ddp_decode(np.zeros(1000, dtype=np.uint16), p, b"seed")  # not padded to 1024


@settings(max_examples=25)
@given(
    d=st.integers(1, 300),
    bits=st.integers(12, 30),
    clients=st.integers(3, 5),
    norm=st.floats(0.0, 2.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_pipeline_round_trip_property(
    d: int, bits: int, clients: int, norm: float, seed: int
) -> None:
    # Any length, width and norm: with the grid chosen so the sum cannot wrap, the secure
    # sum decodes to the sum of the clipped inputs within the rounding's bound.
    rng = np.random.default_rng(seed)
    dim = padded_length(d)
    clip = 1.0
    gamma = 8 * clients * (clip + math.sqrt(dim)) / 2 ** (bits - 1)  # no wrap possible
    p = DDPParams("dgauss", d, bits, clip, gamma, 1.0)
    xs = [rng.normal(size=d) for _ in range(clients)]
    xs = [x * (norm / max(np.linalg.norm(x), 1e-300)) for x in xs]
    rseed = seed.to_bytes(8, "little")
    enc = {
        i + 1: ddp_encode(x, p, rseed, NoiseStream(bytes([i]) * 32), noise=False)
        for i, x in enumerate(xs)
    }
    got = ddp_decode(simulate_round(enc, bits=bits).total, p, rseed)
    want = sum(x * min(1.0, clip / max(np.linalg.norm(x), 1e-300)) for x in xs)
    assert np.linalg.norm(got - want) <= clients * gamma * math.sqrt(dim) + 1e-9


@given(
    mech=st.sampled_from(["dgauss", "skellam"]),
    d=st.integers(1, 2**20),
    bits=st.integers(1, 62),
    clip=st.floats(1e-3, 1e3),
    gamma=st.floats(1e-3, 1e3),
    variance=st.floats(1e-3, 1e12),
)
def test_params_bytes_property(
    mech: str, d: int, bits: int, clip: float, gamma: float, variance: float
) -> None:
    try:
        p = DDPParams(mech, d, bits, clip, gamma, variance)
    except ConfigError:
        return  # e.g. clip / gamma too large for the integer norm check
    data = p.to_bytes()
    assert DDPParams.from_bytes(data) == p and DDPParams.from_bytes(data).to_bytes() == data


def test_huge_finite_inputs_are_clipped_not_overflowed() -> None:
    # |x_i| beyond float32's range: the float32 rotation must not see inf (an inf or nan
    # rounds to garbage integers); the encode clips it like any other input.
    p = _params(d=1000, bits=20, gamma=1e-3, clip=1.0)
    seed = b"huge"
    x = np.zeros(1000)
    x[3], x[10] = 1e300, -1e300
    got = ddp_decode(ddp_encode(x, p, seed, noise=False), p, seed)
    want = np.zeros(1000)
    want[3], want[10] = 1 / math.sqrt(2), -1 / math.sqrt(2)
    assert np.linalg.norm(got - want) <= p.gamma * math.sqrt(p.padded)


def test_rounding_refuses_a_vector_it_cannot_bound() -> None:
    # A coordinate past the bound, or a nan, can never round within it: a clear error. Four
    # nans would round to -2^31 each, whose squares add up to 2^64: 0 in an int64 sum.
    for bad in (np.array([0.5, 12.0]), np.array([np.nan] * 4), np.full(4, 2.0**31)):
        with pytest.raises(ConfigError, match="exceeds the clip"):
            _round_conditionally(bad, 10.0, NoiseStream(bytes(32)))
