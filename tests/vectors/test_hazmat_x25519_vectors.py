"""RFC 7748 X25519 known answers, and refusal of the low-order points."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from secureagg import InvalidKeyError
from secureagg.hazmat import KeyPair, agree
from secureagg.hazmat._keys import is_low_order

h = bytes.fromhex

# RFC 7748 section 5.2 (scalar, u-coordinate, output).
RFC7748_5_2 = [
    (
        "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
        "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
    ),
    (
        "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
        "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
        "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
    ),
]
# RFC 7748 section 5.2, iterated: k = u = 9; after one iteration.
ITERATED_1 = "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"
# RFC 7748 section 6.1 (Diffie-Hellman).
ALICE_SK = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
ALICE_PK = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
BOB_SK = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
BOB_PK = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"

# Points of small order on Curve25519 and their non-canonical encodings (u = 0, 1, the two
# points of order 8, p - 1, p, p + 1): X25519 with any of them is the all-zero output that
# RFC 7748 section 6.1 tells implementations to check for. List from D. J. Bernstein,
# https://cr.yp.to/ecdh.html#validate.
LOW_ORDER = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
]


@pytest.mark.parametrize(("scalar", "u", "expected"), RFC7748_5_2)
def test_rfc7748_scalar_mult(scalar: str, u: str, expected: str) -> None:
    assert agree(h(scalar), h(u)) == h(expected)


def test_rfc7748_iterated_one() -> None:
    k = u = (9).to_bytes(32, "little")
    k, u = agree(k, u), k
    assert k == h(ITERATED_1)


def test_rfc7748_diffie_hellman() -> None:
    alice, bob = KeyPair.from_private(h(ALICE_SK)), KeyPair.from_private(h(BOB_SK))
    assert alice.public == h(ALICE_PK)
    assert bob.public == h(BOB_PK)
    assert agree(alice.private, bob.public) == h(SHARED)
    assert agree(bob.private, alice.public) == h(SHARED)


@pytest.mark.parametrize("point", LOW_ORDER)
def test_low_order_points_refused(point: str) -> None:
    sk = KeyPair.generate().private
    with pytest.raises(InvalidKeyError):
        agree(sk, h(point))


@pytest.mark.parametrize("point", LOW_ORDER[1:])
def test_low_order_points_really_give_zero(point: str) -> None:
    """The list above is right: the underlying library also refuses them (zero output)."""
    sk = X25519PrivateKey.generate()
    with pytest.raises(ValueError):
        sk.exchange(X25519PublicKey.from_public_bytes(h(point)))


def _encodings(point: str) -> list[bytes]:
    """The point, with the top bit set, and as u + p where that still fits in 255 bits."""
    u = int.from_bytes(h(point), "little")
    out = [u, u | 1 << 255]
    if u + P25519 < 2**255:
        out += [u + P25519, (u + P25519) | 1 << 255]
    return [v.to_bytes(32, "little") for v in out]


P25519 = 2**255 - 19
ALL_LOW = sorted({e for p in LOW_ORDER for e in _encodings(p)})


def _zero_secret(public: bytes) -> bool:
    """What the X25519 library says: every shared secret with ``public`` is zero (refused)."""
    try:
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        return True
    return False


@pytest.mark.parametrize("public", ALL_LOW, ids=lambda b: b.hex()[:8] + b.hex()[-2:])
def test_is_low_order_finds_every_encoding_of_the_list(public: bytes) -> None:
    """All 5 small-order u, each with the top bit set and as u + p: the table lookup and the
    library's scalar multiplication agree (22 encodings)."""
    assert is_low_order(public)
    assert _zero_secret(public)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(min_size=32, max_size=32), st.sampled_from(ALL_LOW)), st.integers(0, 2))
def test_is_low_order_agrees_with_the_library(public: bytes, tweak: int) -> None:
    """Random keys, the list, and near misses (u +- 1 of a listed u): the lookup says low
    order exactly when X25519 gives the all-zero secret."""
    if tweak:
        u = (int.from_bytes(public, "little") + (1 if tweak == 1 else -1)) % 2**256
        public = u.to_bytes(32, "little")
    assert is_low_order(public) == _zero_secret(public)


def test_is_low_order_checks_the_length() -> None:
    with pytest.raises(InvalidKeyError):
        is_low_order(bytes(31))
