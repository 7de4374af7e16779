"""The integer pipeline of distributed DP (Kairouz, Liu, Steinke 2021; Agarwal, Kairouz, Liu 2021).

Client: L2-clip to c, pad to a power of two D, rotate (random signs, then the orthonormal
Walsh-Hadamard transform), scale by 1/gamma, round randomly until the rounded vector's norm
is within :func:`rounded_l2_bound`, add integer noise, reduce mod 2^b. Server: read the
masked sum's residues as signed integers in [-2^(b-1), 2^(b-1)), multiply by gamma, undo
the rotation, drop the padding. The signs are public and fixed per round by a seed that
every party knows (the round id); only the rounding and the noise are secret.

The client rotates in float32 when the scaled clip c / gamma is at most 2^17 (the rotated
vector's float error is then about 2^-21 of its norm in L2, under 2^-4, against the
rounding's own error of about sqrt(D) / 2), else in float64. Floats decide only the
rounding's inputs: the rounded integer vector's norm is checked exactly, and that check is
what bounds the sensitivity.

Accounting for these parameters is in :mod:`secureagg.privacy.distributed`.
"""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from secureagg._exceptions import ConfigError, DecodeError
from secureagg.hazmat._modarith import check_bits, element_dtype
from secureagg.hazmat._noise import (
    NoiseStream,
    _gaussian_filler,
    _gaussian_variance,
    skellam,
)
from secureagg.hazmat._rotation import _F32, _F64, _fwht, apply_signs, rotation_signs

__all__ = [
    "BETA",
    "MECHANISMS",
    "DDPParams",
    "ddp_decode",
    "ddp_encode",
    "padded_length",
    "rounded_l2_bound",
]

BETA = math.exp(-0.5)
"""Conditional rounding's failure bound (KLS21's choice): the bound holds w.p. >= 1 - beta."""

MECHANISMS = ("dgauss", "skellam")
_MAGIC = b"SADP"
_VERSION = 1
_PACK = struct.Struct(">4sBBQBdddd")
_MAX_D = 2**28


def padded_length(d: int) -> int:
    """The smallest power of two >= d.

    Parameters:
        d: A length.

    Returns:
        The padded length.
    """
    return 1 << max(0, (d - 1).bit_length())


def rounded_l2_bound(norm: float, dim: int, beta: float = BETA) -> float:
    """The L2 bound that conditional randomized rounding enforces (KLS21, Theorem 1 / Prop. 22).

    For a vector of L2 norm <= ``norm`` in ``dim`` coordinates, already scaled:
    min(norm + sqrt(dim), sqrt(norm^2 + dim / 4 + sqrt(2 ln(1 / beta)) (norm + sqrt(dim) / 2))),
    the second term only when beta > 0.

    Parameters:
        norm: The scaled vector's L2 norm bound.
        dim: Its number of coordinates.
        beta: The rounding's failure bound.

    Returns:
        The bound.
    """
    if not (norm > 0 and math.isfinite(norm)) or dim < 1 or not 0 <= beta < 1:
        raise ConfigError(f"invalid rounding bound inputs: norm={norm}, dim={dim}, beta={beta}")
    plain = norm + math.sqrt(dim)
    if beta == 0:
        return plain
    sq = norm**2 + dim / 4 + math.sqrt(2 * math.log(1 / beta)) * (norm + math.sqrt(dim) / 2)
    return min(plain, math.sqrt(sq))


