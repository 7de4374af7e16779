"""The round configuration the server fixes, and the stages of a round."""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from secureagg._exceptions import ConfigError
from secureagg.hazmat import MAX_BITS
from secureagg.protocol._graph import Graph

__all__ = ["ROUND_ID_MAX", "ROUND_ID_MIN", "RoundConfig", "Stage", "new_round_id"]

ROUND_ID_MIN = 16
ROUND_ID_MAX = 64
MAX_VECTOR_LENGTH = 2**28
_IDENTITY_KEY_SIZE = 32


class Stage(enum.Enum):
    """The stages of a round, in order. CONSISTENCY only runs in signed mode."""

    ADVERTISE = 0
    SHARE_KEYS = 1
    MASKED_INPUT = 2
    CONSISTENCY = 3
    UNMASK = 4


def new_round_id(counter: int = 0) -> bytes:
    """16 fresh random bytes followed by ``counter`` as a big-endian u64 (24 bytes)."""
    if not isinstance(counter, int) or not 0 <= counter < 2**64:
        raise ConfigError(f"counter must be an int in [0, 2^64), got {counter!r}")
    return os.urandom(16) + struct.pack(">Q", counter)


@dataclass(frozen=True)
class RoundConfig:
    """What every party of one round agrees on before it starts.

    ``identity_keys`` (signed mode only) maps each client id to its raw 32-byte Ed25519
    public key, distributed out of band (a PKI the server cannot forge).
    """

    round_id: bytes
    bits: int
    d: int
    threshold: int
    graph: Graph
    signed: bool = False
    identity_keys: Mapping[int, bytes] = field(default_factory=dict, compare=False, hash=False)

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

    @property
    def consistency_quorum(self) -> int:
        """Signed mode: how many valid signatures of U3 a client needs before it unmasks.

        floor((n + t - 1) / 2) + 1, with n the clients in the graph: two quorums then share
        at least t clients, so at least one honest client (fewer than t collude) signed
        both lists, which an honest client never does. At least t.
        """
        return max(self.threshold, (len(self.graph) + self.threshold - 1) // 2 + 1)
