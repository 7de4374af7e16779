"""AEAD for share bundles: roundtrip, binding of round / sender / recipient, tampering."""

from __future__ import annotations

import os

import pytest

from secureagg import AuthenticationError, ConfigError, InvalidKeyError
from secureagg.hazmat import OVERHEAD, open_sealed, seal

KEY = os.urandom(32)
CTX = {"round_id": b"round-1", "sender": 3, "recipient": 8}


def test_roundtrip_and_fresh_nonces() -> None:
    c1 = seal(KEY, b"shares", **CTX)  # type: ignore[arg-type]
    c2 = seal(KEY, b"shares", **CTX)  # type: ignore[arg-type]
    assert c1 != c2 and len(c1) == len(b"shares") + OVERHEAD
    assert open_sealed(KEY, c1, **CTX) == b"shares"  # type: ignore[arg-type]
    assert open_sealed(KEY, seal(KEY, b"", **CTX), **CTX) == b""  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [{"round_id": b"round-2"}, {"sender": 4}, {"recipient": 9}, {"sender": 8, "recipient": 3}],
)
def test_context_is_bound(change: dict[str, object]) -> None:
    ct = seal(KEY, b"shares", **CTX)  # type: ignore[arg-type]
    with pytest.raises(AuthenticationError):
        open_sealed(KEY, ct, **{**CTX, **change})  # type: ignore[arg-type]


def test_tampering_and_wrong_key() -> None:
    ct = seal(KEY, b"shares", **CTX)  # type: ignore[arg-type]
    for i in range(len(ct)):
        bad = bytearray(ct)
        bad[i] ^= 0x01
        with pytest.raises(AuthenticationError):
            open_sealed(KEY, bytes(bad), **CTX)  # type: ignore[arg-type]
    with pytest.raises(AuthenticationError):
        open_sealed(os.urandom(32), ct, **CTX)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [0, 1, OVERHEAD - 1])
def test_short_ciphertext(n: int) -> None:
    with pytest.raises(AuthenticationError):
        open_sealed(KEY, bytes(n), **CTX)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [b"", bytes(16), bytes(33)])
def test_wrong_length_key(key: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        seal(key, b"x", **CTX)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError):
        open_sealed(key, bytes(40), **CTX)  # type: ignore[arg-type]


def test_bad_context() -> None:
    with pytest.raises(ConfigError):
        seal(KEY, b"x", round_id=b"", sender=1, recipient=2)
    with pytest.raises(ConfigError):
        seal(KEY, b"x", round_id=b"r", sender=-1, recipient=2)


@pytest.mark.parametrize("plaintext", ["shares", 5, None])
def test_plaintext_must_be_bytes(plaintext: object) -> None:
    # bytes(5) would silently seal five zero bytes
    with pytest.raises(ConfigError):
        seal(KEY, plaintext, **CTX)  # type: ignore[arg-type]


def test_version_is_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from secureagg.hazmat import _aead

    ct = seal(KEY, b"shares", **CTX)  # type: ignore[arg-type]
    monkeypatch.setattr(_aead, "AEAD_VERSION", _aead.AEAD_VERSION + 1)
    with pytest.raises(AuthenticationError):
        open_sealed(KEY, ct, **CTX)  # type: ignore[arg-type]
