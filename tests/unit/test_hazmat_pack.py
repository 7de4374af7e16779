"""b-bit packing: the documented layout for every b in 1..64, strict lengths and padding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import accumulators, bad_packings

from secureagg import ConfigError, DecodeError
from secureagg.hazmat import _pack, element_dtype, pack_bits, packed_size, unpack_bits
from secureagg.hazmat._pack import add_packed


def reference(values: list[int], bits: int) -> bytes:
    """docs/hazmat.md's layout, with Python ints: low 8a bits as a-byte little-endian
    fields, then the high r bits of all elements as one little-endian bit string."""
    a, r = divmod(bits, 8)
    low = b"".join((v & ((1 << 8 * a) - 1)).to_bytes(a, "little") for v in values)
    if not r:
        return low
    high = sum((v >> 8 * a) << (i * r) for i, v in enumerate(values))
    return low + high.to_bytes((r * len(values) + 7) // 8, "little")


@st.composite
def vectors(draw: st.DrawFn, max_d: int = 90) -> tuple[int, list[int]]:
    bits = draw(st.integers(1, 64))
    top = 2**bits - 1
    values = draw(
        st.lists(st.one_of(st.integers(0, top), st.sampled_from([0, top])), max_size=max_d)
    )
    return bits, values


@settings(max_examples=300, deadline=None)
@given(vectors(), st.sampled_from([8, 16, 64, 1 << 17]))
def test_layout_and_round_trip(case: tuple[int, list[int]], piece: int) -> None:
    bits, values = case
    saved = _pack._PIECE
    _pack._PIECE = piece  # small pieces put piece edges inside short vectors
    try:
        for dtype in {element_dtype(bits), np.dtype(np.uint64)}:
            x = np.array(values, dtype=np.uint64).astype(dtype)
            raw = pack_bits(x, bits)
            assert raw == reference(values, bits)
            assert len(raw) == packed_size(len(values), bits) == (bits * len(values) + 7) // 8
            back = unpack_bits(raw, len(values), bits, dtype=dtype)
            assert back.dtype == dtype and back.flags.writeable
            assert back.tolist() == values
        assert unpack_bits(raw, len(values), bits).dtype == element_dtype(bits)
    finally:
        _pack._PIECE = saved


@settings(max_examples=150, deadline=None)
@given(vectors(max_d=40), st.data())
def test_every_mutation_is_refused_or_changes_one_element(
    case: tuple[int, list[int]], data: st.DataObject
) -> None:
    bits, values = case
    d = len(values)
    raw = pack_bits(np.array(values, dtype=np.uint64), bits)
    for bad in (raw[:-1], raw + b"\x00", raw + b"\x01"):
        if len(bad) != len(raw):
            with pytest.raises(DecodeError):
                unpack_bits(bad, d, bits)
    for pad in range(bits * d, 8 * len(raw)):  # each padding bit set alone
        bad = bytearray(raw)
        bad[pad // 8] |= 1 << (pad % 8)
        with pytest.raises(DecodeError, match="padding"):
            unpack_bits(bytes(bad), d, bits)
    if d:
        pos = data.draw(st.integers(0, bits * d - 1))
        bad = bytearray(raw)
        bad[pos // 8] ^= 1 << (pos % 8)
        got = unpack_bits(bytes(bad), d, bits, dtype=np.uint64).tolist()
        changed = [i for i in range(d) if got[i] != values[i]]
        assert len(changed) == 1
        flipped = got[changed[0]] ^ values[changed[0]]
        assert flipped & (flipped - 1) == 0


@pytest.mark.parametrize("bits", [1, 7, 8, 9, 21, 33, 63])
def test_elements_too_wide_are_refused(bits: int) -> None:
    x = np.zeros(10, dtype=np.uint64)
    x[3] = 1 << bits
    with pytest.raises(ConfigError, match="fit"):
        pack_bits(x, bits)


def test_argument_checks() -> None:
    for bits in (0, 65, True, 2.0):
        with pytest.raises(ConfigError):
            pack_bits(np.zeros(3, np.uint64), bits)  # type: ignore[arg-type]
        with pytest.raises(ConfigError):
            unpack_bits(b"", 0, bits)  # type: ignore[arg-type]
    for x in (np.zeros(3, np.int64), np.zeros((2, 2), np.uint32), [1, 2]):
        with pytest.raises(ConfigError):
            pack_bits(x, 8)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        unpack_bits(bytes(3), 1, 21, dtype=np.uint16)  # too narrow for 21 bits
    with pytest.raises(ConfigError):
        unpack_bits(bytes(3), -1, 8)


def test_wire_size_at_one_million() -> None:
    """ceil(b*d/8) bytes for the widths of large rounds (b = 21 and 34 at d = 10^6)."""
    d = 1_000_000
    for bits in (21, 34):
        x = np.random.default_rng(bits).integers(0, 2**bits, d, dtype=np.uint64)
        raw = pack_bits(x.astype(element_dtype(bits)), bits)
        assert len(raw) == bits * d // 8
        assert np.array_equal(unpack_bits(raw, d, bits), x)


@settings(max_examples=300, deadline=None)
@given(vectors(), st.sampled_from([8, 16, 64, 1 << 18]), st.integers(0, 2**32))
def test_add_packed_adds_the_packed_elements(
    case: tuple[int, list[int]], piece: int, seed: int
) -> None:
    """acc + the elements, mod 2^(acc's width), with Python ints as the reference."""
    _check_add_packed(case, piece, seed, stale=False)


@pytest.mark.parametrize("bits", [3, 7, 16, 21, 32, 34, 40, 64])
def test_add_packed_over_several_pieces(bits: int) -> None:
    d = 2 * (1 << 18) + 13  # the real piece size: two full pieces and a short one
    x = np.random.default_rng(bits).integers(0, 2**bits - 1, d, dtype=np.uint64, endpoint=True)
    acc = np.random.default_rng(bits + 1).integers(0, 2**63, d, dtype=np.uint64)
    want = acc + x  # wraps mod 2^64
    add_packed(acc, pack_bits(x, bits), bits)
    assert np.array_equal(acc, want)


@settings(max_examples=200, deadline=None)
@given(vectors(), st.sampled_from([8, 16, 64]), st.integers(0, 2**32))
def test_add_packed_does_not_read_stale_scratch(
    case: tuple[int, list[int]], piece: int, seed: int
) -> None:
    """add_packed keeps its work arrays between calls without clearing them: a call whose
    cached arrays are full of set bits still gives exactly acc + the elements."""
    _check_add_packed(case, piece, seed, stale=True)


def _check_add_packed(case: tuple[int, list[int]], piece: int, seed: int, stale: bool) -> None:
    """add_packed on every accumulator kind against Python ints, in pieces of ``piece``
    elements; with ``stale``, after a first call whose cached work arrays are then filled
    with set bits."""
    bits, values = case
    raw = reference(values, bits)
    saved = _pack._PIECE
    _pack._PIECE = piece
    try:
        for acc in accumulators(bits, len(values), seed):
            start = [int(v) for v in acc]
            if stale:
                add_packed(np.zeros_like(acc), raw, bits)  # caches this shape's arrays
                cached = getattr(_pack._SCRATCH, "arrays", None)
                if cached is not None:
                    for arr in cached[1]:
                        arr.view(np.uint8)[:] = 0xFF
            add_packed(acc, raw, bits)
            width = 8 * acc.dtype.itemsize
            want = [(s + v) % 2**width for s, v in zip(start, values, strict=True)]
            assert [int(v) for v in acc] == want
    finally:
        _pack._PIECE = saved


@settings(max_examples=100, deadline=None)
@given(vectors(max_d=40))
def test_add_packed_refuses_bad_bytes_and_changes_nothing(case: tuple[int, list[int]]) -> None:
    bits, values = case
    d = len(values)
    raw = reference(values, bits)
    acc = np.arange(d, dtype=np.uint64)
    for bad in bad_packings(raw, bits, d):
        with pytest.raises(DecodeError):
            add_packed(acc, bad, bits)
        assert acc.tolist() == list(range(d))


def test_add_packed_argument_checks() -> None:
    raw = pack_bits(np.ones(4, np.uint32), 21)
    read_only = np.zeros(4, np.uint32)
    read_only.flags.writeable = False
    for acc in (
        np.zeros(4, np.uint16),
        np.zeros(4, np.int64),
        np.zeros((2, 2), np.uint32),
        read_only,
    ):
        with pytest.raises(ConfigError):
            add_packed(acc, raw, 21)
    with pytest.raises(ConfigError):
        add_packed(np.zeros(4, np.uint32), raw, 0)
