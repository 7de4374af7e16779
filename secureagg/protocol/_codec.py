"""The versioned binary wire format of every message, and its strict decoder.

Layout: b"SAGG" | version u8 | type u8 | round-id length u8 | round id | party u32 | body.
``party`` is the sender of a client message and the recipient of a server message.
Integers are big-endian; vector words are little-endian. See docs/protocol.md for bodies.
"""

from __future__ import annotations

import functools
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from secureagg._exceptions import DecodeError
from secureagg.hazmat import (
    MAX_BITS,
    OVERHEAD,
    SHARE_SIZE,
    pack_bits_nocopy,
    packed_size,
    unpack_bits,
)
from secureagg.protocol._commitment import COMMITMENT_SIZE, REVEAL_SIZE
from secureagg.protocol._config import MAX_CLIENTS, MAX_VECTOR_LENGTH, ROUND_ID_MAX, ROUND_ID_MIN
from secureagg.protocol._messages import (
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencySignature,
    KeyEntry,
    KeysBroadcast,
    MaskedInput,
    Message,
    SeedCommitments,
    SeedReveal,
    ShareKeys,
    SharesDelivery,
    UnmaskRequest,
    UnmaskResponse,
)
from secureagg.protocol._wire import Reader, check_increasing, id_list, u8, u32

__all__ = [
    "CIPHERTEXT_SIZE",
    "MAGIC",
    "MAX_CLIENTS",
    "MAX_MESSAGE_BYTES",
    "PUBLIC_KEY_SIZE",
    "SIGNATURE_SIZE",
    "VERSION",
    "PackedInput",
    "PackedShareKeys",
    "decode",
    "decode_packed",
    "encode",
    "key_entry_bytes",
    "keys_broadcast_bytes",
    "masked_input_size",
    "pairs_bytes",
    "pairs_tail",
    "seed_commitments_bytes",
    "shares_delivery_bytes",
]

MAGIC = b"SAGG"
VERSION = 3  # 3: graph-seed commit-reveal; 2: b-bit packed masked inputs; 1: whole words
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
CIPHERTEXT_SIZE = OVERHEAD + 2 * SHARE_SIZE  # nonce + (share of s_sk, share of b) + tag
MAX_MESSAGE_BYTES = 2**31

_TYPES: dict[type, int] = {
    AdvertiseKeys: 1,
    KeysBroadcast: 2,
    ShareKeys: 3,
    SharesDelivery: 4,
    MaskedInput: 5,
    ConsistencyRequest: 6,
    ConsistencySignature: 7,
    UnmaskRequest: 8,
    UnmaskResponse: 9,
    SeedCommitments: 10,
    SeedReveal: 11,
}
_ID_PAIR = struct.Struct(">I")
_PAIRS_AT_ONCE = 1024  # lists up to this long are read with one cached struct
_LITTLE = sys.byteorder == "little"
_WHOLE_WORDS: dict[int, np.dtype[Any]] = {
    16: np.dtype("<u2"),
    32: np.dtype("<u4"),
    64: np.dtype("<u8"),
}


def _header(msg_type: int, round_id: bytes, party: int) -> bytes:
    return MAGIC + bytes((VERSION, msg_type, len(round_id))) + round_id + u32(party)


def _signature(sig: bytes) -> bytes:
    return u8(len(sig)) + sig


def _pairs(items: tuple[tuple[int, bytes], ...]) -> bytes:
    return u32(len(items)) + b"".join(u32(i) + blob for i, blob in items)


