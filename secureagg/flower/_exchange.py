"""One secure round's traffic over Flower's grid: the stages' messages out, replies in."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.app.typing import ConfigRecordValues
from flwr.serverapp import Grid

from secureagg._exceptions import RoundAborted
from secureagg.fl import DistributedEncoder, UpdateEncoder
from secureagg.flower._records import IDENTIFY, RECORD_KEY, SETUP
from secureagg.flower._replies import Declined, read_reply
from secureagg.flower._report import RoundReport
from secureagg.flower._round_config import encode_setup
from secureagg.protocol import ServerSession, Stage

__all__ = ["Round", "end", "exchange", "feed", "keys_and_shares", "train_messages"]

log = logging.getLogger("secureagg.flower")


@dataclass
class Round:
    """The state of the round in progress between ``configure_train`` and ``aggregate_train``.

    Attributes:
        session: The protocol's server session.
        encoder: The round's update encoding.
        global_arrays: The model the round started from.
        node_of: Client id -> Flower node id.
        client_of: Flower node id -> client id.
        grid: Flower's grid.
        report: The round's report.
        waited: Seconds spent waiting on the grid in the current phase (not server time).
    """

    session: ServerSession
    encoder: UpdateEncoder | DistributedEncoder
    global_arrays: ArrayRecord
    node_of: dict[int, int]
    client_of: dict[int, int]
    grid: Grid
    report: RoundReport
    waited: float = 0.0


def exchange(
    rnd: Round,
    tag: str,
    stage: Stage,
    outgoing: Mapping[int, bytes | ConfigRecord],
    server_round: int,
    timeout: float | None,
) -> None:
    """Send one stage's messages and feed the replies; ``rnd.waited`` grows by the wait."""
    messages = []
    for cid, data in outgoing.items():
        record = (
            data if isinstance(data, ConfigRecord) else ConfigRecord({"stage": tag, "data": data})
        )
        if not isinstance(data, ConfigRecord):
            rnd.report.bytes_sent += len(data)
        messages.append(
            Message(
                content=RecordDict({RECORD_KEY: record}),
                dst_node_id=rnd.node_of[cid],
                message_type=MessageType.TRAIN,
                group_id=str(server_round),
            )
        )
    t0 = time.perf_counter()
    answers = rnd.grid.send_and_receive(messages, timeout=timeout)
    waited = time.perf_counter() - t0
    feed(rnd, stage, answers)
    rnd.waited += waited


def feed(rnd: Round, stage: Stage, replies: Iterable[Message]) -> None:
    """Hand each reply's bytes to the session; anything else counts its node as declined."""
    want = stage.label
    for msg in replies:
        node = msg.metadata.src_node_id
        client = rnd.client_of.get(node)
        if client is None:
            continue  # not a node of this round
        try:
            data = read_reply(msg, want, expected=f"a {want} message")
        except Declined as why:
            rnd.report.declined[node] = str(why)
            continue
        rnd.report.bytes_received += len(data)
        rnd.session.receive(data, sender=client)


def end(rnd: Round, seconds: float, aborted: str | None = None) -> None:
    """Fill the round's report from its session."""
    report, session = rnd.report, rnd.session
    report.server_seconds += seconds
    report.aborted = aborted
    left_out = {n: s for n, s in report.dropouts.items() if s == IDENTIFY}
    report.dropouts = {
        **left_out,
        **{rnd.node_of[c]: s.label for c, s in sorted(session.dropouts.items())},
    }
    report.rejected = [
        f"{r.stage.label}: node {rnd.node_of.get(r.client or 0, '?')}: {r.reason}"
        for r in session.rejected
    ]
    if aborted is not None:
        log.error("secureagg round %d aborted: %s", report.round, aborted)


def keys_and_shares(
    rnd: Round, server_round: int, timeout: float | None
) -> tuple[Mapping[int, bytes], set[int]]:
    """Run the setup, (SecAgg+) graph-seed reveal and share-keys stages: each client's
    shares delivery, and the clients that hold enough neighbours' shares to mask
    (RoundAborted if too few)."""
    cfg = rnd.session.config
    raw = cfg.to_bytes()
    threshold = cfg.threshold
    setup: dict[str, ConfigRecordValues] = {"stage": SETUP, "config": raw}
    outgoing = {c: encode_setup(setup, c) for c in rnd.client_of.values()}
    rnd.report.bytes_sent += len(raw) * len(outgoing)
    # Keys and shares first; the model goes out with the third message, so the update is
    # masked as soon as it exists and never waits in a saved session.
    exchange(rnd, SETUP, Stage.ADVERTISE, outgoing, server_round, timeout)
    keys = rnd.session.close_stage()  # each client's neighbours' keys, or the committed list
    if rnd.session.stage is Stage.REVEAL:  # the nodes reveal their shares of the graph seed
        exchange(rnd, Stage.REVEAL.label, Stage.REVEAL, keys, server_round, timeout)
        keys = rnd.session.close_stage()
    exchange(rnd, Stage.SHARE_KEYS.label, Stage.SHARE_KEYS, keys, server_round, timeout)
    deliveries = rnd.session.close_stage()  # SharesDelivery for every client in U2
    # A client masks only with t or more neighbours' shares: one with fewer would train
    # and then refuse, so it gets no model (it drops at masked-input).
    u2 = set(deliveries)
    graph = rnd.session.graph
    ready = {u for u in u2 if len(graph.neighbours(u) & u2) >= threshold}
    if len(ready) < threshold:
        raise RoundAborted(
            f"only {len(ready)} clients have {threshold} neighbours' shares "
            f"(need {threshold}): aborted before training"
        )
    return deliveries, ready


def train_messages(
    rnd: Round,
    messages: list[Message],
    deliveries: Mapping[int, bytes],
    ready: set[int],
    server_round: int,
) -> list[Message]:
    """The wrapped strategy's train messages, each with its node's shares delivery."""
    out = []
    for m in messages:
        node = m.metadata.dst_node_id
        client = rnd.client_of.get(node)  # None: left out at identify
        delivery = deliveries.get(client) if client is not None else None
        if delivery is None or client not in ready:
            continue  # dropped before its shares were routed, or would refuse: no model
        content = RecordDict(dict(m.content.items()))
        content[RECORD_KEY] = ConfigRecord({"stage": Stage.MASKED_INPUT.label, "data": delivery})
        rnd.report.bytes_sent += len(delivery)
        out.append(
            Message(
                content=content,
                dst_node_id=node,
                message_type=MessageType.TRAIN,
                group_id=m.metadata.group_id or str(server_round),
            )
        )
    return out
