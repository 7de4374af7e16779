"""secureagg.flower end to end in one process: a Grid that hands each message to a real ClientApp.

Every message crosses Flower's own wire form both ways (the object tree a deployment grid
pushes: ``get_all_nested_objects`` + ``deflate`` on one side, ``inflate_object_from_contents``
on the other), and a ClientApp that raises becomes an error reply, as Flower's engines do.
Misbehaving nodes are mods placed before ``secureagg_mod``, or replies the grid loses.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents
from flwr.supercore.task_identity import TaskIdentity

from secureagg.flower import RECORD_KEY, STATE_KEY, SecureAggregation, secureagg_mod
from secureagg.protocol import MaskedInput, RoundConfig, decode, encode

SHAPES = {"w": (2, 3), "b": (3,)}
MAX_EXAMPLES = 80
FIRST_NODE = 101
F32_SLACK = 1e-6  # the model is stored in float32 (|values| < 2: half an ulp is 1.2e-7)


@pytest.fixture(autouse=True)
def _task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps new messages with the process's task identity; give it one."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 7)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 1)


def _wire(msg: Message) -> Message:
    """``msg`` as the other side gets it: deflated to Flower's object tree, inflated back."""
    contents = {oid: obj.deflate() for oid, obj in get_all_nested_objects(msg).items()}
    out = inflate_object_from_contents(msg.object_id, contents)
    assert isinstance(out, Message)
    out.metadata.__dict__["_message_id"] = msg.object_id
    return out


Lose = Callable[[int, Message], bool]


class LoopbackGrid(Grid):
    """``n`` nodes, each a real ClientApp call with its own Context; no threads, no network.

    ``lose(partition, message)`` says which replies never reach the server.
    """

    def __init__(self, app: ClientApp, n: int, lose: Lose | None = None) -> None:
        self.app = app
        self.contexts = {
            FIRST_NODE + p: Context(
                run_id=7,
                node_id=FIRST_NODE + p,
                node_config={"partition-id": p, "num-partitions": n},
                state=RecordDict(),
                run_config={},
            )
            for p in range(n)
        }
        self.lose = lose or (lambda p, m: False)
        self.replies: list[Message] = []  # every reply the server received, for inspection

    def set_run(self, run: Any) -> None:
        raise NotImplementedError

    @property
    def run(self) -> Any:
        raise NotImplementedError

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        out = []
        for msg in messages:
            received = _wire(msg)
            context = self.contexts[received.metadata.dst_node_id]
            try:
                answer = self.app(received, context)
            except Exception as exc:  # what Flower's engines do with a failing ClientApp
                error = Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=repr(exc))
                answer = Message(error, reply_to=received)
            if self.lose(int(context.node_config["partition-id"]), received):
                continue
            back = _wire(answer)
            self.replies.append(back)
            out.append(back)
        return out


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
    members = list(members)
    total = sum(_examples(p) for p in members)
    return {
        k: sum(_step(start, p, rnd)[k].astype(np.float64) * _examples(p) / total for p in members)
        for k in SHAPES
    }


Mod = Callable[[Message, Context, ClientAppCallable], Message]


def _app(*mods: Mod, inner: Iterable[Mod] = (), calls: list[int] | None = None) -> ClientApp:
    """``mods`` run before ``secureagg_mod`` (they see its replies); ``inner`` after it."""
    app = ClientApp(mods=[*mods, secureagg_mod, *inner])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        p = int(context.node_config["partition-id"])
        if calls is not None:
            calls.append(p)
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


def _strategy(**kwargs: Any) -> SecureAggregation:
    fedavg = FedAvg(fraction_evaluate=0.0, min_available_nodes=2, min_train_nodes=2)
    return SecureAggregation(fedavg, max_examples=MAX_EXAMPLES, **kwargs)


def _run(
    grid: LoopbackGrid, strategy: SecureAggregation, rounds: int
) -> dict[int, dict[str, np.ndarray]]:
    models: dict[int, dict[str, np.ndarray]] = {}

    def keep(rnd: int, arrays: ArrayRecord) -> None:
        models[rnd] = _from_record(arrays)

    strategy.start(
        grid=grid, initial_arrays=_to_record(_initial()), num_rounds=rounds, evaluate_fn=keep
    )
    return models


def _max_diff(a: dict[str, np.ndarray], b: dict[str, Any]) -> float:
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in SHAPES)


def _partition(node: int) -> int:
    return node - FIRST_NODE


def _stage(msg: Message) -> str:
    rec = msg.content.config_records.get(RECORD_KEY) if msg.has_content() else None
    return str(rec["stage"]) if rec is not None else ""


# -- whole rounds ----------------------------------------------------------------------------------


