"""Ledger audit: figures, checkpoints, cache counts, disagreement flags and budget status."""

from __future__ import annotations

import math
from typing import Any

import pytest

from secureagg import ConfigError
from secureagg.privacy import PrivacyLedger, Step, accounting
from secureagg.privacy.accounting import ACCOUNTANTS, epsilons
from secureagg.privacy.audit import SERIES_ACCOUNTANTS, SERIES_AGREEMENT, audit_ledger

ARGS: dict[str, Any] = dict(
    sample_rate=0.05, noise_multiplier=1.1, max_grad_norm=1.0, delta=1e-5, grad_sample_mode="hooks"
)


def _ledger(clients: int = 4, rounds: int = 6, budget: float | None = 2.0) -> PrivacyLedger:
    led = PrivacyLedger(accountants=("opacus_rdp",))
    for c in range(clients):
        for r in range(rounds):
            drop = c == 1 and r == 2  # client 1 trained then dropped out in round 2
            led.record(
                c,
                r,
                participated=not drop,
                reason="dropout" if drop else None,
                steps=10,
                budget_epsilon=budget,
                **ARGS,
            )
    return led


def test_every_round_and_final_figures_match_the_accountants() -> None:
    audit = audit_ledger(_ledger(clients=2, rounds=4), tight_points=0)
    c = audit.clients[0]
    assert [r.total_steps for r in c.rounds] == [10, 20, 30, 40]
    for r in c.rounds:
        lib = epsilons([Step(1.1, 0.05, r.total_steps)], 1e-5)
        for name in ACCOUNTANTS:
            mine = r.epsilon[name]
            assert mine is not None
            if name in SERIES_ACCOUNTANTS:  # computed for all rounds at once
                assert mine == pytest.approx(lib[name], abs=SERIES_AGREEMENT)
            else:
                assert mine == lib[name]
    assert c.final == c.rounds[-1].epsilon
    assert c.recorded_mismatch < 1e-12 and not c.notes
    assert c.disagreement.pair == ("opacus_prv", "dpa_pld") and not c.disagreement.flagged


def test_identical_histories_are_computed_once() -> None:
    led = _ledger(clients=5, rounds=6)
    accounting.clear_cache()
    audit = audit_ledger(led, tight_points=3)
    # 6 distinct step counts (10..60) for the RDP accountants, whatever the client count
    assert audit.evaluations["opacus_rdp"] == 6
    assert audit.evaluations["dpa_rdp"] == 6
    # PRV/PLD: the shared grid (stride 20 steps: 10, 20, 40, 60) plus nothing else, since
    # client 1's dropout round repeats 20 steps and its last round (60) is on the grid
    assert audit.evaluations["opacus_prv"] == audit.evaluations["dpa_pld"] == 4
    again = audit_ledger(_ledger(clients=5, rounds=6), tight_points=3)
    assert sum(again.evaluations.values()) == 0  # all from the cache
    tight = [r.total_steps for r in audit.clients[0].rounds if r.epsilon["dpa_pld"] is not None]
    assert tight == [10, 20, 40, 60]


def test_budget_status() -> None:
    spent = epsilons([Step(1.1, 0.05, 60)], 1e-5)["opacus_rdp"]
    rdp = {"tight_points": 1, "reference": "opacus_rdp"}
    assert audit_ledger(_ledger(budget=spent + 0.01), **rdp).clients[0].status == ("within budget")
    over = audit_ledger(_ledger(budget=spent - 0.01), **rdp)
    assert over.clients[0].status == "over budget" and len(over.over_budget) == 4
    assert audit_ledger(_ledger(budget=None), **rdp).clients[0].status == "no budget set"
    # judged by the tighter PLD, the same spend is within budget
    pld = audit_ledger(_ledger(budget=spent - 0.01), tight_points=1, reference="dpa_pld")
    assert pld.clients[0].status == "within budget"
    assert any("not by opacus_rdp" in n for n in pld.clients[0].notes)


def test_a_disagreeing_accountant_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    accounting.clear_cache()
    real = accounting._COMPUTE["dpa_rdp"]
    monkeypatch.setitem(accounting._COMPUTE, "dpa_rdp", lambda h, d: real(h, d) * 1.2)
    try:
        audit = audit_ledger(_ledger(clients=1, rounds=3), tight_points=1, tolerance=0.05)
    finally:
        accounting.clear_cache()
    d = audit.clients[0].disagreement
    assert (
        d.flagged
        and d.pair == ("opacus_rdp", "dpa_rdp")
        and d.value == pytest.approx(0.2, abs=1e-3)
    )
    assert audit.flagged == audit.clients
    assert any("disagree by 20.00%" in n for n in audit.clients[0].notes)
    # the ledger's recorded opacus_rdp figures still match
    assert audit.clients[0].recorded_mismatch < 1e-12


