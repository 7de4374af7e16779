"""Regenerate derivation_vectors.json: python tests/vectors/make_derivation_vectors.py.

Written against `cryptography` and the spec in docs/hazmat.md only (not secureagg's own
code), so the vectors are an independent statement of the derivation:

    shared  = X25519(sk_a, pk_b)
    seed    = HKDF-SHA256(shared, salt=round_id, info=label || u32be(min id) || u32be(max id))
    words   = AES-256-CTR(seed, IV=0) keystream read as little-endian uint16/32/64 words
              (the smallest of those holding b bits), each reduced mod 2^b
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

OUT = Path(__file__).with_name("derivation_vectors.json")
N_WORDS = 8
# Private keys: RFC 7748 section 6.1 (Alice, Bob) and two fixed byte patterns.
KEYS = {
    "rfc7748-alice": "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    "rfc7748-bob": "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
    "pattern-11": "11" * 32,
    "pattern-a5": "a5" * 32,
}
CASES = [
    # (label, key a, id a, key b, id b, round id hex, bits)
    ("secureagg/v1/mask", "rfc7748-alice", 1, "rfc7748-bob", 2, "00" * 16, 32),
    ("secureagg/v1/mask", "rfc7748-bob", 2, "rfc7748-alice", 1, "00" * 16, 32),
    ("secureagg/v1/mask", "rfc7748-alice", 1, "rfc7748-bob", 2, "01" + "00" * 15, 32),
    ("secureagg/v1/mask", "rfc7748-alice", 7, "rfc7748-bob", 4294967295, "00" * 16, 64),
    ("secureagg/v1/mask", "pattern-11", 3, "pattern-a5", 10, "726f756e642d3432", 1),
    ("secureagg/v1/mask", "pattern-11", 3, "pattern-a5", 10, "726f756e642d3432", 13),
    ("secureagg/v1/mask", "pattern-11", 3, "pattern-a5", 10, "726f756e642d3432", 16),
    ("secureagg/v1/mask", "pattern-11", 3, "pattern-a5", 10, "726f756e642d3432", 24),
    ("secureagg/v1/mask", "pattern-11", 3, "pattern-a5", 10, "726f756e642d3432", 48),
    ("secureagg/v1/share-enc", "rfc7748-alice", 1, "rfc7748-bob", 2, "00" * 16, 32),
    ("secureagg/v1/share-enc", "pattern-a5", 100, "pattern-11", 5, "ff" * 32, 64),
]


def _word_size(bits: int) -> int:
    return 2 if bits <= 16 else 4 if bits <= 32 else 8


def _vector(label: str, ka: str, ida: int, kb: str, idb: int, rid: str, bits: int) -> dict:
    sk_a = X25519PrivateKey.from_private_bytes(bytes.fromhex(KEYS[ka]))
    pk_b = X25519PrivateKey.from_private_bytes(bytes.fromhex(KEYS[kb])).public_key()
    shared = sk_a.exchange(pk_b)
    info = label.encode() + struct.pack(">II", min(ida, idb), max(ida, idb))
    seed = HKDF(hashes.SHA256(), 32, salt=bytes.fromhex(rid), info=info).derive(shared)
    size = _word_size(bits)
    stream = (
        Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor().update(bytes(size * N_WORDS))
    )
    words = [
        int.from_bytes(stream[i * size : (i + 1) * size], "little") % (1 << bits)
        for i in range(N_WORDS)
    ]
    return {
        "label": label,
        "private_a": KEYS[ka],
        "id_a": ida,
        "public_b": pk_b.public_bytes_raw().hex(),
        "id_b": idb,
        "round_id": rid,
        "shared": shared.hex(),
        "seed": seed.hex(),
        "bits": bits,
        "first_words": [str(w) for w in words],
    }


def main() -> None:
    doc = {
        "provenance": {
            "description": "secureagg derivation vectors: X25519 -> HKDF-SHA256 seed -> "
            "first mask words of the AES-256-CTR PRG",
            "generator": "tests/vectors/make_derivation_vectors.py (pyca/cryptography only)",
            "spec": "docs/hazmat.md, 'Derivation'",
            "words": "decimal strings (values up to 2^64 - 1)",
        },
        "vectors": [_vector(*c) for c in CASES],
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {len(CASES)} vectors to {OUT}")


if __name__ == "__main__":
    main()
