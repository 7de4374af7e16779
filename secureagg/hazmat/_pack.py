"""b-bit packing of vectors over Z_{2^b}: d elements in exactly ceil(b*d/8) bytes.

With b = 8a + r (0 <= r < 8), the bytes are two parts, each with no gaps:

* the low 8a bits of every element, as a-byte little-endian integers (a*d bytes);
* then the high r bits of every element as one little-endian bit string: element i's
  high bits are bits [i*r, (i+1)*r) of it, where bit j of the string is bit (j mod 8) of
  its byte j // 8; the bits after the last element, up to the byte boundary, are zero.

Eight elements' high bits fill exactly r bytes, so both parts are fixed-width fields of
whole bytes, read and written as 8-byte words at byte strides, in cache-sized pieces.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from secureagg._exceptions import ConfigError, DecodeError
from secureagg.hazmat._modarith import check_bits, check_length, element_dtype

__all__ = ["add_packed", "pack_bits", "packed_size", "unpack_bits"]

_LE: dict[int, np.dtype[Any]] = {
    1: np.dtype("<u1"),
    2: np.dtype("<u2"),
    4: np.dtype("<u4"),
    8: np.dtype("<u8"),
}
_LE64 = np.dtype("<u8")
_U32 = np.dtype(np.uint32)
_U64 = np.dtype(np.uint64)
_NATIVE_LE = sys.byteorder == "little"
_PIECE = 1 << 18  # elements per piece (a multiple of 8): scratch stays in cache


def packed_size(d: int, bits: int) -> int:
    """ceil(bits * d / 8): the bytes :func:`pack_bits` gives for d elements of ``bits`` bits.

    Parameters:
        d: The number of elements.
        bits: b.

    Returns:
        The size in bytes.
    """
    return (check_bits(bits) * check_length(d) + 7) // 8


def _fields(buf: npt.NDArray[np.uint8], offset: int, n: int, w: int, step: int = 1) -> Any:
    """8-byte little-endian words at ``offset + i*step*w`` of ``buf``, i < n (may overlap)."""
    return np.ndarray((n,), dtype=_LE64, buffer=buf, offset=offset, strides=(step * w,))


def _put_fields(buf: npt.NDArray[np.uint8], offset: int, values: Any, w: int) -> None:
    """OR each value (< 2^(8w)) into its w-byte field; ``buf`` has 8 spare bytes at the end.

    Fields written together lie at least 8 bytes apart, so no word overlaps another.
    """
    phases = -(-8 // w)
    n = values.shape[0]
    for p in range(min(phases, n)):
        count = len(range(p, n, phases))
        dst = _fields(buf, offset + p * w, count, w, phases)
        np.bitwise_or(dst, values[p::phases], out=dst)


def _lanes(r: int) -> tuple[tuple[int, int, int], ...]:
    """(mask, high mask, shift) of the three steps that bring eight r-bit values from one
    per byte down to r-bit spacing: 8 -> 16-bit lanes of 2r bits -> 32 of 4r -> 64 of 8r."""
    return (
        (0x00FF00FF00FF00FF, 0xFF00FF00FF00FF00, 8 - r),
        (0x0000FFFF0000FFFF, 0xFFFF0000FFFF0000, 16 - 2 * r),
        (0x00000000FFFFFFFF, 0xFFFFFFFF00000000, 32 - 4 * r),
    )


def pack_bits(x: npt.NDArray[Any], bits: int) -> bytes:
    """The ceil(b*d/8) bytes of the elements of ``x`` (unsigned ints, each < 2^b).

    Parameters:
        x: A one-dimensional array of any unsigned integer dtype.
        bits: b.

    Returns:
        The packed bytes.

    Raises:
        ConfigError: An element has a bit at or above ``bits`` (nothing is silently cut off).
    """
    return bytes(_pack(x, bits))


def _pack(x: npt.NDArray[Any], bits: int) -> bytes | bytearray:
    """:func:`pack_bits`, as a bytearray where it had to build one (no final copy).

    Exported as ``secureagg.hazmat.pack_bits_nocopy``.

    Parameters:
        x: A one-dimensional array of any unsigned integer dtype.
        bits: b.

    Returns:
        The ceil(b*d/8) packed bytes, as bytes or a bytearray.

    Raises:
        ConfigError: An element has a bit at or above ``bits``.
    """
    b = check_bits(bits)
    if not isinstance(x, np.ndarray) or x.ndim != 1 or x.dtype.kind != "u":
        raise ConfigError("x must be a one-dimensional array of unsigned ints")
    d = x.shape[0]
    a, r = divmod(b, 8)
    narrow = b < 8 * x.dtype.itemsize  # elements could have bits at or above b
    if not d:
        return b""
    if not r and a in _LE:  # whole words
        if d and narrow and int(x.max()) >> b:
            raise ConfigError(f"an element of x does not fit in {b} bits")
        whole: bytes = x.astype(_LE[a], copy=False).tobytes()  # wraps: keeps the low bytes
        return whole
    size = (b * d + 7) // 8
    out = bytearray(size + 8)  # zeroed; 8 spare bytes for the last 8-byte word written
    buf = np.frombuffer(out, dtype=np.uint8)
    low = buf[: a * d].view(_LE[a]) if a in _LE else None
    if r:  # the high r bits of an element are the low bits of its byte a (little-endian)
        wide = element_dtype(b) if 8 * x.dtype.itemsize < b else x.dtype
        xb = x.astype(wide.newbyteorder("<"), copy=False).view(np.uint8).reshape(d, -1)
        hb = np.zeros(_PIECE, dtype=np.uint8)
        g = hb.view(_LE64).astype(_U64, copy=False) if not _NATIVE_LE else hb.view(_U64)
        t = np.empty_like(g)
    # one pass over x in cache-sized pieces: check, low bytes, high bits
    for i in range(0, d, _PIECE):
        part = x[i : i + _PIECE]
        n = part.shape[0]
        if narrow and int(part.max()) >> b:
            raise ConfigError(f"an element of x does not fit in {b} bits")
        if low is not None:
            np.copyto(low[i : i + n], part, casting="unsafe")
        elif a:
            _put_fields(buf, a * i, part.astype(_U64) & _U64.type((1 << 8 * a) - 1), a)
        if not r:
            continue
        c = -(-n // 8) * 8
        hb[:n] = xb[i : i + n, a]
        hb[n:c] = 0
        gc, tc = g[: c // 8], t[: c // 8]
        if not _NATIVE_LE:
            gc[:] = hb[:c].view(_LE64)
        for mask, high, shift in _lanes(r):  # join neighbours: 8 elements in 8r bits
            np.bitwise_and(gc, _U64.type(high), out=tc)
            np.right_shift(tc, _U64.type(shift), out=tc)
            np.bitwise_and(gc, _U64.type(mask), out=gc)
            np.bitwise_or(gc, tc, out=gc)
        _put_fields(buf, a * d + i // 8 * r, gc, r)
    del buf, low  # release the views of ``out`` before it shrinks
    if r:
        del hb, g, t, xb, gc, tc
    del out[size:]
    return out


def unpack_bits(
    data: bytes | bytearray | memoryview, d: int, bits: int, *, dtype: Any = None
) -> npt.NDArray[Any]:
    """The d elements of ``bits`` bits that :func:`pack_bits` put in ``data``.

    Parameters:
        data: Exactly ceil(b*d/8) bytes with zero padding bits.
        d: The number of elements.
        bits: b.
        dtype: An unsigned dtype of at least b bits (default: element_dtype(bits)).

    Returns:
        A fresh, writeable array.

    Raises:
        DecodeError: Wrong length or non-zero padding bits.
    """
    b = check_bits(bits)
    d = check_length(d)
    want = element_dtype(b) if dtype is None else np.dtype(dtype)
    if want.kind != "u" or 8 * want.itemsize < b:
        raise ConfigError(f"dtype {want} cannot hold {b}-bit elements")
    view = memoryview(data).cast("B")
    size = (b * d + 7) // 8
    if len(view) != size:
        raise DecodeError(f"{d} elements of {b} bits are {size} bytes, got {len(view)}")
    a, r = divmod(b, 8)
    if r and (r * d) % 8 and view[size - 1] >> ((r * d) % 8):
        raise DecodeError("nonzero padding bits after the last element")
    raw = np.frombuffer(view, dtype=np.uint8)
    if not d:
        return np.zeros(0, dtype=want)
    out: npt.NDArray[Any]
    if a in _LE:
        out = raw[: a * d].view(_LE[a]).astype(want)  # a native, writeable copy
        if not r:
            return out
    else:
        out = np.zeros(d, dtype=want)
    buf = np.zeros(size + 8, dtype=np.uint8)  # 8 spare bytes for the last word's read
    buf[:size] = raw
    if a and a not in _LE:
        for i in range(0, d, _PIECE):
            n = min(_PIECE, d - i)
            low = _fields(buf, a * i, n, a) & _U64.type((1 << 8 * a) - 1)
            np.copyto(out[i : i + n], low, casting="unsafe")
    if not r:
        return out
    g = np.empty(_PIECE // 8, dtype=_U64)
    t = np.empty_like(g)
    steps = _lanes(r)[::-1]
    ob = out.view(np.uint8).reshape(d, -1) if _NATIVE_LE else None
    for i in range(0, d, _PIECE):
        n = min(_PIECE, d - i)
        c = -(-n // 8) * 8
        gc, tc = g[: c // 8], t[: c // 8]
        np.bitwise_and(_fields(buf, a * d + i // 8 * r, c // 8, r), (1 << 8 * r) - 1, out=gc)
        for mask, high, shift in steps:  # spread: 8r bits back to one element per byte
            np.left_shift(gc, _U64.type(shift), out=tc)
            np.bitwise_and(tc, _U64.type(high), out=tc)
            np.bitwise_and(gc, _U64.type(mask >> shift & mask), out=gc)
            np.bitwise_or(gc, tc, out=gc)
        hb = gc.astype(_LE64, copy=False).view(np.uint8)[:n]
        if ob is not None:
            ob[i : i + n, a] = hb
        else:
            out[i : i + n] |= hb.astype(want) << want.type(8 * a)
    return out


def _check_accumulator(acc: object, b: int) -> None:
    """Refuse anything but a writeable 1-d unsigned array of at least b-bit words."""
    if (
        not isinstance(acc, np.ndarray)
        or acc.ndim != 1
        or acc.dtype.kind != "u"
        or 8 * acc.dtype.itemsize < b
        or not acc.flags.writeable
    ):
        raise ConfigError(f"acc must be a writeable 1-d unsigned array of at least {b} bits")


def _check_packed(view: memoryview, d: int, b: int) -> None:
    """DecodeError unless ``view`` is exactly ceil(b*d/8) bytes with zero padding bits."""
    size = (b * d + 7) // 8
    if len(view) != size:
        raise DecodeError(f"{d} elements of {b} bits are {size} bytes, got {len(view)}")
    r = b % 8
    if r and (r * d) % 8 and view[size - 1] >> ((r * d) % 8):
        raise DecodeError("nonzero padding bits after the last element")


_SCRATCH = threading.local()  # per thread: add_packed's work arrays, kept between calls


def _scratch(
    size: int, piece: int, dtype: np.dtype[Any]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[Any], npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """This thread's add_packed work arrays (bytes, piece elements of ``dtype``, two word
    arrays), made once per shape: a fresh allocation per call costs page faults."""
    key = (size, piece, dtype)
    cached = getattr(_SCRATCH, "arrays", None)
    if cached is None or cached[0] != key:
        g = np.empty(piece // 8, dtype=_U64)
        cached = (key, (np.empty(size, np.uint8), np.empty(piece, dtype), g, np.empty_like(g)))
        _SCRATCH.arrays = cached
    arrays: Any = cached[1]
    return arrays  # type: ignore[no-any-return]


def add_packed(acc: npt.NDArray[Any], data: bytes | bytearray | memoryview, bits: int) -> None:
    """acc += the elements :func:`pack_bits` put in ``data``, wrapping mod 2^(acc's width).

    The same as ``acc += unpack_bits(data, len(acc), bits, dtype=acc.dtype)``, without
    the unpacked copy: each cache-sized piece is unpacked into scratch and added at once
    (whole little-endian words are added straight from ``data``). Nothing changes when
    ``data`` is refused.

    Parameters:
        acc: A one-dimensional, writeable array of an unsigned dtype of at least b bits.
        data: Exactly ceil(b*d/8) bytes with zero padding bits, d = len(acc).
        bits: b.

    Raises:
        ConfigError: ``acc`` is not such an array.
        DecodeError: Wrong length or nonzero padding bits.
    """
    b = check_bits(bits)
    _check_accumulator(acc, b)
    d = acc.shape[0]
    view = memoryview(data).cast("B")
    _check_packed(view, d, b)
    if not d:
        return
    raw = np.frombuffer(view, dtype=np.uint8)
    a, r = divmod(b, 8)
    if not r and a in _LE:  # whole little-endian words: added straight from ``data``
        for i in range(0, d, _PIECE):
            part = acc[i : i + _PIECE]
            n = part.shape[0]
            np.add(part, raw[a * i : a * (i + n)].view(_LE[a]), out=part, casting="unsafe")
        return
    # each piece: its elements built in ``tmp`` (low bytes, then the high bits written into
    # byte a of each element), then one add into ``acc``. Every piece writes what it reads
    # of the scratch arrays first, so they are reused between calls uninitialised.
    piece = min(_PIECE, -(-d // 8) * 8)
    scratch, tmp, g, t = _scratch(max(a, r) * piece + 8, piece, acc.dtype)
    steps = _lanes(r)[::-1]
    in_place = _NATIVE_LE and acc.dtype.isnative
    tb = tmp.view(np.uint8).reshape(piece, -1)
    for i in range(0, d, piece):
        n = min(piece, d - i)
        part, x = acc[i : i + n], tmp[:n]
        if a in _LE:
            np.copyto(x, raw[a * i : a * (i + n)].view(_LE[a]), casting="unsafe")
        elif a:
            scratch[: a * n] = raw[a * i : a * (i + n)]
            scratch[a * n : a * n + 8] = 0
            np.bitwise_and(_fields(scratch, 0, n, a), (1 << 8 * a) - 1, out=x, casting="unsafe")
        if r:
            c = -(-n // 8) * 8
            start = a * d + i // 8 * r
            count = min(c // 8 * r, len(raw) - start)
            scratch[:count] = raw[start : start + count]
            scratch[count : c // 8 * r + 8] = 0
            gc, tc = g[: c // 8], t[: c // 8]
            np.bitwise_and(_fields(scratch, 0, c // 8, r), (1 << 8 * r) - 1, out=gc)
            for mask, hi, sh in steps:  # spread: 8r bits back to one element per byte
                np.left_shift(gc, _U64.type(sh), out=tc)
                np.bitwise_and(tc, _U64.type(hi), out=tc)
                np.bitwise_and(gc, _U64.type(mask >> sh & mask), out=gc)
                np.bitwise_or(gc, tc, out=gc)
            hb = gc.astype(_LE64, copy=False).view(np.uint8)[:n]
            if not a:
                np.copyto(x, hb)
            elif in_place:  # byte a of each element is still zero: the low part is < 2^(8a)
                tb[:n, a] = hb
            else:
                np.bitwise_or(x, hb.astype(acc.dtype) << acc.dtype.type(8 * a), out=x)
        np.add(part, x, out=part)
