"""The saved form of a client session: a small explicit binary format (no pickle, no eval).

Layout: b"SACS" | version u8 | body length u64 | body | SHA-256 of everything before it.
The digest catches truncation and corruption; it is not a MAC (whoever can write the blob
can recompute it). The body and its sensitivity are described in docs/protocol.md.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Any

import numpy.typing as npt

from secureagg._exceptions import ConfigError, DecodeError
from secureagg.hazmat import SHARE_SIZE, KeyPair, element_dtype
from secureagg.protocol._client_state import (
    Aborted,
    Advertised,
    ClientState,
    Done,
    Fresh,
    Holdings,
    InputSent,
    Records,
    Revealed,
    SharesSent,
    Signed,
)
from secureagg.protocol._config import MAX_CLIENTS, MAX_VECTOR_LENGTH, RoundConfig
from secureagg.protocol._wire import Reader, check_increasing, id_list, u8, u32

__all__ = ["STATE_MAGIC", "STATE_VERSION", "SavedSession", "decode_state", "encode_state"]

STATE_MAGIC = b"SACS"
STATE_VERSION = 2  # 2: the graph-seed commit-reveal (reveal, committed list, seed)
_LENGTH = struct.Struct(">Q")
_HEADER_SIZE = len(STATE_MAGIC) + 1 + _LENGTH.size
_DIGEST_SIZE = 32
_KEY = 32
_MAX_CONFIG_BYTES = 2**27
_MAX_REASON_BYTES = 2**20

_TAGS: dict[type, int] = {
    Fresh: 0,
    Advertised: 1,
    SharesSent: 2,
    InputSent: 3,
    Signed: 4,
    Done: 5,
    Aborted: 6,
    Revealed: 7,
}
_KINDS = {tag: kind for kind, tag in _TAGS.items()}
_HOLDS_INPUT = (
    Fresh,
    Advertised,
    Revealed,
    SharesSent,
)  # after these the input is masked or unused


@dataclass(frozen=True)
class SavedSession:
    """What :func:`decode_state` recovers: the parts a ClientSession is rebuilt from."""

    config: RoundConfig
    client_id: int
    vector: npt.NDArray[Any] | None
    state: ClientState
    graph_seed: bytes | None = None


def _holdings(holdings: Holdings) -> bytes:
    return u32(len(holdings)) + b"".join(u32(v) + s + b for v, (s, b) in holdings.items())


def _body(state: ClientState) -> bytes:
    if isinstance(state, Advertised):
        return state.c.private + state.s.private + u8(len(state.reveal)) + state.reveal
    if isinstance(state, Revealed):
        return state.c.private + state.s.private + state.commitments
    if isinstance(state, SharesSent):
        peers = list(state.enc_keys)  # sorted
        rows = b"".join(u32(v) + state.enc_keys[v] + state.s_pks[v] for v in peers)
        return b"".join(
            (state.s.private, u32(len(peers)), rows, state.seed, state.own[0], state.own[1])
        )
    if isinstance(state, InputSent):
        return _holdings(state.holdings) + id_list(sorted(state.u2))
    if isinstance(state, Signed):
        return _holdings(state.holdings) + id_list(sorted(state.u2)) + id_list(state.survivors)
    if isinstance(state, Aborted):
        reason = state.reason[: _MAX_REASON_BYTES // 4].encode()
        return u32(len(reason)) + reason
    return b""


def encode_state(
    config: RoundConfig,
    client_id: int,
    vector: npt.NDArray[Any] | None,
    state: ClientState,
    graph_seed: bytes | None = None,
) -> bytes:
    """The saved bytes of a session's parts; the input only in states that still need it."""
    cfg = config.to_bytes()
    seed = b"" if graph_seed is None else graph_seed
    parts = [u32(len(cfg)), cfg, u32(client_id), u8(len(seed)), seed, u8(_TAGS[type(state)])]
    if vector is None or not isinstance(state, _HOLDS_INPUT):
        parts.append(u8(0))
    else:
        little = vector.astype(vector.dtype.newbyteorder("<"), copy=False)
        parts += [u8(1), u8(vector.dtype.itemsize), u32(vector.shape[0]), little.tobytes()]
    parts.append(_body(state))
    body = b"".join(parts)
    head = STATE_MAGIC + u8(STATE_VERSION) + _LENGTH.pack(len(body))
    return head + body + hashlib.sha256(head + body).digest()


