"""Pins the public names of secureagg.hazmat."""

from __future__ import annotations

import secureagg.hazmat as hz

EXPECTED = {
    "AEAD_VERSION", "KEY_SIZE", "LABEL_MASK", "LABEL_SHARE_ENC", "MAX_BITS", "OVERHEAD",
    "PRIME", "SECRET_SIZE", "SEED_SIZE", "SHARE_SIZE", "KeyPair", "MaskBuffer", "QuantConfig",
    "add_into", "agree", "associated_data", "centered_sum", "choose_bits", "combine", "derive_key",
    "dequantize_sum", "element_dtype", "expand_mask", "make_config", "open_sealed",
    "quantize", "reduce_into", "seal", "split", "sub_into", "zeros",
    "NoiseStream", "discrete_gaussian", "skellam", "BETA", "MECHANISMS", "DDPParams",
    "ddp_decode", "ddp_encode", "fwht", "padded_length", "rotation_signs", "rounded_l2_bound",
    "pack_bits", "packed_size", "unpack_bits", "combine_many", "is_low_order", "apply_masks",
    "pack_bits_nocopy", "add_packed", "PackedSum",
}  # fmt: skip


def test_all_is_pinned_and_importable() -> None:
    assert set(hz.__all__) == EXPECTED
    for name in hz.__all__:
        assert getattr(hz, name) is not None


def test_docstring_opens_with_hazmat_warning() -> None:
    assert hz.__doc__ is not None
    assert "hazardous materials" in hz.__doc__.lower().split("\n\n")[0]
    assert ".. warning::" in hz.__doc__.split("\n\n")[1]


def test_contract_constants() -> None:
    assert hz.LABEL_MASK == b"secureagg/v1/mask"
    assert hz.LABEL_SHARE_ENC == b"secureagg/v1/share-enc"
    assert hz.SHARE_SIZE == 66
    assert hz.PRIME == 2**521 - 1
