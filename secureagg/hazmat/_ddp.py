"""The integer pipeline of distributed DP (Kairouz, Liu, Steinke 2021; Agarwal, Kairouz, Liu 2021).

Client: L2-clip to c, pad to a power of two D, rotate (random signs, then the orthonormal
Walsh-Hadamard transform), scale by 1/gamma, round randomly until the rounded vector's norm
is within :func:`rounded_l2_bound`, add integer noise, reduce mod 2^b. Server: read the
masked sum's residues as signed integers in [-2^(b-1), 2^(b-1)), multiply by gamma, undo
the rotation, drop the padding. The signs are public and fixed per round by a seed that
every party knows (the round id); only the rounding and the noise are secret.

Accounting for these parameters is in :mod:`secureagg.privacy.distributed`.
"""

from __future__ import annotations

import functools
import hashlib
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secureagg._exceptions import ConfigError, DecodeError
from secureagg.hazmat._modarith import check_bits, element_dtype
from secureagg.hazmat._noise import NoiseStream, discrete_gaussian, skellam

__all__ = [
    "BETA",
    "MECHANISMS",
    "DDPParams",
    "ddp_decode",
    "ddp_encode",
    "fwht",
    "padded_length",
    "rotation_signs",
    "rounded_l2_bound",
]

BETA = math.exp(-0.5)
"""Conditional rounding's failure bound (KLS21's choice): the bound holds w.p. >= 1 - beta."""

MECHANISMS = ("dgauss", "skellam")
_MAGIC = b"SADP"
_VERSION = 1
_PACK = struct.Struct(">4sBBQBdddd")
_SIGN_LABEL = b"secureagg/v1/ddp-rotation"
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


