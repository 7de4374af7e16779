"""A running sum of b-bit packed vectors whose high bits are added while still packed.

:func:`pack_bits` stores b = 8a + r bits per element as a-byte low parts, then the r-bit
high parts of each 8 elements in r bytes. The low parts are added into the sum straight
from the bytes (a in 1, 2, 4). The high parts are not unpacked: each group's 8r bits are
masked into its 4 even and its 4 odd fields, each field then lying in a lane of 2r bits
whose upper r bits are zero, and the two masked words are added into two word vectors.
A lane holds the sum of up to 2^r + 1 fields, so after that many vectors (or when the sum
is read) the lanes are folded into the sum, shifted up by 8a bits. Other b (r < 4, or
3-, 5-, 6- or 7-byte low parts) are added with :func:`add_packed`.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from secureagg._exceptions import ConfigError
from secureagg.hazmat._modarith import check_bits
from secureagg.hazmat._pack import _LE, _check_accumulator, _check_packed, _fields, add_packed
from secureagg.hazmat._parallel import PARALLEL_MIN_D, run_parts

__all__ = ["PackedSum"]

_SCRATCH = threading.local()  # per thread: two word arrays of a piece, kept between calls


def _scratch(n: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """This thread's two work arrays, cut to n words (each fully written before it is read)."""
    have = getattr(_SCRATCH, "arrays", None)
    if have is None or have[0].shape[0] < n:
        have = (np.empty(n, _U64), np.empty(n, _U64))
        _SCRATCH.arrays = have
    return have[0][:n], have[1][:n]


_U64 = np.dtype(np.uint64)
_GROUPS = 1 << 15  # groups of 8 elements per piece: the two word pieces stay in cache
_MIN_R = 4  # below this a lane holds under 17 fields (a fold every few vectors): add_packed


