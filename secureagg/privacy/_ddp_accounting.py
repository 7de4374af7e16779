"""Client-level distributed DP's accounting: the RDP of a round's noisy sum, composed.

See :mod:`secureagg.privacy.distributed` for the mechanisms, the privacy unit and the bounds.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
from scipy import special

from secureagg._exceptions import ConfigError
from secureagg.hazmat import BETA, MECHANISMS, DDPParams, rounded_l2_bound

__all__ = [
    "AMPLIFICATIONS",
    "ORDERS",
    "SAMPLINGS",
    "amplification_for",
    "ddg_rdp",
    "epsilon",
    "epsilon_for",
    "epsilon_of",
    "round_rdp",
    "sampled_round_rdp",
    "skellam_rdp",
    "subsampled_rdp",
    "tau",
    "zero_out_sampled_rdp",
]

AMPLIFICATIONS: tuple[str, ...] = ("zero-out", "zhu-wang")
"""How a sample rate amplifies: ``"zero-out"`` is :func:`zero_out_sampled_rdp` (proved for
visible sampling, where a client that is not sampled adds no noise share); ``"zhu-wang"`` is
:func:`subsampled_rdp` (Zhu and Wang's Theorem 5, proved for the pair (1 - q) P + q P' vs P:
hidden sampling's, and the DDG and Skellam papers' published accounting)."""

SAMPLINGS: tuple[str, ...] = ("visible", "hidden")
"""How clients are sampled. ``"visible"``: a sampled client joins the round and the others
stay out (the server sees who took part; bound ``"zero-out"``). ``"hidden"``: every client
joins every round and adds its noise share; its own secret coin decides only whether its
update or a zero update goes in (the server sees no coin; bound ``"zhu-wang"``)."""


def amplification_for(sampling: str) -> str:
    """The sampling bound (one of :data:`AMPLIFICATIONS`) that a sampling mode is proved with.

    Parameters:
        sampling: One of :data:`SAMPLINGS`.

    Returns:
        ``"zero-out"`` for ``"visible"``, ``"zhu-wang"`` for ``"hidden"``.

    Raises:
        ConfigError: Another sampling mode.
    """
    if sampling not in SAMPLINGS:
        raise ConfigError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    return "zero-out" if sampling == "visible" else "zhu-wang"


ORDERS: tuple[int, ...] = (*range(2, 129), 256)
"""Integer RDP orders (the subsampling bound needs integers)."""


def tau(n: int, variance: float) -> float:
    """KLS21's tau: how far a sum of n discrete Gaussians N_Z(0, s) is from N_Z(0, n s)."""
    k = np.arange(1, n, dtype=np.float64)
    return float(10.0 * np.sum(np.exp(-2.0 * math.pi**2 * variance * k / (k + 1))))


def _sensitivities(clip: float, gamma: float, dim: int, beta: float) -> tuple[float, float]:
    l2 = rounded_l2_bound(clip / gamma, dim, beta)
    return l2, min(l2 * l2, math.sqrt(dim) * l2)


def round_rdp(
    mechanism: str,
    *,
    clip: float,
    gamma: float,
    variance: float,
    n: int,
    dim: int,
    beta: float = BETA,
    orders: Sequence[int] = ORDERS,
) -> npt.NDArray[np.float64]:
    """RDP of one round's sum at ``orders``, without sampling.

    ``variance`` is each client's noise variance in the integer domain; ``n`` the number of
    honest clients whose noise is in the sum; ``dim`` the padded length D.
    """
    return _rdp_fn(mechanism, clip, gamma, variance, n, dim, beta)(
        np.asarray(orders, dtype=np.float64)
    )


def _rdp_fn(
    mechanism: str, clip: float, gamma: float, variance: float, n: int, dim: int, beta: float
) -> Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]:
    _check_positive(clip=clip, gamma=gamma, variance=variance)
    if mechanism not in MECHANISMS:
        raise ConfigError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be a positive int, got {n!r}")
    d2, d1 = _sensitivities(clip, gamma, dim, beta)
    if mechanism == "skellam":
        return functools.partial(skellam_rdp, l1=d1, l2=d2, total_variance=n * variance)
    return functools.partial(ddg_rdp, l1=d1, l2=d2, n=n, variance=variance, dim=dim)


