"""X25519 key agreement and HKDF-SHA256 key derivation with one label per use."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secureagg._exceptions import ConfigError, InvalidKeyError

__all__ = [
    "KEY_SIZE",
    "LABEL_MASK",
    "LABEL_SHARE_ENC",
    "KeyPair",
    "agree",
    "check_key",
    "derive_key",
    "is_low_order",
]

KEY_SIZE = 32
LABEL_MASK: bytes = b"secureagg/v1/mask"
LABEL_SHARE_ENC: bytes = b"secureagg/v1/share-enc"
_MAX_ID = 2**32 - 1
_ZERO = bytes(KEY_SIZE)


def check_key(name: str, key: object) -> bytes:
    """``key`` as bytes if it is 32 bytes long, else InvalidKeyError."""
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise InvalidKeyError(f"{name} must be bytes, not {type(key).__name__}")
    key = bytes(key)
    if len(key) != KEY_SIZE:
        raise InvalidKeyError(f"{name} must be {KEY_SIZE} bytes, got {len(key)}")
    return key


@dataclass(frozen=True)
class KeyPair:
    """An X25519 key pair as raw 32-byte strings.

    The key is loaded into OpenSSL, and its public half derived (one scalar multiplication,
    about 35 us), when ``public`` or :meth:`agree` is first used: a client restores its
    session for every message, and most stages use neither of its two keys.

    Attributes:
        private: The raw private key.
        public: The raw public key.
    """

    private: bytes = field(repr=False)
    _cache: list[X25519PrivateKey | bytes] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public!r})"

    def _load(self) -> list[X25519PrivateKey | bytes]:
        if not self._cache:
            loaded = X25519PrivateKey.from_private_bytes(self.private)
            self._cache[:] = [loaded, loaded.public_key().public_bytes_raw()]
        return self._cache

    @property
    def public(self) -> bytes:
        """The raw public key."""
        public = self._load()[1]
        assert isinstance(public, bytes)
        return public

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh key pair from ``os.urandom``.

        Returns:
            The key pair.
        """
        return cls.from_private(os.urandom(KEY_SIZE))

    @classmethod
    def from_private(cls, private: bytes) -> KeyPair:
        """The key pair of a given 32-byte private key (clamped by X25519 itself).

        Parameters:
            private: The raw private key.

        Returns:
            The key pair.
        """
        return cls(private=check_key("private key", private))

    def agree(self, peer_public: bytes) -> bytes:
        """X25519(self.private, peer_public), like :func:`agree` without reloading the key.

        Parameters:
            peer_public: The peer's raw public key.

        Returns:
            The 32-byte shared secret.

        Raises:
            InvalidKeyError: As for :func:`agree`.
        """
        loaded = self._load()[0]
        assert isinstance(loaded, X25519PrivateKey)
        return _exchange(loaded, peer_public)


def agree(private: bytes, peer_public: bytes) -> bytes:
    """X25519(private, peer_public): the 32-byte shared secret.

    Parameters:
        private: A raw private key.
        peer_public: The peer's raw public key.

    Returns:
        The shared secret.

    Raises:
        InvalidKeyError: A wrong length, or a low-order / all-zero public key (any key whose
            shared secret is all zero, RFC 7748 section 6.1).
    """
    private = check_key("private key", private)
    return _exchange(X25519PrivateKey.from_private_bytes(private), peer_public)


def _exchange(sk: X25519PrivateKey, peer_public: bytes) -> bytes:
    peer_public = check_key("peer public key", peer_public)
    if peer_public == _ZERO:
        raise InvalidKeyError("peer public key is all zero")
    try:
        shared = sk.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:  # OpenSSL refuses an all-zero result
        raise InvalidKeyError("peer public key is of low order") from exc
    if shared == _ZERO:
        raise InvalidKeyError("peer public key is of low order")
    return shared


_P25519 = 2**255 - 19
# u-coordinates of the points of order dividing 8 on Curve25519 and its twist: 0 (order 2),
# 1 and p - 1 (order 4, on the twist and the curve), and the two of order 8. Every X25519
# output for these is zero (the clamped scalar is a multiple of 8).
_SMALL_ORDER_U = frozenset(
    {
        0,
        1,
        _P25519 - 1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
    }
)


def is_low_order(public: bytes) -> bool:
    """Whether an X25519 public key is of small order (every shared secret with it is zero).

    Decodes u as X25519 does (RFC 7748: little-endian, top bit ignored, taken mod p) and
    looks it up among the five small-order u-coordinates: no scalar multiplication.

    Parameters:
        public: A raw public key.

    Returns:
        True for a small-order key.

    Raises:
        InvalidKeyError: A wrong length.
    """
    key = check_key("public key", public)
    u = (int.from_bytes(key, "little") & ((1 << 255) - 1)) % _P25519
    return u in _SMALL_ORDER_U


def _check_id(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_ID:
        raise ConfigError(f"{name} must be an int in [0, 2^32-1], got {value!r}")
    return value


def derive_key(shared: bytes, *, label: bytes, id_a: int, id_b: int, round_id: bytes) -> bytes:
    """HKDF-SHA256(shared, salt=round_id, info=label || u32be(min id) || u32be(max id)).

    The order of the two ids does not matter.

    Parameters:
        shared: The X25519 shared secret.
        label: What the key is for.
        id_a: One client id.
        id_b: The other client id.
        round_id: The round's id.

    Returns:
        32 bytes.
    """
    shared = check_key("shared secret", shared)
    if not isinstance(label, bytes) or not label:
        raise ConfigError("label must be non-empty bytes")
    if not isinstance(round_id, bytes) or not round_id:
        raise ConfigError("round_id must be non-empty bytes")
    a = _check_id("id_a", id_a)
    b = _check_id("id_b", id_b)
    info = label + struct.pack(">II", min(a, b), max(a, b))
    return _hkdf_sha256(shared, salt=round_id, info=info, length=KEY_SIZE)


def _hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869) of ``ikm``; an empty salt means the RFC's default, HashLen zeros."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt or None, info=info).derive(ikm)
