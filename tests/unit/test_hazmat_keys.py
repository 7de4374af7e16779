"""Key agreement and derivation: symmetry, label / id / round separation, bad input."""

from __future__ import annotations

import os

import pytest

from secureagg import ConfigError, InvalidKeyError
from secureagg.hazmat import LABEL_MASK, LABEL_SHARE_ENC, KeyPair, agree, derive_key


def test_agree_is_symmetric_and_keypairs_differ() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    assert a.private != b.private and a.public != b.public
    assert agree(a.private, b.public) == agree(b.private, a.public)
    assert repr(a.private) not in repr(a) and repr(a.public) in repr(a)


def test_derive_key_separates_labels_ids_and_rounds() -> None:
    shared = agree(KeyPair.generate().private, KeyPair.generate().public)
    base = derive_key(shared, label=LABEL_MASK, id_a=3, id_b=9, round_id=b"r1")
    assert len(base) == 32
    assert derive_key(shared, label=LABEL_MASK, id_a=9, id_b=3, round_id=b"r1") == base
    others = {
        derive_key(shared, label=LABEL_SHARE_ENC, id_a=3, id_b=9, round_id=b"r1"),
        derive_key(shared, label=LABEL_MASK, id_a=3, id_b=10, round_id=b"r1"),
        derive_key(shared, label=LABEL_MASK, id_a=3, id_b=9, round_id=b"r2"),
    }
    assert base not in others and len(others) == 3
    assert LABEL_MASK != LABEL_SHARE_ENC


@pytest.mark.parametrize("n", [0, 31, 33, 64])
def test_wrong_length_keys(n: int) -> None:
    good = KeyPair.generate()
    with pytest.raises(InvalidKeyError):
        agree(bytes(n) if n else b"", good.public)
    with pytest.raises(InvalidKeyError):
        agree(good.private, b"\x09" * n)
    with pytest.raises(InvalidKeyError):
        KeyPair.from_private(b"\x01" * n)
    with pytest.raises(InvalidKeyError):
        derive_key(b"\x01" * n, label=LABEL_MASK, id_a=1, id_b=2, round_id=b"r")


def test_non_bytes_key() -> None:
    with pytest.raises(InvalidKeyError):
        agree("a" * 32, KeyPair.generate().public)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"label": b""},
        {"round_id": b""},
        {"id_a": -1},
        {"id_b": 2**32},
        {"id_a": True},
    ],
)
def test_derive_key_bad_arguments(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"label": LABEL_MASK, "id_a": 1, "id_b": 2, "round_id": b"r"}
    args.update(kwargs)
    with pytest.raises(ConfigError):
        derive_key(bytes(range(32)), **args)  # type: ignore[arg-type]


def test_keypair_agree_matches_function_and_refuses_low_order() -> None:
    from secureagg import InvalidKeyError
    from secureagg.hazmat import KeyPair, agree

    a, b = KeyPair.generate(), KeyPair.generate()
    assert a.agree(b.public) == agree(a.private, b.public) == b.agree(a.public)
    with pytest.raises(InvalidKeyError):
        a.agree(bytes(32))
    with pytest.raises(InvalidKeyError):
        a.agree(b"\x01" + bytes(31))  # the order-1 point


def test_a_key_pair_loads_its_key_only_when_used() -> None:
    """from_private keeps the raw key; the first use of public or agree loads it once and
    gives what cryptography gives; pairs compare and hash by their private key."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    raw = os.urandom(32)
    kp = KeyPair.from_private(raw)
    assert kp._cache == []  # nothing loaded yet
    want = X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes_raw()
    peer = KeyPair.generate()
    assert kp.agree(peer.public) == agree(peer.private, want)
    assert len(kp._cache) == 2 and kp.public == want
    assert kp == KeyPair.from_private(raw) and hash(kp) == hash(KeyPair.from_private(raw))
    assert kp != peer
    assert repr(kp) == f"KeyPair(public={want!r})"