def ddg_rdp(
    alphas: npt.NDArray[np.float64], *, l1: float, l2: float, n: int, variance: float, dim: int
) -> npt.NDArray[np.float64]:
    """KLS21 Prop. 14 with Theorem 1's tau: the sum of n shares N_Z(0, variance) per coordinate.

    ``l1`` and ``l2`` are the integer-domain sensitivities Delta_1 and Delta_2.
    """
    t = tau(n, variance)
    s1, s2 = l1 / math.sqrt(n * variance), l2 / math.sqrt(n * variance)
    out: npt.NDArray[np.float64] = np.minimum.reduce(
        [
            alphas * s2**2 / 2 + t * dim,
            alphas / 2 * (s2**2 + 2 * s1 * t + t**2 * dim),
            alphas / 2 * (s2 + math.sqrt(dim) * t) ** 2,
        ]
    )
    return out


def skellam_rdp(
    alphas: npt.NDArray[np.float64], *, l1: float, l2: float, total_variance: float
) -> npt.NDArray[np.float64]:
    """Agarwal, Kairouz, Liu 2021, Theorem 3.5, for Skellam noise of variance ``total_variance``."""
    v = total_variance
    extra = np.minimum(((2 * alphas - 1) * l2**2 + 6 * l1) / (4 * v**2), 3 * l1 / (2 * v))
    out: npt.NDArray[np.float64] = alphas * l2**2 / (2 * v) + extra
    return out


def subsampled_rdp(
    rdp_at: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]],
    q: float,
    orders: Sequence[int] = ORDERS,
) -> npt.NDArray[np.float64]:
    """RDP after Poisson sampling with rate q (Zhu and Wang 2019, Theorem 5), capped unsampled.

    Proved for the pair (1 - q) P + q P' vs P, where P vs P' has RDP ``rdp_at`` both ways:
    hidden sampling's zero-out pair (every client's share in both worlds; the coin decides
    whether the update goes in) and the DDG and Skellam papers' published accounting. Not
    visible sampling's pair (:func:`zero_out_sampled_rdp`).

    ``rdp_at(alphas)`` is the mechanism's RDP at integer orders; the bound at order alpha
    uses every order 2..alpha.
    """
    if not 0 < q <= 1:
        raise ConfigError(f"sample rate must be in (0, 1], got {q!r}")
    alphas = np.asarray(orders, dtype=np.float64)
    if q == 1:
        return rdp_at(alphas)
    top = int(alphas.max())
    full = np.concatenate([[0.0, 0.0], rdp_at(np.arange(2, top + 1, dtype=np.float64))])
    out = np.empty(alphas.size)
    for i, alpha in enumerate(int(a) for a in alphas):
        j = np.arange(3, alpha + 1, dtype=np.float64)
        log_c = special.gammaln(alpha + 1) - special.gammaln(j + 1) - special.gammaln(alpha - j + 1)
        terms = np.concatenate(
            [
                [0.0, full[2]],
                (j - 1) * full[3 : alpha + 1]
                + log_c
                + (alpha - j) * math.log1p(-q)
                + j * math.log(q),
            ]
        )
        weights = np.concatenate(
            [
                [
                    (1 - q) ** (alpha - 1) * (alpha * q - q + 1),
                    special.comb(alpha, 2) * q**2 * (1 - q) ** (alpha - 2),
                ],
                np.full(j.size, 3.0),
            ]
        )
        bound = float(special.logsumexp(terms, b=weights)) / (alpha - 1)
        out[i] = min(bound, full[alpha])
    return out


def zero_out_sampled_rdp(
    rdp_at: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]],
    q: float,
    orders: Sequence[int] = ORDERS,
) -> npt.NDArray[np.float64]:
    """RDP of zero-out neighbours after Poisson sampling with rate q, by joint convexity.

    A client sampled by its own coin adds its update and noise share, or nothing: the two
    worlds are (1 - q) Q0 + q P1 and (1 - q) Q0 + q Q1, with P1, Q1 the equal-noise pair
    whose RDP is ``rdp_at``. H_alpha(P, Q) = sum p^alpha q^(1 - alpha) is jointly convex for
    alpha > 1, so exp((alpha - 1) eps') <= 1 - q + q exp((alpha - 1) eps(alpha)). (Zhu and
    Wang's Theorem 5 is proved for the add/remove pair (1 - q) Q + q P vs Q instead.)
    """
    if not 0 < q <= 1:
        raise ConfigError(f"sample rate must be in (0, 1], got {q!r}")
    alphas = np.asarray(orders, dtype=np.float64)
    eps = rdp_at(alphas)
    if q == 1:
        return eps
    out: npt.NDArray[np.float64] = np.logaddexp(
        math.log1p(-q), math.log(q) + (alphas - 1) * eps
    ) / (alphas - 1)
    return out


