"""Hypothesis properties of the hazmat primitives."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secureagg import ConfigError, ShareError
from secureagg.hazmat import (
    LABEL_MASK,
    MaskBuffer,
    add_into,
    choose_bits,
    combine,
    dequantize_sum,
    derive_key,
    expand_mask,
    make_config,
    quantize,
    split,
    zeros,
)

FAST = settings(max_examples=40, deadline=None)


@FAST
@given(
    bits=st.integers(1, 64),
    n=st.integers(2, 6),
    d=st.integers(1, 64),
    data=st.data(),
)
def test_pairwise_masks_cancel(bits: int, n: int, d: int, data: st.DataObject) -> None:
    ids = sorted(data.draw(st.sets(st.integers(0, 2**32 - 1), min_size=n, max_size=n)))
    shared = {(u, v): os.urandom(32) for u in ids for v in ids if u < v}
    round_id = os.urandom(16)
    xs = {u: expand_mask(os.urandom(32), d, bits) for u in ids}  # uniform inputs in Z_{2^b}
    buf = MaskBuffer(d, bits)
    total = zeros(d, bits)
    want = zeros(d, bits)
    for u in ids:
        y = xs[u].copy()
        for v in ids:
            if v == u:
                continue
            key = shared[(min(u, v), max(u, v))]
            seed = derive_key(key, label=LABEL_MASK, id_a=u, id_b=v, round_id=round_id)
            if u < v:
                buf.add_mask(y, seed)
            else:
                buf.subtract_mask(y, seed)
        if d >= 16:  # a masked vector differs from its input
            assert not np.array_equal(y, xs[u])
        add_into(total, y, bits)
        add_into(want, xs[u], bits)
    assert np.array_equal(total, want)


@FAST
@given(m=st.integers(2, 12), data=st.data())
def test_any_t_of_m_reconstruct_and_t_minus_1_do_not(m: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(2, m))
    xs = data.draw(st.lists(st.integers(1, 2**32 - 1), min_size=m, max_size=m, unique=True))
    secret = data.draw(st.binary(min_size=32, max_size=32))
    shares = split(secret, t, xs)
    pick = data.draw(st.lists(st.sampled_from(xs), min_size=t, max_size=t, unique=True))
    assert combine({x: shares[x] for x in pick}, t) == secret
    fewer = {x: shares[x] for x in pick[:-1]}
    with pytest.raises(ShareError):
        combine(fewer, t)
    # Interpolating t-1 shares as if the threshold were t-1 yields a random field element,
    # which is not a 32-byte value except with probability 2^-265: refused, never the secret.
    with pytest.raises(ShareError):
        combine(fewer, t - 1)


@FAST
@given(
    n=st.integers(1, 10**6),
    clip=st.floats(1e-6, 1e6, allow_nan=False),
    frac_bits=st.integers(0, 62),
)
def test_overflowing_configs_refused(n: int, clip: float, frac_bits: int) -> None:
    level = math.ceil(math.ldexp(clip, frac_bits))
    if 2 * n * level >= 2**64:
        with pytest.raises(ConfigError):
            choose_bits(n, clip, frac_bits)
        return
    b = choose_bits(n, clip, frac_bits)
    assert n * level <= 2 ** (b - 1) - 1  # the extreme sums +-n*level fit in two's complement
    if b > 1:
        with pytest.raises(ConfigError):
            make_config(n, clip, frac_bits, bits=b - 1)
    assert make_config(n, clip, frac_bits).bits == b


@FAST
@given(
    clip=st.floats(0.01, 100.0),
    frac_bits=st.integers(0, 30),
    values=st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=50),
    seed=st.integers(0, 2**32),
)
def test_quantisation_error_at_most_one_level(
    clip: float, frac_bits: int, values: list[float], seed: int
) -> None:
    cfg = make_config(4, clip, frac_bits)
    x = np.array(values)
    q = quantize(x, cfg, np.random.default_rng(seed))
    err = np.abs(dequantize_sum(q, cfg) - np.clip(x, -clip, clip))
    assert err.max() < 2.0**-frac_bits


@FAST
@given(
    frac_bits=st.integers(0, 20),
    values=st.lists(st.floats(-2.0, 2.0, width=32), min_size=1, max_size=50),
    seed=st.integers(0, 2**32),
)
def test_quantisation_error_float32(frac_bits: int, values: list[float], seed: int) -> None:
    cfg = make_config(4, 1.0, frac_bits)
    x = np.array(values, dtype=np.float32)
    q = quantize(x, cfg, np.random.default_rng(seed))
    err = np.abs(dequantize_sum(q, cfg) - np.clip(x.astype(np.float64), -1.0, 1.0))
    assert err.max() < 2.0**-frac_bits


@settings(max_examples=25, deadline=None)
@given(
    value=st.floats(-1.0, 1.0),
    frac_bits=st.integers(0, 16),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32),
)
def test_rounding_is_unbiased(value: float, frac_bits: int, dtype: type, seed: int) -> None:
    n = 20000
    cfg = make_config(2, 1.0, frac_bits)
    x = np.full(n, value, dtype=dtype)
    exact = float(x[0]) * 2.0**frac_bits
    q = dequantize_sum(quantize(x, cfg, np.random.default_rng(seed)), cfg) * 2.0**frac_bits
    p = exact - math.floor(exact)
    mean_err = float(q.mean()) - exact
    # The uniforms lie on a 2^-23 (float32) or 2^-52 grid, so the chance of rounding up is
    # in [p, p + grid]: E[mean_err] is in [0, grid]. 5 standard errors of that chance, plus
    # 3/n for the rare-event regime (p near 0 or 1, where one rounding moves the mean 1/n).
    grid = 2.0**-23 if dtype is np.float32 else 2.0**-52
    se = math.sqrt(min(1.0, p + grid) * (1 - p) / n)
    assert -5 * se - 3 / n <= mean_err <= grid + 5 * se + 3 / n
