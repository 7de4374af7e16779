"""Bounds-checked reading of untrusted bytes; every failure is a DecodeError."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from secureagg._exceptions import DecodeError

__all__ = ["Reader", "u8", "u32"]

_U8 = struct.Struct(">B")
_U32 = struct.Struct(">I")
_WIDTH_DTYPE: dict[int, np.dtype[Any]] = {
    2: np.dtype("<u2"),
    4: np.dtype("<u4"),
    8: np.dtype("<u8"),
}


def u8(value: int) -> bytes:
    """One unsigned byte."""
    return _U8.pack(value)


def u32(value: int) -> bytes:
    """A big-endian unsigned 32-bit int."""
    return _U32.pack(value)


def id_list(ids: Sequence[int]) -> bytes:
    """A u32 count, then each client id as a big-endian u32 (what :meth:`Reader.ids` reads)."""
    return u32(len(ids)) + struct.pack(f">{len(ids)}I", *ids)


class Reader:
    """Reads fields from the front of a byte string, refusing to run past its end."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes, start: int = 0) -> None:
        self._data = data
        self._pos = start

    def remaining(self) -> int:
        """Bytes not yet read."""
        return len(self._data) - self._pos

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes."""
        end = self._pos + n
        if n < 0 or end > len(self._data):
            raise DecodeError(f"truncated message: wanted {n} bytes at offset {self._pos}")
        out = self._data[self._pos : end]
        self._pos = end
        return out

    def view(self, n: int) -> memoryview:
        """The next ``n`` bytes as a read-only view (no copy)."""
        end = self._pos + n
        if n < 0 or end > len(self._data):
            raise DecodeError(f"truncated message: wanted {n} bytes at offset {self._pos}")
        out = memoryview(self._data)[self._pos : end]
        self._pos = end
        return out

    def u8(self) -> int:
        """The next unsigned byte."""
        return int(self.take(1)[0])

    def u32(self) -> int:
        """The next big-endian u32."""
        value: int = _U32.unpack(self.take(4))[0]
        return value

    def count(self, item_size: int, limit: int) -> int:
        """A u32 count of items of ``item_size`` bytes, checked against ``limit`` and the data."""
        n = self.u32()
        if n > limit:
            raise DecodeError(f"count {n} exceeds the limit {limit}")
        if n * item_size > self.remaining():
            raise DecodeError(f"count {n} does not fit in the {self.remaining()} bytes left")
        return n

    def ids(self, limit: int) -> tuple[int, ...]:
        """A counted list of client ids, strictly increasing, each in [1, 2^32-1]."""
        n = self.count(4, limit)
        out = struct.unpack_from(f">{n}I", self.take(4 * n))
        check_increasing(out)
        return tuple(out)

    def words(self, limit: int) -> npt.NDArray[Any]:
        """A vector: u8 element width (2, 4 or 8), u32 length, then little-endian words."""
        width = self.u8()
        dtype = _WIDTH_DTYPE.get(width)
        if dtype is None:
            raise DecodeError(f"element width must be 2, 4 or 8 bytes, got {width}")
        n = self.count(width, limit)  # checked to fit in the bytes left
        start = self._pos
        self._pos += n * width  # no slice: the words are read in place, not copied
        out: npt.NDArray[Any] = np.frombuffer(self._data, dtype=dtype, count=n, offset=start)
        return out

    def finish(self) -> None:
        """Refuse trailing bytes."""
        if self._pos != len(self._data):
            raise DecodeError(f"{len(self._data) - self._pos} trailing bytes")


def check_increasing(ids: tuple[int, ...] | list[int]) -> None:
    """DecodeError unless ``ids`` are strictly increasing non-zero ids."""
    prev = 0
    for i in ids:
        if i <= prev:
            raise DecodeError("ids must be non-zero and strictly increasing (no duplicates)")
        prev = i
