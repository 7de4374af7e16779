"""The project's own derivation vectors (derivation_vectors.json) against secureagg.hazmat,
and secureagg.hazmat's derivation against an independent implementation (pycryptodome)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from Crypto.Cipher import AES  # pycryptodome: in the dev extra (and Flower's dependencies)
from Crypto.Hash import SHA256
from Crypto.Protocol.DH import import_x25519_public_key, key_agreement
from Crypto.Protocol.KDF import HKDF
from Crypto.PublicKey import ECC
from hypothesis import given, settings
from hypothesis import strategies as st

from secureagg.hazmat import (
    LABEL_MASK,
    LABEL_SHARE_ENC,
    KeyPair,
    MaskBuffer,
    agree,
    derive_key,
    expand_mask,
    zeros,
)

DOC = json.loads(Path(__file__).with_name("derivation_vectors.json").read_text())
VECTORS: list[dict[str, Any]] = DOC["vectors"]


def test_provenance_header() -> None:
    prov = DOC["provenance"]
    assert "make_derivation_vectors.py" in prov["generator"]
    assert len(VECTORS) >= 10
    assert {v["label"] for v in VECTORS} == {"secureagg/v1/mask", "secureagg/v1/share-enc"}


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: f"{v['label']}-{v['bits']}")
def test_derivation(v: dict[str, Any]) -> None:
    me = KeyPair.from_private(bytes.fromhex(v["private_a"]))
    shared = agree(me.private, bytes.fromhex(v["public_b"]))
    assert shared.hex() == v["shared"]
    seed = derive_key(
        shared,
        label=v["label"].encode(),
        id_a=v["id_a"],
        id_b=v["id_b"],
        round_id=bytes.fromhex(v["round_id"]),
    )
    assert seed.hex() == v["seed"]
    want = [int(w) for w in v["first_words"]]
    assert expand_mask(seed, len(want), v["bits"]).tolist() == want
    # The same words through the reusable buffer: 0 + PRG(seed).
    acc = zeros(len(want), v["bits"])
    MaskBuffer(len(want), v["bits"]).add_mask(acc, seed)
    assert acc.tolist() == want
    # A longer expansion starts with the same words (a prefix of one keystream).
    assert np.array_equal(expand_mask(seed, 1000, v["bits"])[: len(want)], want)


# -- an independent implementation: pycryptodome (installed with Flower), not pyca -----------


def _pycryptodome(
    private_a: bytes,
    public_b: bytes,
    label: bytes,
    ids: tuple[int, int],
    rid: bytes,
    bits: int,
    n: int,
) -> tuple[bytes, bytes, list[int]]:
    """shared, seed and the first n mask words, by the spec in docs/hazmat.md."""
    sk = ECC.construct(curve="Curve25519", seed=private_a)
    shared = key_agreement(
        static_priv=sk, static_pub=import_x25519_public_key(public_b), kdf=lambda z: z
    )
    info = label + min(ids).to_bytes(4, "big") + max(ids).to_bytes(4, "big")
    seed = HKDF(shared, 32, rid, SHA256, context=info)
    assert isinstance(seed, bytes)
    size = 2 if bits <= 16 else 4 if bits <= 32 else 8
    stream = AES.new(seed, AES.MODE_CTR, nonce=b"", initial_value=0).encrypt(bytes(size * n))
    words = [
        int.from_bytes(stream[i * size : (i + 1) * size], "little") % (1 << bits) for i in range(n)
    ]
    return shared, seed, words


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: f"{v['label']}-{v['bits']}")
def test_vectors_agree_with_pycryptodome(v: dict[str, Any]) -> None:
    """The JSON file (written with pyca/cryptography) is what pycryptodome derives too."""
    shared, seed, words = _pycryptodome(
        bytes.fromhex(v["private_a"]),
        bytes.fromhex(v["public_b"]),
        v["label"].encode(),
        (v["id_a"], v["id_b"]),
        bytes.fromhex(v["round_id"]),
        v["bits"],
        len(v["first_words"]),
    )
    assert shared.hex() == v["shared"]
    assert seed.hex() == v["seed"]
    assert [str(w) for w in words] == v["first_words"]


@settings(max_examples=60)
@given(
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=32, max_size=32),
    st.sampled_from([LABEL_MASK, LABEL_SHARE_ENC]),
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    st.binary(min_size=1, max_size=64),
    st.integers(1, 64),
    st.integers(1, 40),
)
def test_derivation_matches_pycryptodome(
    sk_a: bytes,
    sk_b: bytes,
    label: bytes,
    ids: tuple[int, int],
    rid: bytes,
    bits: int,
    n: int,
) -> None:
    """agree -> derive_key -> expand_mask equals pycryptodome's X25519, HKDF and AES-CTR."""
    public_b = KeyPair.from_private(sk_b).public
    shared, seed, words = _pycryptodome(sk_a, public_b, label, ids, rid, bits, n)
    ours = agree(sk_a, public_b)
    assert ours == shared
    ours_seed = derive_key(ours, label=label, id_a=ids[0], id_b=ids[1], round_id=rid)
    assert ours_seed == seed
    assert expand_mask(ours_seed, n, bits).tolist() == words
