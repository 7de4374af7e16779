"""Integer noise for distributed DP: the discrete Gaussian and the Skellam distribution.

The discrete Gaussian N_Z(0, s) has pmf proportional to exp(-x^2 / (2 s)) on the integers.
:func:`discrete_gaussian` follows Canonne, Kamath and Steinke (2020), vectorised: discrete
Laplace proposals, accepted by a Bernoulli(exp(-x)) draw. Every random choice is a
comparison of AES-256-CTR keystream words (keyed by ``os.urandom``) with an exact
threshold: the Laplace magnitude floor(-t ln U), and Bernoulli(exp(-x)) by comparing a 64-bit
word with float64 bounds on exp(-x) that hold with a wide margin; the rare words that fall
between the bounds (probability < 2^-30 per draw) are settled with more keystream words
against exp(-x) (or ln) evaluated exactly enough by :mod:`decimal` from rational inputs. The output
distribution is therefore exactly N_Z(0, s) for rational s, with no floating-point bias.

:func:`skellam` draws Poisson differences with numpy's Poisson sampler (Hoermann's PTRS,
exact in real arithmetic but run in float64) on a Philox generator keyed by 128 bits from
``os.urandom``: not bit-exact, and Philox is not a vetted CSPRNG. The discrete Gaussian is
the default mechanism; see docs/privacy.md.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from decimal import Context, Decimal, localcontext
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secureagg._exceptions import ConfigError

__all__ = ["NoiseStream", "discrete_gaussian", "skellam"]

_GUARD = 2.0**-40  # relative slack on float64 exp(-x); the true error is below 2^-49
_MAX_X = 700.0  # above this exp(-x) < 2^-1000: every nonzero word rejects
_CHUNK = 1 << 15  # samples per pass


class NoiseStream:
    """Uniform 64-bit words from AES-256-CTR keyed by 32 bytes.

    A fixed ``key`` makes a stream reproducible: for tests only, never for real noise.

    Parameters:
        key: The AES key (default: 32 bytes from ``os.urandom``).
    """

    def __init__(self, key: bytes | None = None) -> None:
        if key is None:
            key = os.urandom(32)
        if not isinstance(key, bytes) or len(key) != 32:
            raise ConfigError("key must be 32 bytes")
        self._enc = Cipher(algorithms.AES256(key), modes.CTR(bytes(16))).encryptor()

    def words(self, n: int) -> npt.NDArray[np.uint64]:
        """n uniform uint64 words (little-endian keystream).

        Parameters:
            n: How many words.

        Returns:
            The words.
        """
        out = np.empty(n, dtype="<u8")
        self._enc.update_into(bytes(out.nbytes), memoryview(out).cast("B"))  # type: ignore[arg-type]
        return out.astype(np.uint64, copy=False)


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

    One keystream word each, when float64 bounds with a wide margin settle the floor;
    else more words, settled with decimal logarithms.
    """
    u = stream.words(n)
    uf = u.astype(np.float64)
    with np.errstate(divide="ignore"):
        top = -np.log(uf * 2.0**-64)  # -ln of the low end of U's interval (inf at 0)
    # -ln of the high end; the argument is within 2^-52 relative of (U + 1) / 2^64, so
    # both logs are within 2^-51 absolute (plus |ln| 2^-52), far inside eps
    bottom = -np.log((uf + 1.0) * 2.0**-64)
    eps = t * _GUARD * (1.0 + top)
    m = np.floor(t * bottom - eps)
    settled = (m == np.floor(t * top + eps)) & (m >= 0)
    mag = np.where(settled, m, 0.0).astype(np.int64)
    for i in np.flatnonzero(~settled):
        mag[i] = _exact_laplace_magnitude(int(u[i]), t, stream)
    return mag


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
    s = _as_fraction(variance, "variance")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"n must be a non-negative int, got {n!r}")
    if s > 2**80:
        raise ConfigError(f"variance {float(s)} is too large (at most 2^80)")
    stream = stream or NoiseStream()
    out = np.empty(n, dtype=np.int64)
    for i in range(0, n, _CHUNK):  # cache-sized pieces: several times faster than one pass
        out[i : i + _CHUNK] = _discrete_gaussian(s, min(_CHUNK, n - i), stream)
    return out


def _discrete_gaussian(s: Fraction, n: int, stream: NoiseStream) -> npt.NDArray[np.int64]:
    """CKS20 Algorithm 3 with t = floor(sigma) + 1: a discrete Laplace proposal Y (magnitude,
    sign, -0 rejected) accepted with probability exp(-(|Y| - s/t)^2 / (2 s)). The two
    rejections use independent randomness given |Y|, so they are applied together."""
    sf = float(s)
    t = math.isqrt(math.floor(s)) + 1  # floor(sigma) + 1 (any t >= 1 is exact; this is fast)
    b = sf / t
    out = np.empty(n, dtype=np.int64)
    filled, rate = 0, 0.5
    while filled < n:
        # draw enough proposals for the rest in one go; accepted proposals are i.i.d. draws
        # of N_Z(0, s) whatever their number, so keeping the first ones needed is exact
        m = int((n - filled) / rate * 1.15) + 16
        mag = _magnitudes(t, m, stream)
        neg = _signs(m, stream)
        a = mag.astype(np.float64)
        x = (a - b) ** 2 / (2.0 * sf)
        # float64 error of x is below 2^-50 (a + b)^2 / s: one guard for the whole batch
        guard = _GUARD * (4.0 + (float(a.max()) + b) ** 2 / sf)

        def exact(i: int, mag: Any = mag) -> Fraction:
            return (int(mag[i]) - s / t) ** 2 / (2 * s)

        keep = bernoulli_exp(x, guard, exact, stream) & ~(neg & (mag == 0))
        got = np.where(neg, -mag, mag)[keep]
        take = min(got.size, n - filled)
        out[filled : filled + take] = got[:take]
        filled += take
        rate = max(float(keep.mean()), 0.05)
    return out


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
