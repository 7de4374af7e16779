"""A hostile server against the real Flower mod, on the loopback grid of test_flower_loopback.py.

Attacks of issue 12, each run as the server would run it:
1. per-node encoding settings (max-examples, clip, weighted-by): every node but one is shown
   other settings, so that the sum is that one node's update;
2. a node rolled back to before its consistency signature is asked to sign a second list;
3. a node rolled back to before its masked input is asked to mask again (train differently).
Each test fails on the code before the fix (checked: the settings were per-node setup
fields, unsigned mode kept no journal, and the round log did not cover consistency).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

import test_flower_loopback as lb
import test_flower_signed as sg
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable
from flwr.supercore.task_identity import TaskIdentity

import secureagg.flower._exchange as exchange_module
import secureagg.flower._strategy as strategy_module
from secureagg.flower import RECORD_KEY
from secureagg.flower._records import payload, train_digest
from secureagg.protocol import ConsistencyRequest, FileJournal, RoundConfig, decode, encode

TARGET = 0  # the partition the server wants to isolate (client id 1)


@pytest.fixture(autouse=True)
def _task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TaskIdentity, "_run_id", 7)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 1)


def _grid(tmp_path: Path, app: Any, n: int, signed: bool) -> lb.LoopbackGrid:
    """``n`` loopback nodes running ``app``; signed: each with its identity key and members."""
    return sg._grid(tmp_path, app, n)[0] if signed else lb.LoopbackGrid(app, n)


def _fedavg(cls: type[Any] = lb.FedAvg) -> Any:
    return cls(fraction_evaluate=0.0, min_available_nodes=2, min_train_nodes=2)


def _untrained(msg: Message, context: Context) -> Message:
    """The reply of an app that did not move the model: the arrays it got, its count."""
    p = int(context.node_config["partition-id"])
    metrics = lb.MetricRecord({"num-examples": lb._examples(p)})
    content = RecordDict({"arrays": copy.deepcopy(msg.content["arrays"]), "metrics": metrics})
    return Message(content, reply_to=msg)


def _resent(m: Message, content: RecordDict | None = None, message_type: str = "") -> Message:
    """``m`` rebuilt by the server with other ``content`` or ``message_type``."""
    return Message(
        RecordDict(dict(m.content.items())) if content is None else content,
        dst_node_id=m.metadata.dst_node_id,
        message_type=message_type or m.metadata.message_type,
        group_id=m.metadata.group_id,
    )


def _isolation_fails(grid: lb.LoopbackGrid, strategy: Any) -> Any:
    """Run one round of an attack that would make the sum the target's update over 4; check
    the round aborted and no model is that; the round's report."""
    start = lb._initial()
    models = lb._run(grid, strategy, 1, initial=start)
    step = lb._step(start, TARGET, 1)
    isolated = {k: start[k].astype(np.float64) + (step[k] - start[k]) / 4 for k in lb.SHAPES}
    report = strategy.reports[1]
    assert report.aborted is not None, report
    assert 1 not in models or lb._max_diff(models[1], isolated) > 1e-3
    return report


