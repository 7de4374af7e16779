"""Integer noise for distributed DP: the discrete Gaussian and the Skellam distribution.

The discrete Gaussian N_Z(0, s) has pmf proportional to exp(-x^2 / (2 s)) on the integers.
Every random choice of :func:`discrete_gaussian` compares AES-256-CTR keystream words
(keyed by ``os.urandom``) with exact thresholds, so the output distribution is exactly
N_Z(0, s) for the rational s that the variance holds, with no floating-point bias:

* for 2^-20 <= s and sigma up to about 16,000 (2^18 table entries), one lookup per draw in
  an alias table of integer weights (:class:`_Table`): each x within about 7.8 sigma has
  a whole number of units of the word range below its exact mass, the fraction of a unit
  left over decided, for the rare words that land there (about 2^-34 per draw), by more
  keystream words against exp(-x^2 / (2 s)) evaluated by :mod:`decimal`; |x| beyond the
  table comes from an exact rejection sampler of its own; rejected words (about 2^-30)
  draw again;
* else Canonne, Kamath and Steinke (2020), vectorised: discrete Laplace proposals floor(-t
  ln U) accepted by a Bernoulli(exp(-x)) draw, both decided by a 64-bit word against
  float64 bounds with a wide margin, the rare words between the bounds (probability <
  2^-30 per draw) settled with more words and :mod:`decimal`.

:func:`skellam` draws Poisson differences with numpy's Poisson sampler (Hoermann's PTRS,
exact in real arithmetic but run in float64) on a Philox generator keyed by 128 bits from
``os.urandom``: not bit-exact, and Philox is not a vetted CSPRNG. The discrete Gaussian is
the default mechanism; see docs/privacy.md.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, localcontext
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secureagg._exceptions import ConfigError
from secureagg.hazmat._prg import _GCM_MAX, _HEAD, Keystream

__all__ = ["NoiseStream", "discrete_gaussian", "skellam"]

_GUARD = 2.0**-40  # relative slack on float64 exp(-x); the true error is below 2^-49
_MAX_X = 700.0  # above this exp(-x) < 2^-1000: every nonzero word rejects
_BATCH = 1 << 14  # discrete Gaussian proposals per pass: every buffer is reused, in cache
_LN2_64 = 64 * math.log(2)
_SMALL_WORD = 2**44  # below, a word's interval in -ln U is over 2^-44 wide: settled exactly
_BIG_ENDIAN = sys.byteorder == "big"
_GCM_BYTES = _HEAD + _GCM_MAX  # a NoiseStream's bytes through GCM (a multiple of 16)
_TABLE_TAIL = 44  # the alias table covers |x| <= T, exp(-T^2 / (2 s)) <= 2^-44
_MAX_TABLE_BITS = 18  # at most 2^18 buckets (2 MiB): sigma up to about 16,000
_TABLE_BATCH = 1 << 15  # draws per pass (four 256 KiB buffers)
_TABLE_UNIT_BITS: int | None = None  # coarser units, for tests of the exact settling only


class NoiseStream:
    """Uniform 64-bit words: the AES-256-CTR keystream of a 32-byte key from counter 0.

    The first 2^36 bytes come through AES-256-GCM's counter mode
    (:class:`~secureagg.hazmat._prg.Keystream`: the same bytes, about 20% faster with
    OpenSSL's vector AES), the rest from CTR itself. A fixed ``key`` makes a stream
    reproducible: for tests only, never for real noise.

    Parameters:
        key: The AES key (default: 32 bytes from ``os.urandom``).
    """

    def __init__(self, key: bytes | None = None) -> None:
        if key is None:
            key = os.urandom(32)
        if not isinstance(key, bytes) or len(key) != 32:
            raise ConfigError("key must be 32 bytes")
        self._key, self._left = key, _GCM_BYTES
        self._gcm = Keystream(key, _GCM_BYTES)
        self._ctr: Any = None  # CTR from block _GCM_BYTES / 16 on, once GCM's bytes are used
        self._zeros = b""

    def words(self, n: int) -> npt.NDArray[np.uint64]:
        """n uniform uint64 words (little-endian keystream).

        Parameters:
            n: How many words.

        Returns:
            The words.
        """
        out = np.empty(n, dtype=np.uint64)
        self._fill(out)
        return out

    def _fill(self, out: npt.NDArray[np.uint64]) -> None:
        """Overwrite a contiguous uint64 array with the next words of the keystream."""
        view = memoryview(out).cast("B")  # type: ignore[arg-type]
        k = min(out.nbytes, self._left)
        if k:
            self._gcm.fill(view[:k])
            self._left -= k
        if k < out.nbytes:
            if self._ctr is None:
                start = (_GCM_BYTES // 16).to_bytes(16, "big")
                self._ctr = Cipher(algorithms.AES256(self._key), modes.CTR(start)).encryptor()
            rest = out.nbytes - k
            if len(self._zeros) < rest:
                self._zeros = bytes(rest)
            self._ctr.update_into(self._zeros[:rest], view[k:])
        if _BIG_ENDIAN:
            out.byteswap(inplace=True)


def _exact_bern_exp(word: int, bits: int, x: Fraction, stream: NoiseStream) -> bool:
    """Settle U < exp(-x) for U = (word + more keystream bits) / 2^bits, exactly."""
    w = word
    while True:
        w = (w << 64) | int(stream.words(1)[0])
        bits += 64
        prec = bits // 3 + 40
        with localcontext(Context(prec=prec)):
            xd = Decimal(x.numerator) / Decimal(x.denominator)
            e = (-xd).exp()  # correctly rounded at this precision
            margin = e * (xd + 2) * Decimal(10) ** (10 - prec)
            scale = Decimal(2) ** bits  # exact: fewer than prec digits
            if Decimal(w + 1) <= (e - margin) * scale:
                return True
            if Decimal(w) >= (e + margin) * scale:
                return False


def bernoulli_exp(
    x: npt.NDArray[np.float64],
    guard: float,
    exact_x: Callable[[int], Fraction],
    stream: NoiseStream,
) -> npt.NDArray[np.bool_]:
    """Independent Bernoulli(exp(-x_i)) draws, exact.

    ``x`` is a float64 approximation of the rational x_i >= 0 such that exp(-x_i) lies
    within a factor 1 +- ``guard`` of float64 exp(-x); ``exact_x(i)`` returns x_i exactly
    and is called only for the words those bounds cannot settle. Each draw reads the top
    53 bits of a keystream word as U in [w, w + 1) / 2^53: below the low bound it accepts,
    at or above the high bound it rejects, in between it reads more words.
    """
    p = np.exp(-x)  # normal for x <= 700; beyond, p < 2^-1000 and the high bound is 2^-53
    w = stream.words(x.size) >> np.uint64(11)
    uf = w.astype(np.float64) * 2.0**-53  # exact
    accept = uf + 2.0**-53 <= p * (1.0 - guard)
    high = p * (1.0 + guard)
    if x.size and float(x.max()) > _MAX_X:
        high = np.where(x > _MAX_X, 2.0**-53, high)
    reject = uf >= high
    for i in np.flatnonzero(~(accept | reject)):
        accept[i] = _exact_bern_exp(int(w[i]), 53, exact_x(int(i)), stream)
    return accept


def _signs(n: int, stream: NoiseStream) -> npt.NDArray[np.bool_]:
    """n independent fair bits (True = negative), 64 per keystream word."""
    raw = stream.words(n // 64 + 1).view(np.uint8)
    return np.unpackbits(raw, count=n).astype(bool)


def _exact_laplace_magnitude(word: int, t: int, stream: NoiseStream) -> int:
    """floor(-t ln U) for U = (word + more keystream bits) / 2^bits, settled exactly."""
    w, bits = word, 64
    while True:
        w = (w << 64) | int(stream.words(1)[0])
        bits += 64
        prec = bits // 3 + 40
        with localcontext(Context(prec=prec)):
            scale = Decimal(2) ** bits
            low = -t * (Decimal(w + 1) / scale).ln()  # U < (w + 1) / 2^bits
            margin = (abs(low) + t) * Decimal(10) ** (10 - prec)
            if w == 0:
                continue
            high = -t * (Decimal(w) / scale).ln()
            m = math.floor(low - margin)
            if m == math.floor(high + margin) and m >= 0:
                return m


def _magnitudes(t: int, n: int, stream: NoiseStream) -> npt.NDArray[np.int64]:
    """n draws of floor(-t ln U), U uniform on (0, 1): P(M >= k) = e^(-k/t), exactly.

    One keystream word each (:func:`_laplace_floor`).
    """
    u = stream.words(n)
    mag = np.empty(n, dtype=np.float64)
    _laplace_floor(u, t, mag, np.empty(n, dtype=np.float64), stream)
    return mag.astype(np.int64)


def _laplace_floor(
    u: npt.NDArray[np.uint64],
    t: int,
    out: npt.NDArray[np.float64],
    frac: npt.NDArray[np.float64],
    stream: NoiseStream,
) -> None:
    """``out`` = floor(-t ln U) for each word, U uniform on [u, u + 1) / 2^64, exactly.

    One float64 logarithm per word: A = t (64 ln 2 - ln u) is -t ln(u / 2^64) within
    t 2^-40 (1 + 64 ln 2) (numpy's log within 2^-44 relative, the rest a few roundings),
    and the word's interval in -t ln U is at most t / u <= t 2^-44 wide for u >= 2^44. So
    when A's fractional part is at least that margin from both integers, floor(A) is the
    floor for every U of the word; the rest (probability about 2 margin, and the words
    below 2^44, 2^-20) are settled with more words and decimal logarithms. ``frac`` is
    scratch of the same length.
    """
    a = frac  # scratch: A, then its fractional parts
    np.copyto(a, u, casting="unsafe")  # within 2^-53 relative: inside the margin
    with np.errstate(divide="ignore"):
        np.log(a, out=a)
    np.multiply(a, -float(t), out=a)
    a += t * _LN2_64
    np.floor(a, out=out)
    np.subtract(a, out, out=a)  # exact: the fractional parts
    if not u.size:
        return
    margin = t * (_GUARD * (1.0 + _LN2_64) + 2.0**-44)
    unsettled: npt.NDArray[np.bool_] | None = None
    # rare (about 2 margin per word): reductions first, the per-word masks only if needed
    if float(a.min()) < margin or float(a.max()) >= 1.0 - margin:
        unsettled = a < margin  # also a slightly negative A (u next to 2^64)
        unsettled |= a >= 1.0 - margin
    if int(u.min()) < _SMALL_WORD:
        small = u < np.uint64(_SMALL_WORD)
        unsettled = small if unsettled is None else unsettled | small
    if unsettled is not None:
        for i in np.flatnonzero(unsettled):
            out[i] = _exact_laplace_magnitude(int(u[i]), t, stream)


def discrete_laplace(t: int, n: int, stream: NoiseStream) -> npt.NDArray[np.int64]:
    """n draws with pmf proportional to exp(-|y| / t) on the integers (t >= 1 an int).

    A geometric magnitude (:func:`_magnitudes`) and a fair sign; -0 is rejected so that 0
    is not counted twice.
    """
    out = np.empty(n, dtype=np.int64)
    todo = np.arange(n)
    while todo.size:
        mag = _magnitudes(t, todo.size, stream)
        neg = _signs(todo.size, stream)
        ok = ~(neg & (mag == 0))
        out[todo[ok]] = np.where(neg, -mag, mag)[ok]
        todo = todo[~ok]
    return out


def _as_fraction(value: object, name: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    f = Fraction(value)
    if f <= 0:
        raise ConfigError(f"{name} must be positive, got {value!r}")
    return f


def _gaussian_variance(variance: object) -> Fraction:
    """The variance as an exact rational, checked: positive, finite, at most 2^80."""
    s = _as_fraction(variance, "variance")
    if s > 2**80:
        raise ConfigError(f"variance {float(s)} is too large (at most 2^80)")
    return s


def discrete_gaussian(
    variance: float | Fraction, n: int, stream: NoiseStream | None = None
) -> npt.NDArray[np.int64]:
    """n independent draws of the discrete Gaussian N_Z(0, variance), exactly.

    Parameters:
        variance: The sigma^2 parameter (a float is taken as the exact rational it holds).
        n: How many draws.
        stream: The randomness (default: a fresh :class:`NoiseStream` keyed by the OS).

    Returns:
        The draws.
    """
    s = _gaussian_variance(variance)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"n must be a non-negative int, got {n!r}")
    out = np.empty(n, dtype=np.int64)
    _gaussian_filler(s)(out, stream or NoiseStream())
    return out


def _gaussian_filler(s: Fraction) -> Callable[[npt.NDArray[np.int64], NoiseStream], None]:
    """A function that overwrites an int64 array with draws of N_Z(0, s) (s checked)."""
    if (
        s >= Fraction(1, 2**20)
        and 2 * _half_width(float(s), _TABLE_TAIL) + 3 <= 1 << _MAX_TABLE_BITS
    ):
        return _gaussian_table(s, _TABLE_TAIL, _TABLE_UNIT_BITS).fill

    def cks(out: npt.NDArray[np.int64], stream: NoiseStream) -> None:
        filled = 0
        sampler = _Gaussian(s, stream)
        while filled < out.size:
            filled += sampler.batch(out[filled:])

    return cks


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


class _Gaussian:
    """CKS20 Algorithm 3 with t = floor(sigma) + 1: a discrete Laplace proposal Y (magnitude,
    sign, -0 rejected) accepted with probability exp(-(|Y| - s/t)^2 / (2 s)). The two
    rejections use independent randomness given |Y|, so they are applied together.

    Proposals come in batches of :data:`_BATCH` whose buffers are allocated once and reused:
    each step is one numpy pass in cache, with few temporary arrays. Accepted proposals are
    i.i.d. draws of N_Z(0, s) whatever their number, so keeping the first ones needed is
    exact.
    """

    def __init__(self, s: Fraction, stream: NoiseStream) -> None:
        self.s, self.stream = s, stream
        self.sf = float(s)
        self.t = math.isqrt(math.floor(s)) + 1  # floor(sigma) + 1 (any t >= 1 is exact)
        self.b = self.sf / self.t
        k = _BATCH
        self.words = np.empty(2 * k + k // 64, dtype=np.uint64)  # magnitude, coin, signs
        self.mag = np.empty(k, dtype=np.float64)
        self.work = np.empty(k, dtype=np.float64)
        self.coin = np.empty(k, dtype=np.float64)

    def batch(self, out: npt.NDArray[np.int64]) -> int:
        """Write up to len(out) draws into ``out`` from one batch of proposals; how many."""
        k, t, sf = _BATCH, self.t, self.sf
        words, mag, work, coin = self.words, self.mag, self.work, self.coin
        self.stream._fill(words)
        _laplace_floor(words[:k], t, mag, work, self.stream)
        # Bernoulli(exp(-x)), x = (|Y| - b)^2 / (2 s): accept when the coin word's top 53
        # bits W give U < exp(-x) for every U in [W, W + 1) / 2^53. The float64 error of x
        # is below 2^-50 (|Y| + b)^2 / s, and numpy's exp is within 2^-44 relative: both
        # under the guard g, so P = 2^53 exp(-x) as computed is within g 2^53 of the truth.
        g = _GUARD * (4.0 + (float(mag.max()) + self.b) ** 2 / sf)
        np.subtract(mag, self.b, out=work)
        np.multiply(work, work, out=work)
        np.multiply(work, -1.0 / (2.0 * sf), out=work)
        np.exp(work, out=work)  # 0 for x > 745: then only W < g 2^53 is unsure
        np.multiply(work, 2.0**53, out=work)
        bits = words[k : 2 * k]
        np.right_shift(bits, np.uint64(11), out=bits)
        np.copyto(coin, bits, casting="unsafe")  # exact: below 2^53
        np.subtract(coin, work, out=coin)  # W - P
        slack = g * 2.0**53 + 2.0  # + the rounding of W - P (below 1)
        accept = coin <= -1.0 - slack  # W + 1 <= P - g 2^53: U < exp(-x) for sure
        # unsure: -1 - slack < W - P < slack (neither sure accept nor sure reject W >= P +
        # g 2^53); rare, so a reduction first: |W - P + 1/2| < slack + 1/2
        np.add(coin, 0.5, out=work)
        np.abs(work, out=work)
        if float(work.min()) < slack + 0.5:
            unsure = coin < slack
            unsure ^= accept
            for i in np.flatnonzero(unsure):
                x = (int(mag[i]) - self.s / t) ** 2 / (2 * self.s)
                accept[i] = _exact_bern_exp(int(bits[i]), 53, x, self.stream)
        neg = np.unpackbits(words[2 * k :].view(np.uint8), count=k).view(np.bool_)
        minus_zero = mag == 0.0
        minus_zero &= neg
        accept &= ~minus_zero
        got = np.compress(accept, mag)
        take = min(got.size, out.size)
        np.copyto(out[:take], got[:take], casting="unsafe")  # exact: integers below 2^53
        np.negative(out[:take], out=out[:take], where=np.compress(accept, neg)[:take])
        return take


def skellam(mu: float, n: int, key: bytes | None = None) -> npt.NDArray[np.int64]:
    """n draws of Poisson(mu) - Poisson(mu) (variance 2 mu); see the module note on exactness.

    Parameters:
        mu: The Poisson mean.
        n: How many draws.
        key: A fixed key, for tests only (default: keyed by the OS).

    Returns:
        The draws.
    """
    if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not 0 < mu < 1e15:
        raise ConfigError(f"mu must be a positive number below 1e15, got {mu!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"n must be a non-negative int, got {n!r}")
    key = os.urandom(32) if key is None else key
    gen = np.random.Generator(np.random.Philox(key=int.from_bytes(key[:16], "little")))
    a = gen.poisson(mu, n).astype(np.int64)
    a -= gen.poisson(mu, n).astype(np.int64)
    return a