def test_edited_recorded_figures_are_noticed(tmp_path: Any) -> None:
    led = _ledger(clients=1, rounds=2)
    led.save(tmp_path / "l.json")
    text = (tmp_path / "l.json").read_text()
    first = led.records(0)[1].epsilon["opacus_rdp"]
    (tmp_path / "l.json").write_text(text.replace(repr(first), repr(first / 2)))
    audit = audit_ledger(PrivacyLedger.load(tmp_path / "l.json"), tight_points=1)
    want = (first / 2) / max(1.0, first / 2)  # relative gap, floored at epsilon 1
    assert audit.clients[0].recorded_mismatch == pytest.approx(want, rel=1e-9)
    assert any("differ from recomputed" in n for n in audit.clients[0].notes)


def test_no_noise_rounds_give_an_infinite_epsilon_and_a_note() -> None:
    led = PrivacyLedger(accountants=("opacus_rdp",))
    led.record(3, 0, participated=True, steps=5, **{**ARGS, "noise_multiplier": 0.0})
    audit = audit_ledger(led, accountants=("opacus_rdp", "dpa_rdp"), reference="opacus_rdp")
    assert all(math.isinf(v) for v in audit.clients[0].final.values())
    assert any("without noise" in n for n in audit.clients[0].notes)


def test_bad_options_are_refused() -> None:
    led = _ledger(clients=1, rounds=1)
    with pytest.raises(ConfigError, match="reference"):
        audit_ledger(led, accountants=("dpa_rdp",))
    with pytest.raises(ConfigError, match="subset"):
        audit_ledger(led, accountants=("moments",))
    with pytest.raises(ConfigError, match="tolerance"):
        audit_ledger(led, tolerance=-1)
    with pytest.raises(ConfigError, match="no records for clients \\[9\\]"):
        audit_ledger(led, clients=[9])
    assert set(ACCOUNTANTS) == set(audit_ledger(led, tight_points=0).accountants)


def test_recorded_prv_and_pld_figures_from_the_trainer_are_not_reported_as_edited(
    tmp_path: Any,
) -> None:
    # the ledger records each history's figures alone; the audit computes PRV/PLD for all
    # rounds at once, so the two may differ slightly, and that is not an edit
    led = PrivacyLedger(accountants=ACCOUNTANTS)
    for r in range(4):
        led.record(0, r, participated=True, steps=25, **ARGS)
    accounting.clear_cache()
    audit = audit_ledger(led)
    assert audit.clients[0].recorded_mismatch == 0.0
    assert not any("differ from recomputed" in n for n in audit.clients[0].notes)
    # an edit beyond what the method allows is still noticed
    led.save(tmp_path / "l.json")
    text = (tmp_path / "l.json").read_text()
    prv = led.records(0)[2].epsilon["opacus_prv"]
    (tmp_path / "l.json").write_text(text.replace(repr(prv), repr(prv + 0.1)))
    edited = audit_ledger(PrivacyLedger.load(tmp_path / "l.json"))
    assert edited.clients[0].recorded_mismatch == pytest.approx(
        (0.1 - SERIES_AGREEMENT) / max(1.0, prv), abs=1e-4
    )
    assert any("differ from recomputed" in n for n in edited.clients[0].notes)


def test_over_budget_by_rdp_but_within_by_the_tight_accountants_is_noted() -> None:
    # sigma 1.1, q 0.01, 500 steps: RDP about 1.32, PRV and PLD about 1.09
    led = PrivacyLedger(accountants=("opacus_rdp",))
    args = {**ARGS, "sample_rate": 0.01}
    for r in range(5):
        led.record(0, r, participated=True, steps=100, budget_epsilon=1.2, **args)
    c = audit_ledger(led, tight_points=0, reference="opacus_rdp").clients[0]
    assert c.status == "over budget"
    assert c.final["opacus_rdp"] > 1.2 > c.final["opacus_prv"]
    assert any("within it by" in n and "opacus_prv" in n for n in c.notes)


def test_statement_counts_rounds_trained_apart_from_rounds_in_the_sum() -> None:
    from secureagg.privacy.audit import client_statement

    audit = audit_ledger(_ledger(clients=2, rounds=4), tight_points=0)
    c = audit.clients[1]  # trained in all 4 rounds, dropped after training in round 2
    assert (c.trained_rounds, c.participated_rounds, c.total_steps) == (4, 3, 40)
    text = client_statement(audit, c)
    assert "40 DP-SGD steps taken in 4 of 4 recorded rounds (3 with its update in the sum)" in text
