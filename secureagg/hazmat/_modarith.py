"""Vectors over Z_{2^b}, 1 <= b <= 64, held in the smallest unsigned numpy dtype."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from secureagg._exceptions import ConfigError

__all__ = [
    "MAX_BITS",
    "add_into",
    "check_bits",
    "check_length",
    "element_dtype",
    "sub_into",
    "zeros",
]

MAX_BITS = 64


def check_bits(bits: object) -> int:
    """``bits`` as an int if it lies in [1, 64], else ConfigError."""
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool):
        raise ConfigError(f"bits must be an int, got {bits!r}")
    if not 1 <= int(bits) <= MAX_BITS:
        raise ConfigError(f"bits must be in [1, {MAX_BITS}], got {bits}")
    return int(bits)


def check_length(d: object) -> int:
    """``d`` as an int if it is a non-negative int, else ConfigError."""
    if not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d < 0:
        raise ConfigError(f"d must be a non-negative int, got {d!r}")
    return int(d)


def element_dtype(bits: int) -> np.dtype[Any]:
    """uint16 for b <= 16, uint32 for b <= 32, uint64 for b <= 64.

    Parameters:
        bits: b.

    Returns:
        The dtype.
    """
    b = check_bits(bits)
    if b <= 16:
        return np.dtype(np.uint16)
    if b <= 32:
        return np.dtype(np.uint32)
    return np.dtype(np.uint64)


def reduce_into(x: npt.NDArray[Any], bits: int) -> None:
    """x = x mod 2^b in place (x already has dtype element_dtype(bits)).

    Parameters:
        x: The vector.
        bits: b.
    """
    if bits < x.dtype.itemsize * 8:
        np.bitwise_and(x, x.dtype.type((1 << bits) - 1), out=x)


def zeros(d: int, bits: int) -> npt.NDArray[Any]:
    """A zero vector of length d in Z_{2^b}.

    Parameters:
        d: The length.
        bits: b.

    Returns:
        The vector, in element_dtype(b).
    """
    return np.zeros(check_length(d), dtype=element_dtype(bits))


def _check_pair(acc: object, x: object, bits: int) -> None:
    dtype = element_dtype(bits)
    if not isinstance(acc, np.ndarray) or not isinstance(x, np.ndarray):
        raise ConfigError("acc and x must be numpy arrays")
    if acc.dtype != dtype or x.dtype != dtype:
        raise ConfigError(f"bits={bits} needs dtype {dtype}, got {acc.dtype} and {x.dtype}")
    if acc.shape != x.shape:
        raise ConfigError(f"shape mismatch: {acc.shape} vs {x.shape}")
    if not acc.flags.writeable:
        raise ConfigError("acc must be writeable")


def add_into(acc: npt.NDArray[Any], x: npt.NDArray[Any], bits: int) -> None:
    """acc = (acc + x) mod 2^b, in place.

    Parameters:
        acc: The accumulator.
        x: The vector to add.
        bits: b.
    """
    _check_pair(acc, x, bits)
    np.add(acc, x, out=acc)
    reduce_into(acc, bits)


def sub_into(acc: npt.NDArray[Any], x: npt.NDArray[Any], bits: int) -> None:
    """acc = (acc - x) mod 2^b, in place.

    Parameters:
        acc: The accumulator.
        x: The vector to subtract.
        bits: b.
    """
    _check_pair(acc, x, bits)
    np.subtract(acc, x, out=acc)
    reduce_into(acc, bits)
