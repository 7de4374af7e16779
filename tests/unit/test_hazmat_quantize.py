"""Quantisation: config checks, exact sums, clipping, wrap refusal, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secureagg import ConfigError
from secureagg.hazmat import (
    QuantConfig,
    add_into,
    centered_sum,
    choose_bits,
    dequantize_sum,
    element_dtype,
    make_config,
    quantize,
    zeros,
)


def test_choose_bits_is_smallest_safe() -> None:
    for n, c, f in [(1, 1.0, 0), (10, 1.0, 16), (100, 0.5, 20), (3, 0.3, 7), (1000, 4.0, 40)]:
        b = choose_bits(n, c, f)
        level = math.ceil(c * 2**f)
        assert 2 * n * level < 2**b
        assert 2 * n * level >= 2 ** (b - 1)


def test_choose_bits_refuses_over_64() -> None:
    with pytest.raises(ConfigError):
        choose_bits(1000, 1.0, 60)
    with pytest.raises(ConfigError):
        make_config(2**20, 2.0**20, 30)


@pytest.mark.parametrize(
    "args",
    [
        (0, 1.0, 8),
        (2, 0.0, 8),
        (2, -1.0, 8),
        (2, math.inf, 8),
        (2, math.nan, 8),
        (2, 1.0, -1),
        (2, 1.0, 63),
        (2.5, 1.0, 8),
    ],
)
def test_bad_config_values(args: tuple[object, object, object]) -> None:
    with pytest.raises(ConfigError):
        choose_bits(*args)  # type: ignore[arg-type]


def test_make_config_refuses_too_few_bits() -> None:
    need = choose_bits(10, 1.0, 16)
    assert make_config(10, 1.0, 16).bits == need
    assert make_config(10, 1.0, 16, bits=need + 3).bits == need + 3
    with pytest.raises(ConfigError):
        make_config(10, 1.0, 16, bits=need - 1)
    with pytest.raises(ConfigError):
        QuantConfig(bits=need - 1, frac_bits=16, clip=1.0, max_clients=10)
    with pytest.raises(ConfigError):
        make_config(10, 1.0, 16, bits=65)


def test_extreme_sum_does_not_wrap() -> None:
    """n inputs all at +clip (or -clip) sum to n * clip exactly, at the smallest b."""
    for n, c, f in [(5, 1.0, 8), (7, 0.3, 5), (3, 2.5, 0)]:
        cfg = make_config(n, c, f)
        rng = np.random.default_rng(0)
        for sign in (1.0, -1.0):
            acc = zeros(4, cfg.bits)
            x = np.full(4, sign * 10 * c)  # far outside: clipped to +-c
            for _ in range(n):
                add_into(acc, quantize(x, cfg, rng), cfg.bits)
            total = dequantize_sum(acc, cfg)
            assert np.all(np.abs(total - sign * n * c) <= n * 2.0**-f)
            assert np.all(np.sign(total) == sign)


def test_sum_of_many_is_close() -> None:
    rng = np.random.default_rng(3)
    n, f = 20, 16
    cfg = make_config(n, 1.0, f)
    xs = [rng.uniform(-1, 1, 1000).astype(np.float32) for _ in range(n)]
    acc = zeros(1000, cfg.bits)
    for x in xs:
        add_into(acc, quantize(x, cfg, rng), cfg.bits)
    err = np.abs(dequantize_sum(acc, cfg) - np.sum(xs, axis=0, dtype=np.float64))
    assert err.max() < n * 2.0**-f


def test_dtypes_and_shapes() -> None:
    rng = np.random.default_rng(0)
    for bits in (12, 24, 50, 64):
        cfg = make_config(2, 1.0, 4, bits=bits)
        q = quantize(np.zeros((3, 4), np.float32), cfg, rng)
        assert q.dtype == element_dtype(bits) and q.shape == (3, 4)
        assert not q.any()
        assert dequantize_sum(q, cfg).dtype == np.float64


def test_negative_value_is_twos_complement() -> None:
    cfg = make_config(4, 1.0, 3)  # level 1/8; 2 * 4 * 8 = 64 < 2^7
    assert cfg.bits == 7
    q = quantize(np.array([-0.25, 0.25, 0.0]), cfg, np.random.default_rng(0))
    assert q.tolist() == [128 - 2, 2, 0]
    assert dequantize_sum(q, cfg).tolist() == [-0.25, 0.25, 0.0]


def test_bad_inputs() -> None:
    cfg = make_config(2, 1.0, 8)
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError):
        quantize(np.array([1, 2]), cfg, rng)  # ints
    with pytest.raises(ConfigError):
        quantize([0.5], cfg, rng)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        quantize(np.array([0.5, np.nan], np.float32), cfg, rng)
    with pytest.raises(ConfigError):
        quantize(np.array([0.5]), cfg, np.random.RandomState(0))  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        dequantize_sum(np.zeros(3, np.uint64), cfg)
    # Infinities are clipped, not refused.
    assert dequantize_sum(quantize(np.array([np.inf, -np.inf]), cfg, rng), cfg).tolist() == [
        1.0,
        -1.0,
    ]


def test_long_vector_bound_and_reproducible() -> None:
    """Vectors longer than the internal chunk keep the bound; a seeded rng reproduces."""
    cfg = make_config(10, 1.0, 12)
    x = np.random.default_rng(5).uniform(-1.5, 1.5, 100_003).astype(np.float32)
    q1 = quantize(x, cfg, np.random.default_rng(9))
    q2 = quantize(x, cfg, np.random.default_rng(9))
    q3 = quantize(x, cfg, np.random.default_rng(10))
    assert np.array_equal(q1, q2)
    assert not np.array_equal(q1, q3)
    err = dequantize_sum(q1, cfg) - np.clip(x, -1.0, 1.0)
    assert np.abs(err).max() < 2.0**-12
    assert abs(err.mean()) < 5 * 2.0**-12 / np.sqrt(x.size)  # rounding is unbiased


@settings(max_examples=200)
@given(data=st.data(), bits=st.integers(min_value=2, max_value=64))
def test_centered_sum_is_twos_complement_of_the_low_b_bits(data: st.DataObject, bits: int) -> None:
    """Every value in [-2^(b-1), 2^(b-1)), stored mod 2^b, reads back as itself; bits above
    b (a word not yet reduced) do not change it; dequantize_sum divides it by 2^f."""
    half = 1 << (bits - 1)
    values = data.draw(st.lists(st.integers(-half, half - 1), min_size=1, max_size=20))
    dtype = element_dtype(bits)
    width = 8 * dtype.itemsize
    junk = data.draw(
        st.lists(
            st.integers(0, (1 << (width - bits)) - 1), min_size=len(values), max_size=len(values)
        )
    )
    words = np.array(
        [(v % (1 << bits)) | (j << bits) for v, j in zip(values, junk, strict=True)], dtype=dtype
    )
    cfg = QuantConfig(max_clients=1, clip=1.0, frac_bits=0, bits=bits)
    assert centered_sum(words, cfg).tolist() == values
    if bits <= 53:
        assert dequantize_sum(words, cfg).tolist() == [float(v) for v in values]


def test_quantize_writes_into_out_what_it_would_return() -> None:
    cfg = make_config(max_clients=10, clip=1.0, frac_bits=16)
    x = np.random.default_rng(3).uniform(-2, 2, 50_000).astype(np.float32)
    want = quantize(x, cfg, np.random.default_rng(7))
    buf = np.full(50_001, 9, dtype=want.dtype)
    got = quantize(x, cfg, np.random.default_rng(7), out=buf[1:])
    np.testing.assert_array_equal(buf[1:], want)
    assert buf[0] == 9 and np.shares_memory(got, buf)
    for bad in (np.empty(49_999, dtype=want.dtype), np.empty(50_000, dtype=np.int64)):
        with pytest.raises(ConfigError):
            quantize(x, cfg, np.random.default_rng(7), out=bad)


@pytest.mark.parametrize(("ftype", "bits"), [(np.float32, 21), (np.float32, 32), (np.float64, 40)])
def test_quantize_in_place_over_x_gives_what_it_would_return(ftype: type, bits: int) -> None:
    """out may be x's own memory (same item size): every piece of x is read before its
    place is written, across many pieces; out overlapping x elsewhere is refused."""
    cfg = make_config(max_clients=10, clip=1.0, frac_bits=16, bits=bits)
    x = np.random.default_rng(4).uniform(-2, 2, 100_003).astype(ftype)
    want = quantize(x, cfg, np.random.default_rng(8))
    words = np.empty(x.size, dtype=want.dtype)
    view = words.view(ftype)
    view[:] = x
    got = quantize(view, cfg, np.random.default_rng(8), out=words)
    assert np.shares_memory(got, words)
    np.testing.assert_array_equal(words, want)
    shifted = np.empty(x.size + 1, dtype=want.dtype)
    shifted.view(ftype)[1:] = x
    with pytest.raises(ConfigError, match="overlaps"):
        quantize(shifted.view(ftype)[1:], cfg, np.random.default_rng(8), out=shifted[:-1])
