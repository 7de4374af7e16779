"""Fixed-point encoding of floats into Z_{2^b} with unbiased stochastic rounding."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from secureagg._exceptions import ConfigError
from secureagg.hazmat._modarith import MAX_BITS, check_bits, element_dtype, reduce_into
from secureagg.hazmat._prg import Keystream

__all__ = [
    "QuantConfig",
    "centered_sum",
    "choose_bits",
    "dequantize_sum",
    "make_config",
    "quantize",
]

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

    Parameters:
        max_clients: n.
        clip: c.
        frac_bits: f.

    Returns:
        b.

    Raises:
        ConfigError: That b exceeds 64.
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
    """A checked quantisation setting; build it with make_config.

    Attributes:
        bits: b, the ring's bit width.
        frac_bits: f, bits after the binary point.
        clip: c, the bound on each coordinate.
        max_clients: n, the most inputs a sum holds.
    """

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
    """A QuantConfig; b defaults to choose_bits.

    Parameters:
        max_clients: n, the most inputs a sum holds.
        clip: c, the bound on each coordinate.
        frac_bits: f, bits after the binary point.
        bits: b (default: :func:`choose_bits`).

    Returns:
        The checked setting.

    Raises:
        ConfigError: The sum could wrap, or a bad value.
    """
    if bits is None:
        bits = choose_bits(max_clients, clip, frac_bits)
    return QuantConfig(bits=bits, frac_bits=frac_bits, clip=float(clip), max_clients=max_clients)


_CHUNK = 1 << 15  # elements per pass: temporaries stay in cache and are reused
# Per working float type: the uint of the same width, its exponent bits of 1.0, and the
# shift that leaves exactly the mantissa bits (23 or 52) of a uniform word.
_UNIFORM = {
    np.dtype(np.float32): (np.uint32, 0x3F800000, 9),
    np.dtype(np.float64): (np.uint64, 0x3FF0000000000000, 12),
}


def quantize(
    x: npt.NDArray[Any],
    cfg: QuantConfig,
    rng: np.random.Generator,
    *,
    out: npt.NDArray[Any] | None = None,
) -> npt.NDArray[Any]:
    """Clip to [-c, c], scale by 2^f, round stochastically, two's complement into Z_{2^b}.

    Rounds up with probability equal to the fractional part, so E[result] = x * 2^f (up to
    the 2^-23 grid of the uniform draws; 2^-52 for float64 input) and |error| < 1 level.
    Float32 input is computed in float32: scaling by 2^f and flooring are exact.

    Parameters:
        x: The values.
        cfg: The quantisation setting.
        rng: Gives the 32-byte key of the AES-256-CTR stream the uniform draws come from, so
            a seeded rng gives reproducible output.
        out: Where to write the result (a contiguous element_dtype(b) array of x's size);
            default a new array. It may be x's own memory (x a contiguous float array of the
            same item size, viewed as element_dtype(b)): each piece of x is read before its
            place is written. Then x is lost, also when quantize raises.

    Returns:
        The quantised vector in element_dtype(b).
    """
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        raise ConfigError("x must be a numpy float array")
    if not isinstance(rng, np.random.Generator):
        raise ConfigError("rng must be a numpy.random.Generator")
    ftype = np.dtype(np.float32) if x.dtype == np.float32 else np.dtype(np.float64)
    c = ftype.type(cfg.clip)
    if float(c) > cfg.clip:  # keep the clip bound of the working precision inside cfg.clip
        c = np.nextafter(c, ftype.type(0))
    scale = ftype.type(cfg.scale)
    utype, one_bits, shift = _UNIFORM[ftype]
    udtype = element_dtype(cfg.bits)
    flat = x.reshape(-1)
    n = flat.size
    if out is None:
        out = np.empty(n, dtype=udtype)
    elif (
        not isinstance(out, np.ndarray)
        or out.dtype != udtype
        or out.size != n
        or not out.flags.c_contiguous
        or not out.flags.writeable
    ):
        raise ConfigError(f"out must be a writeable contiguous {udtype} array of {n} elements")
    out = out.reshape(-1)
    if n and np.may_share_memory(flat, out) and not _same_memory(flat, out):
        raise ConfigError("out overlaps x without being x's own memory")
    q_all = out.view(_SIGNED[udtype.itemsize])
    m = min(n, _CHUNK)
    a = np.empty(m, dtype=ftype)
    fl = np.empty(m, dtype=ftype)
    r = np.empty(m, dtype=utype)
    up = np.empty(m, dtype=np.bool_)
    stream = Keystream(rng.bytes(32), n * r.itemsize)
    for i in range(0, n, _CHUNK):
        k = min(_CHUNK, n - i)
        av, flv, rv, upv = a[:k], fl[:k], r[:k], up[:k]
        np.clip(flat[i : i + k], -c, c, out=av)  # x's piece is read here, before q is written
        if np.isnan(np.min(av)):
            raise ConfigError("x contains NaN")
        av *= scale
        np.floor(av, out=flv)
        av -= flv  # fractional part in [0, 1), exact
        stream.fill(memoryview(rv).cast("B"))  # type: ignore[arg-type]
        rv >>= utype(shift)
        rv |= utype(one_bits)
        u = rv.view(ftype)  # uniform on [1, 2) with a 2^-23 (2^-52) grid
        u -= ftype.type(1.0)  # exact: uniform on [0, 1)
        np.less(u, av, out=upv)
        q = q_all[i : i + k]
        np.copyto(q, flv, casting="unsafe")  # |floor| <= ceil(c 2^f) < 2^(b-1): fits
        q += upv
    reduce_into(out, cfg.bits)
    return out.reshape(x.shape)


def _same_memory(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> bool:
    """Whether ``a`` and ``b`` are contiguous and start at one address with one item size."""
    return (
        a.flags.c_contiguous
        and a.itemsize == b.itemsize
        and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    )


def centered_sum(s: npt.NDArray[Any], cfg: QuantConfig) -> npt.NDArray[Any]:
    """A sum of quantised inputs mod 2^b as signed integers in [-2^(b-1), 2^(b-1)).

    Two's complement in the word width (int16, int32 or int64): the b bits are shifted to
    the top of the word and shifted back arithmetically, which sign-extends them.

    Parameters:
        s: The sum mod 2^b.
        cfg: The quantisation setting.

    Returns:
        The signed sum; may share memory with ``s`` (when b fills the word): do not write
        to it.
    """
    dtype = element_dtype(cfg.bits)
    if not isinstance(s, np.ndarray) or s.dtype != dtype:
        raise ConfigError(f"s must be a numpy array of dtype {dtype}")
    width = 8 * dtype.itemsize
    signed = np.dtype(f"int{width}")
    if cfg.bits == width:
        return s.view(signed)
    gap = width - cfg.bits
    out: npt.NDArray[Any] = np.left_shift(s, dtype.type(gap)).view(signed)  # drops bits above b
    np.right_shift(out, signed.type(gap), out=out)
    return out


def dequantize_sum(s: npt.NDArray[Any], cfg: QuantConfig) -> npt.NDArray[np.float64]:
    """A sum of quantised inputs mod 2^b, read as two's complement and divided by 2^f.

    Exact for b <= 53 (every integer converts to float64 exactly and 2^-f is a power of two).

    Parameters:
        s: The sum mod 2^b.
        cfg: The quantisation setting.

    Returns:
        The sum as floats.
    """
    out: npt.NDArray[np.float64] = np.multiply(
        centered_sum(s, cfg), 1.0 / cfg.scale, dtype=np.float64
    )
    return out
