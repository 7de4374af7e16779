"""Update encoding: the decoded weighted average stays within the promised error bound."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secureagg import ConfigError
from secureagg.fl import WEIGHTINGS, UpdateEncoder, plain_average
from secureagg.hazmat import add_into, zeros
from secureagg.privacy import LocalUpdate


def _updates(seed: int, n: int, d: int, clip: float, max_examples: int) -> list[LocalUpdate]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.uniform(-clip, clip, d).astype(np.float32)
        out.append(LocalUpdate(x, int(rng.integers(1, max_examples + 1)), 1))
    return out


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 12),
    d=st.integers(1, 40),
    clip=st.sampled_from([0.01, 0.5, 1.0, 7.0]),
    frac_bits=st.integers(4, 24),
    max_examples=st.integers(1, 5000),
    weighting=st.sampled_from(WEIGHTINGS),
)
def test_decoded_average_is_within_the_bound(
    seed: int, n: int, d: int, clip: float, frac_bits: int, max_examples: int, weighting: str
) -> None:
    enc = UpdateEncoder(
        d,
        max_clients=n,
        max_examples=max_examples,
        clip=clip,
        frac_bits=frac_bits,
        weighting=weighting,
    )
    uniform = weighting == "uniform"
    unit = 1 if uniform else max_examples
    ups = _updates(seed, n, d, clip, max_examples)
    rng = np.random.default_rng(seed + 1)
    total = zeros(enc.length, enc.bits)
    for u in ups:
        assert enc.clipped_coordinates(u) == 0
        add_into(total, enc.encode(u, rng), enc.bits)  # what the secure sum equals, exactly
    try:
        dec = enc.decode(total, n)
    except ConfigError:
        weight = n if uniform else sum(u.num_examples for u in ups) / max_examples
        assert weight <= 2 * n * 2.0**-frac_bits / clip  # refused only when it drowns in rounding
        return
    plain = plain_average(ups, weighting)
    assert np.max(np.abs(dec.average - plain)) <= dec.error_bound
    total = n if uniform else sum(u.num_examples for u in ups)
    assert abs(dec.total_examples - total) <= n * 2.0**-frac_bits / clip * unit * (1 + 1e-9)


def test_bound_is_tight_enough_to_be_useful() -> None:
    enc = UpdateEncoder(1000, max_clients=10, max_examples=500, clip=1.0, frac_bits=16)
    ups = _updates(1, 10, 1000, 1.0, 500)
    rng = np.random.default_rng(0)
    total = zeros(enc.length, enc.bits)
    for u in ups:
        add_into(total, enc.encode(u, rng), enc.bits)
    dec = enc.decode(total, 10)
    err = np.max(np.abs(dec.average - plain_average(ups)))
    assert err <= dec.error_bound < 1e-3


def test_wrong_length_or_weight_is_rejected() -> None:
    enc = UpdateEncoder(
        4, max_clients=2, max_examples=10, clip=1.0, frac_bits=8, weighting="examples-public"
    )
    with pytest.raises(ConfigError, match="models differ"):
        enc.encode(LocalUpdate(np.zeros(5, np.float32), 3, 1), np.random.default_rng())
    with pytest.raises(ConfigError, match="num_examples"):
        enc.encode(LocalUpdate(np.zeros(4, np.float32), 11, 1), np.random.default_rng())
    big = LocalUpdate(np.full(4, 3.0, np.float32), 10, 1)
    assert enc.clipped_coordinates(big) == 4


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 5000),
    d=st.integers(1, 30),
    frac_bits=st.integers(8, 24),
)
def test_uniform_weighting_sends_nothing_of_the_count(
    seed: int, n: int, d: int, frac_bits: int
) -> None:
    """A one-record change to a client's data set changes no bit it encodes (same update)."""
    enc = UpdateEncoder(d, max_clients=4, max_examples=5001, clip=1.0, frac_bits=frac_bits)
    x = np.random.default_rng(seed).uniform(-1, 1, d).astype(np.float32)
    one, other = LocalUpdate(x, n, 1), LocalUpdate(x, n + 1, 1)
    a = enc.encode(one, np.random.default_rng(seed))
    b = enc.encode(other, np.random.default_rng(seed))
    np.testing.assert_array_equal(a, b)
    dec_a, dec_b = enc.decode(a, 1), enc.decode(b, 1)
    assert dec_a.total_examples == dec_b.total_examples  # one client, whatever its count
    np.testing.assert_array_equal(dec_a.average, dec_b.average)
