"""The wire codec: every message round-trips, and the decoder refuses anything malformed."""

from __future__ import annotations

import contextlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secureagg import DecodeError
from secureagg.hazmat import element_dtype, unpack_bits
from secureagg.protocol import (
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencySignature,
    KeyEntry,
    KeysBroadcast,
    MaskedInput,
    SeedCommitments,
    SeedReveal,
    ShareKeys,
    SharesDelivery,
    UnmaskRequest,
    UnmaskResponse,
    decode,
    encode,
)
from secureagg.protocol import _codec as codec
from secureagg.protocol._codec import CIPHERTEXT_SIZE, MAGIC, MAX_CLIENTS, VERSION
from secureagg.protocol._config import MAX_VECTOR_LENGTH, ROUND_ID_MAX, ROUND_ID_MIN
from secureagg.protocol._wire import Reader

RID = bytes(range(24))
K1, K2 = b"\x01" * 32, b"\x02" * 32
SIG = b"\x07" * 64
CT = b"\x09" * CIPHERTEXT_SIZE
SHARE = b"\x05" * 66


def samples() -> list[object]:
    vec16 = np.arange(7, dtype=np.uint16)
    vec64 = np.array([0, 2**64 - 1, 5], dtype=np.uint64)
    return [
        AdvertiseKeys(RID, 3, K1, K2),
        AdvertiseKeys(RID, 3, K1, K2, SIG),
        AdvertiseKeys(RID, 3, K1, K2, SIG, b"\x06" * 32),
        AdvertiseKeys(RID, 3, K1, K2, b"", b"\x06" * 32),
        KeysBroadcast(RID, 2, (KeyEntry(1, K1, K2), KeyEntry(2, K2, K1, SIG))),
        KeysBroadcast(RID, 2, ()),
        KeysBroadcast(RID, 2, (KeyEntry(1, K1, K2),), ((1, K2), (2, K1), (7, K1))),
        SeedCommitments(RID, 2, ((1, K1), (2, K2), (9, K1))),
        SeedCommitments(RID, 2, ()),
        SeedReveal(RID, 4, K2),
        ShareKeys(RID, 1, b"\x03" * 32, b"\x04" * 32, ((2, CT), (9, CT))),
        SharesDelivery(RID, 9, ((1, CT),)),
        MaskedInput(RID, 4, (), vec16),
        MaskedInput(RID, 4, (2, 3), vec64),
        MaskedInput(RID, 4, (), np.arange(5, dtype=np.uint32)),
        ConsistencyRequest(RID, 5, (1, 2, 5)),
        ConsistencySignature(RID, 5, SIG),
        UnmaskRequest(RID, 5, (1, 5), (2,)),
        UnmaskRequest(RID, 5, (1, 5), (), ((1, SIG), (5, SIG))),
        UnmaskResponse(RID, 5, ((1, SHARE), (5, SHARE)), ((2, SHARE),)),
    ]


@pytest.mark.parametrize("msg", samples(), ids=lambda m: type(m).__name__)
def test_round_trip(msg: object) -> None:
    data = encode(msg)  # type: ignore[arg-type]
    assert data.startswith(MAGIC + bytes((VERSION,)))
    assert decode(data) == msg


@pytest.mark.parametrize("msg", samples(), ids=lambda m: type(m).__name__)
def test_every_truncation_and_extension_is_refused(msg: object) -> None:
    data = encode(msg)  # type: ignore[arg-type]
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode(data[:cut])
    with pytest.raises(DecodeError):
        decode(data + b"\x00")


def test_header_checks() -> None:
    good = encode(ConsistencySignature(RID, 5, SIG))
    for bad in (
        b"XAGG" + good[4:],  # magic
        good[:4] + bytes((VERSION + 1,)) + good[5:],  # a later version
        good[:4] + b"\x01" + good[5:],  # version 1: masked inputs in 2/4/8-byte words
        good[:5] + b"\x63" + good[6:],  # unknown type
        good[:6] + b"\x08" + good[7:],  # round id too short for the bytes that follow
        good[: 7 + 24] + b"\x00\x00\x00\x00" + good[7 + 24 + 4 :],  # client id 0
    ):
        with pytest.raises(DecodeError):
            decode(bad)
    with pytest.raises(DecodeError):
        decode("text")  # type: ignore[arg-type]


