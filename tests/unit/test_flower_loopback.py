"""secureagg.flower end to end in one process: a Grid that hands each message to a real ClientApp.

Every message crosses Flower's own wire format both ways (the benchmarks' loopback grid:
the protobuf header, the object tree and the deflated objects a deployment grid pushes, and
each node's Context loaded from and saved to its protobuf bytes), and a ClientApp that raises
becomes an error reply, as Flower's engines do.
Misbehaving nodes are mods placed before ``secureagg_mod``, or replies the grid loses.

A round is four train messages per node: "setup" (the mod answers with keys), "share-keys",
"masked-input" (the wrapped strategy's train message: the app trains, the mod masks) and
"unmask"; the first two are sent from ``configure_train``.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from _flower_loopback import LoopbackGrid as WireGrid  # benchmarks/: see tests/conftest.py
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable
from flwr.serverapp.strategy import FedAvg

from secureagg.flower import RECORD_KEY, STATE_KEY, SecureAggregation, secureagg_mod
from secureagg.flower._records import DATA_KEY, INLINE_MAX, payload
from secureagg.protocol import MaskedInput, RoundConfig, decode, encode

SHAPES = {"w": (2, 3), "b": (3,)}
MAX_EXAMPLES = 80
FIRST_NODE = 101
F32_SLACK = 1e-6  # the model is stored in float32 (|values| < 2: half an ulp is 1.2e-7)


pytestmark = pytest.mark.usefixtures("flower_task_identity")


Lose = Callable[[int, Message], bool]


class LoopbackGrid(WireGrid):
    """``n`` nodes (ids from :data:`FIRST_NODE`, partitions 0..n-1), each a real ClientApp
    call with its own Context and journal file, over benchmarks/_flower_loopback.py's grid:
    every message crosses Flower's wire format; no threads, no network.

    ``lose(partition, message)`` says which replies never reach the server (the node still
    handles the message). ``sent`` keeps every message the server sent, as it sent it, and
    ``replies`` every reply it received.
    """

    def __init__(self, app: ClientApp, n: int, lose: Lose | None = None) -> None:
        self.disk = tempfile.TemporaryDirectory(prefix="secureagg-nodes-")  # each node's disk
        folder = self.disk.name

        def node_config(node: int) -> dict[str, Any]:
            p = node - FIRST_NODE
            return {
                "partition-id": p,
                "num-partitions": n,
                "secureagg-journal": os.path.join(folder, f"node{p}.journal"),
            }

        super().__init__(
            app,
            [FIRST_NODE + p for p in range(n)],
            run_id=7,
            node_config=node_config,
            lose=None if lose is None else (lambda node, msg: lose(node - FIRST_NODE, msg)),
            record=True,
        )


# -- the app: one deterministic local step per node ----------------------------------------------


def _initial() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {k: rng.uniform(-1, 1, size=s).astype(np.float32) for k, s in SHAPES.items()}


def _examples(p: int) -> int:
    return 5 + 4 * p


def _step(start: dict[str, np.ndarray], p: int, rnd: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([p, rnd])
    return {
        k: (v + rng.uniform(-0.3, 0.3, size=v.shape)).astype(np.float32) for k, v in start.items()
    }


def _to_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def _from_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in record.items()}


def _fedavg(start: dict[str, np.ndarray], members: Iterable[int], rnd: int) -> dict[str, Any]:
    """The plain mean of the members' models: the default weighting is uniform."""
    members = list(members)
    return {
        k: sum(_step(start, p, rnd)[k].astype(np.float64) / len(members) for p in members)
        for k in SHAPES
    }


Mod = Callable[[Message, Context, ClientAppCallable], Message]


