"""The epsilon lower bound of Steinke, Nasr and Jagielski, "Privacy Auditing with One (1)
Training Run" (NeurIPS 2023), Theorem 5.2 and its p-value form (their Algorithm / code).

m canaries are each included independently with probability 1/2; the auditor guesses
"included" or "excluded" for r of them and abstains on the rest; v guesses are right.
If training is (eps, delta)-DP then for f(k) = P[Binomial(r, e^eps / (1 + e^eps)) >= k]

    P[V >= v] <= f(v) + 2 m delta * max_{1 <= i <= v} (f(v - i) - f(v)) / i.

The lower bound is the largest eps that this inequality rejects at the chosen confidence.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binom

from secureagg._exceptions import ConfigError

__all__ = ["epsilon_lower_bound", "p_value"]


def _check(m: int, r: int, v: int, delta: float) -> None:
    for name, x in (("m", m), ("r", r), ("v", v)):
        if isinstance(x, bool) or not isinstance(x, int):
            raise ConfigError(f"{name} must be an integer, got {x!r}")
    if not 0 <= v <= r <= m:
        raise ConfigError(f"need 0 <= v <= r <= m, got m={m}, r={r}, v={v}")
    if not (isinstance(delta, int | float) and 0 <= delta <= 1):
        raise ConfigError(f"delta must be in [0, 1], got {delta!r}")


def p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """Upper bound on P[V >= v] for an (eps, delta)-DP algorithm (Theorem 5.2)."""
    _check(m, r, v, delta)
    if not eps >= 0:
        raise ConfigError(f"eps must be >= 0, got {eps!r}")
    q = 1.0 / (1.0 + math.exp(-eps)) if eps < 700 else 1.0
    beta = float(binom.sf(v - 1, r, q))  # f(v) = P[Binomial(r, q) >= v]
    i = np.arange(1, v + 1)
    window = np.cumsum(binom.pmf(v - i, r, q))  # f(v - i) - f(v) = P[v - i <= Binomial < v]
    alpha = float(np.max(window / i)) if v > 0 else 0.0
    return min(beta + alpha * delta * 2 * m, 1.0)


def epsilon_lower_bound(
    m: int, r: int, v: int, *, delta: float, confidence: float = 0.95, precision: float = 1e-6
) -> float:
    """Largest eps such that (eps, delta)-DP is rejected at ``confidence`` (0.0 if none is).

    Bisection on the p-value, which decreases as eps grows smaller; returns the lower end,
    so the figure never overstates what the data show.
    """
    _check(m, r, v, delta)
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")
    p = 1.0 - confidence
    if p_value(m, r, v, 0.0, delta) >= p:
        return 0.0
    lo, hi = 0.0, 1.0
    while p_value(m, r, v, hi, delta) < p:
        lo, hi = hi, hi * 2
        if hi > 1e4:
            return math.inf  # only reachable with delta = 0 and v = r = m huge
    while hi - lo > precision:
        mid = (lo + hi) / 2
        if p_value(m, r, v, mid, delta) < p:
            lo = mid
        else:
            hi = mid
    return lo
