"""The mask PRG and Z_{2^b} arithmetic: range, buffers, full-seed sensitivity, bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from secureagg import ConfigError, InvalidKeyError
from secureagg.hazmat import (
    MaskBuffer,
    _prg,
    add_into,
    element_dtype,
    expand_mask,
    sub_into,
    zeros,
)
from secureagg.hazmat._prg import Keystream, apply_masks


@pytest.mark.parametrize(
    ("bits", "dtype"),
    [
        (1, np.uint16),
        (16, np.uint16),
        (17, np.uint32),
        (32, np.uint32),
        (33, np.uint64),
        (64, np.uint64),
    ],
)
def test_element_dtype(bits: int, dtype: type) -> None:
    assert element_dtype(bits) == np.dtype(dtype)


@pytest.mark.parametrize("bits", [0, 65, -1, 1.5, True])
def test_bits_out_of_range(bits: object) -> None:
    with pytest.raises(ConfigError):
        element_dtype(bits)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        MaskBuffer(4, bits)  # type: ignore[arg-type]


@pytest.mark.parametrize("bits", [1, 7, 16, 20, 32, 40, 63, 64])
def test_values_in_range_and_roughly_uniform(bits: int) -> None:
    m = expand_mask(os.urandom(32), 20000, bits)
    assert m.dtype == element_dtype(bits)
    assert int(m.max()) < 2**bits
    # Top bit of each element is a fair coin: mean within 5 standard errors of 1/2.
    top = (m >> np.array(bits - 1, dtype=m.dtype)) & np.array(1, dtype=m.dtype)
    assert abs(top.mean() - 0.5) < 5 * 0.5 / np.sqrt(m.size)


def test_every_seed_bit_matters() -> None:
    seed = bytes(range(32))
    base = expand_mask(seed, 16, 32)
    for i in range(256):
        flipped = bytearray(seed)
        flipped[i // 8] ^= 1 << (i % 8)
        out = expand_mask(bytes(flipped), 16, 32)
        assert not np.array_equal(out, base), f"seed bit {i} does not change the mask"


def test_out_buffer_is_used_and_reused() -> None:
    out = np.empty(1000, dtype=np.uint32)
    seed = os.urandom(32)
    r = expand_mask(seed, 1000, 32, out=out)
    assert r is out
    assert np.array_equal(out, expand_mask(seed, 1000, 32))
    expand_mask(os.urandom(32), 1000, 32, out=out)
    assert not np.array_equal(out, expand_mask(seed, 1000, 32))


@pytest.mark.parametrize(
    "out",
    [
        np.empty(10, np.uint64),
        np.empty(11, np.uint32),
        np.empty(20, np.uint32)[::2],
        np.empty((2, 5), np.uint32),
    ],
)
def test_bad_out_buffer(out: np.ndarray) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError):
        expand_mask(bytes(32), 10, 32, out=out)


@pytest.mark.parametrize("seed", [b"", bytes(16), bytes(31), bytes(33), "x" * 32])
def test_bad_seed(seed: object) -> None:
    with pytest.raises(InvalidKeyError):
        expand_mask(seed, 4, 32)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError):
        MaskBuffer(4, 32).add_mask(zeros(4, 32), seed)  # type: ignore[arg-type]


def test_mask_buffer_add_then_subtract_is_identity() -> None:
    for bits in (5, 16, 31, 64):
        x = expand_mask(os.urandom(32), 500, bits)
        acc = x.copy()
        buf = MaskBuffer(500, bits)
        s1, s2 = os.urandom(32), os.urandom(32)
        buf.add_mask(acc, s1)
        buf.add_mask(acc, s2)
        assert not np.array_equal(acc, x)
        buf.subtract_mask(acc, s1)
        buf.subtract_mask(acc, s2)
        assert np.array_equal(acc, x)


def test_add_sub_into_mod_2b() -> None:
    acc = np.array([7, 0, 5], dtype=np.uint16)
    add_into(acc, np.array([1, 3, 7], dtype=np.uint16), 3)
    assert acc.tolist() == [0, 3, 4]
    sub_into(acc, np.array([1, 4, 4], dtype=np.uint16), 3)
    assert acc.tolist() == [7, 7, 0]
    big = np.array([2**64 - 1], dtype=np.uint64)
    add_into(big, np.array([2], dtype=np.uint64), 64)
    assert big.tolist() == [1]


def test_add_into_bad_arrays() -> None:
    with pytest.raises(ConfigError):
        add_into(zeros(3, 32), zeros(4, 32), 32)
    with pytest.raises(ConfigError):
        add_into(zeros(3, 32), zeros(3, 16), 32)
    with pytest.raises(ConfigError):
        sub_into(zeros(3, 16), zeros(3, 16), 32)
    with pytest.raises(ConfigError):
        MaskBuffer(3, 32).add_mask(zeros(4, 32), bytes(32))
    with pytest.raises(ConfigError):
        zeros(-1, 8)


@pytest.mark.parametrize("bits", [9, 16, 20, 32, 48, 64])
def test_long_masks_match_one_keystream(bits: int) -> None:
    """Masks longer than one internal chunk are still one continuous AES-CTR keystream."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    d = 150_001
    seed = os.urandom(32)
    dtype = element_dtype(bits)
    stream = (
        Cipher(algorithms.AES256(seed), modes.CTR(bytes(16)))
        .encryptor()
        .update(bytes(d * dtype.itemsize))
    )
    want = np.frombuffer(stream, dtype=dtype.newbyteorder("<")).astype(dtype)
    if bits < dtype.itemsize * 8:
        want &= dtype.type((1 << bits) - 1)
    assert np.array_equal(expand_mask(seed, d, bits), want)
    acc = zeros(d, bits)
    MaskBuffer(d, bits).add_mask(acc, seed)
    assert np.array_equal(acc, want)
    MaskBuffer(d, bits).subtract_mask(acc, seed)
    assert not acc.any()


