"""train_privately: real Opacus DP-SGD inside a Flower train function, its accountant kept in
Context.state across rounds (each round with a fresh model and optimizer, as a fresh
ClientApp process has), budgets, the ledger, and what the mod makes of a declined round."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("flwr")
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from secureagg import ConfigError, PrivacyConfig
from secureagg.flower import RECORD_KEY, train_privately
from secureagg.flower._records import PRIVACY_KEY
from secureagg.privacy.accounting import Step, epsilon

N_EXAMPLES = 40
DELTA = 1e-5


pytestmark = pytest.mark.usefixtures("flower_task_identity")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(4, 3)


def _loader() -> DataLoader[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N_EXAMPLES, 4, generator=g)
    y = torch.randint(0, 3, (N_EXAMPLES,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=10)


def _message(state: dict[str, torch.Tensor], rnd: int) -> Message:
    content = RecordDict(
        {"arrays": ArrayRecord(state), "config": ConfigRecord({"server-round": rnd})}
    )
    return Message(content, dst_node_id=1, message_type="train")


def _round(
    context: Context, state: dict[str, torch.Tensor], rnd: int, privacy: PrivacyConfig, **kw: object
) -> Message:
    """One call, with a fresh model and optimizer (what a fresh ClientApp process builds)."""
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    return train_privately(
        _message(state, rnd), context, model, optimizer, _loader(), privacy, **kw
    )


def _context() -> Context:
    return Context(
        run_id=7, node_id=1, node_config={"partition-id": 4}, state=RecordDict(), run_config={}
    )


def _saved_history(context: Context) -> list[Step]:
    rec = context.state.config_records[PRIVACY_KEY]
    return [Step(z, q, n) for z, q, n in zip(rec["noise"], rec["rate"], rec["steps"], strict=True)]


def test_the_accountant_keeps_counting_across_rounds_and_fresh_trainers(tmp_path: Path) -> None:
    context = _context()
    privacy = PrivacyConfig(noise_multiplier=1.0)
    state = {k: v.detach().clone() for k, v in _model().state_dict().items()}
    ledger = tmp_path / "ledger.json"
    eps = []
    for rnd in (1, 2, 3):
        reply = _round(context, state, rnd, privacy, ledger=ledger)
        assert not reply.has_error() and RECORD_KEY not in reply.content.config_records
        assert reply.content.metric_records["metrics"]["num-examples"] == N_EXAMPLES
        new = reply.content.array_records["arrays"].to_torch_state_dict()
        assert set(new) == set(state)
        assert any(not torch.equal(new[k], state[k]) for k in state)  # it trained
        history = _saved_history(context)
        # Opacus merges equal entries: 4 steps a round (40 examples, batches of 10), summed
        assert sum(h.steps for h in history) == 4 * rnd
        eps.append(epsilon(history, DELTA))
        state = new
    assert eps[0] < eps[1] < eps[2]
    entry = _saved_history(context)[0]  # one (z, q) throughout
    one_round = epsilon([Step(entry.noise_multiplier, entry.sample_rate, 4)], DELTA)
    twelve = epsilon([Step(entry.noise_multiplier, entry.sample_rate, 12)], DELTA)
    assert eps[2] == pytest.approx(twelve, rel=1e-9)  # all 12 steps of the 3 rounds count
    assert eps[2] > 1.4 * one_round  # a restarted accountant would report one_round each time
    records = json.loads(ledger.read_text())["clients"]["4"]["records"]
    assert [r["round"] for r in records] == [1, 2, 3]  # client id: the partition id
    assert records[-1]["epsilon"]["dpa_pld"] == pytest.approx(eps[-1], rel=1e-6)


def test_a_client_past_its_budget_declines_and_says_so_in_its_ledger(tmp_path: Path) -> None:
    context = _context()
    state = {k: v.detach().clone() for k, v in _model().state_dict().items()}
    first = _round(context, state, 1, PrivacyConfig(noise_multiplier=1.0))
    assert not first.has_error()
    spent = epsilon(_saved_history(context), DELTA)
    budget = PrivacyConfig(noise_multiplier=1.0, budget_epsilon=spent * 1.05)
    ledger = tmp_path / "ledger.json"
    reply = _round(context, state, 2, budget, ledger=ledger, client_id=9)
    assert list(reply.content.keys()) == [RECORD_KEY]  # no arrays, no count
    assert "budget" in str(reply.content[RECORD_KEY]["declined"])
    assert sum(h.steps for h in _saved_history(context)) == 4  # nothing spent on round 2
    (record,) = json.loads(ledger.read_text())["clients"]["9"]["records"]
    assert record["participated"] is False and record["reason"] == "budget"


def test_a_damaged_saved_history_is_a_config_error_not_a_reset() -> None:
    context = _context()
    context.state.config_records[PRIVACY_KEY] = ConfigRecord(
        {"noise": [1.0, 1.0], "rate": [0.25], "steps": [4, 4]}
    )
    state = {k: v.detach().clone() for k, v in _model().state_dict().items()}
    with pytest.raises(ConfigError, match="privacy history"):
        _round(context, state, 3, PrivacyConfig(noise_multiplier=1.0))


def test_the_message_must_carry_the_global_arrays() -> None:
    msg = Message(RecordDict({"config": ConfigRecord({"server-round": 1})}), 1, "train")
    model = _model()
    with pytest.raises(ConfigError, match="'arrays'"):
        train_privately(
            msg,
            _context(),
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            _loader(),
            PrivacyConfig(noise_multiplier=1.0),
        )


def _run_context(run_id: int) -> Context:
    return Context(
        run_id=run_id, node_id=1, node_config={"partition-id": 4}, state=RecordDict(), run_config={}
    )


def test_two_runs_against_one_budget_stop_at_the_budget(tmp_path: Path) -> None:
    """Each Flower run brings a fresh Context; the node's ledger carries the spend across."""
    one = epsilon([Step(1.0, 0.25, 4)], DELTA)  # one round: 4 steps at sample rate 1/4
    budget = epsilon([Step(1.0, 0.25, 4 * 5)], DELTA) * 1.001  # five rounds fit, not six
    privacy = PrivacyConfig(noise_multiplier=1.0, budget_epsilon=budget)
    ledger = tmp_path / "ledger.json"
    state = {k: v.detach().clone() for k, v in _model().state_dict().items()}
    trained = 0
    for run_id in (21, 22):  # two runs of 4 rounds, numbered 1..4 each time
        context = _run_context(run_id)
        for rnd in (1, 2, 3, 4):
            reply = _round(context, state, rnd, privacy, ledger=ledger)
            trained += RECORD_KEY not in reply.content.config_records
    assert trained == 5
    book = json.loads(ledger.read_text())["clients"]["4"]["records"]
    assert [(r["run"], r["round"]) for r in book] == [(21, r) for r in (1, 2, 3, 4)] + [
        (22, r) for r in (1, 2, 3, 4)
    ]
    assert sum(r["steps"] for r in book) == 20
    spent = epsilon([Step(1.0, 0.25, 20)], DELTA)
    assert spent <= budget and spent > one


