"""Accounting for client-level distributed DP: the sum of n clients' discrete noise shares.

Privacy unit: one client's whole update (client-level DP), add/remove-one-client neighbours,
L2 sensitivity the clip c. Released: the sum that secure aggregation outputs (rounded,
rotated, noisy, mod 2^b), to anyone who sees only it — the server and fewer than the
threshold's worth of colluding clients, when at least ``n`` honest clients' noise is in it.

Per round (RDP of order alpha, all in the integer domain after scaling by 1/gamma, with
Delta_2 = :func:`~secureagg.hazmat.rounded_l2_bound` (c / gamma, D, beta) and
Delta_1 = min(Delta_2^2, sqrt(D) Delta_2)):

* distributed discrete Gaussian (Kairouz, Liu, Steinke 2021, Theorem 1 and Proposition 14):
  with n shares of N_Z(0, s), tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 s k / (k + 1)) and
  l_p = Delta_p / sqrt(n s), eps(alpha) = min(alpha l_2^2 / 2 + tau D,
  alpha (l_2^2 + 2 l_1 tau + tau^2 D) / 2, alpha (l_2 + tau sqrt(D))^2 / 2);
* Skellam (Agarwal, Kairouz, Liu 2021, Theorem 3.5) with total variance V = n s:
  eps(alpha) = alpha Delta_2^2 / (2 V) + min(((2 alpha - 1) Delta_2^2 + 6 Delta_1) / (4 V^2),
  3 Delta_1 / (2 V)).

Rounds compose by adding RDP. Poisson sampling of clients with rate q amplifies through the
general bound of Zhu and Wang (2019, Theorem 5); use it only when each client is sampled by
its own unbiased coin that the server cannot influence, otherwise pass ``sample_rate=None``
(no amplification). RDP converts to (epsilon, delta) as in dp-accounting (Canonne, Kamath,
Steinke 2020; Asoodeh et al. 2020).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from secureagg._exceptions import ConfigError
from secureagg.hazmat import BETA, MECHANISMS, DDPParams, padded_length, rounded_l2_bound

__all__ = [
    "ORDERS",
    "DistributedPlan",
    "choose_gamma",
    "ddg_rdp",
    "epsilon",
    "epsilon_of",
    "local_std_for_epsilon",
    "min_bits",
    "plan",
    "round_rdp",
    "sampled_round_rdp",
    "skellam_rdp",
    "subsampled_rdp",
    "tau",
]

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
) -> float:
    """(epsilon, delta) of ``rounds`` rounds; ``sample_rate`` None means no amplification."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ConfigError(f"rounds must be a non-negative int, got {rounds!r}")
    rdp = sampled_round_rdp(
        mechanism,
        clip=clip,
        gamma=gamma,
        variance=variance,
        n=n,
        dim=dim,
        sample_rate=sample_rate,
        beta=beta,
    )
    return _to_epsilon(rdp * rounds, delta, ORDERS)


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
) -> npt.NDArray[np.float64]:
    """One round's RDP at :data:`ORDERS`, after sampling when ``sample_rate`` is given."""
    fn = _rdp_fn(mechanism, clip, gamma, variance, n, dim, beta)
    return subsampled_rdp(fn, 1.0 if sample_rate is None else sample_rate)


def epsilon_of(rdp: npt.NDArray[np.float64], delta: float) -> float:
    """(epsilon, delta) of a composed RDP curve at :data:`ORDERS`."""
    return _to_epsilon(np.asarray(rdp, dtype=np.float64), delta, ORDERS)


def local_std_for_epsilon(
    mechanism: str,
    target: float,
    *,
    clip: float,
    gamma: float,
    n: int,
    dim: int,
    rounds: int,
    delta: float,
    sample_rate: float | None = None,
    beta: float = BETA,
) -> float:
    """The smallest per-client noise std (in the update's units) that meets ``target`` epsilon.

    Bisection on a log scale to a relative precision of 1e-6; ConfigError if no std up to
    10^6 clips is enough (the rounding alone costs more than the target).
    """
    _check_positive(target=target)

    def eps(std: float) -> float:
        var = (std / gamma) ** 2
        return epsilon(
            mechanism,
            clip=clip,
            gamma=gamma,
            variance=var,
            n=n,
            dim=dim,
            rounds=rounds,
            delta=delta,
            sample_rate=sample_rate,
            beta=beta,
        )

    lo, hi = clip * 1e-6, clip * 1e6
    if eps(hi) > target:
        raise ConfigError(f"epsilon {target} cannot be reached at these settings")
    while hi / lo > 1 + 1e-6:
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if eps(mid) <= target else (mid, hi)
    return hi


def choose_gamma(
    bits: int, *, n: int, dim: int, clip: float, local_std: float, k: float = 4.0
) -> float:
    """The gamma with 2^b = 2 k sqrt(c^2 n^2 / D + n (gamma^2 / 4 + sigma^2)) / gamma.

    That is, k standard deviations of the summed signal, rounding and noise fit in
    [-2^(b-1), 2^(b-1)) (KLS21 Section 4.4; k = 4 is TFF's default, about 1e-4 modular
    clipping probability per coordinate). ConfigError if the bit width is too small.
    """
    m = 2.0**bits
    if m * m <= n * k * k:
        raise ConfigError(f"{bits} bits cannot hold {n} clients' rounding at k = {k}")
    # (m gamma / 2k)^2 = c^2 n^2 / D + n gamma^2 / 4 + n sigma^2, solved for gamma
    return math.sqrt((clip**2 * n**2 / dim + n * local_std**2) / ((m / (2 * k)) ** 2 - n / 4))


