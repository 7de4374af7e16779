"""AES-256 known answers through the mask PRG's own code.

NIST SP 800-38A F.5.5 (CTR-AES256.Encrypt) goes through the PRG's keystream function with
the vector's initial counter; the PRG itself starts at counter 0, so its first block is
AES-256(seed, 0^128), which NIST's AESAVS known-answer tests publish for some keys.
"""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secureagg.hazmat import MaskBuffer, expand_mask, zeros
from secureagg.hazmat._prg import _stream

h = bytes.fromhex

KEY = h("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
COUNTER = h("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
PLAINTEXT = h(
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710"
)
CIPHERTEXT = h(
    "601ec313775789a5b7a7f504bbf3d228"
    "f443e3ca4d62b59aca84e990cacaf5c5"
    "2b0930daa23de94ce87017ba2d84988d"
    "dfc9c58db67aada613c2dd08457941a6"
)


# AESAVS (NIST, 2002) ECB known answers with an all-zero plaintext: (key, AES-256(key, 0^128)).
AESAVS_ZERO_PLAINTEXT = [
    # KeySbox, AES-256, count 0
    (
        "c47b0294dbbbee0fec4757f22ffeee3587ca4730c3d33b691df38bab076bc558",
        "46f2fb342d6f0ab477476fc501242c5f",
    ),
    # VarKey, AES-256, count 0
    ("80" + "00" * 31, "e35a6dcb19b201a01ebcfa8aa22b5759"),
]


def test_sp800_38a_f55_encrypt() -> None:
    """Ciphertext = plaintext xor the PRG function's keystream from the F.5.5 counter."""
    enc = _stream(KEY, COUNTER)
    out = bytearray(len(PLAINTEXT))
    n = enc.update_into(PLAINTEXT, out)
    assert bytes(out[:n]) + enc.finalize() == CIPHERTEXT


def test_sp800_38a_keystream_via_update_into() -> None:
    """Keystream = C xor P; the PRG's zero-buffer update_into path yields exactly it."""
    keystream = bytes(c ^ p for c, p in zip(CIPHERTEXT, PLAINTEXT, strict=True))
    enc = _stream(KEY, COUNTER)
    out = bytearray(len(keystream))
    enc.update_into(bytes(len(keystream)), out)
    assert bytes(out) == keystream


@pytest.mark.parametrize(("key", "block"), AESAVS_ZERO_PLAINTEXT)
@pytest.mark.parametrize("bits", [16, 32, 64])
def test_prg_first_block_is_aesavs_known_answer(key: str, block: str, bits: int) -> None:
    """expand_mask and MaskBuffer: the first 16 bytes of PRG(seed) are AES-256(seed, 0^128)."""
    dtype = np.dtype(f"<u{bits // 8}")
    n = 16 // dtype.itemsize
    words = expand_mask(h(key), n, bits)
    assert words.astype(dtype).tobytes() == h(block)
    acc = zeros(n, bits)
    MaskBuffer(n, bits).add_mask(acc, h(key))
    assert acc.astype(dtype).tobytes() == h(block)


def test_prg_keystream_is_aes256_ctr_zero_iv() -> None:
    seed = KEY
    ref = Cipher(algorithms.AES256(seed), modes.CTR(bytes(16))).encryptor().update(bytes(64))
    for dtype, bits in ((np.uint16, 16), (np.uint32, 32), (np.uint64, 64)):
        words = expand_mask(seed, 64 // np.dtype(dtype).itemsize, bits)
        assert words.astype(np.dtype(dtype).newbyteorder("<")).tobytes() == ref
