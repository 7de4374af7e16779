"""A hostile server's run config cannot weaken a node: the ledger and the DP-SGD floors come
from the node's own node config (``NodePrivacy``), checked by ``train_privately`` before any
training, and the example app takes nothing that protects the node from the run config.

Each attack here trained on the code before this check (the example read its noise, clip and
ledger folder from ``context.run_config``; ``train_privately`` had no node-side floor).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("flwr")
import test_flower_private as fp
import torch
from flwr.app import Context, Message, RecordDict
from torch import nn

from secureagg import ConfigError, PrivacyConfig
from secureagg.flower import RECORD_KEY, NodePrivacy, train_privately

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "flower_app"

pytestmark = pytest.mark.usefixtures("flower_task_identity")


def _train(
    context: Context, privacy: PrivacyConfig, **kw: object
) -> tuple[Message, dict[str, torch.Tensor], nn.Module]:
    """One ``train_privately`` call on test_flower_private's model and data: the reply, the
    model it started from and the model after it."""
    state = {k: v.detach().clone() for k, v in fp._model().state_dict().items()}
    model = fp._model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    reply = train_privately(
        fp._message(state, 1), context, model, optimizer, fp._loader(), privacy, **kw
    )
    return reply, state, model


def _context(
    node_config: dict[str, object], run_config: dict[str, object], run: int = 7
) -> Context:
    return Context(
        run_id=run,
        node_id=1,
        node_config=node_config,  # type: ignore[arg-type]
        state=RecordDict(),
        run_config=run_config,  # type: ignore[arg-type]
    )


def _records(ledger: Path, client: int) -> list[dict[str, object]]:
    records: list[dict[str, object]] = json.loads(ledger.read_text())["clients"][str(client)][
        "records"
    ]
    return records


PINS = {
    "partition-id": 4,
    "secureagg-noise-multiplier": 1.0,
    "secureagg-max-grad-norm": 1.0,
    "secureagg-budget": 5.0,
    "secureagg-delta": 1e-5,
}

WEAKER = {
    "no noise": (PrivacyConfig(noise_multiplier=0.0, budget_epsilon=5.0), "noise-multiplier"),
    "less noise": (PrivacyConfig(noise_multiplier=0.5, budget_epsilon=5.0), "noise-multiplier"),
    "calibrated to less noise": (
        PrivacyConfig(target_epsilon=100.0, planned_rounds=1, budget_epsilon=5.0),
        "noise-multiplier",
    ),
    "larger clip": (
        PrivacyConfig(noise_multiplier=1.0, max_grad_norm=10.0, budget_epsilon=5.0),
        "max-grad-norm",
    ),
    "no budget": (PrivacyConfig(noise_multiplier=1.0), "budget"),
    "higher budget": (PrivacyConfig(noise_multiplier=1.0, budget_epsilon=50.0), "budget"),
    "larger delta": (
        PrivacyConfig(noise_multiplier=1.0, budget_epsilon=5.0, delta=1e-3),
        "delta",
    ),
}


@pytest.mark.parametrize("case", sorted(WEAKER))
def test_settings_weaker_than_the_node_pins_are_declined_before_any_training(
    case: str, tmp_path: Path
) -> None:
    privacy, key = WEAKER[case]
    ledger = tmp_path / "node-ledger.json"
    context = _context({**PINS, "secureagg-ledger": str(ledger)}, {})
    reply, state, model = _train(context, privacy)
    assert list(reply.content.keys()) == [RECORD_KEY]  # no arrays, no count: nothing left
    reason = str(reply.content[RECORD_KEY]["declined"])
    assert f"secureagg-{key}" in reason, reason
    assert not ledger.exists()  # nothing spent, nothing recorded
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # untrained


def test_settings_as_strong_as_the_pins_train_into_the_pinned_ledger(tmp_path: Path) -> None:
    """A ledger the app (or a run config) names is ignored: the node's pinned one is used."""
    node_ledger, fresh = tmp_path / "node-ledger.json", tmp_path / "fresh" / "ledger.json"
    context = _context({**PINS, "secureagg-ledger": str(node_ledger)}, {})
    privacy = PrivacyConfig(noise_multiplier=2.0, max_grad_norm=0.5, budget_epsilon=3.0)
    reply, _, _ = _train(context, privacy, ledger=fresh)
    assert RECORD_KEY not in reply.content.config_records and "arrays" in reply.content
    assert not fresh.exists()
    [record] = _records(node_ledger, 4)
    assert record["noise_multiplier"] == 2.0 and record["participated"] is True


