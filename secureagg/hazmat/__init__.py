"""Hazardous materials: the cryptographic and arithmetic primitives of secureagg.

.. warning::

    This is a "hazardous materials" module, in the sense of pyca/cryptography. Use it
    only if you know exactly what you are doing: these primitives are correct and fast,
    but easy to misuse (reusing a seed, a label or a round id, sharing both secrets of one
    client, choosing a bit width that lets a sum wrap). Most users want the recipes in
    :mod:`secureagg` instead. See docs/hazmat.md.

What is here:

* key agreement and derivation: :class:`KeyPair`, :func:`agree` (X25519), :func:`is_low_order`,
  :func:`derive_key` (HKDF-SHA256, one label per use, round id as salt);
* the mask PRG: :func:`expand_mask`, :class:`MaskBuffer` (AES-256-CTR of a 32-byte seed),
  :func:`apply_masks` (many masks over several threads);
* arithmetic in Z_{2^b}: :func:`element_dtype`, :func:`zeros`, :func:`add_into`,
  :func:`sub_into`, :func:`reduce_into`; b-bit packing: :func:`pack_bits`,
  :func:`unpack_bits`, :func:`packed_size`, :func:`pack_bits_nocopy` (the packed bytes as built,
  bytes or a bytearray, without :func:`pack_bits`' final copy), :func:`add_packed` (packed
  elements added into a sum without unpacking them into a fresh array), :class:`PackedSum`
  (many packed vectors summed, their high bits added while still packed);
* Shamir t-of-m over 2^521 - 1: :func:`split`, :func:`combine`, :func:`combine_many`;
* AEAD for share bundles: :func:`seal`, :func:`open_sealed` (ChaCha20-Poly1305);
* quantisation: :class:`QuantConfig`, :func:`choose_bits`, :func:`make_config`,
  :func:`quantize`, :func:`centered_sum`, :func:`dequantize_sum`;
* integer noise for distributed DP: :class:`NoiseStream` (AES-256-CTR keyed by the OS),
  :func:`discrete_gaussian` (exact: an alias table, Canonne-Kamath-Steinke 2020 beyond
  it), :func:`skellam`;
* the distributed-DP integer pipeline: :class:`DDPParams`, :func:`ddp_encode`,
  :func:`ddp_decode`, :func:`fwht`, :func:`rotation_signs`, :func:`rounded_l2_bound`.
"""

from secureagg.hazmat._aead import AEAD_VERSION, OVERHEAD, associated_data, open_sealed, seal
from secureagg.hazmat._ddp import (
    BETA,
    MECHANISMS,
    DDPParams,
    ddp_decode,
    ddp_encode,
    padded_length,
    rounded_l2_bound,
)
from secureagg.hazmat._keys import (
    KEY_SIZE,
    LABEL_MASK,
    LABEL_SHARE_ENC,
    KeyPair,
    agree,
    derive_key,
    is_low_order,
)
from secureagg.hazmat._modarith import (
    MAX_BITS,
    add_into,
    element_dtype,
    reduce_into,
    sub_into,
    zeros,
)
from secureagg.hazmat._noise import NoiseStream, discrete_gaussian, skellam
from secureagg.hazmat._pack import _pack as pack_bits_nocopy
from secureagg.hazmat._pack import add_packed, pack_bits, packed_size, unpack_bits
from secureagg.hazmat._packed_sum import PackedSum
from secureagg.hazmat._prg import SEED_SIZE, MaskBuffer, apply_masks, expand_mask
from secureagg.hazmat._quantize import (
    QuantConfig,
    centered_sum,
    choose_bits,
    dequantize_sum,
    make_config,
    quantize,
)
from secureagg.hazmat._rotation import fwht, rotation_signs
from secureagg.hazmat._shamir import PRIME, SECRET_SIZE, SHARE_SIZE, combine, combine_many, split

__all__ = [
    "AEAD_VERSION",
    "BETA",
    "KEY_SIZE",
    "LABEL_MASK",
    "LABEL_SHARE_ENC",
    "MAX_BITS",
    "MECHANISMS",
    "OVERHEAD",
    "PRIME",
    "SECRET_SIZE",
    "SEED_SIZE",
    "SHARE_SIZE",
    "DDPParams",
    "KeyPair",
    "MaskBuffer",
    "NoiseStream",
    "PackedSum",
    "QuantConfig",
    "add_into",
    "add_packed",
    "agree",
    "apply_masks",
    "associated_data",
    "centered_sum",
    "choose_bits",
    "combine",
    "combine_many",
    "ddp_decode",
    "ddp_encode",
    "dequantize_sum",
    "derive_key",
    "discrete_gaussian",
    "element_dtype",
    "expand_mask",
    "fwht",
    "is_low_order",
    "make_config",
    "open_sealed",
    "pack_bits",
    "pack_bits_nocopy",
    "packed_size",
    "padded_length",
    "quantize",
    "reduce_into",
    "rotation_signs",
    "rounded_l2_bound",
    "seal",
    "skellam",
    "split",
    "sub_into",
    "unpack_bits",
    "zeros",
]