def encode(msg: Message) -> bytes:
    """The wire bytes of ``msg``. Assumes a well-formed message (sessions build them).

    Parameters:
        msg: The message.

    Returns:
        Its wire bytes.
    """
    if isinstance(msg, AdvertiseKeys):
        head = _header(1, msg.round_id, msg.sender)
        keys = msg.c_pk + msg.s_pk + _signature(msg.signature)
        return head + keys + u8(len(msg.graph_commitment)) + msg.graph_commitment
    if isinstance(msg, KeysBroadcast):
        body = b"".join(
            u32(e.client) + e.c_pk + e.s_pk + _signature(e.signature) for e in msg.entries
        )
        head = _header(2, msg.round_id, msg.recipient)
        return head + u32(len(msg.entries)) + body + _pairs(msg.reveals)
    if isinstance(msg, SeedCommitments):
        return _header(10, msg.round_id, msg.recipient) + _pairs(msg.commitments)
    if isinstance(msg, SeedReveal):
        return _header(11, msg.round_id, msg.sender) + msg.reveal
    if isinstance(msg, ShareKeys):
        head = _header(3, msg.round_id, msg.sender)
        return head + msg.seed_commitment + msg.keys_digest + _pairs(msg.ciphertexts)
    if isinstance(msg, SharesDelivery):
        return _header(4, msg.round_id, msg.recipient) + _pairs(msg.ciphertexts)
    if isinstance(msg, MaskedInput):
        vec = msg.vector
        return b"".join(
            (
                _header(5, msg.round_id, msg.sender),
                id_list(msg.excluded),
                u8(msg.width),
                u32(vec.shape[0]),
                pack_bits_nocopy(vec, msg.width),
            )
        )
    if isinstance(msg, ConsistencyRequest):
        return _header(6, msg.round_id, msg.recipient) + id_list(msg.survivors)
    if isinstance(msg, ConsistencySignature):
        return _header(7, msg.round_id, msg.sender) + msg.signature
    if isinstance(msg, UnmaskRequest):
        head = _header(8, msg.round_id, msg.recipient)
        return head + id_list(msg.survivors) + id_list(msg.dropped) + _pairs(msg.signatures)
    head = _header(9, msg.round_id, msg.sender)
    return head + _pairs(msg.seed_shares) + _pairs(msg.key_shares)


def key_entry_bytes(entry: KeyEntry) -> bytes:
    """One entry of a KeysBroadcast on the wire (the server encodes each client's once)."""
    return u32(entry.client) + entry.c_pk + entry.s_pk + _signature(entry.signature)


def keys_broadcast_bytes(
    round_id: bytes, recipient: int, entries: list[bytes], reveals: bytes = b"\x00" * 4
) -> bytes:
    """``encode(KeysBroadcast(round_id, recipient, ...))`` from its entries'
    :func:`key_entry_bytes`, in increasing client order, and its reveals as
    :func:`pairs_bytes` (the same bytes for every recipient; default: none)."""
    return b"".join([_header(2, round_id, recipient), u32(len(entries)), *entries, reveals])


def pairs_bytes(items: tuple[tuple[int, bytes], ...]) -> bytes:
    """A counted list of (u32 id, fixed-size blob) pairs, ids increasing, as the wire has it
    (a KeysBroadcast's reveals, a SeedCommitments' list): encoded once, sent to many."""
    return _pairs(items)


def pairs_tail(data: bytes, count: int, blob_size: int) -> bytes:
    """The last counted pair list of a decoded message's bytes (a SeedCommitments' list, a
    KeysBroadcast's reveals), as :func:`pairs_bytes` gives it: no re-encoding."""
    return data[len(data) - 4 - count * (4 + blob_size) :]


def seed_commitments_bytes(round_id: bytes, recipient: int, commitments: bytes) -> bytes:
    """``encode(SeedCommitments(round_id, recipient, ...))`` from its list's
    :func:`pairs_bytes`."""
    return _header(10, round_id, recipient) + commitments


def shares_delivery_bytes(round_id: bytes, recipient: int, count: int, pairs: list[bytes]) -> bytes:
    """``encode(SharesDelivery(...))`` from its ``count`` (sender, ciphertext) pairs as
    wire pieces (u32 sender, then its ciphertext), in increasing sender order."""
    return b"".join([_header(4, round_id, recipient), u32(count), *pairs])


def _read_signature(r: Reader) -> bytes:
    n = r.u8()
    if n not in (0, SIGNATURE_SIZE):
        raise DecodeError(f"a signature is 0 or {SIGNATURE_SIZE} bytes, got {n}")
    return r.take(n)


@functools.lru_cache(maxsize=256)
def _pairs_format(n: int, blob_size: int) -> struct.Struct:
    """n (u32 id, blob) pairs as one struct: the whole list is read in one call."""
    return struct.Struct(">" + f"I{blob_size}s" * n)