def test_a_replayed_round_is_declined_not_trained_again(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.json"
    state = {k: v.detach().clone() for k, v in _model().state_dict().items()}
    privacy = PrivacyConfig(noise_multiplier=1.0)
    first = _round(_run_context(5), state, 3, privacy, ledger=ledger)
    assert RECORD_KEY not in first.content.config_records
    again = _round(_run_context(5), state, 3, privacy, ledger=ledger)  # a restarted process
    assert "already answered" in str(again.content[RECORD_KEY]["declined"])
    (record,) = json.loads(ledger.read_text())["clients"]["4"]["records"]
    assert record["steps"] == 4
    older = _round(_run_context(5), state, 2, privacy, ledger=ledger)  # reordered: declined
    assert "later round" in str(older.content[RECORD_KEY]["declined"])
    assert len(json.loads(ledger.read_text())["clients"]["4"]["records"]) == 1


def test_a_budget_without_a_ledger_warns_that_it_holds_for_this_run_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = {k: v.detach().clone() for k, v in _model().state_dict().items()}
    with caplog.at_level("WARNING", logger="secureagg.flower"):
        _round(_context(), state, 1, PrivacyConfig(noise_multiplier=1.0, budget_epsilon=50.0))
    assert any("counts this run only" in r.getMessage() for r in caplog.records)


def test_a_noisy_count_is_replied_and_charged_in_the_node_ledger(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.json"
    state = {k: v.detach().clone() for k, v in _model().state_dict().items()}
    privacy = PrivacyConfig(noise_multiplier=1.0, count_noise=10.0)
    counts = []
    for rnd in (1, 2, 3):
        reply = _round(_run_context(8), state, rnd, privacy, ledger=ledger)
        counts.append(reply.content.metric_records["metrics"]["num-examples"])
    assert counts != [N_EXAMPLES] * 3  # three draws of sd 10 all rounding to 0: ~6e-5
    records = json.loads(ledger.read_text())["clients"]["4"]["records"]
    assert [r["count_noise"] for r in records] == [10.0, 10.0, 10.0]
    charged = epsilon([Step(1.0, 0.25, 12), Step(10.0, 1.0, 3)], DELTA)
    assert records[-1]["epsilon"]["dpa_pld"] == pytest.approx(charged, rel=1e-9)
    assert charged > epsilon([Step(1.0, 0.25, 12)], DELTA)


def test_a_node_that_sends_its_true_count_is_charged_under_replace_one(tmp_path: Path) -> None:
    import dp_accounting as dpa
    from dp_accounting.pld import PLDAccountant

    from secureagg.privacy import PrivacyLedger

    context = Context(
        run_id=7,
        node_id=1,
        node_config={"partition-id": 4, "secureagg-weighting": "examples-public"},
        state=RecordDict(),
        run_config={},
    )
    state = {k: v.detach().clone() for k, v in _model().state_dict().items()}
    ledger = tmp_path / "ledger.json"
    for rnd in (1, 2):
        reply = _round(context, state, rnd, PrivacyConfig(noise_multiplier=2.0), ledger=ledger)
        assert reply.content.metric_records["metrics"]["num-examples"] == N_EXAMPLES
    rec = PrivacyLedger.load(ledger).records(4)[-1]
    acc = PLDAccountant(neighboring_relation=dpa.NeighboringRelation.REPLACE_ONE)
    event = dpa.PoissonSampledDpEvent(rec.sample_rate, dpa.GaussianDpEvent(2.0))
    acc.compose(dpa.SelfComposedDpEvent(event, 2 * rec.steps))
    expected = acc.get_epsilon(DELTA)
    assert rec.relation == "replace-one" and set(rec.epsilon) == {"dpa_pld"}
    assert expected <= rec.epsilon["dpa_pld"] <= expected + 0.01
    # the same ledger under add/remove (the node's opt-in removed) is declined, not mixed
    plain = _context()
    reply = _round(plain, state, 3, PrivacyConfig(noise_multiplier=2.0), ledger=ledger)
    assert "replace-one" in reply.content.config_records[RECORD_KEY]["declined"]
