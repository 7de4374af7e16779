"""The round configuration the server fixes, and the stages of a round."""

from __future__ import annotations

import enum
import functools
import hashlib
import math
import os
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from secureagg._exceptions import ConfigError, DecodeError
from secureagg.hazmat import MAX_BITS
from secureagg.protocol._graph import Graph, check_client_id
from secureagg.protocol._wire import Reader, check_increasing, id_list, u8, u32

__all__ = [
    "CONFIG_MAGIC",
    "CONFIG_VERSION",
    "MAX_CLIENTS",
    "ROUND_ID_MAX",
    "ROUND_ID_MIN",
    "EncodingValue",
    "RoundConfig",
    "Stage",
    "new_round_id",
]

ROUND_ID_MIN = 16
ROUND_ID_MAX = 64
MAX_VECTOR_LENGTH = 2**28
MAX_CLIENTS = 2**20  # the wire codec's limit on clients too
CONFIG_MAGIC = b"SACF"
CONFIG_VERSION = 3  # 3: a Harary seed only with the server-seed opt-out (else commit-reveal)
_IDENTITY_KEY_SIZE = 32
_SIGNED, _HARARY, _SERVER_SEED = 1, 2, 4  # flag bits
_SEED_MIN, _SEED_MAX = 16, 255
_MAX_ENCODING_ENTRIES = 64
_MAX_ENCODING_KEY = 64
_MAX_ENCODING_TEXT = 1024
_INT, _FLOAT, _TEXT, _BOOL = 1, 2, 3, 4  # value tags of an encoding entry
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")

EncodingValue = int | float | str | bool
"""A value of :attr:`RoundConfig.encoding`."""


class Stage(enum.Enum):
    """The stages of a round, in order, each named by the message a client sends in it.

    REVEAL only runs for a Harary graph whose seed comes from the clients' commit-reveal;
    CONSISTENCY only in signed mode.
    """

    ADVERTISE = 0
    REVEAL = 1
    SHARE_KEYS = 2
    MASKED_INPUT = 3
    CONSISTENCY = 4
    UNMASK = 5

    @property
    def label(self) -> str:
        """The stage's one name outside the code: "advertise", "reveal", "share-keys",
        "masked-input", "consistency" or "unmask" (Flower message tags, metrics, reports and
        logs)."""
        return self.name.lower().replace("_", "-")


def new_round_id(counter: int = 0) -> bytes:
    """16 fresh random bytes followed by ``counter`` as a big-endian u64 (24 bytes).

    Parameters:
        counter: A number the caller counts rounds with.

    Returns:
        The round id.
    """
    if not isinstance(counter, int) or not 0 <= counter < 2**64:
        raise ConfigError(f"counter must be an int in [0, 2^64), got {counter!r}")
    return os.urandom(16) + struct.pack(">Q", counter)


_DIGEST_LABEL = b"secureagg/v1/config"


