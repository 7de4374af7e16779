"""The one exception tree of secureagg.

::

    SecureAggError
     ├── ConfigError            a parameter or configuration is invalid (also a ValueError)
     ├── DecodeError            bytes from a peer or a file are malformed
     ├── CryptoError            a cryptographic check failed
     │    ├── InvalidKeyError       wrong-length, low-order or all-zero key
     │    └── AuthenticationError   an AEAD ciphertext failed authentication
     ├── ShareError             Shamir shares are missing, duplicated or malformed
     ├── ProtocolError          a peer deviated from the protocol
     │    └── RoundAborted          the round cannot complete (too few clients, a failed check)
     ├── BudgetExhaustedError   a client's privacy budget would be exceeded
     └── LedgerError            a privacy ledger is corrupt, foreign or inconsistent
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BudgetExhaustedError",
    "ConfigError",
    "CryptoError",
    "DecodeError",
    "InvalidKeyError",
    "LedgerError",
    "ProtocolError",
    "RoundAborted",
    "SecureAggError",
    "ShareError",
]


class SecureAggError(Exception):
    """Base class of every error secureagg raises on purpose."""


class ConfigError(SecureAggError, ValueError):
    """A parameter or configuration is invalid; the message says which and why."""


class DecodeError(SecureAggError):
    """Bytes from a peer or a file are malformed (truncated, oversize, wrong version...)."""


class CryptoError(SecureAggError):
    """A cryptographic operation or check failed."""


class InvalidKeyError(CryptoError):
    """A key has the wrong length, is low-order, or yields an all-zero shared secret."""


class AuthenticationError(CryptoError):
    """An AEAD ciphertext failed authentication (tampered, replayed or re-addressed)."""


class ShareError(SecureAggError):
    """Secret shares are missing, duplicated, malformed or too few."""


class ProtocolError(SecureAggError):
    """A peer deviated from the protocol."""


class RoundAborted(ProtocolError):
    """The round cannot complete safely; nothing about any single input was revealed."""


class BudgetExhaustedError(SecureAggError):
    """Taking part in the next round would exceed the client's privacy budget."""


class LedgerError(SecureAggError):
    """A privacy ledger file is corrupt, from a foreign or older schema, or inconsistent."""
