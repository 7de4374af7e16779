"""The public random rotation of distributed DP: random signs, then the orthonormal
Walsh-Hadamard transform (its own inverse), in float32 or float64 (see :mod:`._ddp`)."""

from __future__ import annotations

import functools
import hashlib
import math
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secureagg._exceptions import ConfigError

__all__ = ["apply_signs", "fwht", "rotation_signs"]

_SIGN_LABEL = b"secureagg/v1/ddp-rotation"
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_FACTORS = (16, 16)  # the first products' sizes, then 8 x 8: fewest passes that stay fast
_GEMM = 1 << 18  # m n k per product: under OpenBLAS's threading threshold, so it runs on
# the calling thread; its threads made the transform ten times slower on a busy 2-core
# machine (measured)


def rotation_signs(seed: bytes, n: int) -> npt.NDArray[np.float64]:
    """n public signs in {-1, +1}: bits of AES-256-CTR keyed by SHA-256(label || seed).

    Parameters:
        seed: The round's public seed.
        n: How many signs.

    Returns:
        The signs, as float64.
    """
    out: npt.NDArray[np.float64] = _signs(seed, n, _F64)[:n]
    return out


def apply_signs(v: npt.NDArray[Any], seed: bytes, piece: int) -> None:
    """Multiply v (contiguous float32/float64) by its :func:`rotation_signs` in place, ``piece``
    elements at a time (no vector-sized temporary)."""
    n = v.shape[0]
    if n < 8:
        v *= _signs(seed, n, v.dtype)[:n]
        return
    raw, table = _sign_bytes(seed, n), _sign_table(v.dtype)
    rows_buf = np.empty((max(1, min(n, piece) // 8), 8), dtype=v.dtype)
    for i in range(0, n, 8 * rows_buf.shape[0]):
        rows = rows_buf[: (n - i) // 8]
        np.take(table, raw[i // 8 : i // 8 + rows.shape[0]], axis=0, out=rows)
        v[i : i + rows.size] *= rows.reshape(-1)


def _signs(seed: bytes, n: int, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """:func:`rotation_signs` in ``dtype``, rounded up to a multiple of 8."""
    out: npt.NDArray[Any] = np.take(_sign_table(dtype), _sign_bytes(seed, n), axis=0)
    return out.reshape(-1)


def _sign_bytes(seed: bytes, n: int) -> npt.NDArray[np.uint8]:
    """The keystream bytes of n signs: sign 8 i + k is bit k (least significant first) of
    byte i, negative when set."""
    if not isinstance(seed, bytes) or not seed:
        raise ConfigError("the rotation seed must be non-empty bytes")
    key = hashlib.sha256(_SIGN_LABEL + seed).digest()
    enc = Cipher(algorithms.AES256(key), modes.CTR(bytes(16))).encryptor()
    return np.frombuffer(enc.update(bytes((n + 7) // 8)), dtype=np.uint8)


@functools.lru_cache(maxsize=2)
def _sign_table(dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """Row b: the eight signs of byte b."""
    bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little")
    out: npt.NDArray[Any] = (1.0 - 2.0 * bits.astype(np.float64)).astype(dtype)
    out.setflags(write=False)
    return out


def fwht(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The orthonormal Walsh-Hadamard transform H x / sqrt(n) of a power-of-two-long vector.

    H_n is the Kronecker product of small Hadamard matrices (16 x 16, 16 x 16, then 8 x 8
    and one smaller), so the transform is one small matrix product along each axis of x
    viewed as a 16 x 16 x 8 x ... array: six passes over the vector at n = 2^20, where one
    butterfly level per pass takes twenty. Its own inverse.

    Parameters:
        x: A vector of power-of-two length.

    Returns:
        The transform (a new float64 array).
    """
    return _fwht(x, 1.0, _F64)


@functools.lru_cache(maxsize=16)
def _hadamard(size: int, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """The (unnormalised) Hadamard matrix of a power-of-two ``size``."""
    h = np.ones((1, 1))
    while h.shape[0] < size:
        h = np.block([[h, h], [h, -h]])
    out: npt.NDArray[Any] = h.astype(dtype)
    out.setflags(write=False)
    return out


def _fwht(
    x: npt.NDArray[Any],
    scale: float,
    dtype: np.dtype[Any],
    *,
    inplace: bool = False,
    spare: npt.NDArray[Any] | None = None,
) -> npt.NDArray[Any]:
    """``scale`` H x / sqrt(n) in ``dtype``: the scale is folded into the first factor.

    In new arrays; with ``inplace`` (x contiguous, of ``dtype``) in x and ``spare`` (or a
    new array): the result is whichever of the two the last pass wrote.
    """
    n = x.shape[0]
    if x.ndim != 1 or n < 1 or n & (n - 1):
        raise ConfigError(f"fwht needs a 1-d vector of power-of-two length, got {x.shape}")
    src = np.asarray(x, dtype=dtype)
    if n == 1:
        one: npt.NDArray[Any] = src * dtype.type(scale)
        return one
    # two buffers in turn: a new one first, then x's copy (or x itself, with inplace)
    first = np.empty(n, dtype=dtype) if spare is None else spare
    second: npt.NDArray[Any] | None = src if (inplace or src is not x) else None
    dst = first
    factor = scale / math.sqrt(n)
    inner, stage = 1, 0  # inner: the product of the factors done so far (the next stride)
    while True:
        f = min(_FACTORS[stage] if stage < len(_FACTORS) else 8, n // inner)
        h = _hadamard(f, dtype)
        if factor != 1.0:
            h, factor = h * dtype.type(factor), 1.0
        outer, block = n // (inner * f), max(1, _GEMM // (f * f))
        if inner == 1:  # contiguous rows times h
            rows, rows_out = src.reshape(outer, f), dst.reshape(outer, f)
            for i in range(0, outer, block):
                np.matmul(rows[i : i + block], h, out=rows_out[i : i + block])
        else:  # h times each (f, inner) slab
            slabs, slabs_out = src.reshape(outer, f, inner), dst.reshape(outer, f, inner)
            for j in range(0, inner, block):
                np.matmul(h, slabs[:, :, j : j + block], out=slabs_out[:, :, j : j + block])
        inner *= f
        stage += 1
        if inner == n:
            return dst
        if second is None:
            second = np.empty(n, dtype=dtype)
        src, dst = dst, (second if dst is first else first)
