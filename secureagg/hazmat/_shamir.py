"""Shamir t-of-m sharing of 32-byte secrets over the prime field p = 2^521 - 1."""

from __future__ import annotations

import math
import numbers
import secrets
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise

import numpy as np

from secureagg._exceptions import ConfigError, ShareError

__all__ = ["PRIME", "SECRET_SIZE", "SHARE_SIZE", "combine", "combine_many", "split"]

PRIME = 2**521 - 1
_BITS = 521
SECRET_SIZE = 32
SHARE_SIZE = 66  # ceil(521 / 8): one big-endian field element
_MAX_X = 2**32 - 1


def _is_int(v: object) -> bool:
    if type(v) is int:  # the common case, without the slower abstract-class check
        return True
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def split(secret: bytes, threshold: int, xs: Sequence[int]) -> dict[int, bytes]:
    """Shares of ``secret`` at the points ``xs``; any ``threshold`` of them rebuild it.

    Parameters:
        secret: 32 bytes.
        threshold: How many shares rebuild it.
        xs: Distinct ints in [1, 2^32-1] (the client ids).

    Returns:
        Point -> share.

    Raises:
        ConfigError: Bad arguments.
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
    from_bytes = int.from_bytes
    for x, share in shares.items():
        if type(x) is int and 0 < x <= _MAX_X and type(share) is bytes and len(share) == SHARE_SIZE:
            y = from_bytes(share, "big")  # the common case, checked without the slower calls
            if y >= PRIME:
                raise ShareError(f"share for point {x} is not a field element")
            xs.append(x)
            ys.append(y)
            continue
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


_SETS_AT_ONCE = 256  # secrets whose Lagrange denominators are built in one numpy batch


def _denominators(sets: Sequence[Sequence[int]]) -> list[int]:
    """For each set of t sorted points, |x_i * prod_{j != i} (x_j - x_i)| for each i, exactly,
    folded below 2^522 (congruent mod PRIME; the sign is (-1)^i, the caller's to apply).

    The t x t matrix of |x_j - x_i| (x_i on the diagonal) is built in numpy for many sets at
    once, and each row's factors are multiplied in groups that fit a 64-bit word (ids are
    below 2^32, so at least two per word) before Python multiplies the words exactly.
    """
    out: list[int] = []
    prod = math.prod
    for start in range(0, len(sets), _SETS_AT_ONCE):
        x = np.array(sets[start : start + _SETS_AT_ONCE], dtype=np.int64)  # (s, t)
        s, t = x.shape
        diff = x[:, None, :] - x[:, :, None]  # diff[., i, j] = x_j - x_i
        np.abs(diff, out=diff)
        diag = np.arange(t)
        diff[:, diag, diag] = x
        per_word = max(1, 64 // max(1, int(x.max()).bit_length()))
        width = -(-t // per_word) * per_word
        factors = np.ones((s, t, width), dtype=np.uint64)
        factors[:, :, :t] = diff
        words = factors.reshape(s, t, width // per_word, per_word).prod(axis=3, dtype=np.uint64)
        for row in words.reshape(s * t, -1).tolist():
            e = prod(row)
            while e >> (_BITS + 1):  # a row of t factors can pass 2^1042: fold until small
                e = (e & PRIME) + (e >> _BITS)
            out.append(e)
    return out


_INVERSIONS_EVERY = 512  # values per modular inversion in _inverses


def _inverses(values: Sequence[int]) -> list[int]:
    """Every value's inverse mod PRIME (each nonzero mod PRIME), by Montgomery's trick: three
    products per value and one modular inversion per 512 values. Products are folded once
    (x = (x mod 2^521) + (x >> 521) is congruent mod PRIME, as 2^521 = 1), not fully
    reduced: results are congruent to the inverses and below 2^531."""
    out: list[int] = []
    for start in range(0, len(values), _INVERSIONS_EVERY):
        part = values[start : start + _INVERSIONS_EVERY]
        prefix = []
        acc = 1
        for v in part:
            prefix.append(acc)
            acc *= v
            acc = (acc & PRIME) + (acc >> _BITS)
        inv = pow(acc, -1, PRIME)
        res = [0] * len(part)
        for i in range(len(part) - 1, -1, -1):
            x = inv * prefix[i]
            res[i] = (x & PRIME) + (x >> _BITS)
            inv *= part[i]
            inv = (inv & PRIME) + (inv >> _BITS)
        out += res
    return out


def _secret(value: int) -> bytes:
    if value >> (8 * SECRET_SIZE):
        raise ShareError("shares do not reconstruct a 32-byte secret (wrong or mixed shares)")
    return value.to_bytes(SECRET_SIZE, "big")


def combine(shares: Mapping[int, bytes], threshold: int) -> bytes:
    """The 32-byte secret from exactly ``threshold`` shares.

    Parameters:
        shares: Point -> share.
        threshold: The threshold the shares were made with.

    Returns:
        The secret.

    Raises:
        ShareError: Not exactly ``threshold`` shares, or an interpolated value that is not a
            32-byte secret (what shares from different secrets or a wrong threshold give with
            overwhelming probability).
    """
    result = combine_many([shares], threshold)[0]
    if isinstance(result, ShareError):
        raise result
    return result


def combine_many(
    share_sets: Sequence[Mapping[int, bytes]], threshold: int
) -> list[bytes | ShareError]:
    """:func:`combine` for many secrets at once: each one's secret, or its ShareError.

    Lagrange at 0: s = N * sum_i y_i / (x_i * prod_{j != i} (x_j - x_i)), N = prod_j x_j.
    The denominators are exact integers (ids are below 2^32), built for many secrets at once,
    and one modular inversion serves 512 of them.

    Parameters:
        share_sets: One point -> share mapping per secret.
        threshold: The threshold the shares were made with.

    Returns:
        Per secret, in order: the secret, or the ShareError :func:`combine` would raise.
    """
    parsed: list[tuple[list[int], list[int]] | ShareError] = []
    for shares in share_sets:
        try:
            xs, ys = _parse(shares, threshold)
        except ShareError as exc:
            parsed.append(exc)
            continue
        if any(a > b for a, b in pairwise(xs)):  # sorted: the signs alternate
            pairs = sorted(zip(xs, ys, strict=True))
            xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
        parsed.append((xs, ys))
    valid = [item for item in parsed if not isinstance(item, ShareError)]
    invs = _inverses(_denominators([xs for xs, _ in valid]))
    out: list[bytes | ShareError] = []
    k = 0
    for item in parsed:
        if isinstance(item, ShareError):
            out.append(item)
            continue
        xs, ys = item
        t = len(xs)
        w = invs[k : k + t]
        k += t
        # sum_i y_i / E_i with E_i = (-1)^i |E_i|: the odd terms are subtracted
        total = sum(y * v for y, v in zip(ys[::2], w[::2], strict=True)) - sum(
            y * v for y, v in zip(ys[1::2], w[1::2], strict=True)
        )
        try:
            out.append(_secret(total % PRIME * (math.prod(xs) % PRIME) % PRIME))
        except ShareError as exc:
            out.append(exc)
    return out
