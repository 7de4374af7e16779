"""The audit's per-round PRV and PLD figures against the library accountants run from scratch.

The audit computes PRV and PLD for many histories at once (``privacy/audit/_series.py``):
shared PRV discretisations and incremental PLD composition. Here every checked figure is
compared with Opacus' plain ``PRVAccountant`` and dp-accounting's ``PLDAccountant`` given
that round's whole step history afresh, on a ledger with small and large step counts,
dropouts, a noise change and a sample-rate change mid-way.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import pytest

from secureagg.privacy import PrivacyLedger, Step, accounting
from secureagg.privacy.accounting import PLD_VALUE_DISCRETIZATION, PRV_EPS_ERROR
from secureagg.privacy.audit import (
    PRV_BUCKET_RATIO,
    SERIES_AGREEMENT,
    audit_ledger,
    series_epsilons,
)

DELTA = 1e-5
PLD_SLACK = 1e-6  # PLD composition is exact up to 1e-15 tail truncations; allow float noise


def _runs(history: list[Step]) -> list[tuple[float, float, int]]:
    """The history as the libraries' own ``step()`` would build it: consecutive runs merged."""
    out: list[tuple[float, float, int]] = []
    for s in history:
        if not s.steps or not s.sample_rate:
            continue
        if out and out[-1][:2] == (s.noise_multiplier, s.sample_rate):
            out[-1] = (*out[-1][:2], out[-1][2] + s.steps)
        else:
            out.append((s.noise_multiplier, s.sample_rate, s.steps))
    return out


@cache
def _library_prv(runs: tuple[tuple[float, float, int], ...]) -> float:
    from opacus.accountants import PRVAccountant

    acc = PRVAccountant()
    acc.history = list(runs)
    return float(acc.get_epsilon(DELTA))


@cache
def _library_pld(runs: tuple[tuple[float, float, int], ...]) -> float:
    import dp_accounting
    from dp_accounting.pld import PLDAccountant

    acc = PLDAccountant(value_discretization_interval=PLD_VALUE_DISCRETIZATION)
    for z, q, n in runs:
        event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z))
        acc.compose(dp_accounting.SelfComposedDpEvent(event, n))
    return float(acc.get_epsilon(DELTA))


LIBRARY = {"opacus_prv": _library_prv, "dpa_pld": _library_pld}
# how far below the library figure the audit's may be: PRV's own stated eps_error (both are
# "estimate + eps_error" upper bounds); PLD's composition is exact up to float noise
BELOW = {"opacus_prv": PRV_EPS_ERROR, "dpa_pld": PLD_SLACK}


def _check(name: str, mine: float, runs: tuple[tuple[float, float, int], ...]) -> None:
    lib = LIBRARY[name](runs)
    assert abs(mine - lib) <= SERIES_AGREEMENT, (name, runs, mine, lib)
    assert mine >= lib - BELOW[name], (name, runs, mine, lib)


def _ledger() -> PrivacyLedger:
    led = PrivacyLedger(accountants=("opacus_rdp",))
    common: dict[str, Any] = dict(max_grad_norm=1.0, delta=DELTA, grad_sample_mode="hooks")
    for r in range(60):
        # client 0: 10 steps a round, drops out every 7th round
        drop = r % 7 == 3
        led.record(
            0,
            r,
            participated=not drop,
            reason="dropout" if drop else None,
            steps=0 if drop else 10,
            sample_rate=0.01,
            noise_multiplier=1.1,
            **common,
        )
        # client 1: noise lowered at round 30, sample rate raised at round 45; an unmask-stage
        # dropout (steps taken and charged; the update still reached the sum) at round 10
        led.record(
            1,
            r,
            participated=r != 10,
            reason="dropout" if r == 10 else None,
            steps=40,
            sample_rate=0.01 if r < 45 else 0.02,
            noise_multiplier=1.1 if r < 30 else 0.9,
            **common,
        )
        # client 2: large step counts (300 a round, 18,000 in all)
        led.record(
            2,
            r,
            participated=True,
            steps=300,
            sample_rate=0.004,
            noise_multiplier=0.8,
            **common,
        )
        # client 3: a different step count every round (uneven local data)
        led.record(
            3,
            r,
            participated=True,
            steps=5 + (r * 7) % 23,
            sample_rate=0.01,
            noise_multiplier=1.1,
            **common,
        )
    return led