@dataclass(frozen=True)
class RoundConfig:
    """What every party of one round agrees on before it starts.

    All of it is in :meth:`to_bytes`, so in the digest that keys, masks and signatures are
    bound to.

    Attributes:
        round_id: Fresh per round (:func:`new_round_id`).
        bits: The ring's bit width b.
        d: The input length.
        threshold: The Shamir threshold.
        graph: Who shares keys and masks with whom. A Harary graph comes without a seed
            (``Graph.harary(ids, k)``): its ring order is then fixed by the clients'
            commit-reveal during the round (docs/protocol.md, "The graph seed").
        signed: Whether the round runs the signed mode.
        identity_keys: Signed mode only: client id -> raw 32-byte Ed25519 public key,
            distributed out of band (a PKI the server cannot forge).
        encoding: Every other setting that shapes what a client sends (the layers above put
            their encoding there: max examples, clip, fractional bits, the weighting rule...):
            names of 1..64 printable ASCII characters, values int (64-bit), finite float, str
            or bool.
        server_graph_seed: The opt-out of the commit-reveal: the Harary graph carries a seed
            the server chose, which lets it try seeds until its colluders surround a client.
            Only for rounds too large for the O(n) bytes per client the commit-reveal costs;
            clients refuse it unless their policy allows it
            (``ClientPolicy(allow_server_graph_seed=True)``).
    """

    round_id: bytes
    bits: int
    d: int
    threshold: int
    graph: Graph
    signed: bool = False
    identity_keys: Mapping[int, bytes] = field(default_factory=dict, compare=False, hash=False)
    encoding: Mapping[str, EncodingValue] = field(default_factory=dict, hash=False)
    server_graph_seed: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.round_id, bytes) or not (
            ROUND_ID_MIN <= len(self.round_id) <= ROUND_ID_MAX
        ):
            raise ConfigError(f"round_id must be {ROUND_ID_MIN}..{ROUND_ID_MAX} bytes")
        if not isinstance(self.bits, int) or not 1 <= self.bits <= MAX_BITS:
            raise ConfigError(f"bits must be an int in [1, {MAX_BITS}], got {self.bits!r}")
        if not isinstance(self.d, int) or not 1 <= self.d <= MAX_VECTOR_LENGTH:
            raise ConfigError(f"d must be an int in [1, 2^28], got {self.d!r}")
        if not isinstance(self.graph, Graph):
            raise ConfigError("graph must be a Graph")
        if not isinstance(self.threshold, int) or not 2 <= self.threshold <= self.graph.degree:
            raise ConfigError(
                f"threshold must be an int in [2, degree={self.graph.degree}], "
                f"got {self.threshold!r}"
            )
        if not isinstance(self.server_graph_seed, bool):
            raise ConfigError("server_graph_seed must be a bool")
        seeded = not self.graph.is_complete and not self.graph.needs_seed
        if seeded and not self.server_graph_seed:
            raise ConfigError(
                "a Harary graph's seed comes from the clients' commit-reveal: build it with "
                "Graph.harary(ids, degree) (no seed), or name the opt-out server_graph_seed=True"
            )
        if self.server_graph_seed and not seeded:
            raise ConfigError("server_graph_seed=True needs a Harary graph with a seed")
        if self.signed:
            missing = [u for u in self.graph.ids if u not in self.identity_keys]
            if missing:
                raise ConfigError(f"signed mode needs identity keys for clients {missing[:5]}")
            bad = [
                u
                for u, k in self.identity_keys.items()
                if not isinstance(k, bytes) or len(k) != _IDENTITY_KEY_SIZE
            ]
            if bad:
                raise ConfigError(f"identity keys must be 32-byte Ed25519 keys: {bad[:5]}")
        if not isinstance(self.encoding, Mapping) or len(self.encoding) > _MAX_ENCODING_ENTRIES:
            raise ConfigError(f"encoding must be a mapping of at most {_MAX_ENCODING_ENTRIES}")
        for name, value in self.encoding.items():
            _check_entry(name, value)
        object.__setattr__(self, "encoding", MappingProxyType(dict(self.encoding)))

    @functools.cached_property
    def digest(self) -> bytes:
        """SHA-256 of the whole config (:meth:`to_bytes`): what signed mode signs with U3 and
        the advertised keys, so a signature made under one config never counts under another
        (a server that showed clients different configs under one round id would otherwise
        split them into groups whose quorums share no honest signer)."""
        return hashlib.sha256(_DIGEST_LABEL + self.to_bytes()).digest()

    @property
    def commit_reveal(self) -> bool:
        """Whether the clients fix the graph's seed by commit-reveal (the REVEAL stage runs)."""
        return self.graph.needs_seed

    @property
    def consistency_quorum(self) -> int:
        """Signed mode: how many valid signatures of U3 a client needs before it unmasks.

        floor((n + t - 1) / 2) + 1, with n the clients in the graph: two quorums then share
        at least t clients, so at least one honest client (fewer than t collude) signed
        both lists, which an honest client never does. At least t.
        """
        return max(self.threshold, (len(self.graph) + self.threshold - 1) // 2 + 1)

    def to_bytes(self) -> bytes:
        """Strict, versioned bytes for :meth:`from_bytes` (layout in docs/protocol.md).

        Returns:
            The config's bytes.
        """
        known: bytes | None = self.__dict__.get("_bytes")  # the config is immutable
        if known is not None:
            return known
        graph = self.graph
        if len(graph.ids) > MAX_CLIENTS:
            raise ConfigError(f"{len(graph.ids)} clients exceed the limit {MAX_CLIENTS}")
        flags = (_SIGNED if self.signed else 0) | (0 if graph.is_complete else _HARARY)
        flags |= _SERVER_SEED if self.server_graph_seed else 0
        parts = [
            CONFIG_MAGIC,
            u8(CONFIG_VERSION),
            u8(len(self.round_id)),
            self.round_id,
            u8(self.bits),
            u32(self.d),
            u32(self.threshold),
            u8(flags),
            id_list(graph.ids),
            u32(graph.degree),
        ]
        if self.server_graph_seed:
            seed = graph.rng_seed
            if seed is None or not _SEED_MIN <= len(seed) <= _SEED_MAX:
                raise ConfigError(f"the Harary seed must be {_SEED_MIN}..{_SEED_MAX} bytes")
            parts += [u8(len(seed)), seed]
        keys = sorted(check_client_id(u) for u in self.identity_keys)
        if len(keys) > MAX_CLIENTS:
            raise ConfigError(f"{len(keys)} identity keys exceed the limit {MAX_CLIENTS}")
        for u in keys:
            key = self.identity_keys[u]
            if not isinstance(key, bytes) or len(key) != _IDENTITY_KEY_SIZE:
                raise ConfigError(f"the identity key of client {u} is not 32 bytes")
        parts.append(u32(len(keys)))
        parts += [u32(u) + self.identity_keys[u] for u in keys]
        names = sorted(self.encoding)
        parts.append(u8(len(names)))
        for name in names:
            parts.append(_entry_bytes(name, self.encoding[name]))
        out = b"".join(parts)
        object.__setattr__(self, "_bytes", out)  # kept like the digest: a session saves it
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> RoundConfig:
        """Parse :meth:`to_bytes` output.

        Parameters:
            data: The bytes.

        Returns:
            The config.

        Raises:
            DecodeError: Malformed bytes (truncated, trailing, wrong magic or version, unsorted
                ids, counts over the limits, a graph that does not rebuild).
            ConfigError: The decoded values fail the config's own checks.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError(f"a round config is bytes, not {type(data).__name__}")
        raw = bytes(data)
        known = _PARSED.get(raw) if cls is RoundConfig else None
        if known is not None:  # a restored session parses its config once per message
            return known
        r = Reader(raw)
        if r.take(4) != CONFIG_MAGIC:
            raise DecodeError("not a secureagg round config (bad magic)")
        version = r.u8()
        if version != CONFIG_VERSION:
            raise DecodeError(
                f"unsupported round config version {version} (this is {CONFIG_VERSION})"
            )
        rid_len = r.u8()
        if not ROUND_ID_MIN <= rid_len <= ROUND_ID_MAX:
            raise DecodeError(f"round id of {rid_len} bytes")
        round_id = r.take(rid_len)
        bits, d, threshold, flags = r.u8(), r.u32(), r.u32(), r.u8()
        if d > MAX_VECTOR_LENGTH:
            raise DecodeError(f"vector length {d} exceeds the limit {MAX_VECTOR_LENGTH}")
        if flags & ~(_SIGNED | _HARARY | _SERVER_SEED):
            raise DecodeError(f"unknown flag bits {flags:#04x}")
        if flags & _SERVER_SEED and not flags & _HARARY:
            raise DecodeError("a server-chosen seed for a complete graph")
        ids = r.ids(MAX_CLIENTS)
        server_seed = bool(flags & _SERVER_SEED)
        graph = _read_graph(r, ids, harary=bool(flags & _HARARY), seeded=server_seed)
        n_keys = r.count(4 + _IDENTITY_KEY_SIZE, MAX_CLIENTS)
        keys = [(r.u32(), r.take(_IDENTITY_KEY_SIZE)) for _ in range(n_keys)]
        check_increasing([u for u, _ in keys])
        encoding = _read_encoding(r)
        r.finish()
        signed = bool(flags & _SIGNED)
        config = cls(round_id, bits, d, threshold, graph, signed, dict(keys), encoding, server_seed)
        if cls is RoundConfig:
            with _PARSED_LOCK:
                if len(_PARSED) >= _PARSED_MAX:
                    del _PARSED[next(iter(_PARSED))]  # the oldest
                _PARSED[raw] = config
        return config


_PARSED: dict[bytes, RoundConfig] = {}
"""Configs :meth:`RoundConfig.from_bytes` parsed lately, by their bytes: a client restores
its session (and so parses the same config) for every message of a round. A config is
immutable, so the same bytes may give the same object."""
_PARSED_MAX = 8
_PARSED_LOCK = threading.Lock()


def _check_entry(name: object, value: object) -> None:
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= _MAX_ENCODING_KEY
        or not (name.isascii() and name.isprintable() and " " not in name)  # "!" to "~"
    ):
        raise ConfigError(f"encoding names are 1..{_MAX_ENCODING_KEY} printable ASCII: {name!r}")
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ConfigError(f"encoding value {name}={value} does not fit 64 bits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"encoding value {name}={value} is not finite")
    elif isinstance(value, str):
        if len(value.encode()) > _MAX_ENCODING_TEXT:
            raise ConfigError(f"encoding value {name} is over {_MAX_ENCODING_TEXT} bytes")
    else:
        raise ConfigError(f"encoding value {name}={value!r} is not an int, float, str or bool")


def _entry_bytes(name: str, value: EncodingValue) -> bytes:
    head = u8(len(name)) + name.encode("ascii")
    if isinstance(value, bool):
        return head + u8(_BOOL) + u8(int(value))
    if isinstance(value, int):
        return head + u8(_INT) + _I64.pack(value)
    if isinstance(value, float):
        return head + u8(_FLOAT) + _F64.pack(value)
    text = value.encode()
    return head + u8(_TEXT) + u32(len(text)) + text


def _read_encoding(r: Reader) -> dict[str, EncodingValue]:
    out: dict[str, EncodingValue] = {}
    names: list[str] = []
    for _ in range(r.u8()):
        try:
            name = r.take(r.u8()).decode("ascii")
        except UnicodeDecodeError as exc:
            raise DecodeError("an encoding name is not ASCII") from exc
        if names and name <= names[-1]:
            raise DecodeError("encoding names are not sorted and distinct")
        names.append(name)
        tag = r.u8()
        value: EncodingValue
        if tag == _BOOL:
            flag = r.u8()
            if flag > 1:
                raise DecodeError(f"encoding flag {name} is {flag}")
            value = bool(flag)
        elif tag == _INT:
            value = _I64.unpack(r.take(8))[0]
        elif tag == _FLOAT:
            value = _F64.unpack(r.take(8))[0]
        elif tag == _TEXT:
            length = r.u32()
            if length > _MAX_ENCODING_TEXT:
                raise DecodeError(f"encoding value {name} is over {_MAX_ENCODING_TEXT} bytes")
            try:
                value = r.take(length).decode()
            except UnicodeDecodeError as exc:
                raise DecodeError(f"encoding value {name} is not UTF-8") from exc
        else:
            raise DecodeError(f"unknown encoding value tag {tag}")
        out[name] = value
    return out


def _read_graph(r: Reader, ids: tuple[int, ...], *, harary: bool, seeded: bool) -> Graph:
    """The graph after its ids: degree, then (server-chosen Harary seed) the seed; rebuilt
    and checked."""
    degree = r.u32()
    seed = r.take(r.u8()) if seeded else None
    try:
        graph = Graph.harary(ids, degree, seed) if harary else Graph.complete(ids)
    except ConfigError as exc:
        raise DecodeError(f"the graph does not rebuild: {exc}") from exc
    if graph.degree != degree or graph.is_complete == harary:
        raise DecodeError(f"degree {degree} does not match the graph it rebuilds ({graph!r})")
    return graph