def test_seed_is_not_folded() -> None:
    """Flipping one bit in two bytes 4, 8 or 16 apart: an XOR fold of the seed to 32, 64 or
    128 bits would cancel the two flips and repeat the mask; the full-seed PRG does not."""
    seed = bytes(range(32))
    base = expand_mask(seed, 16, 32)
    for gap in (4, 8, 16):
        for i in range(32 - gap):
            twice = bytearray(seed)
            twice[i] ^= 0x01
            twice[i + gap] ^= 0x01
            assert not np.array_equal(expand_mask(bytes(twice), 16, 32), base)


@settings(max_examples=25)
@given(
    bits=st.sampled_from([3, 16, 22, 32, 40, 64]),
    d=st.one_of(st.integers(0, 70), st.integers(32_760, 32_780), st.integers(0, 300_000)),
    signs=st.lists(st.booleans(), max_size=5),
)
def test_apply_equals_one_mask_at_a_time(bits: int, d: int, signs: list[bool]) -> None:
    """``apply`` (every mask per 256 KiB piece) and one mask at a time both give x plus and
    minus the whole keystreams mod 2^b, for lengths across several pieces (32,768 to 131,072
    elements each, by word width) and at a piece's edge."""
    seeds = [os.urandom(32) for _ in signs]
    x = expand_mask(os.urandom(32), d, bits)
    # The reference: each whole mask from expand_mask (one keystream, not in pieces), summed
    # in uint64, which wraps mod 2^64 and so is exact mod 2^b, and reduced once at the end.
    want = x.astype(np.uint64)
    for seed, plus in zip(seeds, signs, strict=True):
        mask = expand_mask(seed, d, bits).astype(np.uint64)
        want = want + mask if plus else want - mask
    if bits < 64:
        want &= np.uint64((1 << bits) - 1)
    one, buf = x.copy(), MaskBuffer(d, bits)
    for seed, plus in zip(seeds, signs, strict=True):
        (buf.add_mask if plus else buf.subtract_mask)(one, seed)
    assert np.array_equal(one.astype(np.uint64), want)
    together = x.copy()
    buf.apply(
        together,
        add=[s for s, plus in zip(seeds, signs, strict=True) if plus],
        subtract=[s for s, plus in zip(seeds, signs, strict=True) if not plus],
    )
    assert together.dtype == x.dtype and np.array_equal(together.astype(np.uint64), want)


def test_apply_checks_every_seed_before_touching_acc() -> None:
    acc = expand_mask(os.urandom(32), 1000, 32)
    before = acc.copy()
    with pytest.raises(InvalidKeyError):
        MaskBuffer(1000, 32).apply(acc, add=[os.urandom(32)], subtract=[os.urandom(32), b"short"])
    assert np.array_equal(acc, before)
    MaskBuffer(1000, 32).apply(acc)  # no seeds: nothing to do
    assert np.array_equal(acc, before)