def rotation_signs(seed: bytes, n: int) -> npt.NDArray[np.float64]:
    """n public signs in {-1, +1}: bits of AES-256-CTR keyed by SHA-256(label || seed).

    Parameters:
        seed: The round's public seed.
        n: How many signs.

    Returns:
        The signs, as float64.
    """
    if not isinstance(seed, bytes) or not seed:
        raise ConfigError("the rotation seed must be non-empty bytes")
    key = hashlib.sha256(_SIGN_LABEL + seed).digest()
    enc = Cipher(algorithms.AES256(key), modes.CTR(bytes(16))).encryptor()
    raw = np.frombuffer(enc.update(bytes((n + 7) // 8)), dtype=np.uint8)
    bits = np.unpackbits(raw, bitorder="little")[:n]
    out: npt.NDArray[np.float64] = 1.0 - 2.0 * bits.astype(np.float64)
    return out


def fwht(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The orthonormal Walsh-Hadamard transform H x / sqrt(n) of a power-of-two-long vector.

    H_n is the Kronecker product of small Hadamard matrices (8 x 8 and one smaller), so the
    transform is one small matrix product along each axis of x viewed as an 8 x 8 x ... array:
    seven passes over the vector at n = 2^20, where one butterfly level per pass takes twenty.
    Its own inverse.

    Parameters:
        x: A vector of power-of-two length.

    Returns:
        The transform (a new array).
    """
    return _fwht(x, 1.0)


_ROUND_CHUNK = 1 << 15  # elements per piece of the conditional rounding
_FACTOR = 8  # 8 x 8 products: fewest passes before the small products get slower (measured)
_BLOCK = 4096  # rows or columns per product: 8 x 8 x 4096 stays under OpenBLAS's threading
# threshold (m n k <= 2^18), so it runs on the calling thread; its threads made the
# transform ten times slower on a busy 2-core machine (measured)


@functools.lru_cache(maxsize=8)
def _hadamard(size: int, scale: float) -> npt.NDArray[np.float64]:
    """The (unnormalised) Hadamard matrix of a power-of-two ``size``, times ``scale``."""
    h = np.ones((1, 1))
    while h.shape[0] < size:
        h = np.block([[h, h], [h, -h]])
    out: npt.NDArray[np.float64] = h * scale
    out.setflags(write=False)
    return out


def _fwht(x: npt.NDArray[Any], scale: float) -> npt.NDArray[np.float64]:
    """``scale`` H x / sqrt(n), in a new array: the scale is folded into the first factor."""
    n = x.shape[0]
    if x.ndim != 1 or n < 1 or n & (n - 1):
        raise ConfigError(f"fwht needs a 1-d vector of power-of-two length, got {x.shape}")
    src = np.asarray(x, dtype=np.float64)
    if n == 1:
        return src * scale
    first = np.empty(n, dtype=np.float64)
    second: npt.NDArray[np.float64] | None = None
    dst = first
    factor = scale / math.sqrt(n)
    inner = 1  # the product of the factors done so far: the stride of the next axis
    while inner < n:
        f = min(_FACTOR, n // inner)
        h = _hadamard(f, factor)
        factor = 1.0
        outer = n // (inner * f)
        if inner == 1:  # contiguous rows times h
            rows, rows_out = src.reshape(outer, f), dst.reshape(outer, f)
            for i in range(0, outer, _BLOCK):
                np.matmul(rows[i : i + _BLOCK], h, out=rows_out[i : i + _BLOCK])
        else:  # h times each (f, inner) slab
            slabs, slabs_out = src.reshape(outer, f, inner), dst.reshape(outer, f, inner)
            for j in range(0, inner, _BLOCK):
                np.matmul(h, slabs[:, :, j : j + _BLOCK], out=slabs_out[:, :, j : j + _BLOCK])
        inner *= f
        if second is None and inner < n:
            second = np.empty(n, dtype=np.float64)
        src, dst = dst, (second if dst is first else first)  # type: ignore[assignment]
    return src


def _round_conditionally(
    z: npt.NDArray[np.float64], bound: float, stream: NoiseStream
) -> npt.NDArray[np.int64]:
    """Unbiased random rounding of z, redrawn until ||rounded||_2 <= bound (exact integer check).

    In pieces of :data:`_ROUND_CHUNK` with reused buffers: no vector-sized temporaries.
    """
    n = z.shape[0]
    limit = math.floor(bound * bound)
    out = np.empty(n, dtype=np.int64)
    step = max(1, min(n, _ROUND_CHUNK))
    lo, frac, u = (np.empty(step, dtype=np.float64) for _ in range(3))
    words = np.empty(step, dtype=np.uint64)
    up = np.empty(step, dtype=np.bool_)
    for _ in range(1000):
        for i in range(0, n, step):
            k = min(step, n - i)
            zi, lk, fk, uk, wk, upk = z[i : i + k], lo[:k], frac[:k], u[:k], words[:k], up[:k]
            np.floor(zi, out=lk)
            np.subtract(zi, lk, out=fk)
            stream._fill(wk)
            np.right_shift(wk, np.uint64(11), out=wk)
            np.copyto(uk, wk, casting="unsafe")  # exact: below 2^53
            uk *= 2.0**-53
            np.less(uk, fk, out=upk)  # up with probability frac
            piece = out[i : i + k]
            np.copyto(piece, lk, casting="unsafe")
            piece += upk
        if int(np.einsum("i,i->", out, out)) <= limit:
            return out
    raise ConfigError("conditional rounding failed 1000 times: the input exceeds the clip")


def _noise(params: DDPParams, n: int, stream: NoiseStream) -> npt.NDArray[np.int64]:
    if params.mechanism == "dgauss":
        return discrete_gaussian(params.variance, n, stream)
    return skellam(params.variance / 2, n, stream.words(4).tobytes())


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
    if x.dtype.kind != "f" or not np.all(np.isfinite(x)):
        raise ConfigError("x must be a finite float array")
    stream = stream or NoiseStream()
    v = np.zeros(params.padded, dtype=np.float64)
    v[: params.d] = x
    # einsum: numpy's own loop (np.dot and linalg.norm start BLAS threads, slow when busy)
    norm = math.sqrt(float(np.einsum("i,i->", v, v)))
    # clip slightly inside c so float rounding in the rotation cannot push the norm past c
    c = params.clip * (1 - 1e-12)
    v *= rotation_signs(seed, params.padded)
    z = _fwht(v, (c / norm if norm > c else 1.0) / params.gamma)  # clip and 1/gamma folded in
    q = _round_conditionally(z, params.l2_sensitivity, stream)
    if noise:
        q += _noise(params, params.padded, stream)
    dtype = element_dtype(params.bits)
    q &= np.int64((1 << params.bits) - 1)
    return q.astype(dtype)


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
    y = _fwht(centred, params.gamma)
    y *= rotation_signs(seed, params.padded)
    out: npt.NDArray[np.float64] = y[: params.d].copy()
    return out
