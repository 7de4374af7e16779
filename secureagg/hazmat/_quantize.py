"""Fixed-point encoding of floats into Z_{2^b} with unbiased stochastic rounding."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secureagg._exceptions import ConfigError
from secureagg.hazmat._modarith import MAX_BITS, check_bits, element_dtype, reduce_into

__all__ = ["QuantConfig", "choose_bits", "dequantize_sum", "make_config", "quantize"]

_MAX_FRAC_BITS = 62
_SIGNED = {2: np.int16, 4: np.int32, 8: np.int64}


def _check(max_clients: object, clip: object, frac_bits: object) -> tuple[int, float, int]:
    if not isinstance(max_clients, int) or isinstance(max_clients, bool) or max_clients < 1:
        raise ConfigError(f"max_clients must be a positive int, got {max_clients!r}")
    if not isinstance(clip, (int, float)) or not math.isfinite(clip) or clip <= 0:
        raise ConfigError(f"clip must be a positive finite number, got {clip!r}")
    if not isinstance(frac_bits, int) or not 0 <= frac_bits <= _MAX_FRAC_BITS:
        raise ConfigError(f"frac_bits must be an int in [0, {_MAX_FRAC_BITS}], got {frac_bits!r}")
    return max_clients, float(clip), frac_bits


def _max_level(clip: float, frac_bits: int) -> int:
    """The largest |quantised coordinate|: ceil(clip * 2^f)."""
    return math.ceil(math.ldexp(clip, frac_bits))


def choose_bits(max_clients: int, clip: float, frac_bits: int) -> int:
    """Smallest b with 2 * n * ceil(c * 2^f) < 2^b, so a sum of n inputs cannot wrap.

    ConfigError if that b exceeds 64.
    """
    n, c, f = _check(max_clients, clip, frac_bits)
    bound = 2 * n * _max_level(c, f)
    bits = bound.bit_length()  # 2^(bits-1) <= bound < 2^bits
    if bits > MAX_BITS:
        raise ConfigError(
            f"{n} clients with clip {c} and {f} fractional bits need {bits} > {MAX_BITS} bits;"
            " lower frac_bits, clip or max_clients"
        )
    return bits


@dataclass(frozen=True)
class QuantConfig:
    """A checked quantisation setting; build it with make_config."""

    bits: int
    frac_bits: int
    clip: float
    max_clients: int

    def __post_init__(self) -> None:
        needed = choose_bits(self.max_clients, self.clip, self.frac_bits)
        b = check_bits(self.bits)
        if b < needed:
            raise ConfigError(
                f"bits={b} lets a sum of {self.max_clients} inputs wrap; need at least {needed}"
            )

    @property
    def scale(self) -> float:
        """2^frac_bits."""
        return math.ldexp(1.0, self.frac_bits)


def make_config(
    max_clients: int, clip: float, frac_bits: int, bits: int | None = None
) -> QuantConfig:
    """A QuantConfig; b defaults to choose_bits; ConfigError if the sum could wrap."""
    if bits is None:
        bits = choose_bits(max_clients, clip, frac_bits)
    return QuantConfig(bits=bits, frac_bits=frac_bits, clip=float(clip), max_clients=max_clients)


def _uniform_like(s: npt.NDArray[Any], rng: np.random.Generator) -> npt.NDArray[Any]:
    """Uniform draws on [0, 1) of s's shape and dtype.

    For float32, k / 2^24 with k from a 24-bit word of an AES-256-CTR keystream keyed by
    32 bytes drawn from ``rng`` (the same grid as numpy's float32 draws, several times
    faster than numpy's generator; still reproducible from the rng's seed).
    """
    if s.dtype != np.float32:
        return rng.random(s.shape)
    words = np.empty(s.size, dtype=np.uint32)
    view = memoryview(words).cast("B")  # type: ignore[arg-type]
    key = rng.bytes(32)
    Cipher(algorithms.AES256(key), modes.CTR(bytes(16))).encryptor().update_into(
        bytes(words.nbytes), view
    )
    words >>= np.uint32(8)
    u = words.astype(np.float32)
    u *= np.float32(2.0**-24)
    return u.reshape(s.shape)


def quantize(x: npt.NDArray[Any], cfg: QuantConfig, rng: np.random.Generator) -> npt.NDArray[Any]:
    """Clip to [-c, c], scale by 2^f, round stochastically, two's complement into Z_{2^b}.

    E[result] = x * 2^f exactly (for |x| <= c) and |error| < 1 level. Float32 input is
    computed in float32 (exact: scaling by a power of two and flooring lose nothing).
    """
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        raise ConfigError("x must be a numpy float array")
    if not isinstance(rng, np.random.Generator):
        raise ConfigError("rng must be a numpy.random.Generator")
    ftype = np.float32 if x.dtype == np.float32 else np.float64
    c = ftype(cfg.clip)
    if float(c) > cfg.clip:  # keep the clip bound of the working precision inside cfg.clip
        c = np.nextafter(c, ftype(0))
    s = np.clip(x, -c, c, dtype=ftype)
    if s.size and np.isnan(np.min(s)):
        raise ConfigError("x contains NaN")
    s *= ftype(cfg.scale)
    floor = np.floor(s)
    s -= floor  # fractional part in [0, 1), exact
    u = _uniform_like(s, rng)
    udtype = element_dtype(cfg.bits)
    q = floor.astype(_SIGNED[udtype.itemsize])
    q += np.less(u, s)
    out: npt.NDArray[Any] = q.view(udtype)
    reduce_into(out, cfg.bits)
    return out


def dequantize_sum(s: npt.NDArray[Any], cfg: QuantConfig) -> npt.NDArray[np.float64]:
    """A sum of quantised inputs mod 2^b, read as two's complement and divided by 2^f."""
    dtype = element_dtype(cfg.bits)
    if not isinstance(s, np.ndarray) or s.dtype != dtype:
        raise ConfigError(f"s must be a numpy array of dtype {dtype}")
    b = cfg.bits
    if b == 64:
        signed = s.view(np.int64)
    else:
        v = s.astype(np.int64)
        half = 1 << (b - 1)
        v &= (1 << b) - 1
        v ^= half
        v -= half
        signed = v
    out = signed.astype(np.float64)
    out /= cfg.scale
    return out
