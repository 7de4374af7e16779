"""The client side: a Flower mod that sends a ClientApp's update only through secure aggregation."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType
from flwr.clientapp.typing import ClientAppCallable

from secureagg._exceptions import SecureAggError
from secureagg.fl._encoding import UpdateEncoder
from secureagg.flower._records import (
    RECORD_KEY,
    SETUP,
    STATE_KEY,
    flat_arrays,
    record_of,
    reply,
    same_layout,
    stage_name,
)
from secureagg.privacy._update import LocalUpdate
from secureagg.protocol import ClientSession, RoundConfig, Stage

__all__ = ["secureagg_mod"]

log = logging.getLogger("secureagg.flower")


class _Declined(Exception):
    """This client does not take part in the round (the reason goes to the server)."""


def secureagg_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Run the ClientApp's training, then send its update only masked, through the protocol.

    Messages without secureagg's record pass through untouched. The reply to the first
    message of a round carries the client's advertised keys, never its arrays or metrics;
    later messages are answered by the saved protocol session without calling the app.
    """
    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, context)
    rec = record_of(msg)
    if rec is None:
        return call_next(msg, context)
    stage = rec.get("stage")
    try:
        if stage == SETUP:
            return _setup(msg, context, call_next, rec)
        return _step(msg, context, rec)
    except (_Declined, SecureAggError) as exc:
        context.state.config_records.pop(STATE_KEY, None)
        log.warning("secureagg: this client leaves the round: %s", exc)
        return reply(msg, {"stage": str(stage), "declined": str(exc)})


def _int(rec: ConfigRecord, key: str) -> int:
    value = rec.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Declined(f"the server's {key!r} is not an int")
    return value


def _setup(
    msg: Message, context: Context, call_next: ClientAppCallable, rec: ConfigRecord
) -> Message:
    raw = rec.get("config")
    if not isinstance(raw, bytes):
        raise _Declined("the server sent no round config")
    config = RoundConfig.from_bytes(raw)
    client_id = _int(rec, "client-id")
    degree = config.graph.degree
    if 2 * config.threshold <= degree + 1:
        raise _Declined(
            f"threshold {config.threshold} is not above half of a neighbourhood of "
            f"{degree + 1}: too few neighbours could rebuild this client's secrets"
        )
    clip = rec.get("clip")
    if not isinstance(clip, float):
        raise _Declined("the server's 'clip' is not a float")
    encoder = UpdateEncoder(
        config.d - 1,
        max_clients=_int(rec, "max-clients"),
        max_examples=_int(rec, "max-examples"),
        clip=clip,
        frac_bits=_int(rec, "frac-bits"),
        bits=config.bits,
    )
    weighted_by = str(rec.get("weighted-by", "num-examples"))
    arrays_key = str(rec.get("arrays-key", "arrays"))
    global_arrays = _arrays(msg, arrays_key)
    if global_arrays is None:
        raise _Declined("the server's message holds no global model arrays")
    session = ClientSession(config, client_id)  # before training: a bad config costs nothing
    del msg.content.config_records[RECORD_KEY]  # the app sees what plain Flower would send

    out = call_next(msg, context)
    if out.has_error():
        return out  # the app failed: Flower reports its error, the server drops this client
    declined = record_of(out)
    if declined is not None and "declined" in declined:
        raise _Declined(str(declined["declined"]))
    local = _arrays(out, arrays_key)
    if local is None:
        raise _Declined("the ClientApp's reply holds no arrays")
    why = same_layout(global_arrays, local)
    if why is not None:
        raise _Declined(why)
    num_examples = _num_examples(out, weighted_by)
    vector = (flat_arrays(local) - flat_arrays(global_arrays)).astype(np.float32)
    if vector.shape[0] != encoder.d:
        raise _Declined(f"the model has {vector.shape[0]} values, the round expects {encoder.d}")
    update = LocalUpdate(vector=vector, num_examples=num_examples, steps=0)
    top = float(np.max(np.abs(vector))) * num_examples / encoder.max_examples if vector.size else 0
    if top > encoder.quant.clip:
        log.warning(
            "secureagg: weighted update values up to %.3g are clipped to %.3g; raise "
            "secureagg-clip or clip updates before sending",
            top,
            encoder.quant.clip,
        )
    session.provide_input(encoder.encode(update))
    data = session.advertise()
    context.state.config_records[STATE_KEY] = ConfigRecord({"session": session.export_state()})
    return reply(msg, {"stage": stage_name(Stage.ADVERTISE), "data": data})


def _step(msg: Message, context: Context, rec: ConfigRecord) -> Message:
    saved = context.state.config_records.get(STATE_KEY)
    blob = saved.get("session") if saved is not None else None
    if not isinstance(blob, bytes):
        raise _Declined("no protocol session for this round (was the setup message lost?)")
    data = rec.get("data")
    if not isinstance(data, bytes):
        raise _Declined("the server's message carries no protocol bytes")
    session = ClientSession.restore_state(blob)
    expected = session.stage
    if expected is None or rec.get("stage") != stage_name(expected):
        raise _Declined(f"the server asked for stage {rec.get('stage')!r} out of order")
    out = session.receive(data)
    if session.stage is None:
        context.state.config_records.pop(STATE_KEY, None)  # done: nothing secret left to keep
    else:
        context.state.config_records[STATE_KEY] = ConfigRecord({"session": session.export_state()})
    return reply(msg, {"stage": stage_name(expected), "data": out})


def _arrays(msg: Message, key: str) -> ArrayRecord | None:
    records = msg.content.array_records
    if key in records:
        return records[key]
    if len(records) == 1:
        return next(iter(records.values()))
    return None


def _num_examples(msg: Message, key: str) -> int:
    for metrics in msg.content.metric_records.values():
        value: Any = metrics.get(key)
        if value is not None:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _Declined(f"{key!r} must be a positive int, got {value!r}")
            return value
    raise _Declined(f"the ClientApp's reply has no {key!r} metric to weight its update by")
