"""Flower apps for the simulation-engine tests: a deterministic trainer and misbehaving mods.

Local training is ``k`` gradient steps on the node's quadratic loss ``|theta - target|^2 / 2``:
``theta -> target + c * (theta - target)`` per coordinate with ``c = (1 - lr)^k``. It depends
only on the node's partition id and the start model, so a secure run and a plain FedAvg run
see the same updates, and a difference in the start model shrinks by ``c`` in the next
round. A :class:`Script` mod, placed before ``secureagg_mod``, makes chosen nodes misbehave
at chosen (round, stage) points; the test reads the partition -> node id map it writes, and
the log of what each node received and when it trained. A :class:`Rollback` mod plays a
node's lost save: it puts back the state the node had before a chosen stage.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict

from secureagg.flower import RECORD_KEY, secureagg_mod
from secureagg.flower._records import payload
from secureagg.protocol import MaskedInput, decode, encode

SHAPES = {"w": (3, 4), "b": (4,)}
LR = 0.5
STEPS = 3
CONTRACTION = (1.0 - LR) ** STEPS
"""How much a start-model difference shrinks through one round of local training."""

Arrays = dict[str, npt.NDArray[np.float32]]


def initial_arrays() -> Arrays:
    """The global model before round 1."""
    rng = np.random.default_rng(0)
    return {k: rng.uniform(-0.2, 0.2, size=s).astype(np.float32) for k, s in SHAPES.items()}


def num_examples(partition: int) -> int:
    """The node's example count (its FedAvg weight)."""
    return 20 + 3 * partition


def targets(partition: int) -> Arrays:
    """The minimiser of the node's local loss."""
    rng = np.random.default_rng(1000 + partition)
    return {k: rng.uniform(-0.5, 0.5, size=s).astype(np.float32) for k, s in SHAPES.items()}


def local_train(start: Mapping[str, npt.NDArray[np.floating]], partition: int) -> Arrays:
    """``STEPS`` gradient steps from ``start``, in float32 as a client would store them."""
    out: Arrays = {}
    for name, target in targets(partition).items():
        theta = np.asarray(start[name], dtype=np.float32).copy()
        for _ in range(STEPS):
            theta = theta - np.float32(LR) * (theta - target)
        out[name] = theta
    return out


