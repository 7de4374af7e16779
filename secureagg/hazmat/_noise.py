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

import math
import os
import sys
from collections.abc import Callable
from decimal import Context, Decimal, localcontext
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from secureagg._exceptions import ConfigError
from secureagg.hazmat._dgauss_table import (
    _MAX_TABLE_BITS,
    _TABLE_TAIL,
    _TABLE_UNIT_BITS,
    _gaussian_table,
    _half_width,
)
from secureagg.hazmat._prg import Keystream

__all__ = ["NoiseStream", "discrete_gaussian", "skellam"]

_GUARD = 2.0**-40  # relative slack on float64 exp(-x); the true error is below 2^-49
_MAX_X = 700.0  # above this exp(-x) < 2^-1000: every nonzero word rejects
_BATCH = 1 << 14  # discrete Gaussian proposals per pass: every buffer is reused, in cache
_LN2_64 = 64 * math.log(2)
_SMALL_WORD = 2**44  # below, a word's interval in -ln U is over 2^-44 wide: settled exactly
_BIG_ENDIAN = sys.byteorder == "big"


class NoiseStream:
    """Uniform 64-bit words: the AES-256-CTR keystream of a 32-byte key from counter 0.

    Read through :class:`~secureagg.hazmat._prg.Keystream` of no stated length: the first
    2^36 bytes by AES-256-GCM's counter mode (the same bytes, about 20% faster with
    OpenSSL's vector AES), the rest by CTR itself. A fixed ``key`` makes a stream
    reproducible: for tests only, never for real noise.

    Parameters:
        key: The AES key (default: 32 bytes from ``os.urandom``).
    """

    def __init__(self, key: bytes | None = None) -> None:
        if key is None:
            key = os.urandom(32)
        if not isinstance(key, bytes) or len(key) != 32:
            raise ConfigError("key must be 32 bytes")
        self._keystream = Keystream(key, None)

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
        self._keystream.fill(memoryview(out).cast("B"))  # type: ignore[arg-type]
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