class PackedSum:
    """acc += vectors packed by :func:`pack_bits`, mod 2^(acc's width); read acc only after
    :meth:`flush`.

    Equivalent to :func:`add_packed` on each vector, with the high bits' part of the sum
    kept aside (two vectors of d/8 words) until :meth:`flush` (or until the lanes could fill)
    adds it into ``acc``.

    Parameters:
        acc: A one-dimensional, writeable array of an unsigned dtype of at least b bits.
        bits: b.
        workers: At most this many threads add each vector, each its own pieces of
            2^18 elements (numpy releases the GIL), all ended when :meth:`add` returns;
            a thread that has no core in time leaves its pieces to the caller. 1: no
            threads; nor for vectors under ``PARALLEL_MIN_D`` (2^22) elements. The result
            does not depend on it.

    Raises:
        ConfigError: ``acc`` is not such an array, or ``workers`` is not a positive int.
    """

    __slots__ = ("_a", "_acc", "_bits", "_count", "_even", "_even_mask", "_odd", "_r", "_workers")

    def __init__(self, acc: npt.NDArray[Any], bits: int, *, workers: int = 1) -> None:
        b = check_bits(bits)
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ConfigError(f"workers must be a positive int, got {workers!r}")
        self._workers = workers
        _check_accumulator(acc, b)
        self._acc, self._bits = acc, b
        self._a, self._r = divmod(b, 8)
        # a group's 4 even r-bit fields, each at the bottom of its 2r-bit lane
        self._even_mask = sum(((1 << self._r) - 1) << (2 * self._r * j) for j in range(4))
        self._count = 0  # vectors whose high parts are in the lanes
        groups = -(-acc.shape[0] // 8)
        self._even = self._odd = np.zeros(0, _U64)
        if self._lanes_used():
            self._even, self._odd = np.zeros(groups, _U64), np.zeros(groups, _U64)

    def _threads(self) -> int:
        return self._workers if self._acc.shape[0] >= PARALLEL_MIN_D else 1

    def _lanes_used(self) -> bool:
        return self._r >= _MIN_R and (self._a == 0 or self._a in _LE) and self._acc.shape[0] > 0

    def add(self, data: bytes | bytearray | memoryview) -> None:
        """Add one packed vector. Nothing changes when ``data`` is refused.

        Parameters:
            data: Exactly ceil(b*d/8) bytes with zero padding bits, d = len(acc).

        Raises:
            DecodeError: Wrong length or nonzero padding bits.
        """
        if not self._lanes_used():
            add_packed(self._acc, data, self._bits)
            return
        acc, a, r = self._acc, self._a, self._r
        d = acc.shape[0]
        view = memoryview(data).cast("B")
        _check_packed(view, d, self._bits)
        if self._count > 1 << r:  # one more could overflow a lane
            self.flush()
        raw = np.frombuffer(view, dtype=np.uint8)
        groups = self._even.shape[0]
        high = raw[a * d :]
        # group i's 8r bits are read as the 8-byte word at byte i*r; the last groups' words
        # would read past the end, so they are read from a zero-padded copy of the tail
        full = min(groups, (len(high) - 8) // r + 1) if len(high) >= 8 else 0
        tail = np.zeros((groups - full) * r + 8, np.uint8)
        tail[: len(high) - full * r] = high[full * r :]
        pieces = [(lo, min(groups, lo + _GROUPS)) for lo in range(0, groups, _GROUPS)]
        run_parts(lambda lo, hi: self._add_groups(raw, full, tail, lo, hi), pieces, self._threads())
        self._count += 1

    def _add_groups(
        self, raw: npt.NDArray[np.uint8], full: int, tail: npt.NDArray[np.uint8], lo: int, hi: int
    ) -> None:
        """Add groups lo..hi-1 of the checked bytes ``raw``: their elements' low parts into
        acc, their high bits into the lanes (groups from ``full`` on are read from ``tail``)."""
        acc, a, r = self._acc, self._a, self._r
        d, n = acc.shape[0], hi - lo
        if a:  # the low parts of this piece's elements, straight from the bytes
            first, last = 8 * lo, min(d, 8 * hi)
            part = acc[first:last]
            np.add(part, raw[a * first : a * last].view(_LE[a]), out=part, casting="unsafe")
        g, t = _scratch(n)
        high = raw[a * d :]
        word = _U64.type((1 << 8 * r) - 1)
        inside = max(0, min(n, full - lo))
        if inside:
            np.bitwise_and(_fields(high, lo * r, inside, r), word, out=g[:inside])
        if inside < n:
            at = (lo + inside - full) * r
            np.bitwise_and(_fields(tail, at, n - inside, r), word, out=g[inside:])
        even = self._even_mask
        e, o = self._even[lo:hi], self._odd[lo:hi]
        np.bitwise_and(g, _U64.type(even), out=t)
        np.add(e, t, out=e)
        np.bitwise_and(g, _U64.type(even << r), out=t)  # the odd fields, where they are
        np.add(o, t, out=o)

    def flush(self) -> None:
        """Add the lanes into ``acc`` (which then holds the whole sum) and clear them."""
        if not self._count:
            return
        groups = self._even.shape[0]
        pieces = [(lo, min(groups, lo + _GROUPS)) for lo in range(0, groups, _GROUPS)]
        run_parts(self._flush_groups, pieces, self._threads())
        self._count = 0

    def _flush_groups(self, lo: int, hi: int) -> None:
        """Fold the lanes of groups lo..hi-1 into their elements of acc and clear them."""
        acc, a, r = self._acc, self._a, self._r
        elements = acc[8 * lo : 8 * hi]
        g, t = _scratch(hi - lo)
        # a lane's sum, cut to acc's width (acc is a sum mod 2^width), in acc's dtype
        cut = t.view(acc.dtype.newbyteorder("="))
        lane = _U64.type((1 << 2 * r) - 1)
        for lanes, first in ((self._even[lo:hi], 0), (self._odd[lo:hi], 1)):
            for j in range(4):
                part = elements[first + 2 * j :: 8]  # element 8g + 2j (+1) of each group g
                n = part.shape[0]
                np.right_shift(lanes[:n], _U64.type((2 * j + first) * r), out=g[:n])
                np.bitwise_and(g[:n], lane, out=g[:n])
                np.copyto(cut[:n], g[:n], casting="unsafe")
                if a:
                    np.left_shift(cut[:n], cut.dtype.type(8 * a), out=cut[:n])
                np.add(part, cut[:n], out=part)
            lanes.fill(0)