def to_record(arrays: Mapping[str, npt.NDArray[np.floating]]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def from_record(record: ArrayRecord) -> Arrays:
    return {k: np.asarray(v.numpy(), dtype=np.float32) for k, v in record.items()}


def plain_fedavg(
    start: Mapping[str, npt.NDArray[np.floating]],
    members: list[int],
    count: Callable[[int], int] = num_examples,
) -> dict[str, npt.NDArray[np.float64]]:
    """FedAvg of ``members``' local models from ``start``, weighted by ``count``, in float64."""
    total = sum(count(p) for p in members)
    out = {k: np.zeros(s, dtype=np.float64) for k, s in SHAPES.items()}
    for p in members:
        local = local_train(start, p)
        for k in out:
            out[k] += local[k].astype(np.float64) * (count(p) / total)
    return out


# -- misbehaviour, as a mod placed before secureagg_mod -----------------------------------------

RAISE = "raise"  # the ClientApp fails: Flower sends the server an error reply
SLEEP = "sleep"  # nothing arrives before the stage's timeout
GARBAGE = "garbage"  # the secureagg record's bytes replaced by random bytes
SHORT = "short"  # a well-formed masked input one element too short
EMPTY = "empty"  # a reply with no content at all


class Script:
    """A Flower mod: at ``(partition, round, stage)`` in ``plan``, do the planned misbehaviour.

    ``stage`` is the stage tag of the incoming secureagg message ("setup", "share-keys",
    "masked-input", "unmask"); "train" matches any train message (the plain run's way of
    leaving a node out). Each node writes its Flower node id to ``nodes_dir / <partition>``
    and, if ``events_dir`` is set, a line ``<round> <stage>`` to ``events_dir / <partition>``
    for every train message it receives (and ``<round> trained`` from the train function).
    """

    def __init__(
        self,
        plan: Mapping[tuple[int, int, str], str],
        nodes_dir: str,
        sleep: float = 0.0,
        events_dir: str | None = None,
    ) -> None:
        self.plan = dict(plan)
        self.nodes_dir = nodes_dir
        self.sleep = sleep
        self.events_dir = events_dir

    def log(self, partition: int, rnd: int, event: str) -> None:
        if self.events_dir is not None:
            with Path(self.events_dir, str(partition)).open("a") as f:
                f.write(f"{rnd} {event}\n")

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        partition = int(context.node_config["partition-id"])
        marker = Path(self.nodes_dir, str(partition))
        if not marker.exists():
            marker.write_text(str(context.node_id))
        rnd = _round_of(msg)
        rec = msg.content.config_records.get(RECORD_KEY) if msg.has_content() else None
        stage = str(rec.get("stage")) if rec is not None else "train"
        self.log(partition, rnd, stage)
        action = self.plan.get((partition, rnd, stage)) or self.plan.get((partition, rnd, "train"))
        if action is None:
            return call_next(msg, context)
        if action == RAISE:
            raise RuntimeError(f"node {partition} fails at round {rnd}, stage {stage}")
        if action == SLEEP:
            time.sleep(self.sleep)
            return call_next(msg, context)
        if action == EMPTY:
            return Message(RecordDict(), reply_to=msg)
        out = call_next(msg, context)
        record = out.content.config_records[RECORD_KEY]
        data = payload(out, record)
        assert isinstance(data, bytes)
        if action == GARBAGE:
            data = os.urandom(len(data))
        elif action == SHORT:
            masked = decode(data)
            assert isinstance(masked, MaskedInput)
            data = encode(
                MaskedInput(
                    masked.round_id, masked.sender, masked.excluded, masked.vector[:-1], masked.bits
                )
            )
        else:
            raise AssertionError(f"unknown action {action!r}")
        content = RecordDict({RECORD_KEY: ConfigRecord({**dict(record.items()), "data": data})})
        return Message(content, reply_to=msg)


class Rollback:
    """A mod: the ``target`` partition's state before its first message of ``stage`` is saved
    to a file, and put back whenever that stage's message comes again (the lost save). Each
    such message adds the actor's process id to ``folder / pids-<target>``."""

    def __init__(self, folder: str, stage: str, target: int) -> None:
        self.folder, self.stage, self.target = folder, stage, target

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        partition = int(context.node_config["partition-id"])
        rec = msg.content.config_records.get(RECORD_KEY) if msg.has_content() else None
        if partition == self.target and rec is not None and rec.get("stage") == self.stage:
            saved = Path(self.folder, f"state-{partition}")
            with Path(self.folder, f"pids-{partition}").open("a") as f:
                f.write(f"{os.getpid()}\n")  # which actor process ran it
            if saved.exists():  # the Context Flower saved after the reply is lost
                proto = ProtoRecordDict.FromString(saved.read_bytes())
                context.state = recorddict_from_proto(proto)
            else:
                saved.write_bytes(recorddict_to_proto(context.state).SerializeToString())
        return call_next(msg, context)


def _round_of(msg: Message) -> int:
    """The server round: FedAvg's ``server-round`` config, else the group id secureagg sets."""
    config = msg.content.config_records.get("config") if msg.has_content() else None
    if config is not None and "server-round" in config:
        return int(config["server-round"])
    return int(msg.metadata.group_id)


def client_app(
    script: Script,
    *,
    secure: bool,
    count: Callable[[int], int] = num_examples,
    before: list[Callable[[Message, Context, ClientAppCallable], Message]] | None = None,
) -> ClientApp:
    """The ClientApp: the script mod first, then ``before``'s mods, then (secure)
    secureagg_mod, then training."""
    mods = [script, *(before or []), *([secureagg_mod] if secure else [])]
    app = ClientApp(mods=mods)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        partition = int(context.node_config["partition-id"])
        script.log(partition, _round_of(msg), "trained")
        start = from_record(msg.content["arrays"])
        local = local_train(start, partition)
        content = RecordDict(
            {
                "arrays": to_record(local),
                "metrics": MetricRecord({"num-examples": count(partition)}),
            }
        )
        return Message(content, reply_to=msg)

    return app
