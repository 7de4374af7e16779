"""Shamir sharing: reconstruction, exact threshold, malformed shares."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secureagg import ConfigError, ShareError
from secureagg.hazmat import PRIME, SHARE_SIZE, combine, split
from secureagg.hazmat import _shamir as shamir_module
from secureagg.hazmat._shamir import combine_many


def test_roundtrip_m100_t51() -> None:
    secret = os.urandom(32)
    shares = split(secret, 51, range(1, 101))
    assert len(shares) == 100 and all(len(s) == SHARE_SIZE for s in shares.values())
    pick = dict(list(shares.items())[49:])
    assert combine(pick, 51) == secret


def test_large_ids_and_edge_secrets() -> None:
    for secret in (bytes(32), b"\xff" * 32):
        shares = split(secret, 3, [1, 2**32 - 1, 123456789])
        assert combine(shares, 3) == secret


def test_threshold_one_and_m() -> None:
    secret = os.urandom(32)
    shares = split(secret, 1, [5, 6])
    assert combine({6: shares[6]}, 1) == secret
    shares = split(secret, 4, [1, 2, 3, 4])
    assert combine(shares, 4) == secret


def test_not_exactly_threshold() -> None:
    shares = split(os.urandom(32), 3, [1, 2, 3, 4, 5])
    with pytest.raises(ShareError):
        combine(dict(list(shares.items())[:2]), 3)
    with pytest.raises(ShareError):
        combine(shares, 3)  # too many is refused too


def test_mixed_shares_are_detected() -> None:
    a = split(os.urandom(32), 3, [1, 2, 3])
    b = split(os.urandom(32), 3, [1, 2, 3])
    with pytest.raises(ShareError):
        combine({1: a[1], 2: a[2], 3: b[3]}, 3)


@pytest.mark.parametrize(
    "bad",
    [
        {1: b"\x00" * 65},
        {1: b"\x00" * 67},
        {1: PRIME.to_bytes(SHARE_SIZE, "big")},
        {0: bytes(SHARE_SIZE)},
        {2**32: bytes(SHARE_SIZE)},
        {"1": bytes(SHARE_SIZE)},
        {1: "x" * SHARE_SIZE},
    ],
)
def test_malformed_shares(bad: dict[object, object]) -> None:
    shares: dict[object, object] = {7: split(os.urandom(32), 2, [7, 8])[7], **bad}
    assert len(shares) == 2
    with pytest.raises(ShareError):
        combine(shares, 2)  # type: ignore[arg-type]


def test_bad_threshold_in_combine() -> None:
    with pytest.raises(ShareError):
        combine({}, 0)
    with pytest.raises(ShareError):
        combine([(1, bytes(SHARE_SIZE))], 1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("secret", "t", "xs"),
    [
        (bytes(31), 2, [1, 2]),
        (bytes(32), 3, [1, 2]),
        (bytes(32), 0, [1, 2]),
        (bytes(32), 2, [1, 1]),
        (bytes(32), 2, [0, 1]),
        (bytes(32), 2, [1, 2**32]),
    ],
)
def test_bad_split_arguments(secret: bytes, t: int, xs: list[int]) -> None:
    with pytest.raises(ConfigError):
        split(secret, t, xs)


def test_numpy_integer_points() -> None:
    import numpy as np

    secret = os.urandom(32)
    shares = split(secret, 2, np.array([3, 9], dtype=np.uint32))  # type: ignore[arg-type]
    assert set(shares) == {3, 9} and all(type(x) is int for x in shares)
    assert combine({np.int64(3): shares[3], 9: shares[9]}, 2) == secret  # type: ignore[dict-item]


@pytest.mark.parametrize("xs", [None, 5, "12", b"\x01\x02"])
def test_share_points_must_be_a_sequence_of_ints(xs: object) -> None:
    with pytest.raises(ConfigError):
        split(bytes(32), 1, xs)  # type: ignore[arg-type]


def naive_lagrange(shares: dict[int, bytes]) -> int:
    """Textbook Lagrange at 0 over 2^521 - 1, one modular inverse per share (a reference)."""
    total = 0
    for xi, yi in shares.items():
        num = den = 1
        for xj in shares:
            if xj != xi:
                num = num * xj % PRIME
                den = den * (xj - xi) % PRIME
        total += int.from_bytes(yi, "big") * num * pow(den, -1, PRIME)
    return total % PRIME


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.binary(min_size=32, max_size=32),
            st.integers(1, 12),
            st.sets(st.integers(1, 2**32 - 1), min_size=12, max_size=16),
            st.sampled_from(["exact", "mixed", "short", "flipped"]),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_combine_many_matches_combine_and_textbook_lagrange(
    cases: list[tuple[bytes, int, set[int], str]],
) -> None:
    """The batched interpolation (exact denominators, one shared inversion, folded
    reduction) gives every secret the one-at-a-time and textbook versions give, and a
    ShareError exactly where combine raises, whatever else is in the batch."""
    batch: list[dict[int, bytes]] = []
    t_of: list[int] = []
    exact: list[bytes | None] = []
    for secret, t, xs, kind in cases:
        points = sorted(xs)
        shares = split(secret, t, points)
        pick = {x: shares[x] for x in points[:t]}
        if kind == "mixed" and t > 1:
            other = split(os.urandom(32), t, points)
            pick[points[0]] = other[points[0]]
        elif kind == "short" and t > 1:
            pick.pop(points[0])
        elif kind == "flipped":
            y = bytearray(pick[points[t - 1]])
            y[-1] ^= 1
            pick[points[t - 1]] = bytes(y)
        batch.append(pick)
        t_of.append(t)
        exact.append(secret if kind == "exact" or (t == 1 and kind != "flipped") else None)
    for t in set(t_of):
        rows = [i for i, tt in enumerate(t_of) if tt == t]
        sets = [batch[i] for i in rows]
        got = combine_many(sets, t)
        for i, result in zip(rows, got, strict=True):
            if exact[i] is not None:
                assert result == exact[i]  # the right shares rebuild the secret
        for shares, result in zip(sets, got, strict=True):
            try:
                want: bytes | None = combine(shares, t)
            except ShareError:
                want = None
            if want is None:
                assert isinstance(result, ShareError)
            else:
                assert result == want
                assert int.from_bytes(want, "big") == naive_lagrange(shares)


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 40),
    st.lists(
        st.tuples(
            st.binary(min_size=32, max_size=32),
            st.sampled_from([2**8, 2**14, 2**20, 2**32 - 1]),  # the largest id: words per row
            st.sampled_from(["exact", "mixed", "flipped"]),
            st.randoms(use_true_random=False),
        ),
        min_size=1,
        max_size=12,
    ),
    st.integers(1, 5),
    st.integers(1, 70),
)
def test_combine_many_equals_textbook_lagrange_in_any_order_and_batch_size(
    t: int,
    cases: list[tuple[bytes, int, str, Any]],
    sets_at_once: int,
    inversions_every: int,
) -> None:
    """Every secret (or ShareError) is what textbook Lagrange gives: points given in any
    order, ids small or up to 2^32 - 1 (so a 64-bit word holds from 8 to 2 factors), and
    batches cut at every size into numpy blocks and inversion chunks."""
    batch: list[dict[int, bytes]] = []
    for secret, top, kind, rnd in cases:
        points = rnd.sample(range(1, top + 1), t)
        shares = split(secret, t, points)
        if kind == "mixed":
            shares[points[0]] = split(os.urandom(32), t, points)[points[0]]
        elif kind == "flipped":
            y = bytearray(shares[points[-1]])
            y[-1] ^= 1
            shares[points[-1]] = bytes(y)
        rnd.shuffle(points)
        batch.append({x: shares[x] for x in points})
    saved = shamir_module._SETS_AT_ONCE, shamir_module._INVERSIONS_EVERY
    shamir_module._SETS_AT_ONCE, shamir_module._INVERSIONS_EVERY = sets_at_once, inversions_every
    try:
        results = combine_many(batch, t)
    finally:
        shamir_module._SETS_AT_ONCE, shamir_module._INVERSIONS_EVERY = saved
    for shares, result in zip(batch, results, strict=True):
        value = naive_lagrange(shares)
        if value >> 256:
            assert isinstance(result, ShareError)
        else:
            assert result == value.to_bytes(32, "big")


def test_lagrange_denominators_stay_folded_at_large_thresholds() -> None:
    # t = 207 eight-bit ids make a row's product about 1,660 bits, past what one fold brings
    # below 2^522; unfolded, the batched inversion's accumulators grew by ~300 bits per value
    # (an in-process round of 230 clients at threshold 207 spent 13 s there)
    sets = [sorted(set(range(1, 231)) - set(range(k, k + 23)))[:207] for k in range(1, 41)]
    dens = shamir_module._denominators(sets)
    assert max(d.bit_length() for d in dens) <= 522
    invs = shamir_module._inverses(dens)
    assert max(v.bit_length() for v in invs) <= 531  # the bound _inverses documents
    for d, v in zip(dens[:50], invs[:50], strict=True):
        assert d * v % PRIME == 1
