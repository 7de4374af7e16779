"""Private training inside a Flower ClientApp, with the DP history kept across rounds."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from torch import nn
from torch.utils.data import DataLoader

from secureagg._exceptions import ConfigError
from secureagg.flower._records import PRIVACY_KEY, RECORD_KEY
from secureagg.privacy import (
    PrivacyConfig,
    PrivacyLedger,
    PrivateTrainer,
    Step,
    parameters_of,
    unflatten,
)

__all__ = ["train_privately"]

log = logging.getLogger("secureagg.flower")


def train_privately(
    msg: Message,
    context: Context,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data_loader: DataLoader[Any],
    privacy: PrivacyConfig,
    *,
    local_epochs: int = 1,
    criterion: Callable[..., torch.Tensor] | None = None,
    ledger: str | os.PathLike[str] | None = None,
    client_id: int | None = None,
    arrays_key: str = "arrays",
) -> Message:
    """One round of Opacus DP-SGD on ``model`` from the message's global arrays.

    Returns the reply a Flower train function returns (``arrays`` and ``num-examples``), to
    be sent through ``secureagg_mod``. The client's DP history lives in ``context.state``,
    so its accountant is never restarted; a client whose next round would pass
    ``privacy.budget_epsilon`` declines. ``ledger`` (a JSON path on the client's machine)
    gets one record per round under ``client_id`` (default: the partition id or node id).
    """
    if not isinstance(privacy, PrivacyConfig):
        raise ConfigError(f"privacy must be a PrivacyConfig, got {type(privacy).__name__}")
    records = msg.content.array_records
    if arrays_key not in records:
        raise ConfigError(f"the server's message has no {arrays_key!r} ArrayRecord")
    global_state = records[arrays_key].to_torch_state_dict()
    model.load_state_dict(global_state)
    trainer = PrivateTrainer.from_config(
        model,
        optimizer,
        data_loader,
        privacy,
        local_epochs=local_epochs,
        criterion=criterion,
        history=_history(context),
    )
    server_round = msg.content.config_records.get("config", ConfigRecord()).get("server-round", 0)
    rnd = server_round if isinstance(server_round, int) else 0
    who = client_id if client_id is not None else _default_id(context)
    book = PrivacyLedger.open(ledger) if ledger is not None else None
    if not trainer.can_train():
        if book is not None:
            trainer.record_round(book, who, rnd, participated=False, reason="budget")
            book.save()
        log.warning("client %s declines round %d: its privacy budget is spent", who, rnd)
        return Message(
            RecordDict({RECORD_KEY: ConfigRecord({"declined": "privacy budget spent"})}),
            reply_to=msg,
        )
    params = {k: v.detach().clone() for k, v in parameters_of(model).items()}
    update = trainer.train_round(params)
    _save_history(context, trainer.history)
    if book is not None:
        trainer.record_round(book, who, rnd)
        book.save()
    delta = unflatten(update.vector, params)
    state = {k: v.detach().clone() for k, v in global_state.items()}
    for name, change in delta.items():
        state[name] = params[name] + change
    log.info("client %s round %d: epsilon %.3f", who, rnd, trainer.epsilon())
    content = RecordDict(
        {
            arrays_key: ArrayRecord(state),
            "metrics": MetricRecord({"num-examples": update.num_examples}),
        }
    )
    return Message(content, reply_to=msg)


def _default_id(context: Context) -> int:
    pid = context.node_config.get("partition-id")
    return int(pid) if isinstance(pid, int) else int(context.node_id)


def _history(context: Context) -> list[Step]:
    rec = context.state.config_records.get(PRIVACY_KEY)
    if rec is None:
        return []
    z, q, n = rec.get("noise", []), rec.get("rate", []), rec.get("steps", [])
    if not (isinstance(z, list) and isinstance(q, list) and isinstance(n, list)):
        raise ConfigError("the saved privacy history is malformed")
    if not len(z) == len(q) == len(n):
        raise ConfigError("the saved privacy history is malformed")
    out = []
    for a, b, c in zip(z, q, n, strict=True):
        if not (isinstance(a, float) and isinstance(b, float) and isinstance(c, int)):
            raise ConfigError("the saved privacy history is malformed")
        out.append(Step(a, b, c))
    return out


def _save_history(context: Context, history: list[Step]) -> None:
    context.state.config_records[PRIVACY_KEY] = ConfigRecord(
        {
            "noise": [float(s.noise_multiplier) for s in history],
            "rate": [float(s.sample_rate) for s in history],
            "steps": [int(s.steps) for s in history],
        }
    )
