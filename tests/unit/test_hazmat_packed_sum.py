"""PackedSum: the sum of packed vectors equals add_packed's (and Python ints') for every b,
length, accumulator kind, piece size and flush point; refused bytes change nothing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import accumulators, bad_packings

from secureagg import ConfigError, DecodeError
from secureagg.hazmat import PackedSum, add_packed, pack_bits
from secureagg.hazmat import _packed_sum as packed_sum_module


@st.composite
def sums(draw: st.DrawFn) -> tuple[int, int, list[list[int]]]:
    """(b, d, vectors): up to 45 vectors, so lanes of r = 4 and 5 fill (17 and 33 fields);
    elements are often all-ones, the largest a lane must hold."""
    bits = draw(st.integers(1, 64))
    d = draw(st.integers(0, 70))
    top = 2**bits - 1
    element = st.one_of(st.integers(0, top), st.just(top), st.just(0))
    all_top = draw(st.booleans())
    count = draw(st.integers(1, 45))
    if all_top:
        return bits, d, [[top] * d for _ in range(count)]
    return bits, d, [draw(st.lists(element, min_size=d, max_size=d)) for _ in range(count)]


@settings(max_examples=150, deadline=None)
@given(
    sums(),
    st.sampled_from([1, 2, 3, 1 << 15]),
    st.integers(1, 3),
    st.integers(0, 2**32),
    st.data(),
)
def test_packed_sum_equals_add_packed(
    case: tuple[int, int, list[list[int]]],
    groups: int,
    workers: int,
    seed: int,
    data: st.DataObject,
) -> None:
    """Against add_packed on a copy and against Python ints, flushed at random points, on
    1-3 threads (pieces of 1-3 groups put piece edges everywhere and give threads many
    pieces to take)."""
    bits, d, vectors = case
    packed = [pack_bits(np.array(v, dtype=np.uint64), bits) for v in vectors]
    flushes = data.draw(st.sets(st.integers(0, len(vectors) - 1), max_size=3))
    saved = packed_sum_module._GROUPS, packed_sum_module.PARALLEL_MIN_D
    packed_sum_module._GROUPS, packed_sum_module.PARALLEL_MIN_D = groups, 0
    try:
        for acc in accumulators(bits, d, seed):
            start = [int(v) for v in acc]
            old = acc.copy()
            total = PackedSum(acc, bits, workers=workers)
            for i, raw in enumerate(packed):
                total.add(raw)
                add_packed(old, raw, bits)
                if i in flushes:
                    total.flush()
                    assert acc.tolist() == old.tolist()
            total.flush()
            assert acc.tolist() == old.tolist()
            width = 8 * acc.dtype.itemsize
            sums_ = [sum(col) for col in zip(*vectors, strict=True)] if d else []
            assert acc.tolist() == [(s + v) % 2**width for s, v in zip(start, sums_, strict=True)]
            total.flush()  # a second flush adds nothing
            assert acc.tolist() == old.tolist()
    finally:
        packed_sum_module._GROUPS, packed_sum_module.PARALLEL_MIN_D = saved


@pytest.mark.parametrize(("bits", "workers"), [(4, 1), (12, 2), (21, 1), (21, 2), (23, 3), (63, 2)])
def test_packed_sum_over_several_pieces_fills_its_lanes(
    bits: int, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real piece size (two full pieces and a short one) and more all-ones vectors than a
    lane holds before it must be folded in."""
    d = 2 * 8 * (1 << 15) + 13
    rng = np.random.default_rng(bits)
    monkeypatch.setattr(packed_sum_module, "PARALLEL_MIN_D", 0)  # threads at this d too
    acc = rng.integers(0, 2**63, d, dtype=np.uint64)
    want = acc.copy()
    total = PackedSum(acc, bits, workers=workers)
    r = bits % 8
    for i in range(2 ** min(r, 5) + 3):
        x = np.full(d, 2**bits - 1, np.uint64) if i % 2 else rng.integers(0, 2**bits, d, np.uint64)
        want += x  # wraps mod 2^64
        total.add(pack_bits(x, bits))
    total.flush()
    assert np.array_equal(acc, want)


@settings(max_examples=60, deadline=None)
@given(sums())
def test_refused_bytes_change_nothing(case: tuple[int, int, list[list[int]]]) -> None:
    bits, d, vectors = case
    raw = pack_bits(np.array(vectors[0], dtype=np.uint64), bits)
    acc = np.arange(d, dtype=np.uint64)
    total = PackedSum(acc, bits)
    total.add(raw)
    for bad in bad_packings(raw, bits, d):
        with pytest.raises(DecodeError):
            total.add(bad)
    total.flush()
    assert acc.tolist() == [(i + v) % 2**64 for i, v in enumerate(vectors[0])]


def test_argument_checks() -> None:
    for acc in (np.zeros(4, np.int32), np.zeros((2, 2), np.uint32), np.zeros(4, np.uint16)):
        with pytest.raises(ConfigError):
            PackedSum(acc, 21)
    frozen = np.zeros(4, np.uint32)
    frozen.flags.writeable = False
    with pytest.raises(ConfigError):
        PackedSum(frozen, 21)
    with pytest.raises(ConfigError):
        PackedSum(np.zeros(4, np.uint32), 0)
    for workers in (0, -1, True, 1.5):
        with pytest.raises(ConfigError):
            PackedSum(np.zeros(4, np.uint32), 21, workers=workers)  # type: ignore[arg-type]