def _app(
    *mods: Mod,
    inner: Iterable[Mod] = (),
    calls: list[int] | None = None,
    events: list[tuple[int, str]] | None = None,
) -> ClientApp:
    """``mods`` run before ``secureagg_mod`` (they see its replies); ``inner`` after it.

    ``calls`` gets the partition of each training; ``events`` gets (partition, stage) for
    each incoming message and (partition, "train") when the app trains.
    """
    outer = [_recorder(events)] if events is not None else []
    app = ClientApp(mods=[*outer, *mods, secureagg_mod, *inner])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        p = int(context.node_config["partition-id"])
        if calls is not None:
            calls.append(p)
        if events is not None:
            events.append((p, "train"))
        rnd = int(msg.content["config"]["server-round"])
        local = _step(_from_record(msg.content["arrays"]), p, rnd)
        content = RecordDict(
            {"arrays": _to_record(local), "metrics": MetricRecord({"num-examples": _examples(p)})}
        )
        return Message(content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return Message(RecordDict({"metrics": MetricRecord({"loss": 0.5})}), reply_to=msg)

    return app


def _recorder(events: list[tuple[int, str]]) -> Mod:
    def record(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        events.append((int(context.node_config["partition-id"]), _stage(msg)))
        return call_next(msg, context)

    return record


def _strategy(**kwargs: Any) -> SecureAggregation:
    fedavg = FedAvg(fraction_evaluate=0.0, min_available_nodes=2, min_train_nodes=2)
    return SecureAggregation(fedavg, max_examples=MAX_EXAMPLES, **kwargs)


def _run(
    grid: LoopbackGrid,
    strategy: SecureAggregation,
    rounds: int,
    initial: dict[str, np.ndarray] | None = None,
) -> dict[int, dict[str, np.ndarray]]:
    models: dict[int, dict[str, np.ndarray]] = {}

    def keep(rnd: int, arrays: ArrayRecord) -> None:
        models[rnd] = _from_record(arrays)

    start = _initial() if initial is None else initial
    strategy.start(grid=grid, initial_arrays=_to_record(start), num_rounds=rounds, evaluate_fn=keep)
    return models


def _max_diff(a: dict[str, np.ndarray], b: dict[str, Any]) -> float:
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in SHAPES)


def _partition(node: int) -> int:
    return node - FIRST_NODE


def _stage(msg: Message) -> str:
    """The secureagg stage of ``msg``; read an incoming train message's before ``call_next``:
    ``secureagg_mod`` takes its record out before the app sees the message."""
    rec = msg.content.config_records.get(RECORD_KEY) if msg.has_content() else None
    return str(rec["stage"]) if rec is not None else ""


# -- whole rounds ----------------------------------------------------------------------------------


STAGES = ("setup", "share-keys", "masked-input", "unmask")


def test_rounds_equal_fedavg_and_no_plaintext_leaves_a_node() -> None:
    events: list[tuple[int, str]] = []
    grid = LoopbackGrid(_app(events=events), 5)
    strategy = _strategy()
    models = _run(grid, strategy, 2)
    for rnd in (1, 2):
        report = strategy.reports[rnd]
        assert report.aborted is None and report.dropouts == {} and report.declined == {}
        assert [_partition(n) for n in report.survivors] == [0, 1, 2, 3, 4]
        assert report.total_examples == pytest.approx(5, abs=1e-3)  # uniform: 5 clients
        assert report.bytes_sent > 0 and report.bytes_received > 0
        want = _fedavg(models[rnd - 1], range(5), rnd)
        assert 0.0 < report.error_bound < 1e-3
        assert _max_diff(models[rnd], want) <= report.error_bound + F32_SLACK
    # Keys, then shares; the model comes with the third message, where the app trains (once).
    for p in range(5):
        seen = [e for q, e in events if q == p]
        assert seen == ["setup", "share-keys", "masked-input", "train", "unmask"] * 2
    assert [_stage(m) for m in grid.sent] == [s for s in STAGES for _ in range(5)] * 2
    for msg in grid.sent:
        if _stage(msg) == "masked-input":  # FedAvg's own train message, plus the shares
            assert set(msg.content.keys()) == {"arrays", "config", RECORD_KEY}
            assert set(msg.content[RECORD_KEY].keys()) == {"stage", "data"}
        else:  # the protocol alone: no model, no train config
            assert list(msg.content.keys()) == [RECORD_KEY]
    # Every reply carried secureagg's bytes only: no arrays, no metrics, not even the count.
    assert len(grid.replies) == 2 * 4 * 5
    for reply in grid.replies:  # a 9-value model: every payload fits inline
        assert list(reply.content.keys()) == [RECORD_KEY]
        assert set(reply.content[RECORD_KEY].keys()) == {"stage", "data"}
    # Nothing secret is kept between rounds once a round is over.
    assert all(STATE_KEY not in c.state.config_records for c in grid.contexts.values())


def test_the_saved_session_holds_keys_and_shares_never_the_update() -> None:
    """The update is masked in the message that trains: between messages a node keeps only
    its keys and shares, a few KB whatever the model's size."""
    kept: list[tuple[str, int]] = []  # (stage just answered, saved session bytes)
    masked: list[int] = []

    def measure(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        stage = _stage(msg)
        out = call_next(msg, context)
        saved = context.state.config_records.get(STATE_KEY)
        kept.append((stage, len(saved["session"]) if saved is not None else 0))
        if stage == "masked-input":
            # A large payload travels as one raw-bytes Array beside the stage record.
            assert set(out.content.keys()) == {RECORD_KEY, DATA_KEY}
            assert set(out.content[RECORD_KEY].keys()) == {"stage"}
            data = payload(out, out.content[RECORD_KEY])
            assert data is not None and len(data) > INLINE_MAX
            masked.append(len(data))
        return out

    d = 30_000
    rng = np.random.default_rng(4)
    big = {
        "w": rng.uniform(-1, 1, size=(2, d // 2 - 2)).astype(np.float32),
        "b": rng.uniform(-1, 1, size=4).astype(np.float32),
    }
    grid = LoopbackGrid(_app(measure), 4)
    strategy = _strategy()
    _run(grid, strategy, 1, initial=big)
    assert strategy.reports[1].aborted is None and len(strategy.reports[1].survivors) == 4
    assert [stage for stage, _ in kept] == [s for s in STAGES for _ in range(4)]
    assert min(masked) >= 2 * d  # the masked vector: d elements of at least 2 bytes
    for stage, size in kept:
        if stage == "unmask":
            assert size == 0  # the round is over: nothing kept
        else:
            assert 0 < size < 4000, (stage, size)


def _with_data(msg: Message, out: Message, data: bytes) -> Message:
    """The node's reply ``out`` to ``msg`` with its secureagg record's bytes replaced."""
    rec = out.content[RECORD_KEY]
    return Message(RecordDict({RECORD_KEY: ConfigRecord({**rec, "data": data})}), reply_to=msg)


def _edit_masked_input(partition: int, edit: Callable[[MaskedInput], MaskedInput]) -> Mod:
    """A mod: node ``partition``'s masked input, rewritten by ``edit`` before it leaves."""

    def mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        stage = _stage(msg)
        out = call_next(msg, context)
        if stage == "masked-input" and context.node_config["partition-id"] == partition:
            m = decode(payload(out, out.content[RECORD_KEY]) or b"")
            assert isinstance(m, MaskedInput)
            return _with_data(msg, out, encode(edit(m)))
        return out

    return mod


# node 1 sends a masked input one element short
_short = _edit_masked_input(
    1, lambda m: MaskedInput(m.round_id, m.sender, m.excluded, m.vector[:-1], m.bits)
)
# node 3 relabels its masked input as client 1's (the server knows who sent it)
_impostor = _edit_masked_input(
    3, lambda m: MaskedInput(m.round_id, 1, m.excluded, m.vector, m.bits)
)


def _garbage(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    out = call_next(msg, context)
    if _stage(msg) == "share-keys" and context.node_config["partition-id"] == 2:
        data = os.urandom(len(payload(out, out.content[RECORD_KEY]) or b""))
        return _with_data(msg, out, data)
    return out


def _carry(kind: str) -> Mod:
    """Node 1 re-sends its masked input's bytes in another wrapping (``kind``)."""

    def mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        stage = _stage(msg)
        out = call_next(msg, context)
        if stage != "masked-input" or context.node_config["partition-id"] != 1:
            return out
        data = payload(out, out.content[RECORD_KEY])
        assert data is not None
        raw = Array(dtype="uint8", shape=(len(data),), stype="secureagg.bytes", data=data)
        head = {"stage": "masked-input"}
        records: dict[str, Any] = {
            "raw": {RECORD_KEY: ConfigRecord(head), DATA_KEY: ArrayRecord({"data": raw})},
            "both": {
                RECORD_KEY: ConfigRecord({**head, "data": data}),
                DATA_KEY: ArrayRecord({"data": raw}),
            },
            "numpy": {
                RECORD_KEY: ConfigRecord(head),
                DATA_KEY: ArrayRecord({"data": Array(np.frombuffer(data, np.uint8))}),
            },
            "two": {
                RECORD_KEY: ConfigRecord(head),
                DATA_KEY: ArrayRecord({"data": raw, "more": raw}),
            },
            "none": {RECORD_KEY: ConfigRecord(head)},
        }
        return Message(RecordDict(records[kind]), reply_to=msg)

    return mod


@pytest.mark.parametrize("kind", ["raw", "both", "numpy", "two", "none"])
def test_a_masked_input_is_read_inline_or_as_one_raw_bytes_array_only(kind: str) -> None:
    """Large payloads travel as one raw-bytes Array (see ``_records.reply``); the server
    takes that form from any node, and drops a node whose reply holds bytes in both places,
    a numpy array, two arrays, or none."""
    n = 5
    grid = LoopbackGrid(_app(_carry(kind)), n)
    strategy = _strategy()
    models = _run(grid, strategy, 1)
    report = strategy.reports[1]
    assert report.aborted is None
    members = range(n) if kind == "raw" else [0, 2, 3, 4]
    assert [_partition(node) for node in report.survivors] == list(members)
    assert _max_diff(models[1], _fedavg(models[0], members, 1)) <= report.error_bound + F32_SLACK
    declined = {_partition(node): why for node, why in report.declined.items()}
    assert declined == ({} if kind == "raw" else {1: "reply is not a masked-input message"})


def _wrong_kinds(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Node 4 answers share-keys with text; node 5 fails outright; node 6 answers empty."""
    p = context.node_config["partition-id"]
    if _stage(msg) != "share-keys" or p not in (4, 5, 6):
        return call_next(msg, context)
    if p == 5:
        raise RuntimeError("node 5 crashes" + "!" * 100_000 + "the end")  # a long reason is cut
    if p == 6:
        return Message(RecordDict(), reply_to=msg)
    return Message(
        RecordDict({RECORD_KEY: ConfigRecord({"stage": "share-keys", "data": "not bytes"})}),
        reply_to=msg,
    )


def test_garbage_short_silent_failing_and_impostor_nodes_are_dropped() -> None:
    def lose(p: int, msg: Message) -> bool:  # node 7's masked input never arrives
        return p == 7 and _stage(msg) == "masked-input"

    n = 18  # threshold 10: each of the 11 well-behaved nodes keeps 10 surviving neighbours
    calls: list[int] = []
    grid = LoopbackGrid(_app(_short, _garbage, _impostor, _wrong_kinds, calls=calls), n, lose=lose)
    strategy = _strategy()
    models = _run(grid, strategy, 1)
    report = strategy.reports[1]
    assert report.aborted is None
    out = {1, 2, 3, 4, 5, 6, 7}
    rest = sorted(set(range(n)) - out)
    # Nodes out at share-keys were never sent the model, so never trained; 1, 3 and 7 trained
    # and then their masked inputs were refused or lost.
    assert sorted(calls) == sorted(set(range(n)) - {2, 4, 5, 6})
    trained = {_partition(m.metadata.dst_node_id) for m in grid.sent if "arrays" in m.content}
    assert trained == set(calls)
    assert [_partition(node) for node in report.survivors] == rest
    want = _fedavg(models[0], rest, 1)
    assert _max_diff(models[1], want) <= report.error_bound + F32_SLACK
    assert _max_diff(models[1], _fedavg(models[0], range(n), 1)) > 100 * report.error_bound
    dropped = {_partition(n): stage for n, stage in report.dropouts.items()}
    assert dropped == {
        2: "share-keys",
        4: "share-keys",
        5: "share-keys",
        6: "share-keys",
        1: "masked-input",
        3: "masked-input",
        7: "masked-input",
    }
    rejected = "\n".join(report.rejected)
    assert f"node {FIRST_NODE + 2}: malformed message" in rejected
    assert f"node {FIRST_NODE + 1}: vector of length" in rejected
    assert f"node {FIRST_NODE + 3}: client 4 sent a message claiming to be client 1" in rejected
    declined = {_partition(n): why for n, why in report.declined.items()}
    assert declined.keys() == {4, 5, 6}
    assert "not a share-keys message" in declined[4]
    assert "error reply" in declined[5] and "node 5 crashes" in declined[5]
    assert declined[5].endswith("the end'>") and len(declined[5]) < 1100  # its start and end
    assert "without secureagg's record" in declined[6]


def test_a_masked_input_that_makes_the_sum_undecodable_aborts_the_round_not_the_app() -> None:
    """In round 1 node 1 adds 2^(b-1) to its weight coordinate: a well-formed masked input
    (the server cannot tell), but the unmasked weight is negative. The round is aborted,
    the model stays, and round 2 runs."""
    bits: dict[int, int] = {}

    def bad_weight(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        p, stage = int(context.node_config["partition-id"]), _stage(msg)
        if stage == "setup":
            bits[p] = RoundConfig.from_bytes(msg.content[RECORD_KEY]["config"]).bits
        out = call_next(msg, context)
        if stage != "masked-input" or p != 1 or msg.metadata.group_id != "1":
            return out
        rec = out.content[RECORD_KEY]
        m = decode(payload(out, rec) or b"")
        assert isinstance(m, MaskedInput)
        vector = m.vector.copy()
        vector[-1] = (int(vector[-1]) + (1 << (bits[p] - 1))) % (1 << bits[p])
        data = encode(MaskedInput(m.round_id, m.sender, m.excluded, vector, m.bits))
        return Message(RecordDict({RECORD_KEY: ConfigRecord({**rec, "data": data})}), reply_to=msg)

    grid = LoopbackGrid(_app(bad_weight), 4)
    strategy = _strategy()
    models = _run(grid, strategy, 2)
    first, second = strategy.reports[1], strategy.reports[2]
    assert first.aborted is not None and "does not decode" in first.aborted
    assert first.survivors == []
    for k in SHAPES:
        assert np.array_equal(models[1][k], models[0][k])
    assert second.aborted is None and len(second.survivors) == 4
    want = _fedavg(models[1], range(4), 2)
    assert _max_diff(models[2], want) <= second.error_bound + F32_SLACK


def test_a_round_that_loses_too_many_nodes_is_aborted_and_the_next_one_runs() -> None:
    def lose(p: int, msg: Message) -> bool:
        rnd = msg.metadata.group_id
        return rnd == "1" and p in (0, 1) and _stage(msg) == "masked-input"

    grid = LoopbackGrid(_app(), 4, lose=lose)  # complete graph of 4: threshold 3
    strategy = _strategy()
    models = _run(grid, strategy, 2)
    first, second = strategy.reports[1], strategy.reports[2]
    assert first.aborted is not None and "MASKED_INPUT" in first.aborted
    assert first.survivors == []
    for k in SHAPES:  # the model is unchanged by an aborted round
        assert np.array_equal(models[1][k], models[0][k])
    assert second.aborted is None and len(second.survivors) == 4
    want = _fedavg(models[1], range(4), 2)
    assert _max_diff(models[2], want) <= second.error_bound + F32_SLACK


def _fails_training(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    if context.node_config["partition-id"] == 2:
        raise RuntimeError("node 2's training fails")
    return call_next(msg, context)


def test_nodes_lost_before_their_shares_are_routed_are_never_sent_the_model() -> None:
    """Node 0's keys and node 1's shares never arrive: neither gets the model. Node 2 gets it
    and fails in training, after its shares went out: a masked-input dropout."""

    def lose(p: int, msg: Message) -> bool:
        return (p, _stage(msg)) in {(0, "setup"), (1, "share-keys")}

    calls: list[int] = []
    app = _app(inner=[_fails_training], calls=calls)
    grid = LoopbackGrid(app, 9, lose=lose)  # threshold 5 of 8 neighbours
    strategy = _strategy()
    models = _run(grid, strategy, 1)
    report = strategy.reports[1]
    assert report.aborted is None
    assert {_partition(n): s for n, s in report.dropouts.items()} == {
        0: "advertise",
        1: "share-keys",
        2: "masked-input",
    }
    assert "node 2's training fails" in report.declined[FIRST_NODE + 2]
    model_to = sorted(
        _partition(m.metadata.dst_node_id) for m in grid.sent if "arrays" in m.content
    )
    assert model_to == list(range(2, 9))
    assert sorted(calls) == list(range(3, 9))
    assert [_partition(n) for n in report.survivors] == list(range(3, 9))
    want = _fedavg(models[0], range(3, 9), 1)
    assert _max_diff(models[1], want) <= report.error_bound + F32_SLACK


def _two_rounds_losing_node_0_at(
    stage: str,
) -> tuple[list[tuple[int, str]], tuple[Any, Any], dict[int, dict[str, np.ndarray]]]:
    """Two rounds of 4 nodes (threshold 3) in which node 0's ``stage`` reply of round 1 is
    lost: the nodes' (partition, event) log, the two reports, the models."""

    def lose(p: int, msg: Message) -> bool:
        return msg.metadata.group_id == "1" and p == 0 and _stage(msg) == stage

    events: list[tuple[int, str]] = []
    grid = LoopbackGrid(_app(events=events), 4, lose=lose)
    strategy = _strategy()
    models = _run(grid, strategy, 2)
    return events, (strategy.reports[1], strategy.reports[2]), models


def test_a_round_aborted_before_training_leaves_the_model_and_the_next_round_runs() -> None:
    """4 nodes, threshold 3: when node 0's keys are lost, each other node has 2 neighbours
    left (it does not count itself) and refuses to share; nobody trains in round 1."""

    events, (first, second), models = _two_rounds_losing_node_0_at("setup")
    assert first.aborted is not None and "SHARE_KEYS" in first.aborted
    assert first.survivors == []
    declined = {_partition(n): why for n, why in first.declined.items()}
    assert declined.keys() == {1, 2, 3}
    assert all("only 2 neighbours advertised keys (threshold 3)" in w for w in declined.values())
    for k in SHAPES:
        assert np.array_equal(models[1][k], models[0][k])
    round_1 = events[: len(events) - 4 * 5]  # round 2: 4 nodes, 4 stages and one training
    assert round_1 == [(p, "setup") for p in range(4)] + [(p, "share-keys") for p in (1, 2, 3)]
    assert sum(e == "train" for _, e in events) == 4
    assert second.aborted is None and len(second.survivors) == 4
    want = _fedavg(models[1], range(4), 2)
    assert _max_diff(models[2], want) <= second.error_bound + F32_SLACK


def test_when_lost_shares_leave_nodes_short_of_neighbours_nobody_trains() -> None:
    """4 nodes, threshold 3: node 0's share-keys reply is lost, so each other node would hold
    only 2 neighbours' shares and refuse after training. The server sees it and aborts the
    round before sending the model: no DP budget is spent on a round that cannot finish."""

    events, (first, second), models = _two_rounds_losing_node_0_at("share-keys")
    assert first.aborted is not None and "aborted before training" in first.aborted
    round_1 = events[: len(events) - 4 * 5]
    assert not any(e == "train" for _, e in round_1)
    for k in SHAPES:
        assert np.array_equal(models[1][k], models[0][k])
    assert second.aborted is None and len(second.survivors) == 4


def test_fewer_than_three_nodes_skips_the_round_without_crashing() -> None:
    calls: list[int] = []
    grid = LoopbackGrid(_app(calls=calls), 2)
    strategy = _strategy()
    models = _run(grid, strategy, 2)
    assert calls == []  # no node trained: nothing could be aggregated securely
    for rnd in (1, 2):
        report = strategy.reports[rnd]
        assert report.aborted is not None and "at least 3 nodes" in report.aborted
        assert report.survivors == []
        for k in SHAPES:
            assert np.array_equal(models[rnd][k], models[0][k])


@pytest.mark.parametrize(
    ("n", "settings", "why"),
    [
        (5, {"max_clients": 4}, "5 nodes sampled, max_clients is 4"),
        (5, {"bits": 19, "frac_bits": 16, "max_clients": None}, "lets a sum of 5 inputs wrap"),
        (7, {"threshold": 3}, "threshold 3 is not above half of a neighbourhood of 7"),
        (4, {"threshold": 4}, "threshold must be an int in [2, degree=3]"),
    ],
)
def test_settings_that_do_not_fit_the_nodes_sampled_skip_the_round(
    n: int, settings: dict[str, Any], why: str
) -> None:
    """How many nodes a round samples depends on who connected (one more node joining can
    break a fixed max_clients, bits or threshold): that round is skipped, no node is sent
    anything, and the ServerApp goes on."""
    grid = LoopbackGrid(_app(), n)
    strategy = _strategy(**settings)
    models = _run(grid, strategy, 2)
    assert grid.sent == []
    for rnd in (1, 2):
        report = strategy.reports[rnd]
        assert report.aborted is not None and why in report.aborted, report.aborted
        assert f"({n} nodes sampled)" in report.aborted
        for k in SHAPES:
            assert np.array_equal(models[rnd][k], models[0][k])
    fits = _strategy(**{**settings, "max_clients": None, "bits": None, "threshold": None})
    _run(LoopbackGrid(_app(), n), fits, 1)
    assert fits.reports[1].aborted is None and len(fits.reports[1].survivors) == n


# -- the client mod on its own -------------------------------------------------------------------


def _train_messages(
    n: int, inner: Iterable[Mod] = (), node_config: dict[str, Any] | None = None, **kwargs: Any
) -> tuple[LoopbackGrid, list[Message], list[int]]:
    """``configure_train``: setup and share-keys over the grid, then one train (masked-input)
    message per node, sorted by node."""
    calls: list[int] = []
    grid = LoopbackGrid(_app(inner=inner, calls=calls), n)
    for context in grid.contexts.values():
        context.node_config.update(node_config or {})
    strategy = _strategy(**kwargs)
    messages = list(
        strategy.configure_train(1, _to_record(_initial()), ConfigRecord({"server-round": 1}), grid)
    )
    assert len(messages) == n and calls == []  # keys and shares only: nobody trained yet
    assert all(STATE_KEY in c.state.config_records for c in grid.contexts.values())
    return grid, sorted(messages, key=lambda m: m.metadata.dst_node_id), calls


def _sent(grid: LoopbackGrid, stage: str, node: int = FIRST_NODE) -> Message:
    """The message of ``stage`` the server sent ``node``."""
    [msg] = [m for m in grid.sent if _stage(m) == stage and m.metadata.dst_node_id == node]
    return msg


def _ask(grid: LoopbackGrid, msg: Message) -> Message:
    (answer,) = grid.send_and_receive([msg])
    return answer


def _declined(answer: Message, stage: str) -> str:
    """The reason of a declining reply to a ``stage`` message (nothing else in it)."""
    assert not answer.has_error()
    assert list(answer.content.keys()) == [RECORD_KEY]
    rec = answer.content[RECORD_KEY]
    assert set(rec.keys()) == {"stage", "declined"} and rec["stage"] == stage
    return str(rec["declined"])


def test_a_train_message_without_secureagg_is_declined_untrained_and_evaluate_passes() -> None:
    """A server that sends plain Flower train messages (a bare FedAvg, or one that skips the
    protocol) gets no arrays and no metrics from a node with the mod: it declines untrained.
    ``train.<action>`` types reach the same train function, so they are guarded too."""
    grid, messages, calls = _train_messages(3)
    session = grid.contexts[FIRST_NODE].state.config_records[STATE_KEY]["session"]
    for message_type in (MessageType.TRAIN, f"{MessageType.TRAIN}.default"):
        plain = Message(
            RecordDict(
                {
                    "arrays": _to_record(_initial()),
                    "config": ConfigRecord({"server-round": 1}),
                }
            ),
            dst_node_id=FIRST_NODE,
            message_type=message_type,
        )
        assert "without secure aggregation" in _declined(_ask(grid, plain), "")
    assert calls == []
    # An evaluate message passes through even if it carries a record named like ours.
    content = RecordDict(dict(messages[0].content.items()))
    evaluate = Message(content, dst_node_id=FIRST_NODE, message_type=MessageType.EVALUATE)
    answer = _ask(grid, evaluate)
    assert set(answer.content.keys()) == {"metrics"}
    assert answer.content["metrics"]["loss"] == 0.5
    # The round's saved session is untouched by all three.
    assert grid.contexts[FIRST_NODE].state.config_records[STATE_KEY]["session"] == session
    # The round's own train message typed "train.default": trained, and only masked out.
    content = RecordDict(dict(messages[0].content.items()))
    action = Message(content, dst_node_id=FIRST_NODE, message_type="train.default", group_id="1")
    answer = _ask(grid, action)
    assert calls == [0] and list(answer.content.keys()) == [RECORD_KEY]
    rec = answer.content[RECORD_KEY]
    assert rec["stage"] == "masked-input" and isinstance(payload(answer, rec), bytes)


def _with(msg: Message, **fields: Any) -> Message:
    """``msg`` with its secureagg record's fields replaced (None removes one)."""
    rec = {k: v for k, v in msg.content[RECORD_KEY].items()}
    for k, v in fields.items():
        if v is None:
            rec.pop(k.replace("_", "-"), None)
        else:
            rec[k.replace("_", "-")] = v
    content = RecordDict(dict(msg.content.items()))
    content[RECORD_KEY] = ConfigRecord(rec)
    return Message(
        content,
        dst_node_id=msg.metadata.dst_node_id,
        message_type=msg.metadata.message_type,
        group_id=msg.metadata.group_id,
    )


def _low_threshold(raw: bytes) -> bytes:
    return dataclasses.replace(RoundConfig.from_bytes(raw), threshold=2).to_bytes()


def _encoding(**changes: Any) -> Callable[[bytes], bytes]:
    """The round config with its encoding settings changed (None removes one)."""

    def edit(raw: bytes) -> bytes:
        cfg = RoundConfig.from_bytes(raw)
        encoding = dict(cfg.encoding)
        for k, v in changes.items():
            if v is None:
                encoding.pop(k.replace("_", "-"), None)
            else:
                encoding[k.replace("_", "-")] = v
        return dataclasses.replace(cfg, encoding=encoding).to_bytes()

    return edit


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"config": None}, "no round config"),
        ({"config": b"\x00garbage"}, "not a secureagg round config"),
        ({"config": _low_threshold}, "threshold 2 is not above half"),
        ({"client_id": "1"}, "'client-id' is not an int"),
        ({"client_id": True}, "'client-id' is not an int"),
        ({"config": _encoding(clip=1)}, "'clip' is not a float"),
        ({"config": _encoding(clip=1e308)}, "clip 1e+308 is out of range"),  # c * 2^f overflows
        ({"config": _encoding(max_examples=None)}, "'max-examples' is not a int"),
        ({"config": _encoding(frac_bits=2.0)}, "'frac-bits' is not a int"),
        ({"config": _encoding(weighted_by=3)}, "'weighted-by' is not a str"),
        ({"config": _encoding(arrays_key=None)}, "'arrays-key' is not a str"),
    ],
)
def test_a_bad_setup_record_is_declined_before_any_key_leaves(
    fields: dict[str, Any], why: str
) -> None:
    sender, _, _ = _train_messages(5)
    setup = _sent(sender, "setup")
    assert list(setup.content.keys()) == [RECORD_KEY]  # no model in the setup message
    assert set(setup.content[RECORD_KEY].keys()) == {"stage", "config", "client-id"}
    calls: list[int] = []
    grid = LoopbackGrid(_app(calls=calls), 5)  # a node that has not seen this round yet
    raw = setup.content[RECORD_KEY]["config"]
    fields = {k: (v(raw) if callable(v) else v) for k, v in fields.items()}
    assert why in _declined(_ask(grid, _with(setup, **fields)), "setup")
    assert calls == []
    assert STATE_KEY not in grid.contexts[FIRST_NODE].state.config_records
    # The same message unchanged: keys advertised, the session saved, still no training.
    answer = _ask(grid, setup).content[RECORD_KEY]
    assert answer["stage"] == "advertise" and isinstance(answer["data"], bytes)
    assert STATE_KEY in grid.contexts[FIRST_NODE].state.config_records
    assert calls == []


def test_a_train_message_without_the_global_model_is_declined_before_training() -> None:
    grid, messages, calls = _train_messages(3)
    msg = messages[0]
    content = RecordDict({k: v for k, v in msg.content.items() if k != "arrays"})
    content["weights"] = _to_record(_initial())  # not under the key the setup named, and
    content["other"] = _to_record(_initial())  # not the only arrays record either
    moved = Message(content, dst_node_id=FIRST_NODE, message_type=MessageType.TRAIN, group_id="1")
    assert "no global model arrays" in _declined(_ask(grid, moved), "masked-input")
    assert calls == []
    assert STATE_KEY not in grid.contexts[FIRST_NODE].state.config_records


def _integer_model(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    out = call_next(msg, context)
    arrays = out.content["arrays"]
    arrays["b"] = Array(np.zeros(3, dtype=np.int64))
    return out


def _reshaped(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    out = call_next(msg, context)
    out.content["arrays"]["w"] = Array(np.zeros((3, 2), dtype=np.float32))
    return out


def _no_count(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    out = call_next(msg, context)
    out.content["metrics"] = MetricRecord({"loss": 1.0})
    return out


def _zero_count(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    out = call_next(msg, context)
    out.content["metrics"] = MetricRecord({"num-examples": 0})
    return out


def _too_many(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    out = call_next(msg, context)
    out.content["metrics"] = MetricRecord({"num-examples": MAX_EXAMPLES + 1})
    return out


def _fractional_count(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    out = call_next(msg, context)
    out.content["metrics"] = MetricRecord({"num-examples": 12.5})
    return out


@pytest.mark.parametrize(
    ("inner", "why"),
    [
        (_integer_model, "'b' is int64"),
        (_reshaped, "array 'w' has shape (3, 2), expected (2, 3)"),
        (_no_count, "no 'num-examples' metric"),
        (_zero_count, "'num-examples' is not a positive int"),
        (_fractional_count, "'num-examples' is not a positive int"),
    ],
)
def test_an_unusable_training_result_is_declined_not_sent(inner: Mod, why: str) -> None:
    """The app trained, but its result cannot be encoded: the node declines, nothing leaks
    (the reason goes to the server: it never carries the example count). The nodes opted in
    to count weighting: under uniform weighting the count is not read (next test)."""
    public = {"secureagg-weighting": "examples-public"}
    grid, messages, calls = _train_messages(
        3, inner=[inner], node_config=public, weighting="examples-public"
    )
    reason = _declined(_ask(grid, messages[0]), "masked-input")
    assert why in reason
    assert str(MAX_EXAMPLES + 1) not in reason and "12.5" not in reason
    assert calls == [0]
    assert STATE_KEY not in grid.contexts[FIRST_NODE].state.config_records


@pytest.mark.parametrize("inner", [_no_count, _zero_count, _fractional_count])
def test_under_uniform_weighting_the_count_is_not_read_so_it_never_decides_taking_part(
    inner: Mod,
) -> None:
    """Uniform weighting never reads the count: a node whose app reports none, 0 or 12.5
    takes part like the others (declining would tell the server its count was 0; review r1)."""
    grid, messages, calls = _train_messages(3, inner=[inner])
    answer = _ask(grid, messages[0])
    rec = answer.content[RECORD_KEY]
    assert "declined" not in rec, rec
    assert rec["stage"] == "masked-input" and isinstance(payload(answer, rec), bytes)
    assert calls == [0]


def test_a_later_stage_without_a_session_or_out_of_order_is_declined() -> None:
    sender, messages, _ = _train_messages(3)
    calls: list[int] = []
    grid = LoopbackGrid(_app(calls=calls), 3)  # a node that has not seen this round yet
    for stage in ("share-keys", "unmask"):
        lost = Message(
            RecordDict({RECORD_KEY: ConfigRecord({"stage": stage, "data": b"\x01"})}),
            dst_node_id=FIRST_NODE,
            message_type=MessageType.TRAIN,
            group_id="1",
        )
        assert "no protocol session" in _declined(_ask(grid, lost), stage)
    assert "no protocol session" in _declined(_ask(grid, messages[0]), "masked-input")
    assert calls == []  # the model came, but without a session the node does not train
    advertised = _ask(grid, _sent(sender, "setup")).content[RECORD_KEY]
    assert advertised["stage"] == "advertise" and isinstance(advertised["data"], bytes)
    assert STATE_KEY in grid.contexts[FIRST_NODE].state.config_records
    # The session expects share-keys first: the model out of order is refused untrained.
    assert "out of order" in _declined(_ask(grid, messages[0]), "masked-input")
    assert calls == []
    assert STATE_KEY not in grid.contexts[FIRST_NODE].state.config_records


def _large(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    out = call_next(msg, context)
    w = out.content["arrays"]["w"].numpy()
    out.content["arrays"]["w"] = Array((w + 50.0).astype(np.float32))
    return out


def test_an_update_beyond_the_clip_is_sent_clipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    grid, messages, _ = _train_messages(3, inner=[_large])
    with caplog.at_level("WARNING", logger="secureagg.flower"):
        answer = _ask(grid, messages[0])
    rec = answer.content[RECORD_KEY]  # still takes part: its masked input
    assert rec["stage"] == "masked-input" and isinstance(payload(answer, rec), bytes)
    assert any("clipped" in r.getMessage() for r in caplog.records)
    grid, messages, _ = _train_messages(3)
    caplog.clear()
    with caplog.at_level("WARNING", logger="secureagg.flower"):
        _ask(grid, messages[0])
    assert not any("clipped" in r.getMessage() for r in caplog.records)
