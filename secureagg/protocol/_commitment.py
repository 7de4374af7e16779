"""Commitments: to a client's self-mask seed (checked when the server rebuilds it), and to
the client's share of the graph seed (the commit-reveal that orders a Harary graph's ring)."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable

__all__ = [
    "COMMITMENT_SIZE",
    "REVEAL_SIZE",
    "commitments_digest",
    "graph_commitment",
    "graph_seed",
    "keys_digest",
    "opened_commitments",
    "seed_commitment",
]

COMMITMENT_SIZE = 32
REVEAL_SIZE = 32  # r_u: 32 bytes from the OS CSPRNG
_LABEL = b"secureagg/v1/self-mask-commitment"
_KEYS_LABEL = b"secureagg/v1/keys-digest"
_GRAPH_COMMIT_LABEL = b"secureagg/v1/graph-seed-commitment"
_GRAPH_LIST_LABEL = b"secureagg/v1/graph-seed-commitments"
_GRAPH_SEED_LABEL = b"secureagg/v1/graph-seed"
_ID = struct.Struct(">I")


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


def graph_commitment(config_digest: bytes, client: int, reveal: bytes) -> bytes:
    """SHA-256(label || config digest || u32 client || r_u): a client's commitment to its
    share r_u of the graph seed. r_u is 32 uniformly random bytes, so the digest hides it."""
    return hashlib.sha256(_GRAPH_COMMIT_LABEL + config_digest + _ID.pack(client) + reveal).digest()


def opened_commitments(config_digest: bytes, reveals: Iterable[tuple[int, bytes]]) -> bytes:
    """The commitments the (client, r) pairs open, as the wire lists them: u32 count, then
    u32 client + commitment per pair, in the pairs' order (what :func:`commitments_digest`
    takes)."""
    head = _GRAPH_COMMIT_LABEL + config_digest
    sha, pack = hashlib.sha256, _ID.pack
    rows = [(pack(v), r) for v, r in reveals]
    return _ID.pack(len(rows)) + b"".join([p + sha(head + p + r).digest() for p, r in rows])


def commitments_digest(config_digest: bytes, listed: bytes) -> bytes:
    """SHA-256(label || config digest || the committed list as the wire carries it: u32
    count, then u32 client + commitment per client, ids increasing): what a client keeps of
    the list it was shown, and checks the reveals against."""
    return hashlib.sha256(_GRAPH_LIST_LABEL + config_digest + listed).digest()


def graph_seed(config_digest: bytes, reveals: bytes) -> bytes:
    """The Harary ring's seed: SHA-256(label || config digest || every (client, r_client) as
    the wire carries them: u32 count, then u32 client + r per client, ids increasing)."""
    return hashlib.sha256(_GRAPH_SEED_LABEL + config_digest + reveals).digest()