def _read_pairs(r: Reader, blob_size: int) -> tuple[tuple[int, bytes], ...]:
    n = r.count(4 + blob_size, MAX_CLIENTS)
    raw = r.take(n * (4 + blob_size))
    if n <= _PAIRS_AT_ONCE:
        flat = _pairs_format(n, blob_size).unpack(raw)  # id, blob, id, blob, ...
        ids: Any = flat[::2]
        out = tuple(zip(ids, flat[1::2], strict=True))
    else:
        step = 4 + blob_size
        out = tuple(
            (_ID_PAIR.unpack_from(raw, k)[0], raw[k + 4 : k + step])
            for k in range(0, len(raw), step)
        )
        ids = [i for i, _ in out]
    check_increasing(ids)
    return out


@functools.lru_cache(maxsize=256)
def _ids_format(n: int, blob_size: int) -> struct.Struct:
    """The ids of n (u32 id, blob) pairs, the blobs skipped: one call reads them all."""
    return struct.Struct(">" + f"I{blob_size}x" * n)


def _read_pairs_packed(r: Reader, blob_size: int) -> tuple[tuple[int, ...], bytes]:
    """:func:`_read_pairs`' list as its ids and its blobs back to back (the same checks),
    without a tuple per pair."""
    n = r.count(4 + blob_size, MAX_CLIENTS)
    raw = r.take(n * (4 + blob_size))
    if n <= _PAIRS_AT_ONCE:
        ids: tuple[int, ...] = _ids_format(n, blob_size).unpack(raw)
    else:
        ids = tuple(_ID_PAIR.unpack_from(raw, k)[0] for k in range(0, len(raw), 4 + blob_size))
    check_increasing(ids)
    pairs = np.frombuffer(raw, dtype=np.uint8).reshape(n, 4 + blob_size)
    return ids, pairs[:, 4:].tobytes()  # one C-level copy of every blob, ids dropped


def _advertise(r: Reader, rid: bytes, party: int) -> Message:
    c_pk = r.take(PUBLIC_KEY_SIZE)
    s_pk = r.take(PUBLIC_KEY_SIZE)
    signature = _read_signature(r)
    n = r.u8()
    if n not in (0, COMMITMENT_SIZE):
        raise DecodeError(f"a graph-seed commitment is 0 or {COMMITMENT_SIZE} bytes, got {n}")
    return AdvertiseKeys(rid, party, c_pk, s_pk, signature, r.take(n))


def _keys(r: Reader, rid: bytes, party: int) -> Message:
    n = r.count(4 + 2 * PUBLIC_KEY_SIZE + 1, MAX_CLIENTS)
    entries = []
    for _ in range(n):
        client = r.u32()
        c_pk = r.take(PUBLIC_KEY_SIZE)
        s_pk = r.take(PUBLIC_KEY_SIZE)
        entries.append(KeyEntry(client, c_pk, s_pk, _read_signature(r)))
    check_increasing([e.client for e in entries])
    return KeysBroadcast(rid, party, tuple(entries), _read_pairs(r, REVEAL_SIZE))


def _seed_commitments(r: Reader, rid: bytes, party: int) -> Message:
    return SeedCommitments(rid, party, _read_pairs(r, COMMITMENT_SIZE))


def _seed_reveal(r: Reader, rid: bytes, party: int) -> Message:
    return SeedReveal(rid, party, r.take(REVEAL_SIZE))


def _share_keys(r: Reader, rid: bytes, party: int) -> Message:
    commitment = r.take(COMMITMENT_SIZE)
    digest = r.take(COMMITMENT_SIZE)
    return ShareKeys(rid, party, commitment, digest, _read_pairs(r, CIPHERTEXT_SIZE))


def _delivery(r: Reader, rid: bytes, party: int) -> Message:
    return SharesDelivery(rid, party, _read_pairs(r, CIPHERTEXT_SIZE))