def test_ids_must_be_sorted_and_unique() -> None:
    for ids in ((2, 1), (1, 1), (0, 3)):
        raw = encode(ConsistencyRequest(RID, 5, (7, 8)))
        head = raw[: -(4 + 8)]
        bad = head + struct.pack(">I", 2) + struct.pack(">2I", *ids)
        with pytest.raises(DecodeError, match="increasing"):
            decode(bad)
    pairs = encode(ShareKeys(RID, 1, b"\x03" * 32, b"\x04" * 32, ((2, CT), (3, CT))))
    swapped = pairs.replace(struct.pack(">I", 2) + CT, struct.pack(">I", 4) + CT)
    with pytest.raises(DecodeError):
        decode(swapped)


def test_counts_that_cannot_fit_are_refused_before_reading() -> None:
    head = encode(ConsistencyRequest(RID, 5, ()))[:-4]
    with pytest.raises(DecodeError, match=r"fit|limit"):
        decode(head + struct.pack(">I", 2**32 - 1))


def test_vector_width_and_signature_length_checks() -> None:
    raw = encode(MaskedInput(RID, 4, (), np.arange(3, dtype=np.uint32), 21))
    width_at = len(raw) - 8 - 4 - 1  # 3 elements of 21 bits: 8 bytes
    assert raw[width_at] == 21
    for width in (0, 65, 255):
        with pytest.raises(DecodeError, match="width"):
            decode(raw[:width_at] + bytes((width,)) + raw[width_at + 1 :])
    for width in (16, 24):  # a valid width whose size is not the bytes that follow
        with pytest.raises(DecodeError):
            decode(raw[:width_at] + bytes((width,)) + raw[width_at + 1 :])
    adv = encode(AdvertiseKeys(RID, 3, K1, K2, SIG))
    with pytest.raises(DecodeError, match="signature"):
        decode(adv[:-66] + b"\x20" + SIG[:32] + b"\x00")
    for size in (1, 16, 31, 33):  # a graph-seed commitment is 0 or 32 bytes
        with pytest.raises(DecodeError, match="commitment"):
            decode(adv[:-1] + bytes((size,)) + b"\x06" * size)


def test_graph_seed_messages_refuse_unsorted_ids_and_wrong_sizes() -> None:
    raw = encode(SeedCommitments(RID, 2, ((1, K1), (2, K2))))
    swapped = raw[:-72] + struct.pack(">I", 2) + K1 + struct.pack(">I", 1) + K2
    with pytest.raises(DecodeError, match="increasing"):
        decode(swapped)
    with pytest.raises(DecodeError):
        decode(raw[:-1])
    reveal = encode(SeedReveal(RID, 4, K2))
    for bad in (reveal[:-1], reveal + b"\x00"):
        with pytest.raises(DecodeError):
            decode(bad)
    keys = encode(KeysBroadcast(RID, 2, (), ((3, K1), (3, K2))))
    with pytest.raises(DecodeError, match="increasing"):
        decode(keys)


@pytest.mark.parametrize("bits", [1, 5, 12, 21, 34, 63])
def test_masked_input_is_b_bits_per_element(bits: int) -> None:
    d = 1001
    vec = np.random.default_rng(bits).integers(0, 2**bits, d, dtype=np.uint64)
    msg = MaskedInput(RID, 4, (2,), vec.astype(element_dtype(bits)), bits)
    raw = encode(msg)
    assert len(raw) == codec.masked_input_size(d, bits, round_id_len=len(RID), excluded=1)
    assert len(raw) - (bits * d + 7) // 8 == 4 + 3 + len(RID) + 4 + 4 + 4 + 1 + 4
    assert decode(raw) == msg


