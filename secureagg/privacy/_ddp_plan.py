"""Client-level distributed DP's plan: the noise, gamma and bits that meet a target epsilon."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from secureagg._exceptions import ConfigError
from secureagg.hazmat import BETA, DDPParams, padded_length
from secureagg.privacy._ddp_accounting import _check_positive, epsilon

__all__ = [
    "DistributedPlan",
    "choose_gamma",
    "local_std_for_epsilon",
    "min_bits",
    "plan",
]


def _bracket(
    eps: Callable[[float], float], target: float, lo: float, hi: float
) -> tuple[float, float] | None:
    """Where ``eps`` (falling) crosses ``target`` in [lo, hi]: (lo, hi) with eps(hi) <= target,
    hi / lo <= 1 + 1e-6 (bisection on a log scale); None if even eps(hi) is above it."""
    if eps(hi) > target:
        return None
    while hi / lo > 1 + 1e-6:
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if eps(mid) <= target else (mid, hi)
    return lo, hi


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
    amplification: str = "zero-out",
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
            amplification=amplification,
        )

    found = _bracket(eps, target, clip * 1e-6, clip * 1e6)
    if found is None:
        raise ConfigError(f"epsilon {target} cannot be reached at these settings")
    return found[1]


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
    the effective central one: sqrt(n_min) local_std / clip. ``n_sum`` is the most clients
    whose shares one sum may hold: the bit rule is solved for it (None: n_min).
    ``amplification`` names the sampling bound the noise was sized with (see
    :data:`~secureagg.privacy.distributed.AMPLIFICATIONS`).
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
    n_sum: int | None = None
    amplification: str = "zero-out"

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
    n_sum: int | None = None,
    amplification: str = "zero-out",
) -> DistributedPlan:
    """Choose gamma and the local noise together for ``bits`` (fixed point of the two rules).

    Alternates: local std for the target at the current gamma, then gamma for that std
    from :func:`choose_gamma`, until gamma moves less than 1e-6 relative. The noise is
    sized for ``n_min`` honest shares; the bit rule for ``n_sum`` (default ``n_min``), the
    most clients whose shares a sum may hold: a sum of more clients than the rule was
    solved for wraps more coordinates (modular clipping) than ``k`` promises.
    ``amplification="zhu-wang"`` reproduces the published DDG/Skellam accounting (its
    sampling bound assumes add/remove neighbours); the default is the proved zero-out bound.
    """
    dim = padded_length(d)
    if n_sum is None:
        n_sum = n_min
    if isinstance(n_sum, bool) or not isinstance(n_sum, int) or n_sum < n_min:
        raise ConfigError(f"n_sum must be an int >= n_min = {n_min}, got {n_sum!r}")
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
        n_sum=n_sum,
        amplification=amplification,
    )
    if need >= bits:
        raise ConfigError(
            f"epsilon {epsilon} with n_min = {n_min}, D = {dim}, k = {k} needs more than"
            f" {need:.2f} bits (rounding to so coarse a grid alone costs too much); got {bits}"
        )
    try:
        return _plan(
            mechanism,
            epsilon,
            delta,
            clip,
            bits,
            n_min,
            dim,
            rounds,
            sample_rate,
            k,
            beta,
            n_sum,
            amplification,
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
    n_sum: int | None = None,
    amplification: str = "zero-out",
) -> float:
    """A lower bound on the bits any gamma needs: the limit gamma -> infinity of the bit rule.

    There the clip vanishes against the grid, the sensitivity is the rounding's alone
    (rounded_l2_bound(0+, D)) and 2^b must hold 2 k sqrt(n (1/4 + s)), n = ``n_sum``
    (default ``n_min``) clients in the sum, for the smallest integer-domain variance s that
    meets epsilon with ``n_min`` honest shares.
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
            amplification=amplification,
        )

    found = _bracket(eps, epsilon, 1e-4, 1e16)
    if found is None:
        return math.inf
    return float(math.log2(2 * k * math.sqrt((n_sum or n_min) * (0.25 + found[0]))))


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
    n_sum: int,
    amplification: str,
) -> DistributedPlan:
    def std_at(gamma: float) -> float:  # the local noise that meets epsilon at this gamma
        return local_std_for_epsilon(
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
            amplification=amplification,
        )

    std = std_at(clip * 1e-9)
    gamma = choose_gamma(bits, n=n_sum, dim=dim, clip=clip, local_std=std, k=k)
    for _ in range(200):
        std = std_at(gamma)
        new = choose_gamma(bits, n=n_sum, dim=dim, clip=clip, local_std=std, k=k)
        if new > 1e3 * clip:
            raise ConfigError("gamma grows without bound: rounding alone exceeds the budget")
        done = abs(new - gamma) <= 1e-6 * gamma
        gamma = new
        if done:
            break
    else:
        raise ConfigError("gamma and the noise did not settle")
    std = std_at(gamma)
    return DistributedPlan(
        mechanism,
        bits,
        gamma,
        std,
        clip,
        dim,
        n_min,
        rounds,
        delta,
        epsilon,
        sample_rate,
        k,
        n_sum,
        amplification,
    )
