"""Private training inside a Flower ClientApp; the node's ledger keeps its DP history."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from torch import nn
from torch.utils.data import DataLoader

from secureagg._exceptions import ConfigError
from secureagg.flower._node_privacy import NodePrivacy
from secureagg.flower._records import PRIVACY_KEY, RECORD_KEY
from secureagg.privacy import (
    PrivacyConfig,
    PrivacyLedger,
    PrivateTrainer,
    Step,
    parameters_of,
    unflatten,
)
from secureagg.privacy.accounting import ADD_REMOVE, REPLACE_ONE

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

    ``ledger`` (a JSON path on the client's machine) is the node's privacy record and the
    source of truth: it is read before training, so the accountant counts every step of
    every earlier round of every run on this node, and the round is written to it,
    atomically, before the reply leaves. Records are keyed by the Flower run id and server
    round under ``client_id``; a (run, round) already answered, or one older than a round
    already answered in the same run, is declined, not trained. A client whose next round
    would pass ``privacy.budget_epsilon`` declines. A node whose own node config opts in to
    ``secureagg-weighting = "examples-public"`` sends its true example count, so its
    epsilons, budget and calibration are under replace-one (without ``count_noise``).
    The node's own node config (set by its operator, never by the server's run config) may
    pin a ledger and DP-SGD floors (:class:`NodePrivacy`: ``secureagg-ledger``,
    ``secureagg-noise-multiplier``, ``secureagg-max-grad-norm``, ``secureagg-budget``,
    ``secureagg-delta``): a pinned ledger replaces ``ledger``, and a ``privacy`` with less
    noise, a larger clip, a larger or no budget, or a larger delta is declined before any
    training, with the reason in the reply.
    ``context.state`` keeps a cache of the history (counted instead when it holds more
    steps than the ledger); without a ledger it is the only record, and a new run (a new
    Context) starts it at zero, so budgets across runs and restarts need the ledger.

    Parameters:
        msg: The train message carrying the global arrays.
        context: The node's Flower context.
        model: The client's model.
        optimizer: An optimizer over ``model``'s parameters.
        data_loader: The client's training data.
        privacy: The DP-SGD settings.
        local_epochs: Local epochs per round.
        criterion: The training loss (default: cross-entropy).
        ledger: The node's privacy ledger file (None: ``context.state`` only).
        client_id: The client's id in the ledger (default: the partition id or node id).
        arrays_key: The message's record that holds the global arrays.

    Returns:
        The reply a Flower train function returns (``arrays`` and ``num-examples``), to be
        sent through ``secureagg_mod``.
    """
    if not isinstance(privacy, PrivacyConfig):
        raise ConfigError(f"privacy must be a PrivacyConfig, got {type(privacy).__name__}")
    pins = NodePrivacy.from_node_config(context.node_config)
    weaker = pins.problem(privacy, privacy.noise_multiplier or float("inf"))
    if weaker is not None:
        log.warning("node declines: %s", weaker)
        return _decline(msg, weaker)
    if pins.ledger is not None:
        if ledger is not None and Path(ledger) != pins.ledger:
            log.warning(
                "the app's ledger %s is not this node's %s: using the node's", ledger, pins.ledger
            )
        ledger = pins.ledger
    records = msg.content.array_records
    if arrays_key not in records:
        raise ConfigError(f"the server's message has no {arrays_key!r} ArrayRecord")
    global_state = records[arrays_key].to_torch_state_dict()
    model.load_state_dict(global_state)
    server_round = msg.content.config_records.get("config", ConfigRecord()).get("server-round", 0)
    rnd = server_round if isinstance(server_round, int) else 0
    run = int(context.run_id)
    who = client_id if client_id is not None else _default_id(context)
    book = PrivacyLedger.open(ledger) if ledger is not None else None
    cached = _history(context)
    if book is None:
        history = cached
        if privacy.budget_epsilon is not None:
            log.warning(
                "client %s: no ledger, so its budget counts this run only (a new run starts "
                "a fresh Context); pass ledger= to enforce it across runs and restarts",
                who,
            )
    else:
        history = book.history(who)
        if _total(cached) > _total(history):  # the ledger lost steps: count the cache's
            log.warning(
                "ledger %s records %d DP-SGD steps for client %s, fewer than the %d this run "
                "has taken (was it replaced or rolled back?): counting the larger history",
                ledger,
                _total(history),
                who,
                _total(cached),
            )
            history = cached
        if book.has(who, run, rnd):
            log.warning("client %s declines run %d round %d: already answered", who, run, rnd)
            return _decline(msg, "this round was already answered")
        done = [r.round for r in book.records(who) if r.run == run]
        if done and rnd < done[-1]:  # a replayed or reordered round: train nothing
            log.warning(
                "client %s declines run %d round %d: round %d came first", who, run, rnd, done[-1]
            )
            return _decline(msg, "a later round of this run was already answered")
    # a node that opted in to "examples-public" sends its true count: it is public, and
    # the node's guarantee is replace-one (a noisy count keeps add/remove: it is charged)
    public = context.node_config.get("secureagg-weighting") == "examples-public"
    relation = REPLACE_ONE if public and privacy.count_noise is None else ADD_REMOVE
    if book is not None and book.records(who) and book.relation(who) != relation:
        log.warning(
            "client %s declines: its ledger is under %s, this node's weighting makes it %s",
            who,
            book.relation(who),
            relation,
        )
        return _decline(msg, f"the node ledger is under {book.relation(who)}, not {relation}")
    trainer = PrivateTrainer.from_config(
        model,
        optimizer,
        data_loader,
        privacy,
        local_epochs=local_epochs,
        criterion=criterion,
        history=history,
        relation=relation,
    )
    weaker = pins.problem(privacy, trainer.noise_multiplier)  # a calibrated noise
    if weaker is not None:
        log.warning("client %s declines round %d: %s", who, rnd, weaker)
        return _decline(msg, weaker)
    if not trainer.can_train():
        if book is not None:
            trainer.record_round(book, who, rnd, participated=False, reason="budget", run=run)
            book.save()
        log.warning("client %s declines round %d: its privacy budget is spent", who, rnd)
        return _decline(msg, "privacy budget spent")
    params = {k: v.detach().clone() for k, v in parameters_of(model).items()}
    update = trainer.train_round(params)
    if book is not None:  # durable before the reply leaves
        trainer.record_round(book, who, rnd, run=run)
        book.save()
    _save_history(context, trainer.history)
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


def _decline(msg: Message, why: str) -> Message:
    return Message(RecordDict({RECORD_KEY: ConfigRecord({"declined": why})}), reply_to=msg)


def _total(history: list[Step]) -> int:
    return sum(s.steps for s in history if s.sample_rate > 0)


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