@settings(max_examples=80, deadline=None)
@given(bits=st.integers(1, 64), d=st.integers(1, 40), data=st.data())
def test_masked_input_padding_bits_and_flips(bits: int, d: int, data: st.DataObject) -> None:
    """Nonzero padding bits are refused; flipping any packed bit changes exactly one element."""
    words = data.draw(st.lists(st.integers(0, 2**bits - 1), min_size=d, max_size=d))
    vec = np.array(words, dtype=np.uint64).astype(element_dtype(bits))
    raw = encode(MaskedInput(RID, 4, (), vec, bits))
    size = (bits * d + 7) // 8
    body = len(raw) - size
    used = bits * d
    for pad in range(used, 8 * size):  # every padding bit, set alone
        bad = bytearray(raw)
        bad[body + pad // 8] |= 1 << (pad % 8)
        with pytest.raises(DecodeError, match="padding"):
            decode(bytes(bad))
    flip = data.draw(st.integers(0, used - 1))
    bad = bytearray(raw)
    bad[body + flip // 8] ^= 1 << (flip % 8)
    got = decode(bytes(bad))
    assert isinstance(got, MaskedInput)
    differs = np.flatnonzero(got.vector != vec)
    assert differs.size == 1
    diff = int(got.vector[differs[0]]) ^ int(vec[differs[0]])
    assert diff & (diff - 1) == 0  # one bit


ids_strategy = st.lists(st.integers(1, 2**32 - 1), max_size=20, unique=True).map(
    lambda xs: tuple(sorted(xs))
)


@settings(max_examples=60, deadline=None)
@given(
    rid=st.binary(min_size=16, max_size=64),
    sender=st.integers(1, 2**32 - 1),
    excluded=ids_strategy,
    words=st.lists(st.integers(0, 2**32 - 1), max_size=50),
    survivors=ids_strategy,
)
def test_round_trip_random_fields(
    rid: bytes, sender: int, excluded: tuple[int, ...], words: list[int], survivors: tuple[int, ...]
) -> None:
    vec = np.array(words, dtype=np.uint32)
    for msg in (
        MaskedInput(rid, sender, excluded, vec),
        UnmaskRequest(rid, sender, survivors, excluded),
        UnmaskResponse(rid, sender, tuple((i, SHARE) for i in survivors), ()),
        SeedCommitments(rid, sender, tuple((i, K1) for i in survivors)),
        KeysBroadcast(rid, sender, (), tuple((i, K2) for i in excluded)),
    ):
        assert decode(encode(msg)) == msg


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_escape_as_anything_but_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(MAGIC + bytes((VERSION,)) + data)


def test_round_id_length_limits() -> None:
    for rid in (bytes(15), bytes(65)):
        # encode does not check (sessions build messages); the decoder refuses both
        with pytest.raises(DecodeError, match="round id"):
            decode(encode(ConsistencySignature(rid, 5, SIG)))
    for rid in (bytes(16), bytes(64)):
        assert decode(encode(ConsistencySignature(rid, 5, SIG))).round_id == rid


def test_counts_over_the_client_limit_are_refused() -> None:
    head = encode(ConsistencyRequest(RID, 5, ()))[:-4]
    with pytest.raises(DecodeError, match="limit"):
        decode(head + struct.pack(">I", MAX_CLIENTS + 1))


def test_vectors_over_the_length_limit_are_refused() -> None:
    raw = encode(MaskedInput(RID, 4, (), np.arange(3, dtype=np.uint32)))
    head = raw[: -(12 + 4)]
    assert raw[len(head) - 1] == 32  # b, just before the length
    with pytest.raises(DecodeError, match="limit"):
        decode(head + struct.pack(">I", MAX_VECTOR_LENGTH + 1))


def test_oversize_messages_are_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(UnmaskResponse(RID, 5, ((1, SHARE),), ()))
    monkeypatch.setattr(codec, "MAX_MESSAGE_BYTES", len(data) - 1)
    with pytest.raises(DecodeError, match="exceeds"):
        decode(data)
    monkeypatch.setattr(codec, "MAX_MESSAGE_BYTES", len(data))
    assert decode(data) == UnmaskResponse(RID, 5, ((1, SHARE),), ())


def test_every_unknown_type_byte_is_refused() -> None:
    data = encode(ConsistencySignature(RID, 5, SIG))
    for t in (0, *range(12, 256)):
        with pytest.raises(DecodeError, match="unknown message type"):
            decode(data[:5] + bytes((t,)) + data[6:])


def _agree(data: bytes) -> None:
    """decode_packed refuses exactly what decode refuses; otherwise it reads the same
    message, a masked input's elements left packed, a ShareKeys' ciphertexts joined."""
    try:
        want = decode(data)
    except DecodeError:
        with pytest.raises(DecodeError):
            codec.decode_packed(data)
        return
    got = codec.decode_packed(data)
    if isinstance(want, ShareKeys):
        assert isinstance(got, codec.PackedShareKeys)
        assert (got.round_id, got.sender, got.seed_commitment, got.keys_digest) == (
            want.round_id,
            want.sender,
            want.seed_commitment,
            want.keys_digest,
        )
        assert got.recipients == tuple(v for v, _ in want.ciphertexts)
        assert got.ciphertexts == b"".join(ct for _, ct in want.ciphertexts)
        return
    if not isinstance(want, MaskedInput):
        assert got == want
        return
    assert isinstance(got, codec.PackedInput)
    assert (got.round_id, got.sender, got.excluded, got.bits, got.d) == (
        want.round_id,
        want.sender,
        want.excluded,
        want.width,
        want.vector.shape[0],
    )
    assert np.array_equal(unpack_bits(got.packed, got.d, got.bits), want.vector)


@pytest.mark.parametrize("msg", samples(), ids=lambda m: type(m).__name__)
def test_decode_packed_agrees_with_decode_on_every_cut(msg: object) -> None:
    data = encode(msg)  # type: ignore[arg-type]
    for cut in range(len(data) + 1):
        _agree(data[:cut])
    _agree(data + b"\x00")


@settings(max_examples=150, deadline=None)
@given(bits=st.integers(1, 64), d=st.integers(0, 40), data=st.data())
def test_decode_packed_agrees_with_decode_on_mutated_masked_inputs(
    bits: int, d: int, data: st.DataObject
) -> None:
    """Every padding bit, random byte changes, and random bytes after the header."""
    words = data.draw(st.lists(st.integers(0, 2**bits - 1), min_size=d, max_size=d))
    raw = encode(MaskedInput(RID, 4, (), np.array(words, dtype=np.uint64), bits))
    size = (bits * d + 7) // 8
    body = len(raw) - size
    for pad in range(bits * d, 8 * size):
        bad = bytearray(raw)
        bad[body + pad // 8] |= 1 << (pad % 8)
        with pytest.raises(DecodeError, match="padding"):
            codec.decode_packed(bytes(bad))
    bad = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(bad) - 1))
        bad[pos] = data.draw(st.integers(0, 255))
    _agree(bytes(bad))
    _agree(raw[:body] + data.draw(st.binary(max_size=60)))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(1, 2**32 - 1), max_size=12, unique=True),
    st.data(),
)
def test_decode_packed_agrees_with_decode_on_mutated_share_keys(
    ids: list[int], data: st.DataObject
) -> None:
    """Unsorted ids, changed bytes (zero or repeated ids among them) and changed counts:
    decode_packed refuses what decode refuses and reads the same recipients and ciphertexts."""
    cts = [data.draw(st.binary(min_size=CIPHERTEXT_SIZE, max_size=CIPHERTEXT_SIZE)) for _ in ids]
    order = data.draw(st.sampled_from(["sorted", "as drawn"]))
    drawn = list(zip(ids, cts, strict=True))
    pairs = sorted(drawn) if order == "sorted" else drawn
    body = struct.pack(">I", len(pairs)) + b"".join(struct.pack(">I", v) + c for v, c in pairs)
    head = encode(ShareKeys(RID, 1, b"\x03" * 32, b"\x04" * 32, ()))[:-4]
    raw = head + body
    _agree(raw)
    bad = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(len(head), len(bad) - 1))
        bad[pos] = data.draw(st.sampled_from([0, 1, 255, data.draw(st.integers(0, 255))]))
    _agree(bytes(bad))
    _agree(head + struct.pack(">I", data.draw(st.integers(0, 20))) + body[4:])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_decode_packed_on_random_bytes(data: bytes) -> None:
    _agree(MAGIC + bytes((VERSION,)) + data)
    _agree(MAGIC + bytes((VERSION, 5)) + data)