def _masked(r: Reader, rid: bytes, party: int) -> Message:
    excluded = r.ids(MAX_CLIENTS)
    bits = r.u8()
    if not 1 <= bits <= MAX_BITS:
        raise DecodeError(f"element width must be 1 to {MAX_BITS} bits, got {bits}")
    d = r.u32()
    if d > MAX_VECTOR_LENGTH:
        raise DecodeError(f"vector length {d} exceeds the limit {MAX_VECTOR_LENGTH}")
    size = packed_size(d, bits)
    if size > r.remaining():
        raise DecodeError(f"{d} elements of {bits} bits do not fit in {r.remaining()} bytes")
    raw = r.view(size)
    if bits in _WHOLE_WORDS and _LITTLE:  # whole native words: read in place, no copy
        vector = np.frombuffer(raw, dtype=_WHOLE_WORDS[bits], count=d)
    else:
        vector = unpack_bits(raw, d, bits)  # DecodeError on nonzero padding bits
    return MaskedInput(rid, party, excluded, vector, bits)


@dataclass(frozen=True, slots=True)
class PackedInput:
    """A MaskedInput as the server reads it: its d elements still packed, b bits each.

    Attributes:
        round_id: The round's id.
        sender: The client that sent it.
        excluded: The neighbours whose shares failed authentication.
        bits: b.
        d: The number of elements.
        packed: The ceil(b*d/8) bytes (padding bits checked zero), for hazmat's add_packed.
    """

    round_id: bytes
    sender: int
    excluded: tuple[int, ...]
    bits: int
    d: int
    packed: memoryview


def _masked_packed(r: Reader, rid: bytes, party: int) -> PackedInput:
    excluded = r.ids(MAX_CLIENTS)
    bits = r.u8()
    if not 1 <= bits <= MAX_BITS:
        raise DecodeError(f"element width must be 1 to {MAX_BITS} bits, got {bits}")
    d = r.u32()
    if d > MAX_VECTOR_LENGTH:
        raise DecodeError(f"vector length {d} exceeds the limit {MAX_VECTOR_LENGTH}")
    size = packed_size(d, bits)
    if size > r.remaining():
        raise DecodeError(f"{d} elements of {bits} bits do not fit in {r.remaining()} bytes")
    raw = r.view(size)
    used = bits * d % 8  # bits of the last byte that belong to elements (0: all of them)
    if used and raw[size - 1] >> used:
        raise DecodeError("nonzero padding bits after the last element")
    return PackedInput(rid, party, excluded, bits, d, raw)


@dataclass(frozen=True, slots=True)
class PackedShareKeys:
    """A ShareKeys as the server reads it: the recipients' ids, their ciphertexts joined.

    Attributes:
        round_id: The round's id.
        sender: The client that sent it.
        seed_commitment: Its commitment to its self-mask seed.
        keys_digest: Its digest of the KeysBroadcast it received.
        recipients: The ids the ciphertexts are for, strictly increasing.
        ciphertexts: CIPHERTEXT_SIZE bytes per recipient, in the recipients' order.
    """

    round_id: bytes
    sender: int
    seed_commitment: bytes
    keys_digest: bytes
    recipients: tuple[int, ...]
    ciphertexts: bytes


def _share_keys_packed(r: Reader, rid: bytes, party: int) -> PackedShareKeys:
    commitment = r.take(COMMITMENT_SIZE)
    digest = r.take(COMMITMENT_SIZE)
    recipients, ciphertexts = _read_pairs_packed(r, CIPHERTEXT_SIZE)
    return PackedShareKeys(rid, party, commitment, digest, recipients, ciphertexts)


def masked_input_size(d: int, bits: int, *, round_id_len: int, excluded: int = 0) -> int:
    """The wire bytes of a MaskedInput: header, excluded ids, b, d, ceil(b*d/8) bytes."""
    header = len(MAGIC) + 3 + round_id_len + 4
    return header + 4 + 4 * excluded + 1 + 4 + packed_size(d, bits)


def _check_request(r: Reader, rid: bytes, party: int) -> Message:
    return ConsistencyRequest(rid, party, r.ids(MAX_CLIENTS))


def _check_signature(r: Reader, rid: bytes, party: int) -> Message:
    return ConsistencySignature(rid, party, r.take(SIGNATURE_SIZE))


