"""Hidden sampling's accounting: Zhu and Wang's Poisson-subsampled bound, checked against
dp-accounting's exact sampled Gaussian, and what the ledger makes of it.

Under hidden sampling every client is in every sum with its noise share; its secret coin
decides only whether its update goes in, so the zero-out pair is (1 - q) P + q P' vs P:
the pair Poisson subsampling is proved for. The continuous Gaussian analogue (exact RDP
in dp-accounting, Mironov, Talwar, Zhang 2019) is a lower bound on what the discrete sum
can claim: our bound must never be below it.
"""

from __future__ import annotations

import json
from pathlib import Path

import dp_accounting
import numpy as np
import pytest

from secureagg import LedgerError
from secureagg.hazmat import DDPParams
from secureagg.privacy import DistributedLedger
from secureagg.privacy.distributed import (
    ORDERS,
    SAMPLINGS,
    amplification_for,
    epsilon_for,
    epsilon_of,
    plan,
    round_rdp,
    subsampled_rdp,
)

SETTINGS = [  # (z, q, rounds, delta): the benchmark's, the DDG paper's EMNIST-like, others
    (1.345, 0.15, 40, 1e-4),
    (1.2, 100 / 3400, 1500, 1 / 3400),
    (1.0, 0.01, 1000, 1e-5),
    (0.8, 0.05, 200, 1e-5),
    (2.0, 0.3, 100, 1e-6),
]


def _exact(z: float, q: float) -> np.ndarray:
    acc = dp_accounting.rdp.RdpAccountant(list(ORDERS))
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), 1)
    return np.asarray(acc._rdp)  # per-round RDP at ORDERS


@pytest.mark.parametrize(("z", "q", "rounds", "delta"), SETTINGS)
def test_the_bound_is_never_below_the_exact_sampled_gaussian_and_close_to_it(
    z: float, q: float, rounds: int, delta: float
) -> None:
    ours = subsampled_rdp(lambda a: a / (2 * z * z), q)
    exact = _exact(z, q)
    assert np.all(ours >= exact - 1e-12)
    eps_ours, eps_exact = epsilon_of(ours * rounds, delta), epsilon_of(exact * rounds, delta)
    assert eps_exact <= eps_ours <= 1.6 * eps_exact  # measured 1.14..1.56 over SETTINGS


def test_a_hidden_plan_is_never_below_the_exact_gaussian_at_its_noise() -> None:
    # the DDG sum's RDP (rounding-inflated sensitivity, tau) is at least the Gaussian's at
    # the effective noise multiplier, so its sampled figure is at least the exact one
    for n_min in (33, 270):
        p = plan(
            "dgauss", epsilon=4.0, delta=1e-4, clip=0.5, bits=16, n_min=n_min, d=650,
            rounds=40, sample_rate=0.15, n_sum=300, amplification=amplification_for("hidden"),
        )  # fmt: skip
        exact = epsilon_of(_exact(p.noise_multiplier, 0.15) * 40, 1e-4)
        assert exact <= 4.0 + 1e-6
        # and the plan needs no more than 1.35x the exact analysis's noise (1.28x measured)
        assert p.noise_multiplier <= 1.35 * 1.345


def test_each_sampling_mode_names_its_bound() -> None:
    assert SAMPLINGS == ("visible", "hidden")
    assert amplification_for("visible") == "zero-out"
    assert amplification_for("hidden") == "zhu-wang"
    p = DDPParams("dgauss", 1000, 16, 1.0, 2e-4, (0.15 / 2e-4) ** 2)
    kw = dict(n=9, rounds=10, delta=1e-5, sample_rate=0.1)
    hidden = epsilon_for(p, sampling="hidden", **kw)  # type: ignore[arg-type]
    visible = epsilon_for(p, sampling="visible", **kw)  # type: ignore[arg-type]
    assert hidden < visible  # joint convexity is the weaker bound


P = DDPParams("dgauss", 1000, 16, 1.0, 2e-4, (0.15 / 2e-4) ** 2)


def _ledger(sampling: str, path: Path | None = None) -> DistributedLedger:
    ledger = DistributedLedger(path)
    for r, members in enumerate((range(1, 21), range(1, 21), range(2, 21))):
        ledger.record(
            r + 1, P, members=list(members), colluders=1, n_min=8, sample_rate=0.1,
            delta=1e-5, sampling=sampling,
        )  # fmt: skip
    return ledger


def test_under_hidden_sampling_the_server_figure_is_the_amplified_one() -> None:
    hidden = _ledger("hidden")
    assert [r.sampling for r in hidden.rounds()] == ["hidden"] * 3
    # composed independently: Zhu-Wang over KLS21 at each round's honest count (19, 19, 18)
    want = epsilon_of(2 * _hidden_rdp(19) + _hidden_rdp(18), 1e-5)
    assert hidden.epsilon() == pytest.approx(want, rel=1e-12)
    server = hidden.server_epsilons()
    assert server[5] == pytest.approx(hidden.epsilon(), rel=1e-12)  # in every sum
    assert server[1] < hidden.epsilon()  # left out of the last sum (dropped out)
    visible = _ledger("visible")
    # visible: the server sees the members, so its figure is the unamplified one
    assert visible.server_epsilons()[5] > 2 * hidden.server_epsilons()[5]


def _hidden_rdp(honest: int) -> np.ndarray:
    def base(a: np.ndarray) -> np.ndarray:
        return round_rdp(
            "dgauss", clip=P.clip, gamma=P.gamma, variance=P.variance, n=honest, dim=P.padded,
            beta=P.beta, orders=[int(x) for x in a],
        )  # fmt: skip

    return subsampled_rdp(base, 0.1)


def test_the_mode_is_saved_and_older_ledgers_load_as_visible(tmp_path: Path) -> None:
    path = tmp_path / "l.json"
    hidden = _ledger("hidden", path)
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == 3 and doc["rounds"][0]["sampling"] == "hidden"
    back = DistributedLedger.load(path)
    assert back.rounds() == hidden.rounds() and back.epsilon() == hidden.epsilon()
    doc["rounds"][0]["sampling"] = "visible"  # an edited mode: the epsilon no longer matches
    path.write_text(json.dumps(doc))
    with pytest.raises(LedgerError):
        DistributedLedger.load(path)
    visible = _ledger("visible", tmp_path / "v.json")
    doc = json.loads((tmp_path / "v.json").read_text())
    doc["schema_version"] = 2
    for r in doc["rounds"]:
        del r["sampling"]
    (tmp_path / "v.json").write_text(json.dumps(doc))
    old = DistributedLedger.load(tmp_path / "v.json")
    assert old.epsilon() == visible.epsilon()
    assert [r.sampling for r in old.rounds()] == ["visible"] * 3
    with pytest.raises(LedgerError):
        DistributedLedger().record(
            1, P, members=[1, 2], colluders=0, n_min=1, sample_rate=None, delta=1e-5,
            sampling="hidden",
        )  # fmt: skip