def test_node_privacy_replaces_what_the_node_pins_and_nothing_else() -> None:
    pins = NodePrivacy.from_node_config(
        {"secureagg-noise-multiplier": 3, "secureagg-budget": 2.5, "secureagg-ledger": ""}
    )
    assert pins == NodePrivacy(noise_multiplier=3.0, budget_epsilon=2.5)
    mine = pins.apply(PrivacyConfig(target_epsilon=9.0, planned_rounds=2, max_grad_norm=0.7))
    assert (mine.noise_multiplier, mine.target_epsilon, mine.budget_epsilon) == (3.0, None, 2.5)
    assert mine.max_grad_norm == 0.7 and pins.problem(mine, 3.0) is None
    assert NodePrivacy().apply(PrivacyConfig(noise_multiplier=0.1)).noise_multiplier == 0.1


@pytest.mark.parametrize(
    "node_config",
    [
        {"secureagg-noise-multiplier": "1.0"},
        {"secureagg-budget": True},
        {"secureagg-max-grad-norm": 0.0},
        {"secureagg-delta": -1e-5},
        {"secureagg-ledger": 3},
    ],
)
def test_a_malformed_pin_is_a_config_error(node_config: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="node config"):
        NodePrivacy.from_node_config(node_config)


def _example_train() -> object:
    sys.path.insert(0, str(APP))
    try:
        from secure_app.client_app import train
    finally:
        sys.path.remove(str(APP))
    return train


HOSTILE = {  # what a server can put in the run config (`flwr run --run-config`)
    "batch-size": 64,
    "lr": 0.5,
    "local-epochs": 1,
    "noise-multiplier": 0.0,
    "max-grad-norm": 100.0,
    "budget": 1e9,
    "ledger-dir": "",  # set per test: a fresh folder
}


def test_the_example_app_takes_no_privacy_setting_from_the_run_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs of the example's train function on one node: the server's run config names
    a fresh ledger folder, zero noise, a huge clip and budget. The node trains with its own
    noise into its own ledger, and its pinned budget (one round) stops the second run."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    train = _example_train()
    from secure_app.task import Net

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    hostile = {**HOSTILE, "ledger-dir": str(fresh)}
    ledger = tmp_path / "node" / "ledger.json"
    ledger.parent.mkdir()
    node = {"partition-id": 0, "num-partitions": 3, "secureagg-ledger": str(ledger)}
    state = {k: v.detach().clone() for k, v in Net().state_dict().items()}
    first = train(fp._message(state, 1), _context(node, hostile, run=11))  # type: ignore[operator]
    assert RECORD_KEY not in first.content.config_records
    assert list(fresh.iterdir()) == [] and not (tmp_path / "home" / ".secureagg").exists()
    [record] = _records(ledger, 0)
    assert record["noise_multiplier"] == 1.0  # the app's own noise, not the run config's 0
    spent = record["epsilon"]["dpa_pld"]  # type: ignore[index]
    pinned = {**node, "secureagg-budget": 1.05 * spent}  # one round fits, two do not
    second = train(fp._message(state, 1), _context(pinned, hostile, run=12))  # type: ignore[operator]
    assert list(second.content.keys()) == [RECORD_KEY]
    assert "budget" in str(second.content[RECORD_KEY]["declined"])
    assert list(fresh.iterdir()) == []
    assert [r["participated"] for r in _records(ledger, 0)] == [True, False]
