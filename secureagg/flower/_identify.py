"""Signed mode's first stage: ask every sampled node for its Ed25519 identity key."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from secureagg.flower._records import IDENTIFY, RECORD_KEY
from secureagg.flower._replies import Declined, read_reply
from secureagg.flower._report import RoundReport

__all__ = ["identify"]


def identify(
    grid: Grid, nodes: list[int], server_round: int, report: RoundReport, timeout: float | None
) -> dict[int, bytes]:
    """Ask every node in ``nodes`` for its identity public key over ``grid``.

    Parameters:
        grid: Flower's grid.
        nodes: The sampled Flower node ids.
        server_round: Flower's round number (the messages' group id).
        report: The round's report: refusals go to ``declined``, the silent to ``dropouts``.
        timeout: Seconds to wait for the answers.

    Returns:
        {node: key} for the nodes that answer with a well-formed key no other node gave.
    """
    messages = [
        Message(
            content=RecordDict({RECORD_KEY: ConfigRecord({"stage": IDENTIFY})}),
            dst_node_id=node,
            message_type=MessageType.TRAIN,
            group_id=str(server_round),
        )
        for node in nodes
    ]
    answers = grid.send_and_receive(messages, timeout=timeout)
    sampled = set(nodes)
    given: dict[int, bytes] = {}
    for msg in answers:
        node = msg.metadata.src_node_id
        if node not in sampled or node in given:
            continue
        try:
            key = read_reply(
                msg,
                IDENTIFY,
                expected="an identify message with a 32-byte key",
                size=32,
                check=Ed25519PublicKey.from_public_bytes,
            )
        except Declined as why:
            report.declined[node] = str(why)
            continue
        report.bytes_received += len(key)
        given[node] = key
    count: dict[bytes, int] = {}
    for key in given.values():
        count[key] = count.get(key, 0) + 1
    for node, key in list(given.items()):
        if count[key] > 1:  # which node owns it is unknowable: none of them takes part
            report.declined[node] = "its identity key is another node's too"
            del given[node]
    for node in sorted(sampled - given.keys()):
        report.dropouts[node] = IDENTIFY
    return given