@settings(max_examples=40, deadline=None)
@given(
    bits=st.integers(1, 64),
    d=st.integers(0, 70_000),
    n_add=st.integers(0, 7),
    n_sub=st.integers(0, 7),
    workers=st.integers(1, 4),
)
def test_apply_masks_in_threads_equals_one_pass(
    bits: int, d: int, n_add: int, n_sub: int, workers: int
) -> None:
    """Seeds split over threads (each into its own vector, summed at the end) give exactly
    MaskBuffer.apply's result, for every width and across 256 KiB pieces (threads forced on
    for these small sizes)."""
    from secureagg.hazmat import _prg

    saved = _prg.PARALLEL_MIN, _prg.PARALLEL_MIN_D
    _prg.PARALLEL_MIN = _prg.PARALLEL_MIN_D = 0
    add = [os.urandom(32) for _ in range(n_add)]
    sub = [os.urandom(32) for _ in range(n_sub)]
    start = np.random.default_rng(d).integers(0, 2**bits, d, dtype=np.uint64)
    want = start.astype(element_dtype(bits))
    MaskBuffer(d, bits).apply(want, add=add, subtract=sub)
    got = start.astype(element_dtype(bits))
    try:
        apply_masks(got, bits, add=add, subtract=sub, workers=workers)
    finally:
        _prg.PARALLEL_MIN, _prg.PARALLEL_MIN_D = saved
    assert np.array_equal(got, want)


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("bits", [21, 32, 40])
def test_apply_masks_pool_vectors_start_from_zero(
    monkeypatch: pytest.MonkeyPatch, bits: int, workers: int
) -> None:
    """Every run handed to a pool thread goes into a kept vector taken for this call, whose
    old contents (here: all ones) must not reach the sum; runs forced onto other threads."""
    import threading

    from secureagg.hazmat import _prg

    monkeypatch.setattr(_prg, "PARALLEL_MIN", 0)
    monkeypatch.setattr(_prg, "PARALLEL_MIN_D", 0)
    kept: dict[int, np.ndarray] = {}

    def stale_vector(d: int, dtype: np.dtype) -> np.ndarray:  # type: ignore[type-arg]
        me = threading.get_ident()
        if me not in kept:
            kept[me] = np.full(d, np.iinfo(dtype).max, dtype)
        return kept[me]

    def in_other_threads(part, ranges, threads):  # type: ignore[no-untyped-def]
        worker = threading.Thread(target=lambda: [part(lo, hi) for lo, hi in ranges])
        worker.start()
        worker.join()

    monkeypatch.setattr(_prg, "_take_vector", stale_vector)
    monkeypatch.setattr(_prg, "run_parts", in_other_threads)
    d = 70_000
    add = [os.urandom(32) for _ in range(3)]
    sub = [os.urandom(32) for _ in range(2)]
    start = np.random.default_rng(bits).integers(0, 2**bits, d, dtype=np.uint64)
    want = start.astype(element_dtype(bits))
    MaskBuffer(d, bits).apply(want, add=add, subtract=sub)
    for _ in range(2):  # the second call finds the vector the first one left
        got = start.astype(element_dtype(bits))
        apply_masks(got, bits, add=add, subtract=sub, workers=workers)
        assert np.array_equal(got, want)


def test_apply_masks_checks_workers_and_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    from secureagg.hazmat import _prg

    monkeypatch.setattr(_prg, "PARALLEL_MIN", 0)
    monkeypatch.setattr(_prg, "PARALLEL_MIN_D", 0)
    acc = np.zeros(5, np.uint32)
    for workers in (0, -1, True, 1.5):
        with pytest.raises(ConfigError):
            apply_masks(acc, 32, add=[bytes(32)], workers=workers)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError):
        apply_masks(acc, 32, add=[bytes(32), bytes(31)], subtract=[bytes(32)], workers=2)
    assert not acc.any()  # nothing changed before the bad seed was found


@settings(max_examples=60)
@given(
    key=st.binary(min_size=32, max_size=32),
    cuts=st.lists(st.integers(0, 70_000), max_size=8),
    gcm=st.booleans(),
)
def test_keystream_is_aes256_ctr_from_zero_in_any_pieces(
    key: bytes, cuts: list[int], gcm: bool
) -> None:
    """Keystream (CTR blocks 0 and 1, then GCM's counter from 2) writes exactly the
    AES-256-CTR keystream from counter 0, however the reads are cut (inside the first two
    blocks, across them, odd lengths, longer than one internal chunk); a stream declared
    longer than GCM's counter can reach is CTR throughout, with the same bytes."""
    total = sum(cuts)
    with pytest.MonkeyPatch.context() as patch:
        if gcm:  # GCM from block 2 whatever the length
            patch.setattr(_prg, "_GCM_MIN", 0)
        else:  # as if ``total`` were beyond GCM's 2^36 bytes
            patch.setattr(_prg, "_GCM_MAX", max(0, total - _prg._HEAD - 1))
        stream = Keystream(key, total)
    assert len(stream._head) == (_prg._HEAD if gcm else 0)
    out = bytearray(total)
    view, pos = memoryview(out), 0
    for n in cuts:
        stream.fill(view[pos : pos + n])
        pos += n
    want = Cipher(algorithms.AES256(key), modes.CTR(bytes(16))).encryptor().update(bytes(total))
    assert bytes(out) == want