CHECKED_ROUNDS = {
    0: (0, 3, 4, 31, 59),
    1: (0, 10, 29, 30, 44, 45, 59),
    2: (0, 1, 20, 59),
    3: (1, 17, 40, 59),
}


@pytest.mark.slow  # ~10 s of accounting from scratch: in make test, not make test-fast
def test_audit_per_round_prv_and_pld_agree_with_the_libraries_from_scratch() -> None:
    accounting.clear_cache()
    led = _ledger()
    audit = audit_ledger(led, tight_points=0)
    assert audit.tight_points == 0
    for c in audit.clients:
        history = led.history(c.client_id)
        for r in c.rounds:
            assert all(r.epsilon[a] is not None for a in audit.accountants)
        for i in CHECKED_ROUNDS[c.client_id]:
            runs = tuple(_runs(history[: i + 1]))
            for name in LIBRARY:
                mine = c.rounds[i].epsilon[name]
                assert mine is not None
                _check(name, mine, runs)
            # the tight figures stay under the RDP bound
            assert c.rounds[i].epsilon["dpa_pld"] <= c.rounds[i].epsilon["opacus_rdp"]  # type: ignore[operator]
        assert c.final == c.rounds[-1].epsilon
    # every round's figure was really computed: the series is non-decreasing and moves
    # whenever steps were taken
    for c in audit.clients:
        for name in LIBRARY:
            seq = [r.epsilon[name] for r in c.rounds]
            for a, b, r in zip(seq, seq[1:], c.rounds[1:], strict=False):
                assert a is not None and b is not None
                assert (b > a) if r.steps else (b == a)


def test_prv_histories_discretised_for_a_larger_count_stay_within_the_bound() -> None:
    # one call, so every count shares the domain of the largest in its bucket; the checked
    # counts sit at the bottom of their buckets, where the shared mesh is finest relative
    # to what Opacus would pick for them alone
    accounting.clear_cache()
    counts = list(range(50, 10_001, 50))
    got = series_epsilons("opacus_prv", [((1.1, 0.01, n),) for n in counts], DELTA)
    bottoms, top, prev = [], counts[-1], counts[-1]
    for n in reversed(counts):
        if n * PRV_BUCKET_RATIO < top:
            bottoms.append(prev)
            top = n
        prev = n
    bottoms.append(counts[0])
    assert 6_700 in bottoms and 4_450 in bottoms  # the top two buckets: [6,700, 10,000], ...
    for n in [*bottoms[:2], *bottoms[-2:]]:
        _check("opacus_prv", got[((1.1, 0.01, n),)], ((1.1, 0.01, n),))
    assert got[((1.1, 0.01, 10_000),)] == pytest.approx(5.203, abs=0.02)  # the pinned figure


def test_pld_series_against_the_library_on_heterogeneous_histories() -> None:
    accounting.clear_cache()
    # prefixes of a history with three components, given out of order and with gaps, so
    # some histories are composed onto a smaller one and some start from nothing
    hs = [
        ((0.9, 0.02, 30),),
        ((0.9, 0.02, 30), (1.1, 0.01, 500)),
        ((0.9, 0.02, 120), (1.1, 0.01, 500)),
        ((1.1, 0.01, 500),),
        ((0.8, 0.004, 5_000), (0.9, 0.02, 120), (1.1, 0.01, 500)),
        ((0.8, 0.004, 5_000),),
    ]
    got = series_epsilons("dpa_pld", list(reversed(hs)), DELTA)
    for h in hs:
        _check("dpa_pld", got[h], h)
    assert got[((0.8, 0.004, 5_000),)] == pytest.approx(2.50, abs=0.02)  # the pinned figure
    assert series_epsilons("dpa_pld", [()], DELTA) == {(): 0.0}
    assert math.isinf(series_epsilons("opacus_prv", [((0.0, 0.1, 3),)], DELTA)[((0.0, 0.1, 3),)])


def test_a_prv_bucket_that_fails_falls_back_to_the_library(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from secureagg.privacy.audit import _series

    def broken(bucket: list[accounting.Canonical], delta: float) -> dict[object, float]:
        raise RuntimeError("Floating point errors will dominate")

    accounting.clear_cache()
    monkeypatch.setattr(_series, "_prv_bucket", broken)
    hs = [((1.1, 0.01, 100),), ((1.1, 0.01, 120),)]
    got = series_epsilons("opacus_prv", hs, DELTA)
    assert got == {h: accounting.epsilon_canonical("opacus_prv", h, DELTA) for h in hs}