def _to_epsilon(rdp: npt.NDArray[np.float64], delta: float, orders: Sequence[int]) -> float:
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta!r}")
    a = np.asarray(orders, dtype=np.float64)
    eps = rdp + np.log1p(-1 / a) - np.log(delta * a) / (a - 1)
    return float(max(0.0, np.min(eps)))


def epsilon(
    mechanism: str,
    *,
    clip: float,
    gamma: float,
    variance: float,
    n: int,
    dim: int,
    rounds: int,
    delta: float,
    sample_rate: float | None = None,
    beta: float = BETA,
    amplification: str = "zero-out",
) -> float:
    """(epsilon, delta) of ``rounds`` rounds; ``sample_rate`` None means no amplification.

    ``amplification`` is one of :data:`AMPLIFICATIONS` (zero-out neighbours by default).
    """
    _check_rounds(rounds)
    rdp = sampled_round_rdp(
        mechanism,
        clip=clip,
        gamma=gamma,
        variance=variance,
        n=n,
        dim=dim,
        sample_rate=sample_rate,
        beta=beta,
        amplification=amplification,
    )
    return _to_epsilon(rdp * rounds, delta, ORDERS)


def epsilon_for(
    params: DDPParams,
    *,
    n: int,
    rounds: int,
    delta: float,
    sample_rate: float | None = None,
    sampling: str = "visible",
) -> float:
    """:func:`epsilon` of ``rounds`` rounds encoded with ``params``.

    Parameters:
        params: The rounds' encoding parameters (mechanism, clip, gamma, variance, padded
            length and beta).
        n: The honest clients whose noise is in each sum.
        rounds: The rounds taken.
        delta: The delta of the guarantee.
        sample_rate: The clients' Poisson sampling rate (None: no amplification).
        sampling: One of :data:`SAMPLINGS` (the bound: :func:`amplification_for`).

    Returns:
        The epsilon.
    """
    _check_rounds(rounds)
    rdp = params_round_rdp(params, n=n, sample_rate=sample_rate, sampling=sampling)
    return epsilon_of(rdp * rounds, delta)


def params_round_rdp(
    params: DDPParams, *, n: int, sample_rate: float | None, sampling: str = "visible"
) -> npt.NDArray[np.float64]:
    """:func:`sampled_round_rdp` of one round encoded with ``params`` (``n`` honest shares),
    amplified as ``sampling`` (one of :data:`SAMPLINGS`) is proved."""
    return sampled_round_rdp(
        params.mechanism,
        clip=params.clip,
        gamma=params.gamma,
        variance=params.variance,
        n=n,
        dim=params.padded,
        sample_rate=sample_rate,
        beta=params.beta,
        amplification=amplification_for(sampling),
    )


def sampled_round_rdp(
    mechanism: str,
    *,
    clip: float,
    gamma: float,
    variance: float,
    n: int,
    dim: int,
    sample_rate: float | None = None,
    beta: float = BETA,
    amplification: str = "zero-out",
) -> npt.NDArray[np.float64]:
    """One round's RDP at :data:`ORDERS`, after sampling when ``sample_rate`` is given.

    Sampling amplifies by :func:`zero_out_sampled_rdp` (``amplification="zero-out"``) or,
    to reproduce the published accounting, :func:`subsampled_rdp` (``"zhu-wang"``).
    """
    if amplification not in AMPLIFICATIONS:
        raise ConfigError(f"amplification must be one of {AMPLIFICATIONS}, got {amplification!r}")
    fn = _rdp_fn(mechanism, clip, gamma, variance, n, dim, beta)
    amplify = zero_out_sampled_rdp if amplification == "zero-out" else subsampled_rdp
    return amplify(fn, 1.0 if sample_rate is None else sample_rate)


def epsilon_of(rdp: npt.NDArray[np.float64], delta: float) -> float:
    """(epsilon, delta) of a composed RDP curve at :data:`ORDERS`."""
    return _to_epsilon(np.asarray(rdp, dtype=np.float64), delta, ORDERS)


def _check_rounds(rounds: int) -> None:
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ConfigError(f"rounds must be a non-negative int, got {rounds!r}")


def _check_positive(**values: float) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ConfigError(f"{name} must be a positive finite number, got {v!r}")