@dataclass(frozen=True)
class DistributedPlan:
    """Parameters that meet a target (epsilon, delta) at a bit width, and what they mean.

    ``local_std`` is each client's noise std in the update's units, ``noise_multiplier``
    the effective central one: sqrt(n_min) local_std / clip.
    """

    mechanism: str
    bits: int
    gamma: float
    local_std: float
    clip: float
    dim: int
    n_min: int
    rounds: int
    delta: float
    epsilon: float
    sample_rate: float | None
    k: float

    @property
    def noise_multiplier(self) -> float:
        """The central noise std over the clip, for n_min honest clients."""
        return math.sqrt(self.n_min) * self.local_std / self.clip

    @property
    def variance(self) -> float:
        """Each client's noise variance in the integer domain."""
        return (self.local_std / self.gamma) ** 2

    def params(self, d: int) -> DDPParams:
        """The round parameters for an update of length d (padded to ``dim``)."""
        if padded_length(d) != self.dim:
            raise ConfigError(f"d = {d} pads to {padded_length(d)}, the plan is for {self.dim}")
        return DDPParams(self.mechanism, d, self.bits, self.clip, self.gamma, self.variance)


def plan(
    mechanism: str,
    *,
    epsilon: float,
    delta: float,
    clip: float,
    bits: int,
    n_min: int,
    d: int,
    rounds: int,
    sample_rate: float | None = None,
    k: float = 4.0,
    beta: float = BETA,
) -> DistributedPlan:
    """Choose gamma and the local noise together for ``bits`` (fixed point of the two rules).

    Alternates: local std for the target at the current gamma, then gamma for that std
    from :func:`choose_gamma`, until gamma moves less than 1e-6 relative.
    """
    dim = padded_length(d)
    need = min_bits(
        mechanism,
        epsilon,
        delta,
        n_min=n_min,
        dim=dim,
        rounds=rounds,
        sample_rate=sample_rate,
        k=k,
        beta=beta,
    )
    if need >= bits:
        raise ConfigError(
            f"epsilon {epsilon} with n_min = {n_min}, D = {dim}, k = {k} needs more than"
            f" {need:.2f} bits (rounding to so coarse a grid alone costs too much); got {bits}"
        )
    try:
        return _plan(
            mechanism, epsilon, delta, clip, bits, n_min, dim, rounds, sample_rate, k, beta
        )
    except ConfigError as e:
        raise ConfigError(
            f"no gamma fits epsilon {epsilon} in {bits} bits with n_min = {n_min}, D = {dim},"
            f" k = {k} ({e}); use more bits, fewer dimensions or a larger epsilon"
        ) from e


_epsilon = epsilon


def min_bits(
    mechanism: str,
    epsilon: float,
    delta: float,
    *,
    n_min: int,
    dim: int,
    rounds: int,
    sample_rate: float | None = None,
    k: float = 4.0,
    beta: float = BETA,
) -> float:
    """A lower bound on the bits any gamma needs: the limit gamma -> infinity of the bit rule.

    There the clip vanishes against the grid, the sensitivity is the rounding's alone
    (rounded_l2_bound(0+, D)) and 2^b must hold 2 k sqrt(n (1/4 + s)) for the smallest
    integer-domain variance s that meets epsilon.
    """
    tiny = 1e-9  # clip / gamma: negligible against sqrt(D)

    def eps(var: float) -> float:
        return _epsilon(
            mechanism,
            clip=tiny,
            gamma=1.0,
            variance=var,
            n=n_min,
            dim=dim,
            rounds=rounds,
            delta=delta,
            sample_rate=sample_rate,
            beta=beta,
        )

    lo, hi = 1e-4, 1e16
    if eps(hi) > epsilon:
        return math.inf
    while hi / lo > 1 + 1e-6:
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if eps(mid) <= epsilon else (mid, hi)
    return float(math.log2(2 * k * math.sqrt(n_min * (0.25 + lo))))


def _plan(
    mechanism: str,
    epsilon: float,
    delta: float,
    clip: float,
    bits: int,
    n_min: int,
    dim: int,
    rounds: int,
    sample_rate: float | None,
    k: float,
    beta: float,
) -> DistributedPlan:
    std = local_std_for_epsilon(
        mechanism,
        epsilon,
        clip=clip,
        gamma=clip * 1e-9,
        n=n_min,
        dim=dim,
        rounds=rounds,
        delta=delta,
        sample_rate=sample_rate,
        beta=beta,
    )
    gamma = choose_gamma(bits, n=n_min, dim=dim, clip=clip, local_std=std, k=k)
    for _ in range(200):
        std = local_std_for_epsilon(
            mechanism,
            epsilon,
            clip=clip,
            gamma=gamma,
            n=n_min,
            dim=dim,
            rounds=rounds,
            delta=delta,
            sample_rate=sample_rate,
            beta=beta,
        )
        new = choose_gamma(bits, n=n_min, dim=dim, clip=clip, local_std=std, k=k)
        if new > 1e3 * clip:
            raise ConfigError("gamma grows without bound: rounding alone exceeds the budget")
        done = abs(new - gamma) <= 1e-6 * gamma
        gamma = new
        if done:
            break
    else:
        raise ConfigError("gamma and the noise did not settle")
    std = local_std_for_epsilon(
        mechanism,
        epsilon,
        clip=clip,
        gamma=gamma,
        n=n_min,
        dim=dim,
        rounds=rounds,
        delta=delta,
        sample_rate=sample_rate,
        beta=beta,
    )
    return DistributedPlan(
        mechanism, bits, gamma, std, clip, dim, n_min, rounds, delta, epsilon, sample_rate, k
    )


def _check_positive(**values: float) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ConfigError(f"{name} must be a positive finite number, got {v!r}")