@settings(max_examples=60, deadline=None)
@given(
    rid=st.binary(min_size=16, max_size=64),
    recipient=st.integers(1, 2**32 - 1),
    ids=ids_strategy,
    signed=st.booleans(),
    data=st.data(),
)
def test_the_servers_piecewise_encoders_equal_encode(
    rid: bytes, recipient: int, ids: tuple[int, ...], signed: bool, data: st.DataObject
) -> None:
    """keys_broadcast_bytes and shares_delivery_bytes build exactly encode's bytes."""
    key = st.binary(min_size=32, max_size=32)
    entries = tuple(
        KeyEntry(i, data.draw(key), data.draw(key), SIG if signed else b"") for i in ids
    )
    got = codec.keys_broadcast_bytes(rid, recipient, [codec.key_entry_bytes(e) for e in entries])
    assert got == encode(KeysBroadcast(rid, recipient, entries))
    cts = tuple(
        (i, data.draw(st.binary(min_size=CIPHERTEXT_SIZE, max_size=CIPHERTEXT_SIZE))) for i in ids
    )
    pieces = [p for i, ct in cts for p in (struct.pack(">I", i), ct)]
    got = codec.shares_delivery_bytes(rid, recipient, len(cts), pieces)
    assert got == encode(SharesDelivery(rid, recipient, cts))