def _unmask_request(r: Reader, rid: bytes, party: int) -> Message:
    survivors = r.ids(MAX_CLIENTS)
    dropped = r.ids(MAX_CLIENTS)
    return UnmaskRequest(rid, party, survivors, dropped, _read_pairs(r, SIGNATURE_SIZE))


def _unmask_response(r: Reader, rid: bytes, party: int) -> Message:
    seeds = _read_pairs(r, SHARE_SIZE)
    return UnmaskResponse(rid, party, seeds, _read_pairs(r, SHARE_SIZE))


_DECODERS: dict[int, Callable[[Reader, bytes, int], Message]] = {
    1: _advertise,
    2: _keys,
    3: _share_keys,
    4: _delivery,
    5: _masked,
    6: _check_request,
    7: _check_signature,
    8: _unmask_request,
    9: _unmask_response,
    10: _seed_commitments,
    11: _seed_reveal,
}

_PACKED_DECODERS: dict[int, Callable[[Reader, bytes, int], Any]] = {
    **_DECODERS,
    3: _share_keys_packed,
    5: _masked_packed,
}


def decode_packed(data: bytes) -> Message | PackedInput | PackedShareKeys:
    """:func:`decode`, except that a MaskedInput comes back as a :class:`PackedInput` and a
    ShareKeys as a :class:`PackedShareKeys`.

    The same checks, padding bits included; the elements are not unpacked (the server adds
    them into its sum straight from the packed bytes), and the ciphertexts stay one byte
    string (the server keeps them so until it routes them).

    Parameters:
        data: The wire bytes.

    Returns:
        The message.

    Raises:
        DecodeError: Anything malformed, truncated or oversize.
    """
    msg: Message | PackedInput | PackedShareKeys = _decode(data, _PACKED_DECODERS)
    return msg


def decode(data: bytes) -> Message:
    """Parse one message.

    Checks structure only (magic, version, type, lengths, sorted unique ids); what a
    message means for a round (its round id, its sender, the vector length) is checked by
    the session that receives it.

    Parameters:
        data: The wire bytes.

    Returns:
        The message.

    Raises:
        DecodeError: Anything malformed, truncated or oversize.
    """
    msg: Message = _decode(data, _DECODERS)
    return msg


_HEAD = struct.Struct(">4sBBB")  # magic, version, type, round-id length


def _head(
    data: bytes, decoders: dict[int, Callable[[Reader, bytes, int], Any]]
) -> tuple[Callable[[Reader, bytes, int], Any], bytes, int, Reader]:
    """The type's decoder, the round id, the party and a Reader at the body: the fixed head
    read in one call when it is whole and well-formed, else field by field (the same checks
    in the same order, so the same DecodeError)."""
    if len(data) >= _HEAD.size:
        magic, version, kind, rid_len = _HEAD.unpack_from(data)
        decoder = decoders.get(kind)
        body = _HEAD.size + rid_len + 4
        if (
            magic == MAGIC
            and version == VERSION
            and decoder is not None
            and ROUND_ID_MIN <= rid_len <= ROUND_ID_MAX
            and len(data) >= body
        ):
            (party,) = _ID_PAIR.unpack_from(data, body - 4)
            return decoder, data[_HEAD.size : body - 4], party, Reader(data, body)
    r = Reader(data)
    if r.take(4) != MAGIC:
        raise DecodeError("not a secureagg message (bad magic)")
    version = r.u8()
    if version != VERSION:
        raise DecodeError(f"unsupported wire version {version} (this is version {VERSION})")
    found = decoders.get(r.u8())
    if found is None:
        raise DecodeError("unknown message type")
    rid_len = r.u8()
    if not ROUND_ID_MIN <= rid_len <= ROUND_ID_MAX:
        raise DecodeError(f"round id of {rid_len} bytes")
    rid = r.take(rid_len)
    return found, rid, r.u32(), r


def _decode(data: bytes, decoders: dict[int, Callable[[Reader, bytes, int], Any]]) -> Any:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"a message is bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    decoder, rid, party, r = _head(data, decoders)
    if party == 0:
        raise DecodeError("client id 0 is reserved")
    msg = decoder(r, rid, party)
    r.finish()
    return msg
