"""run_federated with DP: the ledger matches the Opacus accountants; budgets stop clients."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from secureagg import ConfigError, LedgerError
from secureagg.fl import FederatedResult, SecureAggConfig, run_federated
from secureagg.privacy import PrivacyConfig, PrivacyLedger, PrivateTrainer, Step
from secureagg.privacy.accounting import epsilon

DELTA = 1e-5
CHEAP = ("opacus_rdp", "dpa_rdp")  # PRV and PLD are checked once, in the first test


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def model_fn() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def loaders(sizes: dict[int, int], batch: int = 10) -> dict[int, DataLoader]:
    out = {}
    for cid, n in sizes.items():
        g = torch.Generator().manual_seed(cid)
        x = torch.randn(n, 6, generator=g)
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
        out[cid] = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True)
    return out


def run(
    privacy: PrivacyConfig,
    rounds: int,
    sizes: dict[int, int],
    *,
    ledger: PrivacyLedger | None = None,
    dropout_rate: float = 0.0,
    secure: SecureAggConfig | None = None,
    seed: int = 0,
) -> FederatedResult:
    return run_federated(
        model_fn,
        loaders(sizes),
        rounds=rounds,
        optimizer_fn=lambda p: torch.optim.SGD(p, lr=0.2),
        privacy=privacy,
        secure=secure,
        dropout_rate=dropout_rate,
        ledger=ledger,
        seed=seed,
    )


def test_ledger_epsilon_is_the_opacus_accountant_over_the_whole_history(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    res = run(
        PrivacyConfig(noise_multiplier=1.1, update_clip=1.0),
        rounds=3,
        sizes={1: 60, 2: 60, 3: 30},
        ledger=PrivacyLedger(path),
        dropout_rate=0.7,  # dropouts are charged too: the client trained before dropping
        secure=SecureAggConfig(),
        seed=2,
    )
    ledger = PrivacyLedger.load(path)
    assert ledger.clients() == [1, 2, 3]
    for cid, trainer in res.clients.items():
        assert isinstance(trainer, PrivateTrainer)
        recs = ledger.records(cid)
        assert [r.round for r in recs] == [1, 2, 3]
        assert trainer.grad_sample_mode in ("ghost", "hooks")  # "auto": measured
        assert all(r.grad_sample_mode == trainer.grad_sample_mode for r in recs)
        steps = sum(r.steps for r in recs)
        assert steps == 3 * trainer.steps_per_round
        q = trainer.sample_rate
        assert trainer.accountant.history == [(1.1, q, steps)]  # one accountant, never reset
        rdp = RDPAccountant()
        rdp.history = [(1.1, q, steps)]
        prv = PRVAccountant()
        prv.history = [(1.1, q, steps)]
        last = recs[-1].epsilon
        assert last["opacus_rdp"] == pytest.approx(trainer.accountant.get_epsilon(DELTA), rel=1e-9)
        assert last["opacus_rdp"] == pytest.approx(rdp.get_epsilon(DELTA), rel=1e-9)
        assert last["opacus_prv"] == pytest.approx(prv.get_epsilon(DELTA, eps_error=0.01), rel=1e-6)
        assert last["dpa_rdp"] == pytest.approx(last["opacus_rdp"], rel=0.01)
        assert res.rounds[-1].epsilon[cid] == pytest.approx(last["dpa_pld"], rel=1e-9)
        for m, r in zip(res.rounds, recs, strict=True):
            assert r.participated == (cid in m.members)
            assert r.reason == (None if cid in m.members else "dropout")
    assert any(m.dropped for m in res.rounds)


def test_budgeted_client_stops_at_the_round_that_would_exceed_it() -> None:
    z, budget, rounds = 1.5, 4.5, 4
    sizes = {1: 60, 2: 60, 3: 60, 4: 20}  # client 4: sample rate 1/2, spends fastest
    per_round = {c: Step(z, 10 / n, n // 10) for c, n in sizes.items()}

    def eps_after(cid: int, r: int) -> float:
        s = per_round[cid]
        return epsilon([Step(z, s.sample_rate, s.steps * r)], DELTA)

    stop = next(r for r in range(rounds) if eps_after(4, r + 1) > budget)
    assert stop == 2 and eps_after(1, rounds) < budget  # the setting tests what it claims
    res = run(
        PrivacyConfig(noise_multiplier=z, budget_epsilon=budget, update_clip=1.0),
        rounds,
        sizes,
        secure=SecureAggConfig(),
        ledger=PrivacyLedger(accountants=CHEAP),
    )
    assert res.ledger is not None
    for m in res.rounds:
        if m.round <= stop:  # rounds from 1: the first `stop` rounds are affordable
            assert m.members == [1, 2, 3, 4] and m.dropped == m.dropouts == {}
        else:
            assert m.dropped == m.dropouts == {4: "budget"}
            assert m.members == [1, 2, 3]  # the round completes with the rest
            assert m.participants == [1, 2, 3]
        assert max(m.epsilon.values()) <= budget
    recs = res.ledger.records(4)
    assert [(r.participated, r.reason, r.steps) for r in recs] == [
        (True, None, 2),
        (True, None, 2),
        (False, "budget", 0),
        (False, "budget", 0),
    ]
    assert res.ledger.latest_epsilon(4) == pytest.approx(eps_after(4, stop), rel=1e-9)
    assert res.ledger.latest_epsilon(1) == pytest.approx(eps_after(1, rounds), rel=1e-9)


def test_a_restarted_run_continues_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    cfg = PrivacyConfig(noise_multiplier=1.0)
    run(cfg, 2, {1: 30, 2: 30}, ledger=PrivacyLedger.open(path, accountants=CHEAP))
    res = run(cfg, 1, {1: 30, 2: 30}, ledger=PrivacyLedger.open(path, accountants=CHEAP))
    ledger = PrivacyLedger.load(path, accountants=CHEAP)
    assert [r.round for r in ledger.records(1)] == [1, 2, 3]
    trainer = res.clients[1]
    assert trainer.epsilon() == pytest.approx(ledger.latest_epsilon(1), rel=1e-9)
    assert trainer.epsilon() == pytest.approx(epsilon([Step(1.0, 1 / 3, 9)], DELTA), rel=1e-9)


def test_a_corrupt_ledger_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    ledger = PrivacyLedger(path, accountants=CHEAP)
    run(PrivacyConfig(noise_multiplier=1.0), 1, {1: 30, 2: 30}, ledger=ledger)
    doc = json.loads(path.read_text())
    doc["clients"]["1"]["records"][0]["steps"] = -3
    path.write_text(json.dumps(doc))
    with pytest.raises(LedgerError, match="client 1"):
        run(PrivacyConfig(noise_multiplier=1.0), 1, {1: 30, 2: 30}, ledger=PrivacyLedger.open(path))


def test_a_public_count_run_refuses_an_add_remove_ledger() -> None:
    # "examples-public" makes the guarantee replace-one; a client whose ledger is under
    # add/remove cannot mix the two (refused before any training)
    ledger = PrivacyLedger(accountants=CHEAP)
    run(PrivacyConfig(noise_multiplier=1.0, update_clip=1.0), 1, {1: 20, 2: 20}, ledger=ledger)
    with pytest.raises(ConfigError, match="replace-one"):
        run(
            PrivacyConfig(noise_multiplier=1.0, update_clip=1.0),
            1,
            {1: 20, 2: 20},
            ledger=ledger,
            secure=SecureAggConfig(weighting="examples-public"),
        )