def _more_metrics(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """The app also reports a second count, which a per-node weighted-by could point at."""
    out = call_next(msg, context)
    if "metrics" in out.content.metric_records:
        out.content["metrics"]["batches"] = 1
    return out


def _forge_per_node(monkeypatch: pytest.MonkeyPatch, name: str, value: Any) -> None:
    """Every node but the target gets ``name=value``: in its config's encoding and, as the
    server of the old code did, as a field of its setup record."""
    real = exchange_module.encode_setup

    def forged(setup: Any, client: int) -> ConfigRecord:
        rec = real(setup, client)
        if client == TARGET + 1:
            return rec
        cfg = RoundConfig.from_bytes(rec["config"])
        other = dataclasses.replace(cfg, encoding={**cfg.encoding, name: value})
        return ConfigRecord({**rec, "config": other.to_bytes(), name: value})

    monkeypatch.setattr(exchange_module, "encode_setup", forged)


ATTACKS = [
    ("max-examples", 2**62),
    ("clip", 1e-30),
    ("weighted-by", "batches"),
    ("weighting", "examples-public"),
]


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize(("name", "value"), ATTACKS)
def test_per_node_encoding_settings_never_isolate_one_node(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: Any, signed: bool
) -> None:
    """The settings are in the config digest, which keys, share encryption and (signed
    mode) signatures are bound to: nodes shown different settings cannot finish a round
    together, so no sum is one node's update next to nodes that were made to vanish."""
    _forge_per_node(monkeypatch, name, value)
    grid = _grid(tmp_path, lb._app(inner=[_more_metrics]), 5, signed)
    strategy = sg._signed() if signed else lb._strategy()
    lb._run(grid, strategy, 1)
    report = strategy.reports[1]
    members = {lb._partition(n) for n in report.survivors}
    assert not (TARGET in members and members - {TARGET}), (members, report)
    if report.aborted is None and members == {TARGET}:  # pragma: no cover - never reached
        pytest.fail("the round summed the target alone")
    assert report.total_examples != lb._examples(TARGET)


def test_a_node_pins_its_encoding_and_declines_other_settings_before_any_key_leaves() -> None:
    """The same forged settings shown to every node: a node that pinned its run's settings
    in its node config declines at setup (no key leaves); so does one below its minimums."""
    grid = lb.LoopbackGrid(lb._app(), 5)
    for context in grid.contexts.values():
        context.node_config["secureagg-max-examples"] = lb.MAX_EXAMPLES
        context.node_config["secureagg-clip"] = 1  # an int pins the float 1.0
    strategy = lb._strategy(clip=1.0)
    strategy.max_examples = 2**40  # a server that changed the run's settings
    lb._run(grid, strategy, 1)
    report = strategy.reports[1]
    assert report.aborted is not None and report.survivors == []
    assert len(report.declined) == 5
    assert all("max-examples is 1099511627776" in why for why in report.declined.values())
    assert grid.replies and all(lb._stage(r) == "setup" for r in grid.replies)
    # A node whose minimum number of clients the round does not meet declines as well.
    grid = lb.LoopbackGrid(lb._app(), 5)
    for context in grid.contexts.values():
        context.node_config["secureagg-min-clients"] = 6
    strategy = lb._strategy()
    lb._run(grid, strategy, 1)
    assert all("minimum is 6" in why for why in strategy.reports[1].declined.values())
    assert len(strategy.reports[1].declined) == 5


def test_an_example_count_above_the_maximum_is_capped_not_declined() -> None:
    """Declining would tell the server one bit of the count per round (8: declined, then 9:
    took part); the node takes part with its weight capped at max-examples (the weighting
    that reads counts; under uniform weighting no count is read at all)."""
    grid = lb.LoopbackGrid(lb._app(), 4)  # counts 5, 9, 13, 17
    for context in grid.contexts.values():  # the nodes opt in to sending their counts
        context.node_config["secureagg-weighting"] = "examples-public"
    strategy = strategy_module.SecureAggregation(
        _fedavg(), max_examples=8, weighting="examples-public"
    )
    lb._run(grid, strategy, 1)
    report = strategy.reports[1]
    assert report.aborted is None and report.declined == {}
    assert len(report.survivors) == 4
    assert report.total_examples == pytest.approx(5 + 8 + 8 + 8, abs=0.01)


def test_a_node_sends_its_count_only_if_it_opted_in() -> None:
    """A server that asks for example-count weighting from nodes that did not pin it gets
    no count: every node declines at setup, before any key leaves."""
    grid = lb.LoopbackGrid(lb._app(), 4)
    strategy = strategy_module.SecureAggregation(
        _fedavg(), max_examples=8, weighting="examples-public"
    )
    lb._run(grid, strategy, 1)
    report = strategy.reports[1]
    assert report.aborted is not None and report.survivors == []
    assert len(report.declined) == 4
    assert all("weighting" in why for why in report.declined.values())
    assert grid.replies and all(lb._stage(r) == "setup" for r in grid.replies)


# -- rollbacks: Flower pushes a reply before it saves the Context --------------------------------


def _snapshots(stage: str, into: dict[int, RecordDict]) -> lb.Mod:
    def keep(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if lb._stage(msg) == stage:
            into[lb._partition(context.node_id)] = copy.deepcopy(context.state)
        return call_next(msg, context)

    return keep


def _sent_to(grid: lb.LoopbackGrid, stage: str, partition: int) -> Message:
    (msg,) = [
        m
        for m in grid.sent
        if lb._stage(m) == stage and lb._partition(m.metadata.dst_node_id) == partition
    ]
    return msg


@pytest.mark.parametrize("signed", [False, True])
def test_a_node_rolled_back_before_its_masked_input_never_masks_again(
    tmp_path: Path, signed: bool
) -> None:
    """Restored to before its masked input and sent the model again with another train
    config, the node would mask a second update with the same masks (y - y' = x - x').
    Its journal, written before the first reply left, makes it decline untrained."""
    snapshots: dict[int, RecordDict] = {}
    calls: list[int] = []
    grid = _grid(tmp_path, lb._app(_snapshots("masked-input", snapshots), calls=calls), 4, signed)
    strategy = sg._signed() if signed else lb._strategy()
    lb._run(grid, strategy, 1)
    assert strategy.reports[1].aborted is None and sorted(calls) == [0, 1, 2, 3]
    node = lb.FIRST_NODE + TARGET
    again = lb._with(_sent_to(grid, "masked-input", TARGET))
    train_config = dict(again.content["config"].items())
    again.content["config"] = ConfigRecord({**train_config, "lr": 0.0})  # train differently
    grid.contexts[node].state = copy.deepcopy(snapshots[TARGET])  # the rollback
    answer = lb._ask(grid, again)
    why = lb._declined(answer, "masked-input")
    assert "already sent its masked input" in why
    assert sorted(calls) == [0, 1, 2, 3]  # declined before training


def test_a_node_rolled_back_before_consistency_never_signs_a_second_list(tmp_path: Path) -> None:
    """Signed mode, n=5, t=3, quorum 4: a node restored to before its consistency signature
    and sent another survivor list must not sign it (two lists with a quorum each let a
    server get both shares of one client). Asked the same list again, it re-sends the same
    signature."""
    snapshots: dict[int, RecordDict] = {}
    grid, _ = sg._grid(tmp_path, lb._app(_snapshots("consistency", snapshots)), 5)
    strategy = sg._signed()
    lb._run(grid, strategy, 1)
    assert strategy.reports[1].aborted is None
    node = lb.FIRST_NODE + 1
    first = _sent_to(grid, "consistency", 1)
    (signed_once,) = [
        r for r in grid.replies if lb._stage(r) == "consistency" and r.metadata.src_node_id == node
    ]
    request = decode(payload(first, first.content[RECORD_KEY]) or b"")
    assert isinstance(request, ConsistencyRequest) and len(request.survivors) == 5
    grid.contexts[node].state = copy.deepcopy(snapshots[1])  # rollback
    same = lb._ask(grid, copy.deepcopy(first))
    assert same.content[RECORD_KEY]["data"] == signed_once.content[RECORD_KEY]["data"]
    grid.contexts[node].state = copy.deepcopy(snapshots[1])  # and again
    shorter = ConsistencyRequest(request.round_id, request.recipient, request.survivors[1:])
    other = lb._with(copy.deepcopy(first), data=encode(shorter))
    why = lb._declined(lb._ask(grid, other), "consistency")
    assert "already answered consistency" in why


def test_the_journal_is_a_file_on_the_node_named_in_its_node_config(tmp_path: Path) -> None:
    grid = lb.LoopbackGrid(lb._app(), 3)
    paths = []
    for p, context in enumerate(grid.contexts.values()):
        paths.append(tmp_path / f"n{p}.journal")
        context.node_config["secureagg-journal"] = str(paths[-1])
    strategy = lb._strategy()
    lb._run(grid, strategy, 2)
    for path in paths:
        assert path.read_bytes().startswith(b"SAJ1")
        # masked input and unmask of two rounds: four records
        assert len(FileJournal(path)._entries) == 4


# -- per-node train messages: the global model and train config are the server's too ---------


def _lr_zero_does_nothing(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """An app that honours a train config's learning rate: at lr 0 it returns the model it got."""
    if msg.content["config"].get("lr") != 0.0:
        return call_next(msg, context)
    return _untrained(msg, context)


class _PerNodeTrainConfig(lb.FedAvg):  # type: ignore[misc]
    """A server whose train messages give every node but the target lr 0."""

    def configure_train(self, server_round: int, arrays: Any, config: Any, grid: Any) -> Any:
        out = []
        for m in super().configure_train(server_round, arrays, config, grid):
            if lb._partition(m.metadata.dst_node_id) != TARGET:
                content = RecordDict(dict(m.content.items()))
                content["config"] = ConfigRecord({**dict(m.content["config"].items()), "lr": 0.0})
                m = _resent(m, content)
            out.append(m)
        return out


@pytest.mark.parametrize("signed", [False, True])
def test_per_node_train_configs_never_isolate_one_node(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, signed: bool
) -> None:
    """The train message (global model, train config) is the server's to write, per node:
    lr 0 for every node but the target makes the others' updates zero and the "average"
    the target's update over n. The config binds one digest of the train content (all nodes
    see the same one); a node shown other content declines before training, and the round
    cannot finish with the target alone. The hostile server here binds the target's content
    (an honest strategy refuses to start a round whose train messages differ)."""
    target_digest: dict[str, str] = {}

    def digest_of_target(messages: list[Message]) -> str:
        (m,) = [m for m in messages if lb._partition(m.metadata.dst_node_id) == TARGET]
        target_digest["d"] = train_digest(m)
        return target_digest["d"]

    monkeypatch.setattr(strategy_module, "one_train_digest", digest_of_target)
    calls: list[int] = []
    grid = _grid(tmp_path, lb._app(inner=[_lr_zero_does_nothing], calls=calls), 4, signed)
    strategy = strategy_module.SecureAggregation(
        _fedavg(_PerNodeTrainConfig), max_examples=lb.MAX_EXAMPLES, signed=signed
    )
    report = _isolation_fails(grid, strategy)
    shown_other = {lb._partition(n): why for n, why in report.declined.items()}
    assert sorted(shown_other) == [1, 2, 3], report
    assert all("train message" in why for why in shown_other.values()), shown_other
    assert calls == [TARGET]  # the others declined before training


def test_an_honest_strategy_refuses_train_messages_that_differ_per_node() -> None:
    grid = lb.LoopbackGrid(lb._app(), 4)
    strategy = strategy_module.SecureAggregation(
        _fedavg(_PerNodeTrainConfig), max_examples=lb.MAX_EXAMPLES
    )
    lb._run(grid, strategy, 1)
    report = strategy.reports[1]
    assert report.aborted is not None and "train messages differ" in report.aborted
    assert not [m for m in grid.sent if lb._stage(m) == "setup"]  # before any setup


def test_another_train_action_for_all_but_one_node_never_isolates_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``train.<action>`` picks another train function of the app: a server that sends every
    node but the target ``train.zero`` (an action that returns the model unchanged) would
    make the sum the target's update. The message type is bound with the train content, so
    those nodes decline before training and the round cannot finish."""
    calls: list[int] = []
    app = lb._app(calls=calls)

    app.train("zero")(_untrained)

    real = strategy_module.SecureAggregation.configure_train

    def hostile(self: Any, *args: Any) -> Any:
        out = []
        for m in real(self, *args):
            if lb._partition(m.metadata.dst_node_id) != TARGET:
                m = _resent(m, message_type="train.zero")
            out.append(m)
        return out

    monkeypatch.setattr(strategy_module.SecureAggregation, "configure_train", hostile)
    report = _isolation_fails(lb.LoopbackGrid(app, 4), lb._strategy())
    assert sorted(lb._partition(n) for n in report.declined) == [1, 2, 3], report
    assert calls == [TARGET]


def _reads_lr_from_run_config(
    msg: Message, context: Context, call_next: ClientAppCallable
) -> Message:
    """An app that takes its learning rate from the run config, as Flower's templates (and
    examples/flower_app) do: at lr 0 it returns the model it got."""
    if context.run_config.get("lr") != 0.0:
        return call_next(msg, context)
    return _untrained(msg, context)


@pytest.mark.parametrize("signed", [False, True])
def test_a_per_node_run_config_never_isolates_one_node(tmp_path: Path, signed: bool) -> None:
    """A node's Context.run_config comes from the SuperLink (the FAB's defaults fused with
    the run's overrides): a hostile SuperLink can give every node but the target lr 0.
    The round config binds the digest of the run config the ServerApp was given; a node
    with another one declines at setup, before any key leaves."""
    calls: list[int] = []
    grid = _grid(tmp_path, lb._app(inner=[_reads_lr_from_run_config], calls=calls), 4, signed)
    honest = {"lr": 0.1, "local-epochs": 1}
    for node, context in grid.contexts.items():
        lr = 0.1 if lb._partition(node) == TARGET else 0.0
        context.run_config = {**honest, "lr": lr}
    strategy = strategy_module.SecureAggregation(
        _fedavg(), max_examples=lb.MAX_EXAMPLES, signed=signed, run_config=honest
    )
    report = _isolation_fails(grid, strategy)
    shown_other = {lb._partition(n): why for n, why in report.declined.items()}
    assert sorted(shown_other) == [1, 2, 3], report
    assert all("run config" in why for why in shown_other.values()), shown_other
    assert calls == []  # declined at setup: nobody trained
    assert not [r for r in grid.replies if lb._stage(r) == "masked-input"]
