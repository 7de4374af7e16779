"""The one-run lower bound (Steinke, Nasr & Jagielski 2023, Theorem 5.2) against its formula.

Reference values are computed here directly from the theorem with exact binomial sums
(math.comb), independently of scipy and of the implementation's vectorised window.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secureagg import ConfigError
from secureagg.privacy.audit import epsilon_lower_bound, p_value


def _formula(m: int, r: int, v: int, eps: float, delta: float) -> float:
    q = math.exp(eps) / (1 + math.exp(eps))
    log_q, log_1q = math.log(q), (math.log(1 - q) if q < 1 else -math.inf)
    pmf = [
        math.exp(
            math.lgamma(r + 1)
            - math.lgamma(j + 1)
            - math.lgamma(r - j + 1)
            + j * log_q
            + ((r - j) * log_1q if r > j else 0.0)
        )
        for j in range(r + 1)
    ]
    tail = [0.0] * (r + 2)  # tail[k] = P[Binomial(r, q) >= k]
    for j in range(r, -1, -1):
        tail[j] = tail[j + 1] + pmf[j]

    def f(k: int) -> float:
        return tail[max(k, 0)]

    extra = max(((f(v - i) - f(v)) / i for i in range(1, v + 1)), default=0.0)
    return min(f(v) + 2 * m * delta * extra, 1.0)


@settings(max_examples=60, deadline=None)
@given(
    r=st.integers(1, 60),
    data=st.data(),
    eps=st.floats(0, 6),
    delta=st.sampled_from([0.0, 1e-6, 1e-5, 1e-3]),
)
def test_p_value_matches_the_theorem(r: int, data: st.DataObject, eps: float, delta: float) -> None:
    v = data.draw(st.integers(0, r))
    m = data.draw(st.integers(r, 400))
    assert p_value(m, r, v, eps, delta) == pytest.approx(_formula(m, r, v, eps, delta), abs=1e-12)


@pytest.mark.parametrize("r", [10, 100, 500])
def test_all_guesses_right_without_delta_has_a_closed_form(r: int) -> None:
    # with delta = 0 and v = r the p-value is q**r, so the bound solves q = 0.05 ** (1 / r)
    q = 0.05 ** (1 / r)
    want = math.log(q / (1 - q))
    assert epsilon_lower_bound(1000, r, r, delta=0.0) == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize(
    ("m", "r", "v", "delta"),
    [(1000, 100, 89, 1e-5), (1000, 500, 500, 1e-5), (200, 40, 30, 1e-5), (1000, 1000, 677, 0.0)],
)
def test_bound_is_the_edge_of_rejection(m: int, r: int, v: int, delta: float) -> None:
    eps = epsilon_lower_bound(m, r, v, delta=delta)
    assert eps > 0
    assert _formula(m, r, v, eps, delta) < 0.05  # (eps, delta)-DP rejected...
    assert _formula(m, r, v, eps + 1e-4, delta) >= 0.05  # ...and nothing larger is


def test_bound_grows_with_right_guesses_and_with_lower_confidence() -> None:
    bounds = [epsilon_lower_bound(1000, 100, v, delta=1e-5) for v in (60, 70, 80, 90, 100)]
    assert bounds == sorted(bounds) and bounds[-1] > 3
    assert epsilon_lower_bound(1000, 100, 50, delta=1e-5) == 0.0  # chance level proves nothing
    lo = epsilon_lower_bound(1000, 100, 90, delta=1e-5, confidence=0.99)
    hi = epsilon_lower_bound(1000, 100, 90, delta=1e-5, confidence=0.9)
    assert lo < hi


@pytest.mark.parametrize("args", [(10, 20, 5), (10, 5, 6), (-1, 0, 0), (10, 5, 2.5)])
def test_impossible_counts_are_refused(args: tuple[int, int, int]) -> None:
    with pytest.raises(ConfigError):
        epsilon_lower_bound(*args, delta=1e-5)
    with pytest.raises(ConfigError):
        epsilon_lower_bound(10, 5, 4, delta=2.0)
