"""Client-level distributed DP's neighbouring relation is zero-out, and its sampling bound.

Each client adds its own noise share, so the per-round RDP (n shares on both sides) bounds
zero-out (the update replaced by zero, the share kept), not add/remove (the share leaves
too). These tests compute the actual divergences independently of the accountant.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon
from scipy import special, stats

from secureagg import ConfigError
from secureagg.hazmat import DDPParams, rounded_l2_bound
from secureagg.privacy import DistributedLedger
from secureagg.privacy.distributed import (
    ORDERS,
    round_rdp,
    subsampled_rdp,
    zero_out_sampled_rdp,
)

ORD = list(range(2, 21))


def _gauss(mu: float, var: float) -> object:
    return lambda a: a * mu * mu / (2 * var)


def test_the_bound_is_the_joint_convexity_formula() -> None:
    eps1 = {2: 0.01, 7: 0.9, 40: 12.0}
    for q in (0.01, 0.15, 0.7):
        got = zero_out_sampled_rdp(
            lambda a: np.array([eps1[int(x)] for x in a]), q, orders=list(eps1)
        )
        for (a, e), g in zip(eps1.items(), got, strict=True):
            want = math.log(1 - q + q * math.exp((a - 1) * e)) / (a - 1)
            assert g == pytest.approx(want, rel=1e-12)
            assert g <= e  # never above the unsampled figure
    full = zero_out_sampled_rdp(lambda a: a * 0.3, 1.0, orders=ORD)
    assert np.allclose(full, np.asarray(ORD) * 0.3)
    with pytest.raises(ConfigError):
        zero_out_sampled_rdp(lambda a: a, 0.0)


def _mixture_divergence(mu: float, n: int, q: float) -> np.ndarray:
    """D_alpha of the actual sampled zero-out pair in 1-D, unit-variance shares, numerically.

    Not sampled: the others' n - 1 shares, N(0, n - 1). Sampled: n shares plus the update
    (mu) or zero: N(mu, n) vs N(0, n).
    """
    x = np.linspace(-40 * math.sqrt(n), 40 * math.sqrt(n) + mu, 400_001)
    q0 = stats.norm.logpdf(x, 0, math.sqrt(n - 1))
    p1, q1 = stats.norm.logpdf(x, mu, math.sqrt(n)), stats.norm.logpdf(x, 0, math.sqrt(n))
    lp = np.logaddexp(math.log1p(-q) + q0, math.log(q) + p1)
    lq = np.logaddexp(math.log1p(-q) + q0, math.log(q) + q1)
    dx = math.log(x[1] - x[0])
    return np.array([(special.logsumexp(a * lp + (1 - a) * lq) + dx) / (a - 1) for a in ORD])


@pytest.mark.parametrize(
    ("mu", "n", "q"), [(1.0, 3, 0.05), (2.0, 3, 0.15), (4.0, 33, 0.05), (2.0, 10, 0.01)]
)
def test_the_bound_holds_for_the_actual_sampled_zero_out_mixtures(
    mu: float, n: int, q: float
) -> None:
    true = _mixture_divergence(mu, n, q)
    ours = zero_out_sampled_rdp(_gauss(mu, n), q, orders=ORD)  # type: ignore[arg-type]
    assert np.all(true <= ours * (1 + 1e-6) + 1e-12)


@pytest.mark.parametrize(("mu", "n", "q", "order"), [(2.0, 3, 0.05, 3), (4.0, 33, 0.05, 11)])
def test_zhu_wang_is_below_the_actual_zero_out_divergence(
    mu: float, n: int, q: float, order: int
) -> None:
    # the counterexample: Theorem 5 is for (1 - q) Q + q P vs Q, not this pair
    true = _mixture_divergence(mu, n, q)[ORD.index(order)]
    zw = subsampled_rdp(_gauss(mu, n), q, orders=ORD)[ORD.index(order)]  # type: ignore[arg-type]
    assert true > 2 * zw


def _renyi(a: float, dim: int, mu2: float, s1: float, s0: float) -> float:
    """D_a(N(mu, s1 I) || N(0, s0 I)) over dim coordinates, |mu|^2 = mu2."""
    sa = a * s0 + (1 - a) * s1
    if sa <= 0:
        return math.inf
    return dim * (math.log(s0 / s1) / 2 + math.log(s0 / sa) / (2 * (a - 1))) + a * mu2 / (2 * sa)


def _ledger_params() -> tuple[DDPParams, int]:
    # the benchmark's plan shape: d = 650 (padded 1024), 16 bits, 33 honest shares
    return DDPParams("dgauss", 650, 16, 0.5, 6.5e-4, (0.23 / 6.5e-4) ** 2), 33


def test_the_per_round_figure_does_not_bound_add_remove() -> None:
    """With the client's share leaving with it, the two sums have n and n - 1 shares: that
    divergence is far above the per-round RDP the ledger composes, so the relation the
    figure is stated for must be zero-out."""
    p, n = _ledger_params()
    ledger = DistributedLedger()
    ledger.record(0, p, members=list(range(1, n + 1)), colluders=0, n_min=n, sample_rate=None,
                  delta=1e-4)  # fmt: skip
    per_round = round_rdp(
        "dgauss", clip=p.clip, gamma=p.gamma, variance=p.variance, n=n, dim=p.padded,
        beta=p.beta, orders=[2, 8],
    )  # fmt: skip
    l2 = rounded_l2_bound(p.clip / p.gamma, p.padded, p.beta)
    for a, led in zip((2, 8), per_round, strict=True):
        add_remove = _renyi(a, p.padded, l2**2, n * p.variance, (n - 1) * p.variance)
        assert add_remove > 3 * led  # 4.6x at alpha 2, 5.3x at 8 here
    # the zero-out shift at equal noise is what the ledger bounds (Gaussian limit)
    assert _renyi(2, p.padded, l2**2, n * p.variance, n * p.variance) <= per_round[0]
    assert "zero-out" in ledger.to_json()["unit"]
    assert "add/remove" not in ledger.to_json()["unit"]


def test_server_epsilons_against_dp_accounting_over_kls21_written_here() -> None:
    p, n = _ledger_params()
    ledger = DistributedLedger()
    for r in range(6):
        ledger.record(r, p, members=list(range(1, n + 1)), colluders=0, n_min=n,
                      sample_rate=0.15, delta=1e-4)  # fmt: skip
    var, dim = p.variance, p.padded
    l2 = rounded_l2_bound(p.clip / p.gamma, dim, p.beta)
    l1 = min(l2 * l2, math.sqrt(dim) * l2)
    a = np.asarray(ORDERS, dtype=np.float64)
    k = np.arange(1, n)
    tau = 10 * np.sum(np.exp(-2 * math.pi**2 * var * k / (k + 1)))  # KLS21 Theorem 1
    s = n * var  # KLS21 Proposition 14's three bounds
    kls = np.minimum.reduce([
        a * l2**2 / (2 * s) + tau * dim,
        a / 2 * (l2**2 / s + 2 * l1 * tau / math.sqrt(s) + tau**2 * dim),
        a / 2 * (l2 / math.sqrt(s) + math.sqrt(dim) * tau) ** 2,
    ])  # fmt: skip
    want = compute_epsilon(list(a), list(kls * 6), 1e-4)[0]
    assert ledger.server_epsilons()[1] == pytest.approx(want, rel=1e-9)
    # the amplified figure (observers who do not see who took part) is below it
    assert ledger.epsilon() < want
