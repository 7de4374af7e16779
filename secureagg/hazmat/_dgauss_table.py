"""The exact alias-table sampler of the discrete Gaussian N_Z(0, s) (see :mod:`._noise`).

One alias-table lookup per draw over integer weights in units of the 64-bit word range;
the rare words a unit's leftover fraction or the tail leaves open are settled exactly with
more keystream words against :mod:`decimal` bounds (:func:`_settle_below`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, localcontext
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from secureagg._exceptions import ConfigError

if TYPE_CHECKING:
    from secureagg.hazmat._noise import NoiseStream

__all__: list[str] = []

_TABLE_TAIL = 44  # the alias table covers |x| <= T, exp(-T^2 / (2 s)) <= 2^-44
_MAX_TABLE_BITS = 18  # at most 2^18 buckets (2 MiB): sigma up to about 16,000
_TABLE_BATCH = 1 << 15  # draws per pass (four 256 KiB buffers)
_TABLE_UNIT_BITS: int | None = None  # coarser units, for tests of the exact settling only


def _settle_below(
    prefix: int,
    bits: int,
    theta: Callable[[int], tuple[Fraction, Fraction]],
    top: int,
    stream: NoiseStream,
) -> bool:
    """Whether U < theta, exactly, for U uniform on [prefix, prefix + 1) / 2^bits.

    ``theta(prec)`` returns rationals lo <= theta <= hi computed with ``prec`` decimal
    digits (0: in float64); while U's interval and [lo, hi] overlap, U takes 64 more
    keystream bits and theta more digits. theta must lie in (0, top): when the float bounds
    do not settle U, anything else is a bug, and raises.
    """
    lo, hi = theta(0)  # float bounds first: most draws are settled by them
    if Fraction(prefix + 1, 1 << bits) <= lo:
        return True
    if Fraction(prefix, 1 << bits) >= hi:
        return False
    prec = 30 + bits // 3
    lo, hi = theta(prec)
    if lo <= 0 or hi >= top:
        raise ConfigError(f"internal: a threshold is outside (0, {top})")  # pragma: no cover
    while True:
        if Fraction(prefix + 1, 1 << bits) <= lo:
            return True
        if Fraction(prefix, 1 << bits) >= hi:
            return False
        prefix = (prefix << 64) | int(stream.words(1)[0])
        bits += 64
        prec += 30
        lo, hi = theta(prec)


def _exp_bounds(r: Fraction, q: Fraction, c: int) -> Callable[[int], tuple[Fraction, Fraction]]:
    """theta(prec) for :func:`_settle_below`: bounds on r exp(-q) - c (r > 0, q >= 0, c >= 0)."""

    def bounds(prec: int) -> tuple[Fraction, Fraction]:
        if prec == 0:  # float64: math.exp within 1 ulp, the rest four roundings, so
            # |midf - (r exp(-q) - c)| <= (pf + |midf|) (q + 4) 2^-52: a 16-fold margin
            qf, rf = float(q), float(r)
            pf = rf * math.exp(-qf)
            if qf > 600 or not 2.0**-900 < pf < 2.0**900:
                return Fraction(-(2**1000)), Fraction(2**1000)  # no float bounds: decimal
            midf = pf - c
            errf = (pf + abs(midf)) * (qf + 4) * 2.0**-48
            return Fraction(midf - errf), Fraction(midf + errf)
        prec += max(0, r.numerator.bit_length() - r.denominator.bit_length()) // 3
        prec += c.bit_length() // 3
        with localcontext(Context(prec=prec, Emin=MIN_EMIN, Emax=MAX_EMAX)):
            qd = Decimal(q.numerator) / Decimal(q.denominator)
            p = Decimal(r.numerator) / Decimal(r.denominator) * (-qd).exp()
            mid = p - c
            # each of the five roundings (q, exp, r, the product, the difference) is within
            # 10^(1 - prec) / 2 relative, q's moves exp(-q) by a factor within exp(q 10^(1 -
            # prec)): |mid - (r exp(-q) - c)| < (|p| + |mid|) (q + 4) 10^(1 - prec) = err,
            # and err doubled covers its own rounding and that of mid -+ err
            err = 2 * (abs(p) + abs(mid)) * (Decimal(q.numerator) / Decimal(q.denominator) + 4)
            err = err.scaleb(1 - prec)
            return Fraction(mid - err), Fraction(mid + err)

    return bounds


class _Table:
    """An exact sampler of N_Z(0, s): one alias-table lookup per draw, rare exact settling.

    A keystream word w is a point of [0, 2^64), cut into 2^K units (2^(64 - K) words
    each). The outcomes and their integer weights in units: each x in [-T, T] with c_x;
    UNSURE with three units per x; TAIL; REJECT with the rest. Here c_x is an integer
    with 0 < nu exp(-x^2 / (2 s)) - c_x < 3 for a rational scale nu; a word in x's three
    UNSURE units counts for x when it lies below nu exp(-x^2 / (2 s)) - c_x of them, else
    rejects; TAIL draws |x| > T by an exact rejection sampler of its own (probability nu
    exp(-x^2 / (2 s)) / 2^K each). So every x comes out with probability exactly
    nu exp(-x^2 / (2 s)) / 2^K per attempt, and a rejected attempt is repeated: each draw
    is N_Z(0, s).

    Walker's alias method (in integers, exact) lays the weights out in 2^n equal buckets:
    bucket i (w's top n bits) holds h_i units of outcome i, then outcome a_i. One uint64
    per bucket, G_i = start of bucket i + h_i units + (a_i xor i), settles a word: the
    outcome is i xor (G_i & mask), mask = the top n bits of G_i - (w | (unit - 1)), which
    are all ones when w is past the split and all zeros when not (the difference is within
    one bucket's span of 0, and a_i xor i < unit - 1). UNSURE, TAIL and REJECT are the
    largest outcomes: one max() finds those draws (probability about 2^-30 each), which
    are settled with more keystream words and :mod:`decimal` (:func:`_settle_below`).

    T has exp(-T^2 / (2 s)) about 2^-tail. The c_x come from float64 exp(-x^2 / (2 s))
    (x^2 exact, the whole within 2^-45 relative) times nu on values below 2^39: c_x =
    floor(value) - 1, at least 0, has the bounds above; settling an UNSURE word checks them.
    """

    def __init__(self, s: Fraction, tail: int, unit_bits: int | None = None) -> None:
        sf = float(s)
        t = _half_width(sf, tail)
        m = 2 * t + 1
        n = (m + 2).bit_length()  # 2^n buckets > the m + 3 outcomes
        xs = np.arange(-t, t + 2, dtype=np.float64)
        f = np.exp(-(xs * xs) / (2.0 * sf))  # x^2 exact; within 2^-43 relative (see above)
        f_edge = float(f[-1])  # at T + 1
        # the tail: |x| = T + 1 + G, G geometric with success probability r = R / 2^b,
        # 1 - r >= exp(-(T + 1) / s) (checked exactly)
        a = (t + 1) / sf
        b = max(16, 8 - math.floor(math.log2(a)))
        big_r = math.floor(-math.expm1(-a) * (1 - 2.0**-20) * 2.0**b)
        with localcontext(Context(prec=40)):
            q = Fraction(t + 1) / s
            one_minus = 1 - (-Decimal(q.numerator) / Decimal(q.denominator)).exp()
        if not 0 < big_r < 2**b or Fraction(one_minus) * (1 - Fraction(1, 10**30)) < Fraction(
            big_r, 2**b
        ):
            raise ConfigError("internal: the tail's geometric ratio is off")  # pragma: no cover
        r_f = big_r / 2.0**b
        z = float(f[:-1].sum()) + 2.0 * f_edge / r_f
        k = 39 + math.floor(math.log2(z)) if unit_bits is None else unit_bits
        # alias ^ i fits below one unit with room; UNSURE is smaller than a bucket
        k = max(min(k, 63 - n), n + (3 * m).bit_length() + 1)
        nu_f = (2.0**k - 4 * m - 64) / (z * (1 + 2.0**-30))
        c = np.floor(nu_f * f[:-1]) - 1.0
        np.maximum(c, 0.0, out=c)
        c_tail = math.floor(2.0 * nu_f * f_edge / r_f * (1 + 2.0**-30)) + 1
        weights = [int(v) for v in c.astype(np.int64)] + [3 * m, c_tail]
        rest = (1 << k) - sum(weights)
        if rest < 0:
            raise ConfigError("internal: the alias table's weights overflow")  # pragma: no cover
        weights += [rest] + [0] * ((1 << n) - m - 3)
        upb = 1 << (k - n)  # units per bucket
        h, alias = _alias(weights, upb)
        if h[m] != 3 * m:  # UNSURE is small: its units are the start of its own bucket
            raise ConfigError("internal: UNSURE is not whole in its bucket")  # pragma: no cover
        lo_bits = 64 - k
        cap = 1 << (64 - n)
        self.table = np.array(
            [
                i * cap + (h_i % upb << lo_bits) + (a_i ^ i)  # a full bucket: 0 and a_i = i
                for i, (h_i, a_i) in enumerate(zip(h, alias, strict=True))
            ],
            dtype=np.uint64,
        )
        self.s, self.t, self.m, self.n, self.lo_bits, self.cap = s, t, m, n, lo_bits, cap
        self.nu, self.c, self.c_tail = Fraction(nu_f), c.astype(np.int64), c_tail
        self.geo_bits, self.geo_r = b, big_r

    def fill(self, out: npt.NDArray[np.int64], stream: NoiseStream) -> None:
        """Overwrite ``out`` with independent draws."""
        if not out.size:
            return
        size = min(out.size, _TABLE_BATCH)
        words = np.empty(size, dtype=np.uint64)
        bucket = np.empty(size, dtype=np.uint64)
        work = np.empty(size, dtype=np.uint64)
        top, low = np.uint64(64 - self.n), np.uint64((1 << self.lo_bits) - 1)
        for start in range(0, out.size, size):
            o = out[start : start + size]
            w, i, d = words[: o.size], bucket[: o.size], work[: o.size]
            g = o.view(np.uint64)
            stream._fill(w)
            np.right_shift(w, top, out=i)
            np.take(self.table, i.view(np.intp), out=g, mode="clip")  # G_i
            # outcome i ^ (G_i's low bits, or 0 when w is below the split): G_i - (w | low)
            # is negative exactly then, and lies within one bucket's span of 0, so its top n
            # bits are all ones (past the split) or all zeros (below it)
            np.bitwise_or(w, low, out=d)
            np.subtract(g, d, out=d)
            np.right_shift(d, top, out=d)
            np.bitwise_and(g, d, out=g)
            np.bitwise_xor(g, i, out=g)
            if int(g.max()) >= self.m:
                self._rare(o, w, stream)
            np.subtract(o, self.t, out=o)

    def _rare(
        self, o: npt.NDArray[np.int64], w: npt.NDArray[np.uint64], stream: NoiseStream
    ) -> None:
        """Settle the UNSURE, TAIL and REJECT outcomes of ``o`` (as outcome indices)."""
        redo = []
        for i in np.flatnonzero(o >= self.m):
            x = self._unsure(int(w[i]), stream) if o[i] == self.m else None
            if o[i] == self.m + 1:
                x = self._tail(stream)
            if x is None:
                redo.append(i)
            else:
                o[i] = x + self.t
        if redo:
            again = np.empty(len(redo), dtype=np.int64)
            self.fill(again, stream)
            o[redo] = again + self.t

    def _unsure(self, word: int, stream: NoiseStream) -> int | None:
        """x, or None to reject, for a word in UNSURE's units (the start of its bucket)."""
        unit = 1 << self.lo_bits
        pos = word - self.m * self.cap  # below 3 m units
        k = pos // (3 * unit)
        x = k - self.t
        theta = _exp_bounds(self.nu, Fraction(x * x) / (2 * self.s), int(self.c[k]))
        return x if _settle_below(pos - 3 * k * unit, self.lo_bits, theta, 3, stream) else None

    def _tail(self, stream: NoiseStream) -> int | None:
        """|x| > T with probability nu exp(-x^2 / (2 s)) / c_tail each, else None."""
        b, big_r, g = self.geo_bits, self.geo_r, 0
        while True:  # G ~ geometric(r): failures before a word's top b bits fall below R
            trials = stream.words(32) >> np.uint64(64 - b)
            hits = np.flatnonzero(trials < np.uint64(big_r))
            if hits.size:
                g += int(hits[0])
                break
            g += 32
        mag = self.t + 1 + g
        # proposal r (1 - r)^G / 2 per sign: accept with nu f(x) 2 / (c_tail r (1 - r)^G)
        r = Fraction(big_r, 1 << b)
        theta = _exp_bounds(
            self.nu * 2 / (self.c_tail * r * (1 - r) ** g), Fraction(mag * mag) / (2 * self.s), 0
        )
        word = int(stream.words(1)[0])
        if not _settle_below(word >> 1, 63, theta, 1, stream):
            return None
        return -mag if word & 1 else mag  # the sign: a bit the settling did not read


def _alias(weights: list[int], size: int) -> tuple[list[int], list[int]]:
    """Walker's alias table in integers: bucket i holds h_i of outcome i, size - h_i of alias_i.

    ``weights`` sum to len(weights) * size exactly; outcome i's units over all buckets add
    up to weights[i].
    """
    left = list(weights)
    h, alias = [size] * len(left), list(range(len(left)))
    small = [i for i, v in enumerate(left) if v < size]
    large = [i for i, v in enumerate(left) if v >= size]
    while small and large:
        s, g = small.pop(), large[-1]
        h[s], alias[s] = left[s], g
        left[g] -= size - left[s]
        if left[g] < size:
            small.append(large.pop())
    if small or any(left[i] != size for i in large):
        raise ConfigError("internal: alias weights do not add up")  # pragma: no cover
    return h, alias


def _half_width(sf: float, tail: int) -> int:
    """T with exp(-T^2 / (2 s)) about 2^-tail (any T >= 1 is exact)."""
    return max(1, math.ceil(math.sqrt(2 * sf * tail * math.log(2))))


@functools.lru_cache(maxsize=8)
def _gaussian_table(s: Fraction, tail: int, unit_bits: int | None) -> _Table:
    """The alias table for N_Z(0, s) (built in milliseconds; about 16 bytes per sigma)."""
    return _Table(s, tail, unit_bits)
