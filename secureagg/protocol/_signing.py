"""Ed25519 identity signatures of signed mode: what is signed, and the checks."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

if TYPE_CHECKING:
    from secureagg.protocol._config import RoundConfig

__all__ = ["advertise_payload", "identity_public", "sign", "survivors_payload", "verify"]

_ADVERTISE = b"secureagg/v2/advertise"
_SURVIVORS = b"secureagg/v2/survivors"


def _round(config: RoundConfig) -> bytes:
    """The round id and the digest of the whole config: a signature binds both."""
    rid = config.round_id
    return bytes((len(rid),)) + rid + config.digest


def advertise_payload(
    config: RoundConfig, client: int, c_pk: bytes, s_pk: bytes, graph_commitment: bytes = b""
) -> bytes:
    """The bytes a client signs when it advertises its keys and (commit-reveal) its commitment
    to its share of the graph seed, under this exact config."""
    tail = bytes((len(graph_commitment),)) + graph_commitment
    return _ADVERTISE + _round(config) + struct.pack(">I", client) + c_pk + s_pk + tail


def survivors_payload(config: RoundConfig, survivors: tuple[int, ...]) -> bytes:
    """The bytes a client signs in the consistency check: the round, its config and U3."""
    ids = struct.pack(f">I{len(survivors)}I", len(survivors), *survivors)
    return _SURVIVORS + _round(config) + ids


def identity_public(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key of an identity key."""
    return key.public_key().public_bytes_raw()


def sign(key: Ed25519PrivateKey, payload: bytes) -> bytes:
    """A 64-byte Ed25519 signature."""
    return key.sign(payload)


def verify(public: bytes, signature: bytes, payload: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``payload`` under ``public``."""
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, payload)
    except (InvalidSignature, ValueError):
        return False
    return True