def _head_field_by_field(data: bytes) -> tuple[object, bytes, int, int]:
    """The message head read one field at a time, as the decoder always did (a reference)."""
    r = Reader(data)
    if r.take(4) != MAGIC:
        raise DecodeError("not a secureagg message (bad magic)")
    version = r.u8()
    if version != VERSION:
        raise DecodeError(f"unsupported wire version {version} (this is version {VERSION})")
    decoder = codec._DECODERS.get(r.u8())
    if decoder is None:
        raise DecodeError("unknown message type")
    rid_len = r.u8()
    if not ROUND_ID_MIN <= rid_len <= ROUND_ID_MAX:
        raise DecodeError(f"round id of {rid_len} bytes")
    rid = r.take(rid_len)
    party = r.u32()
    return decoder, rid, party, len(data) - r.remaining()


def _outcome(read: object, data: bytes) -> object:
    try:
        return read(data)  # type: ignore[operator]
    except DecodeError as exc:
        return ("DecodeError", str(exc))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(samples()), st.integers(0, 60), st.binary(max_size=4), st.data())
def test_the_one_call_head_reads_what_field_by_field_reading_reads(
    msg: object, cut: int, patch: bytes, data: st.DataObject
) -> None:
    """The head (magic, version, type, round id, party) read with one struct call gives the
    same decoder, round id, party and body offset, or the same DecodeError, as reading it
    field by field, on every cut and on bytes patched anywhere in it."""
    raw = encode(msg)  # type: ignore[arg-type]
    at = data.draw(st.integers(0, 60))
    variants = [raw[:cut], raw[:at] + patch + raw[at + len(patch) :]]
    for v in variants:

        def fast(b: bytes) -> tuple[object, bytes, int, int]:
            decoder, rid, party, r = codec._head(b, codec._DECODERS)
            return decoder, rid, party, len(b) - r.remaining()

        assert _outcome(fast, v) == _outcome(_head_field_by_field, v)
