"""The commitment to a client's self-mask seed, checked when the server rebuilds it."""

from __future__ import annotations

import hashlib
import struct

__all__ = ["COMMITMENT_SIZE", "keys_digest", "seed_commitment"]

COMMITMENT_SIZE = 32
_LABEL = b"secureagg/v1/self-mask-commitment"
_KEYS_LABEL = b"secureagg/v1/keys-digest"


def keys_digest(keys_broadcast: bytes) -> bytes:
    """SHA-256(label || the KeysBroadcast bytes): both sides compute it over the same bytes."""
    return hashlib.sha256(_KEYS_LABEL + keys_broadcast).digest()


def seed_commitment(round_id: bytes, client: int, seed: bytes) -> bytes:
    """SHA-256(label || len(round id) || round id || u32 client || seed).

    The seed is 32 uniformly random bytes, so the digest reveals nothing usable about it;
    it lets the server tell a correctly rebuilt b_u from one spoiled by a wrong share.
    """
    head = _LABEL + bytes((len(round_id),)) + round_id + struct.pack(">I", client)
    return hashlib.sha256(head + seed).digest()
