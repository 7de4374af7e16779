"""Shamir t-of-m sharing of 32-byte secrets over the prime field p = 2^521 - 1."""

from __future__ import annotations

import numbers
import secrets
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from secureagg._exceptions import ConfigError, ShareError

__all__ = ["PRIME", "SECRET_SIZE", "SHARE_SIZE", "combine", "split"]

PRIME = 2**521 - 1
SECRET_SIZE = 32
SHARE_SIZE = 66  # ceil(521 / 8): one big-endian field element
_MAX_X = 2**32 - 1


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def split(secret: bytes, threshold: int, xs: Sequence[int]) -> dict[int, bytes]:
    """Shares of ``secret`` at the points ``xs``; any ``threshold`` of them rebuild it.

    ``xs`` are distinct ints in [1, 2^32-1] (the client ids). ConfigError on bad arguments.
    """
    if not isinstance(secret, (bytes, bytearray)) or len(secret) != SECRET_SIZE:
        raise ConfigError(f"secret must be {SECRET_SIZE} bytes")
    if isinstance(xs, (str, bytes)) or not isinstance(xs, Iterable):
        raise ConfigError("share points must be a sequence of ints")
    xs = list(xs)
    if not all(_is_int(x) and 1 <= int(x) <= _MAX_X for x in xs):
        raise ConfigError("share points must be ints in [1, 2^32-1]")
    points = [int(x) for x in xs]
    if len(set(points)) != len(points):
        raise ConfigError("share points must be distinct")
    if not _is_int(threshold) or not 1 <= int(threshold) <= len(points):
        raise ConfigError(f"threshold must be in [1, {len(points)}], got {threshold!r}")
    # f(x) = s + a_1 x + ... + a_{t-1} x^{t-1}; coefficients highest degree first for Horner.
    coeffs = [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    coeffs.append(int.from_bytes(secret, "big"))
    shares: dict[int, bytes] = {}
    for x in points:
        y = 0
        for c in coeffs:
            y = (y * x + c) % PRIME
        shares[x] = y.to_bytes(SHARE_SIZE, "big")
    return shares


def _parse(shares: Mapping[int, bytes], threshold: int) -> tuple[list[int], list[int]]:
    if not isinstance(shares, Mapping):
        raise ShareError("shares must be a mapping of point -> share bytes")
    if not _is_int(threshold) or threshold < 1:
        raise ShareError(f"threshold must be a positive int, got {threshold!r}")
    if len(shares) != threshold:
        raise ShareError(f"need exactly {threshold} shares, got {len(shares)}")
    xs: list[int] = []
    ys: list[int] = []
    for x, share in shares.items():
        if not _is_int(x) or not 1 <= int(x) <= _MAX_X:
            raise ShareError(f"share point must be an int in [1, 2^32-1], got {x!r}")
        x = int(x)
        if not isinstance(share, (bytes, bytearray)) or len(share) != SHARE_SIZE:
            raise ShareError(f"share for point {x} must be {SHARE_SIZE} bytes")
        y = int.from_bytes(share, "big")
        if y >= PRIME:
            raise ShareError(f"share for point {x} is not a field element")
        xs.append(x)
        ys.append(y)
    if len(set(xs)) != len(xs):
        raise ShareError("duplicate share points")
    return xs, ys


def combine(shares: Mapping[int, bytes], threshold: int) -> bytes:
    """The 32-byte secret from exactly ``threshold`` shares; ShareError otherwise.

    Also ShareError when the interpolated value is not a 32-byte secret, which is what
    shares from different secrets or a wrong threshold give with overwhelming probability.
    """
    xs, ys = _parse(shares, threshold)
    # Lagrange at 0: s = sum_i y_i * prod_{j!=i} x_j / (x_j - x_i)
    #                  = N * sum_i y_i / (x_i * prod_{j!=i} (x_j - x_i)),  N = prod_j x_j.
    n_all = 1
    for x in xs:
        n_all = n_all * x % PRIME
    dens = []
    for i, xi in enumerate(xs):
        den = xi
        for j, xj in enumerate(xs):
            if j != i:
                den = den * (xj - xi) % PRIME
        dens.append(den)
    # Batch inversion: one modular inverse for all denominators.
    prefix = [1] * (len(dens) + 1)
    for i, den in enumerate(dens):
        prefix[i + 1] = prefix[i] * den % PRIME
    inv = pow(prefix[-1], -1, PRIME)
    total = 0
    for i in range(len(dens) - 1, -1, -1):
        inv_i = inv * prefix[i] % PRIME
        inv = inv * dens[i] % PRIME
        total += ys[i] * inv_i
    secret = total % PRIME * n_all % PRIME
    if secret >> (8 * SECRET_SIZE):
        raise ShareError("shares do not reconstruct a 32-byte secret (wrong or mixed shares)")
    return secret.to_bytes(SECRET_SIZE, "big")