def test_rounds_equal_fedavg_and_no_plaintext_leaves_a_node() -> None:
    grid = LoopbackGrid(_app(), 5)
    strategy = _strategy()
    models = _run(grid, strategy, 2)
    for rnd in (1, 2):
        report = strategy.reports[rnd]
        assert report.aborted is None and report.dropouts == {} and report.declined == {}
        assert [_partition(n) for n in report.survivors] == [0, 1, 2, 3, 4]
        assert report.total_examples == pytest.approx(sum(map(_examples, range(5))), abs=0.01)
        assert report.bytes_sent > 0 and report.bytes_received > 0
        want = _fedavg(models[rnd - 1], range(5), rnd)
        assert 0.0 < report.error_bound < 1e-3
        assert _max_diff(models[rnd], want) <= report.error_bound + F32_SLACK
    # Every reply carried secureagg's bytes only: no arrays, no metrics, not even the count.
    assert len(grid.replies) == 2 * 4 * 5
    for reply in grid.replies:
        assert list(reply.content.keys()) == [RECORD_KEY]
        assert set(reply.content[RECORD_KEY].keys()) == {"stage", "data"}
    # Nothing secret is kept between rounds once a round is over.
    assert all(STATE_KEY not in c.state.config_records for c in grid.contexts.values())


