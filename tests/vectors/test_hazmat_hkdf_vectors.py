"""RFC 5869 appendix A.1-A.3 (HKDF-SHA256), through the function derive_key calls."""

from __future__ import annotations

import pytest

from secureagg.hazmat import derive_key
from secureagg.hazmat._keys import _hkdf_sha256

h = bytes.fromhex

CASES = [
    (  # A.1 basic
        "0b" * 22,
        "000102030405060708090a0b0c",
        "f0f1f2f3f4f5f6f7f8f9",
        42,
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    ),
    (  # A.2 longer inputs and outputs
        bytes(range(0x00, 0x50)).hex(),
        bytes(range(0x60, 0xB0)).hex(),
        bytes(range(0xB0, 0x100)).hex(),
        82,
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
        "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
        "cc30c58179ec3e87c14c01d5c1f3434f1d87",
    ),
    (  # A.3 zero-length salt and info
        "0b" * 22,
        "",
        "",
        42,
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
    ),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "okm"), CASES)
def test_rfc5869(ikm: str, salt: str, info: str, length: int, okm: str) -> None:
    assert _hkdf_sha256(h(ikm), salt=h(salt), info=h(info), length=length) == h(okm)


def test_derive_key_is_that_hkdf() -> None:
    """derive_key = HKDF-SHA256(shared, salt=round_id, info=label||u32be(min)||u32be(max)).

    The RFC cases cannot go through derive_key itself (its secret is 32 bytes, its output
    32 bytes); tests/vectors/test_hazmat_derivation_vectors.py checks derive_key end to end
    against pycryptodome.
    """
    shared, rid = bytes(range(32)), h(CASES[0][1])
    info = b"secureagg/v1/mask" + (3).to_bytes(4, "big") + (10).to_bytes(4, "big")
    want = _hkdf_sha256(shared, salt=rid, info=info, length=32)
    assert derive_key(shared, label=b"secureagg/v1/mask", id_a=10, id_b=3, round_id=rid) == want
