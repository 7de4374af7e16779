"""ChaCha20-Poly1305 sealing of share bundles, bound to version, round, sender, recipient."""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from secureagg._exceptions import AuthenticationError, ConfigError, InvalidKeyError

__all__ = [
    "AEAD_VERSION",
    "NONCE_SIZE",
    "OVERHEAD",
    "TAG_SIZE",
    "associated_data",
    "open_sealed",
    "seal",
]

AEAD_VERSION = 1
NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = NONCE_SIZE + TAG_SIZE
_AD_PREFIX = b"secureagg/aead"
_MAX_ID = 2**32 - 1


def associated_data(round_id: bytes, sender: int, recipient: int) -> bytes:
    """prefix || u16 version || u16 len(round_id) || round_id || u32 sender || u32 recipient.

    Parameters:
        round_id: The round's id.
        sender: The sending client.
        recipient: The receiving client.

    Returns:
        The associated data.
    """
    if not isinstance(round_id, bytes) or not 1 <= len(round_id) <= 0xFFFF:
        raise ConfigError("round_id must be 1..65535 bytes")
    for name, v in (("sender", sender), ("recipient", recipient)):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= _MAX_ID:
            raise ConfigError(f"{name} must be an int in [0, 2^32-1], got {v!r}")
    return (
        _AD_PREFIX
        + struct.pack(">HH", AEAD_VERSION, len(round_id))
        + round_id
        + struct.pack(">II", sender, recipient)
    )


def _cipher(key: bytes) -> ChaCha20Poly1305:
    if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
        raise InvalidKeyError("AEAD key must be 32 bytes")
    return ChaCha20Poly1305(bytes(key))


def seal(key: bytes, plaintext: bytes, *, round_id: bytes, sender: int, recipient: int) -> bytes:
    """nonce (12 random bytes) || ChaCha20-Poly1305(key, nonce, plaintext, AD).

    Parameters:
        key: The pairwise key.
        plaintext: The message.
        round_id: The round's id (in the AD).
        sender: The sending client (in the AD).
        recipient: The receiving client (in the AD).

    Returns:
        The ciphertext.
    """
    ad = associated_data(round_id, sender, recipient)
    if not isinstance(plaintext, (bytes, bytearray, memoryview)):
        raise ConfigError(f"plaintext must be bytes, not {type(plaintext).__name__}")
    nonce = os.urandom(NONCE_SIZE)
    return nonce + _cipher(key).encrypt(nonce, bytes(plaintext), ad)


def open_sealed(
    key: bytes, ciphertext: bytes, *, round_id: bytes, sender: int, recipient: int
) -> bytes:
    """The plaintext of ``seal``.

    Parameters:
        key: The pairwise key.
        ciphertext: What :func:`seal` returned.
        round_id: The round's id.
        sender: The sending client.
        recipient: The receiving client.

    Returns:
        The plaintext.

    Raises:
        AuthenticationError: Anything was altered or re-addressed.
    """
    ad = associated_data(round_id, sender, recipient)
    aead = _cipher(key)
    if not isinstance(ciphertext, (bytes, bytearray)) or len(ciphertext) < OVERHEAD:
        raise AuthenticationError(f"ciphertext shorter than {OVERHEAD} bytes")
    ct = bytes(ciphertext)
    try:
        return aead.decrypt(ct[:NONCE_SIZE], ct[NONCE_SIZE:], ad)
    except InvalidTag as exc:
        raise AuthenticationError("ciphertext failed authentication") from exc