def _short(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    out = call_next(msg, context)
    if _stage(msg) == "masked-input" and context.node_config["partition-id"] == 1:
        rec = out.content[RECORD_KEY]
        m = decode(rec["data"])
        assert isinstance(m, MaskedInput)
        data = encode(MaskedInput(m.round_id, m.sender, m.excluded, m.vector[:-1]))
        return Message(RecordDict({RECORD_KEY: ConfigRecord({**rec, "data": data})}), reply_to=msg)
    return out


def _garbage(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    out = call_next(msg, context)
    if _stage(msg) == "share-keys" and context.node_config["partition-id"] == 2:
        rec = out.content[RECORD_KEY]
        data = os.urandom(len(rec["data"]))
        return Message(RecordDict({RECORD_KEY: ConfigRecord({**rec, "data": data})}), reply_to=msg)
    return out


def _impostor(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Node 3 relabels its masked input as client 1's (the server knows who sent it)."""
    out = call_next(msg, context)
    if _stage(msg) == "masked-input" and context.node_config["partition-id"] == 3:
        rec = out.content[RECORD_KEY]
        m = decode(rec["data"])
        assert isinstance(m, MaskedInput)
        data = encode(MaskedInput(m.round_id, 1, m.excluded, m.vector))
        return Message(RecordDict({RECORD_KEY: ConfigRecord({**rec, "data": data})}), reply_to=msg)
    return out


def _wrong_kinds(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Node 4 answers share-keys with text; node 5 fails outright; node 6 answers empty."""
    p = context.node_config["partition-id"]
    if _stage(msg) != "share-keys" or p not in (4, 5, 6):
        return call_next(msg, context)
    if p == 5:
        raise RuntimeError("node 5 crashes")
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
    grid = LoopbackGrid(_app(_short, _garbage, _impostor, _wrong_kinds), n, lose=lose)
    strategy = _strategy()
    models = _run(grid, strategy, 1)
    report = strategy.reports[1]
    assert report.aborted is None
    out = {1, 2, 3, 4, 5, 6, 7}
    rest = sorted(set(range(n)) - out)
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
    assert "without secureagg's record" in declined[6]


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


# -- the client mod on its own -------------------------------------------------------------------


def _setup_messages(
    n: int, inner: Iterable[Mod] = (), **kwargs: Any
) -> tuple[LoopbackGrid, list[Message], list[int]]:
    calls: list[int] = []
    grid = LoopbackGrid(_app(inner=inner, calls=calls), n)
    strategy = _strategy(**kwargs)
    messages = list(
        strategy.configure_train(1, _to_record(_initial()), ConfigRecord({"server-round": 1}), grid)
    )
    assert len(messages) == n
    return grid, sorted(messages, key=lambda m: m.metadata.dst_node_id), calls


def _ask(grid: LoopbackGrid, msg: Message) -> Message:
    (answer,) = grid.send_and_receive([msg])
    return answer


def test_messages_without_secureagg_record_pass_through_untouched() -> None:
    grid, messages, calls = _setup_messages(3)
    plain = Message(
        RecordDict(
            {
                "arrays": _to_record(_initial()),
                "config": ConfigRecord({"server-round": 1}),
            }
        ),
        dst_node_id=FIRST_NODE,
        message_type=MessageType.TRAIN,
    )
    answer = _ask(grid, plain)
    assert calls == [0]
    assert set(answer.content.keys()) == {"arrays", "metrics"}
    assert answer.content["metrics"]["num-examples"] == _examples(0)
    # An evaluate message passes through even if it carries a record named like ours.
    content = RecordDict(dict(messages[0].content.items()))
    evaluate = Message(content, dst_node_id=FIRST_NODE, message_type=MessageType.EVALUATE)
    answer = _ask(grid, evaluate)
    assert set(answer.content.keys()) == {"metrics"}
    assert answer.content["metrics"]["loss"] == 0.5
    assert STATE_KEY not in grid.contexts[FIRST_NODE].state.config_records


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


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"config": None}, "no round config"),
        ({"config": b"\x00garbage"}, "not a secureagg round config"),
        ({"config": _low_threshold}, "threshold 2 is not above half"),
        ({"client_id": "1"}, "'client-id' is not an int"),
        ({"client_id": True}, "'client-id' is not an int"),
        ({"clip": 1}, "'clip' is not a float"),
        ({"max_examples": None}, "'max-examples' is not an int"),
        ({"frac_bits": 2.0}, "'frac-bits' is not an int"),
        ({"arrays_key": "weights"}, "no global model arrays"),
    ],
)
def test_a_bad_setup_record_is_declined_before_training(fields: dict[str, Any], why: str) -> None:
    grid, messages, calls = _setup_messages(5)
    msg = messages[0]
    raw = msg.content[RECORD_KEY]["config"]
    fields = {k: (v(raw) if callable(v) else v) for k, v in fields.items()}
    if "arrays_key" in fields:  # the arrays under a key the server did not name, plus another
        msg.content["other"] = _to_record(_initial())
    answer = _ask(grid, _with(msg, **fields))
    assert not answer.has_error()
    assert list(answer.content.keys()) == [RECORD_KEY]
    rec = answer.content[RECORD_KEY]
    assert rec["stage"] == "setup" and "data" not in rec
    assert why in str(rec["declined"])
    assert calls == []  # refused before the app trained
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


@pytest.mark.parametrize(
    ("inner", "why"),
    [
        (_integer_model, "'b' is int64"),
        (_reshaped, "array 'w' has shape (3, 2), expected (2, 3)"),
        (_no_count, "no 'num-examples' metric"),
        (_zero_count, "'num-examples' must be a positive int"),
        (_too_many, f"num_examples must be in 1..{MAX_EXAMPLES}"),
    ],
)
def test_an_unusable_training_result_is_declined_not_sent(inner: Mod, why: str) -> None:
    """The app trained, but its result cannot be encoded: the node declines, nothing leaks."""
    grid, messages, calls = _setup_messages(3, inner=[inner])
    answer = _ask(grid, messages[0])
    assert list(answer.content.keys()) == [RECORD_KEY]
    rec = answer.content[RECORD_KEY]
    assert rec["stage"] == "setup" and why in str(rec["declined"])
    assert set(rec.keys()) == {"stage", "declined"}
    assert calls == [0]


def test_a_later_stage_without_a_session_or_out_of_order_is_declined() -> None:
    grid, messages, _ = _setup_messages(3)
    lost = Message(
        RecordDict({RECORD_KEY: ConfigRecord({"stage": "masked-input", "data": b"\x01"})}),
        dst_node_id=FIRST_NODE,
        message_type=MessageType.TRAIN,
        group_id="1",
    )
    rec = _ask(grid, lost).content[RECORD_KEY]
    assert "no protocol session" in str(rec["declined"])
    advertised = _ask(grid, messages[0]).content[RECORD_KEY]
    assert advertised["stage"] == "advertise" and isinstance(advertised["data"], bytes)
    assert STATE_KEY in grid.contexts[FIRST_NODE].state.config_records
    rec = _ask(grid, lost).content[RECORD_KEY]  # the session expects share-keys first
    assert "out of order" in str(rec["declined"])
    assert STATE_KEY not in grid.contexts[FIRST_NODE].state.config_records


def _large(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    out = call_next(msg, context)
    w = out.content["arrays"]["w"].numpy()
    out.content["arrays"]["w"] = Array((w + 50.0).astype(np.float32))
    return out


def test_an_update_beyond_the_clip_is_sent_clipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    grid, messages, _ = _setup_messages(3, inner=[_large])
    with caplog.at_level("WARNING", logger="secureagg.flower"):
        answer = _ask(grid, messages[0])
    assert answer.content[RECORD_KEY]["stage"] == "advertise"  # still takes part
    assert any("clipped" in r.getMessage() for r in caplog.records)
    grid, messages, _ = _setup_messages(3)
    caplog.clear()
    with caplog.at_level("WARNING", logger="secureagg.flower"):
        _ask(grid, messages[0])
    assert not any("clipped" in r.getMessage() for r in caplog.records)
