"""Known-answer figures for the four accountants.

Provenance: the figures are stated in issue 6 (the project's requirement for the
Poisson-subsampled Gaussian), computed there with the independent implementations:
(q=0.01, sigma=1.1, 10,000 steps, delta=1e-5) -> RDP 5.632, PRV/PLD about 5.19;
(q=0.004, sigma=0.8, 5,000 steps, delta=1e-5) -> RDP 2.925, PLD about 2.50.
RDP is pinned to 3 decimals, PRV and PLD to within 0.02.
"""

from __future__ import annotations

import pytest

from secureagg.privacy.accounting import Step, epsilons

CASES = [
    # (sigma, q, steps, rdp, tight)
    (1.1, 0.01, 10_000, 5.632, 5.19),
    (0.8, 0.004, 5_000, 2.925, 2.50),
]


@pytest.mark.parametrize(("sigma", "q", "steps", "rdp", "tight"), CASES)
def test_accountants_match_published_figures(
    sigma: float, q: float, steps: int, rdp: float, tight: float
) -> None:
    eps = epsilons([Step(sigma, q, steps)], 1e-5)
    assert round(eps["opacus_rdp"], 3) == rdp
    assert round(eps["dpa_rdp"], 3) == rdp
    assert eps["opacus_prv"] == pytest.approx(tight, abs=0.02)
    assert eps["dpa_pld"] == pytest.approx(tight, abs=0.02)
    # the tight accountants never claim more than RDP, which is a valid upper bound
    assert eps["opacus_prv"] < eps["opacus_rdp"]
    assert eps["dpa_pld"] < eps["dpa_rdp"]


def test_split_history_gives_the_same_figures() -> None:
    whole = epsilons([Step(0.8, 0.004, 5_000)], 1e-5)
    split = epsilons([Step(0.8, 0.004, 10)] * 500, 1e-5)
    assert split == whole