@dataclass(frozen=True)
class DDPParams:
    """Every public parameter of one distributed-DP round; :meth:`to_bytes` is canonical.

    Attributes:
        mechanism: The integer noise: "dgauss" (discrete Gaussian) or "skellam".
        d: The unpadded length.
        bits: The modulus 2^b of the masked sum.
        clip: The L2 clip c.
        gamma: The rounding granularity (scale 1/gamma).
        variance: Each client's noise variance in the integer domain (the discrete
            Gaussian's sigma^2, or 2 mu for Skellam).
        beta: Conditional rounding's failure bound.
    """

    mechanism: str
    d: int
    bits: int
    clip: float
    gamma: float
    variance: float
    beta: float = BETA

    def __post_init__(self) -> None:
        if self.mechanism not in MECHANISMS:
            raise ConfigError(f"mechanism must be one of {MECHANISMS}, got {self.mechanism!r}")
        if isinstance(self.d, bool) or not isinstance(self.d, int) or not 1 <= self.d <= _MAX_D:
            raise ConfigError(f"d must be an int in [1, 2^28], got {self.d!r}")
        if check_bits(self.bits) > 62:
            raise ConfigError(f"bits must be at most 62, got {self.bits}")
        for name in ("clip", "gamma", "variance"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{name} must be a number, got {v!r}")
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be positive and finite, got {v!r}")
        if not isinstance(self.beta, float) or not 0 <= self.beta < 1:
            raise ConfigError(f"beta must be a float in [0, 1), got {self.beta!r}")
        if self.l2_sensitivity >= 2**30:  # keeps the rounded norm's integer check in int64
            raise ConfigError("clip / gamma is too large (the rounded norm must stay below 2^30)")

    @property
    def padded(self) -> int:
        """D: the length of the rotated, encoded vector."""
        return padded_length(self.d)

    @property
    def l2_sensitivity(self) -> float:
        """Delta_2 in the integer domain: the rounded norm bound of the scaled clip."""
        return rounded_l2_bound(self.clip / self.gamma, self.padded, self.beta)

    def to_bytes(self) -> bytes:
        """A canonical encoding (magic, version, every field; floats as IEEE-754 big-endian).

        Returns:
            The bytes.
        """
        return _PACK.pack(
            _MAGIC,
            _VERSION,
            MECHANISMS.index(self.mechanism),
            self.d,
            self.bits,
            float(self.clip),
            float(self.gamma),
            float(self.variance),
            self.beta,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> DDPParams:
        """The params :meth:`to_bytes` wrote.

        Parameters:
            data: The bytes.

        Returns:
            The params.

        Raises:
            DecodeError: Anything else.
        """
        if not isinstance(data, bytes) or len(data) != _PACK.size:
            raise DecodeError("distributed-DP params have the wrong length")
        magic, version, mech, d, bits, clip, gamma, variance, beta = _PACK.unpack(data)
        if magic != _MAGIC or version != _VERSION or mech >= len(MECHANISMS):
            raise DecodeError("not distributed-DP params of this version")
        try:
            out = cls(MECHANISMS[mech], d, bits, clip, gamma, variance, beta)
        except ConfigError as e:
            raise DecodeError(f"invalid distributed-DP params: {e}") from e
        if out.to_bytes() != data:
            raise DecodeError("non-canonical distributed-DP params")
        return out


_ROUND_CHUNK = 1 << 15  # elements per piece of the conditional rounding
_FLOAT32_NORM = 2.0**17  # rotate in float32 when the scaled clip is at most this
_LOCAL = threading.local()  # per thread: the encode's reused vectors (_workspace)


def _round_conditionally(
    z: npt.NDArray[np.floating[Any]],
    bound: float,
    stream: NoiseStream,
    out: npt.NDArray[np.int32] | None = None,
) -> npt.NDArray[np.int32]:
    """Unbiased random rounding of z, redrawn until ||rounded||_2 <= bound (exact integer check).

    Up with probability frac(z) (float64 z: within 2^-53; float32 z: within 2^-24, the
    uniform having 24 bits). In pieces of :data:`_ROUND_CHUNK` with reused buffers: no
    vector-sized temporaries.
    """
    n = z.shape[0]
    limit = math.floor(bound * bound)
    top = max(float(np.max(z)), -float(np.min(z))) if n else 0.0
    if not top < bound + 1:  # then |q_i| > bound for some i, every time (or z has a nan)
        raise ConfigError("conditional rounding cannot meet the bound: the input exceeds the clip")
    if out is None:  # |q_i| <= |z_i| + 1 <= bound + 2 < 2^31 (bound < 2^30)
        out = np.empty(n, dtype=np.int32)
    step = max(2, min(n + n % 2, _ROUND_CHUNK))  # even: float32 uses half a word each
    # |q_i| <= top + 1: the sum of a piece's squares fits int32 (or int64, else Python's)
    acc: type[np.signedinteger[Any]] | None = None
    if step * (top + 2) ** 2 < 2**31:
        acc = np.int32
    elif step * (top + 2) ** 2 < 2**63:
        acc = np.int64
    wide = z.dtype == np.float64
    dtype = z.dtype.type
    lo, frac, u = (np.empty(step, dtype=dtype) for _ in range(3))
    words64 = np.empty(step if wide else step // 2, dtype=np.uint64)
    words = words64 if wide else words64.view(np.uint32)
    small = words.view(np.int64 if wide else np.int32)  # the shifted words, as signed ints
    shift, unit = (np.uint64(11), 2.0**-53) if wide else (np.uint32(8), 2.0**-24)
    up = np.empty(step, dtype=np.bool_)
    for _ in range(1000):
        total = 0
        for i in range(0, n, step):
            k = min(step, n - i)
            zi, lk, fk, uk, wk, upk = z[i : i + k], lo[:k], frac[:k], u[:k], words[:k], up[:k]
            sk = small[:k]
            np.floor(zi, out=lk)
            np.subtract(zi, lk, out=fk)  # exact
            stream._fill(words64)
            np.right_shift(wk, shift, out=wk)
            np.copyto(uk, sk, casting="unsafe")  # exact: 53 or 24 bits
            uk *= dtype(unit)
            np.less(uk, fk, out=upk)  # up with probability frac
            lk += upk
            piece = out[i : i + k]
            np.copyto(piece, lk, casting="unsafe")  # exact: integers below 2^31
            if acc is not None:
                total += int(np.einsum("i,i->", piece, piece, dtype=acc))
            else:  # coordinates of 2^24 rounding steps or more: Python's integers
                total += sum(v * v for v in piece.tolist())
        if total <= limit:
            return out
    raise ConfigError("conditional rounding failed 1000 times: the input exceeds the clip")


def ddp_encode(
    x: npt.NDArray[Any],
    params: DDPParams,
    seed: bytes,
    stream: NoiseStream | None = None,
    *,
    noise: bool = True,
) -> npt.NDArray[Any]:
    """A client's protocol input: clip, rotate, scale, round, add noise, reduce mod 2^b.

    Parameters:
        x: The client's vector, d floats.
        params: The round's parameters.
        seed: Fixes the public rotation (the round id).
        stream: The secret rounding and noise (default: a fresh OS-keyed stream).
        noise: False leaves the noise out: for tests of the exact pipeline only.

    Returns:
        The protocol input in Z_{2^b}, of the padded length.
    """
    if not isinstance(x, np.ndarray) or x.ndim != 1 or x.shape[0] != params.d:
        raise ConfigError(f"x must be a 1-d array of length {params.d}")
    if x.dtype.kind != "f":
        raise ConfigError("x must be a finite float array")
    stream = stream or NoiseStream()
    first, second, q = _workspace(params.padded, _float_type(params))
    z = _rotate(x, params, seed, first, second)
    _round_conditionally(z, params.l2_sensitivity, stream, q)
    # q + noise mod 2^b, in pieces (the noise drawn piece by piece, not as one vector)
    n = params.padded
    out = np.empty(n, dtype=element_dtype(params.bits))
    mask = np.int64((1 << params.bits) - 1)
    wraps = out.dtype.itemsize * 8 == params.bits  # the cast below reduces mod 2^b itself
    piece = np.empty(min(n, _ROUND_CHUNK), dtype=np.int64)
    fill = _noise_filler(params, n, stream) if noise else None
    for i in range(0, n, piece.size):
        k = min(piece.size, n - i)
        p = piece[:k]
        if fill is None:
            p.fill(0)
        else:
            fill(p, i)
        p += q[i : i + k]
        if not wraps:
            p &= mask
        np.copyto(out[i : i + k], p, casting="unsafe")  # two's complement: mod 2^b
    return out


def _noise_filler(
    params: DDPParams, n: int, stream: NoiseStream
) -> Callable[[npt.NDArray[np.int64], int], None]:
    """fill(piece, start): overwrite ``piece`` with the noise of coordinates start, ..."""
    if params.mechanism == "dgauss":
        gaussian = _gaussian_filler(_gaussian_variance(params.variance))
        return lambda piece, start: gaussian(piece, stream)
    whole = skellam(params.variance / 2, n, stream.words(4).tobytes())
    return lambda piece, start: np.copyto(piece, whole[start : start + piece.size])


def _float_type(params: DDPParams) -> np.dtype[Any]:
    """The client's rotation runs in float32 when the scaled clip is at most 2^17."""
    return _F32 if params.clip / params.gamma <= _FLOAT32_NORM else _F64


def _workspace(
    n: int, dtype: np.dtype[Any]
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[np.int32]]:
    """Two float vectors and an int32 one of length n, kept per thread between encodes: new
    pages for them at every encode cost about 3 ms of page faults at n = 2^20 (measured)."""
    work = getattr(_LOCAL, "work", None)
    if work is None or work[0].shape[0] != n or work[0].dtype != dtype:
        work = (np.empty(n, dtype=dtype), np.empty(n, dtype=dtype), np.empty(n, dtype=np.int32))
        _LOCAL.work = work
    return work


def _rotate(
    x: npt.NDArray[Any],
    params: DDPParams,
    seed: bytes,
    v: npt.NDArray[Any],
    spare: npt.NDArray[Any],
) -> npt.NDArray[Any]:
    """The clipped, padded, rotated and scaled vector, in ``v`` or ``spare`` (two vectors of
    the padded length, float32 when the scaled clip is at most 2^17, else float64)."""
    # einsum: numpy's own loop (np.dot and linalg.norm start BLAS threads, slow when busy)
    norm = math.sqrt(float(np.einsum("i,i->", x, x, dtype=np.float64)))
    if not math.isfinite(norm):  # a nan or inf in x, or a finite x whose square overflows
        if not np.all(np.isfinite(x)):
            raise ConfigError("x must be a finite float array")
        top = float(np.max(np.abs(x)))
        y = x / top
        norm = top * math.sqrt(float(np.einsum("i,i->", y, y)))
    # clip slightly inside c so float rounding in the rotation cannot push the norm past c
    # (the rounding's integer check is what bounds the sensitivity, whatever the floats)
    c = params.clip * (1 - 1e-12)
    scale = (c / norm if norm > c else 1.0) / params.gamma
    d = params.d
    if norm < 2.0**100:  # every |x_i| is far inside float32's range
        v[:d] = x
    else:  # scaled first, in float64: then within the clip / gamma < 2^30
        v[:d] = x * scale
        scale = 1.0
    v[d:] = 0.0
    apply_signs(v, seed, _ROUND_CHUNK)
    return _fwht(v, scale, v.dtype, inplace=True, spare=spare)  # clip and 1/gamma folded in


def ddp_decode(total: npt.NDArray[Any], params: DDPParams, seed: bytes) -> npt.NDArray[np.float64]:
    """The sum of the clients' (clipped, noisy) vectors from their sum mod 2^b.

    Residues are read as signed integers in [-2^(b-1), 2^(b-1)) (modular clipping), scaled
    by gamma and rotated back; the padding is dropped.

    Parameters:
        total: The sum mod 2^b.
        params: The round's parameters.
        seed: The round's public rotation seed.

    Returns:
        The sum, d floats.
    """
    dtype = element_dtype(params.bits)
    if not isinstance(total, np.ndarray) or total.dtype != dtype or total.shape != (params.padded,):
        raise ConfigError(f"total must be a {dtype} array of shape ({params.padded},)")
    half = 1 << (params.bits - 1)
    centred = ((total.astype(np.int64) + half) & ((1 << params.bits) - 1)) - half
    y = _fwht(centred, params.gamma, _F64, inplace=True)
    out: npt.NDArray[np.float64] = y[: params.d] * rotation_signs(seed, params.d)
    return out