def decode_state(data: bytes) -> SavedSession:
    """Parse :func:`encode_state` bytes; DecodeError for anything malformed or inconsistent."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"a saved session is bytes, not {type(data).__name__}")
    data = bytes(data)
    if data[: len(STATE_MAGIC)] != STATE_MAGIC:
        raise DecodeError("not a saved secureagg client session (bad magic)")
    if len(data) < _HEADER_SIZE + _DIGEST_SIZE:
        raise DecodeError(f"truncated saved session ({len(data)} bytes)")
    version = data[len(STATE_MAGIC)]
    if version != STATE_VERSION:
        raise DecodeError(f"unsupported saved-session version {version} (this is {STATE_VERSION})")
    (length,) = _LENGTH.unpack_from(data, len(STATE_MAGIC) + 1)
    expected = _HEADER_SIZE + length + _DIGEST_SIZE
    if len(data) < expected:
        raise DecodeError(f"truncated saved session: {len(data)} of {expected} bytes")
    if len(data) > expected:
        raise DecodeError(f"{len(data) - expected} trailing bytes after the saved session")
    digest = hashlib.sha256(data[:-_DIGEST_SIZE]).digest()
    if not hmac.compare_digest(digest, data[-_DIGEST_SIZE:]):
        raise DecodeError("the saved session is corrupt (digest mismatch)")
    r = Reader(data[_HEADER_SIZE:-_DIGEST_SIZE])
    saved = _parse(r)
    r.finish()
    return saved


def _parse(r: Reader) -> SavedSession:
    raw_config = r.take(r.count(1, _MAX_CONFIG_BYTES))
    try:
        config = RoundConfig.from_bytes(raw_config)
    except ConfigError as exc:
        raise DecodeError(f"the saved round config is invalid: {exc}") from exc
    u = r.u32()
    if u not in config.graph:
        raise DecodeError(f"client {u} is not in the saved round's graph")
    graph_seed = r.take(r.u8()) or None
    if graph_seed is not None and (not config.commit_reveal or len(graph_seed) != _KEY):
        raise DecodeError("a saved graph seed that this round cannot have")
    tag = r.u8()
    kind = _KINDS.get(tag)
    if kind is None:
        raise DecodeError(f"unknown session state {tag}")
    vector = _read_input(r, config) if _read_flag(r) else None
    if vector is not None and kind not in _HOLDS_INPUT:
        raise DecodeError(f"an input saved in state {kind.__name__}, which no longer holds one")
    if config.commit_reveal and kind is not Aborted:
        before = kind in (Fresh, Advertised, Revealed)  # the seed is fixed after these
        if before != (graph_seed is None):
            raise DecodeError(f"a saved {kind.__name__} state and its graph seed do not agree")
    graph = config.graph if graph_seed is None else config.graph.with_seed(graph_seed)
    neighbours = frozenset() if graph.needs_seed else graph.neighbours(u)
    state: ClientState
    if kind is Fresh:
        state = Fresh()
    elif kind is Advertised:
        c, s = KeyPair.from_private(r.take(_KEY)), KeyPair.from_private(r.take(_KEY))
        reveal = r.take(r.u8())
        if len(reveal) != (_KEY if config.commit_reveal else 0):
            raise DecodeError(f"a saved graph-seed share of {len(reveal)} bytes")
        state = Advertised(c, s, reveal)
    elif kind is Revealed:
        if not config.commit_reveal:
            raise DecodeError("a Revealed state in a round without commit-reveal")
        c, s = KeyPair.from_private(r.take(_KEY)), KeyPair.from_private(r.take(_KEY))
        state = Revealed(c, s, r.take(_DIGEST_SIZE))
    elif kind is SharesSent:
        state = _read_shares_sent(r, neighbours)
    elif kind is InputSent:
        state = InputSent(_read_holdings(r, u, neighbours))
    elif kind is Signed:
        if not config.signed:
            raise DecodeError("a Signed state in an unsigned round")
        state = Signed(_read_holdings(r, u, neighbours), r.ids(MAX_CLIENTS))
    elif kind is Done:
        state = Done()
    else:
        raw = r.take(r.count(1, _MAX_REASON_BYTES))
        try:
            state = Aborted(raw.decode())
        except UnicodeDecodeError as exc:
            raise DecodeError("the saved abort reason is not UTF-8") from exc
    return SavedSession(config, u, vector, state, graph_seed)


def _read_flag(r: Reader) -> bool:
    flag = r.u8()
    if flag not in (0, 1):
        raise DecodeError(f"input flag must be 0 or 1, got {flag}")
    return flag == 1


def _read_input(r: Reader, config: RoundConfig) -> npt.NDArray[Any]:
    words = r.words(MAX_VECTOR_LENGTH)
    dtype = element_dtype(config.bits)
    if words.dtype.itemsize != dtype.itemsize or words.shape != (config.d,):
        raise DecodeError(f"the saved input is not {config.d} words of {dtype.itemsize} bytes")
    vector = words.astype(dtype, copy=True)
    if config.bits < 8 * dtype.itemsize and vector.size and int(vector.max()) >> config.bits:
        raise DecodeError(f"the saved input has elements outside [0, 2^{config.bits})")
    return vector


def _read_shares_sent(r: Reader, neighbours: frozenset[int]) -> SharesSent:
    s = KeyPair.from_private(r.take(_KEY))
    n = r.count(4 + 2 * _KEY, MAX_CLIENTS)
    rows = [(r.u32(), r.take(_KEY), r.take(_KEY)) for _ in range(n)]
    peers = [v for v, _, _ in rows]
    check_increasing(peers)
    if not set(peers) <= neighbours:
        raise DecodeError("saved share keys for clients that are not neighbours")
    seed = r.take(_KEY)
    own = (r.take(SHARE_SIZE), r.take(SHARE_SIZE))
    enc_keys = Records([(v, k) for v, k, _ in rows], _KEY)
    return SharesSent(s, enc_keys, Records([(v, pk) for v, _, pk in rows], _KEY), seed, own)


def _read_holdings(r: Reader, u: int, neighbours: frozenset[int]) -> Holdings:
    n = r.count(4 + 2 * SHARE_SIZE, MAX_CLIENTS)
    rows = [(r.u32(), r.take(2 * SHARE_SIZE)) for _ in range(n)]
    ids = [v for v, _ in rows]
    check_increasing(ids)
    u2 = frozenset(r.ids(MAX_CLIENTS))
    if u not in ids or u2 != frozenset(ids) - {u} or not u2 <= neighbours:
        raise DecodeError("saved shares do not match the neighbours they were received from")
    return Holdings(rows, u)
