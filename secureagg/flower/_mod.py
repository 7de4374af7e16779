"""The client side: a Flower mod that sends a ClientApp's update only through secure aggregation."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp.typing import ClientAppCallable

from secureagg._exceptions import SecureAggError
from secureagg.fl import UpdateEncoder
from secureagg.flower._ddp_node import NodeDistributed, is_distributed
from secureagg.flower._identity import claim_round, load_identity, load_members, public_bytes
from secureagg.flower._node_journal import JOURNAL_KEY, node_journal
from secureagg.flower._records import (
    IDENTIFY,
    RECORD_KEY,
    SETUP,
    STATE_KEY,
    record_of,
    reply,
    run_config_digest,
    same_layout,
    train_digest,
    update_vector,
)
from secureagg.hazmat import element_dtype
from secureagg.privacy import LocalUpdate
from secureagg.protocol import (
    ClientPolicy,
    ClientSession,
    Journal,
    RoundConfig,
    Stage,
)

__all__ = ["secureagg_mod"]

log = logging.getLogger("secureagg.flower")

IDENTITY_KEY = "secureagg-identity-key"
"""Node config key: the path of the node's Ed25519 identity key (signed mode)."""
MEMBERS_KEY = "secureagg-members"
"""Node config key: the path of the trusted identity public keys; a node with it only
takes part in signed rounds."""

PINNED: dict[str, type] = {
    "max-examples": int,
    "clip": float,
    "update-clip": float,
    "frac-bits": int,
    "max-clients": int,
    "weighting": str,
    "weighted-by": str,
    "arrays-key": str,
    "mode": str,
}
"""Encoding settings a node can pin in its node config as ``secureagg-<name>``: it then
declines any round whose config carries another value."""
MIN_CLIENTS_KEY = "secureagg-min-clients"
"""Node config key: the fewest clients a round may have for this node to take part."""
MIN_THRESHOLD_KEY = "secureagg-min-threshold"
"""Node config key: the lowest Shamir threshold this node accepts (never below a majority)."""
SERVER_SEED_KEY = "secureagg-allow-server-graph-seed"
"""Node config key: true lets this node take part in SecAgg+ rounds whose graph seed the
server chose (``SecureAggregation(server_graph_seed=True)``); by default it declines them."""


class _Declined(Exception):
    """This client does not take part in the round (the reason goes to the server)."""


def secureagg_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Send the ClientApp's training update only masked, through the secure-aggregation protocol.

    Evaluate and query messages pass through untouched. A train message (``"train"`` or
    ``"train.<action>"``) without secureagg's record is declined: the app never trains for
    a reply that would carry its update in clear. A round's first two messages (keys, then
    shares) are answered by the protocol session alone; the third carries the global model:
    the app trains, and the reply is the masked update, never arrays or metrics. The
    session is kept in ``context.state`` between messages.

    Signed mode (docs/flower.md): a node whose node config names ``secureagg-identity-key``
    answers an "identify" message with its public key; a node that names it or
    ``secureagg-members`` takes part only in signed rounds, and only in those whose identity
    keys are all in its members list, its own key for its own id.

    Parameters:
        msg: The message from the server.
        context: The node's Flower context (its state keeps the protocol session).
        call_next: The rest of the ClientApp (the app's train function).

    Returns:
        The reply: a protocol message, or the app's own reply to a message that is not
        secureagg's to answer.
    """
    if msg.metadata.message_type.split(".", 1)[0] != MessageType.TRAIN:
        return call_next(msg, context)
    rec = record_of(msg)
    if rec is None:
        why = "a train message without secure aggregation: this client sends updates only masked"
        log.warning("secureagg: %s", why)
        return reply(msg, {"stage": "", "declined": why})
    stage = rec.get("stage")
    if stage == IDENTIFY:  # may come between rounds: a saved session is left alone
        try:
            public = public_bytes(_identity(context))
        except (_Declined, SecureAggError) as exc:
            log.warning("secureagg: this client cannot identify itself: %s", exc)
            return reply(msg, {"stage": IDENTIFY, "declined": str(exc)})
        return reply(msg, {"stage": IDENTIFY, "data": public})
    try:
        if stage == SETUP:
            return _setup(msg, context, rec)
        return _step(msg, context, call_next, rec)
    except (_Declined, SecureAggError) as exc:
        _drop_session(context)
        log.warning("secureagg: this client leaves the round: %s", exc)
        return reply(msg, {"stage": str(stage), "declined": str(exc)})


def _int(rec: ConfigRecord, key: str) -> int:
    value = rec.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Declined(f"the server's {key!r} is not an int")
    return value


def _setting(config: RoundConfig, key: str, kind: type) -> Any:
    """An encoding setting from the round config (bound into its digest), never from a
    per-node field of the setup record."""
    value = config.encoding.get(key)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise _Declined(f"the round config's {key!r} is not a {kind.__name__}")
    return value


def _encoder(config: RoundConfig) -> UpdateEncoder:
    clip = _setting(config, "clip", float)
    try:
        return UpdateEncoder(
            config.d - 1,
            max_clients=_setting(config, "max-clients", int),
            max_examples=_setting(config, "max-examples", int),
            clip=clip,
            frac_bits=_setting(config, "frac-bits", int),
            bits=config.bits,
            weighting=_setting(config, "weighting", str),
        )
    except OverflowError as exc:  # a clip so large that c * 2^f overflows a float
        raise _Declined(f"the server's clip {clip!r} is out of range") from exc


def _policy(context: Context) -> ClientPolicy:
    """What this node accepts, from its own node config (never from the server)."""
    pinned: dict[str, int | float | str | bool] = {}
    for name, kind in PINNED.items():
        value = context.node_config.get(f"secureagg-{name}")
        if value is None or value == "":
            continue
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise _Declined(f"the node config's secureagg-{name} is not a {kind.__name__}")
        pinned[name] = value
    # A count reaches the server only if the node opted in: the DP guarantee of a privately
    # trained node does not cover its example count (docs/privacy.md).
    pinned.setdefault("weighting", "uniform")
    bounds = []
    for key, default in ((MIN_CLIENTS_KEY, 3), (MIN_THRESHOLD_KEY, 2)):
        value = context.node_config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _Declined(f"the node config's {key} is not a positive int")
        bounds.append(value)
    server_seed = context.node_config.get(SERVER_SEED_KEY, False)
    if not isinstance(server_seed, bool):
        raise _Declined(f"the node config's {SERVER_SEED_KEY} is not a bool")
    return ClientPolicy(
        encoding=pinned,
        min_clients=bounds[0],
        min_threshold=bounds[1],
        allow_server_graph_seed=server_seed,
    )


def _journal(context: Context) -> Journal:
    return node_journal(context, _path(context, JOURNAL_KEY), _path(context, IDENTITY_KEY))


def _setup(msg: Message, context: Context, rec: ConfigRecord) -> Message:
    raw = rec.get("config")
    if not isinstance(raw, bytes):
        raise _Declined("the server sent no round config")
    config = RoundConfig.from_bytes(raw)
    policy = _policy(context)
    client_id = _int(rec, "client-id")
    why = policy.check(config, client_id) if client_id in config.graph else None
    if why is not None:
        raise _Declined(why)
    if is_distributed(config):  # client-level distributed DP: its noise checked here too
        NodeDistributed(config, context.node_config)
    else:
        _encoder(config)  # refuse bad encoding settings now, before any key leaves
    for key in ("weighted-by", "arrays-key", "train-content"):
        _setting(config, key, str)
    _check_run_config(context, config)
    identity = _check_signed(context, config, client_id)
    session = ClientSession(
        config, client_id, identity=identity, policy=policy, journal=_journal(context)
    )
    data = session.advertise()
    _save(context, session)
    return reply(msg, {"stage": Stage.ADVERTISE.label, "data": data})


def _check_run_config(context: Context, config: RoundConfig) -> None:
    """Decline unless this node's run config is the one the round config binds: it comes
    from the SuperLink, which could give each node another learning rate or noise."""
    if run_config_digest(context.run_config) != _setting(config, "run-config", str):
        raise _Declined(
            "this node's run config is not the one the round config binds (the ServerApp "
            "passes its context.run_config to SecureAggregation)"
        )


def _path(context: Context, key: str) -> str | None:
    value = context.node_config.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Declined(f"the node config's {key!r} is not a path")
    return value


def _identity(context: Context) -> Ed25519PrivateKey:
    """This node's identity key (its node config names the file)."""
    path = _path(context, IDENTITY_KEY)
    if path is None:
        raise _Declined(f"this node has no identity key (node config {IDENTITY_KEY!r})")
    return load_identity(path)


def _check_signed(
    context: Context, config: RoundConfig, client_id: int
) -> Ed25519PrivateKey | None:
    """The identity key for a signed round whose keys are all trusted; None for an unsigned
    round, which a node with a members list or an identity key declines (a server could
    otherwise skip the signatures)."""
    members_path = _path(context, MEMBERS_KEY)
    if not config.signed:
        if members_path is not None or _path(context, IDENTITY_KEY) is not None:
            raise _Declined("an unsigned round: this node takes part only in signed rounds")
        return None
    if members_path is None:
        raise _Declined(f"a signed round, but this node has no members list ({MEMBERS_KEY!r})")
    members = load_members(members_path)
    identity = _identity(context)
    keys = config.identity_keys
    if keys.get(client_id) != public_bytes(identity):
        raise _Declined(f"the round gives client {client_id} another identity key than this node's")
    strangers = sorted(u for u, key in keys.items() if key not in members)
    if strangers:
        raise _Declined(f"the identity keys of clients {strangers[:5]} are not in the members list")
    if len(set(keys.values())) != len(keys):
        raise _Declined("two clients of the round have the same identity key")
    key_path = _path(context, IDENTITY_KEY)
    if key_path is not None:
        claim_round(key_path, config.round_id)  # a round id is signed for once, ever
    return identity


def _step(
    msg: Message, context: Context, call_next: ClientAppCallable, rec: ConfigRecord
) -> Message:
    saved = _config(context.state, STATE_KEY)
    blob = saved.get("session") if saved is not None else None
    if saved is None or not isinstance(blob, bytes):
        raise _Declined("no protocol session for this round (was the setup message lost?)")
    data = rec.get("data")
    if not isinstance(data, bytes):
        raise _Declined("the server's message carries no protocol bytes")
    identity = _identity(context) if saved.get("signed") is True else None
    session = ClientSession.restore_state(
        blob, identity=identity, policy=_policy(context), journal=_journal(context)
    )
    expected = session.stage
    if expected is None or rec.get("stage") != expected.label:
        raise _Declined(f"the server asked for stage {rec.get('stage')!r} out of order")
    if expected is Stage.MASKED_INPUT:
        out = _train_and_mask(msg, context, call_next, session, data)
        if out.has_error():
            _drop_session(context)
            return out  # the app failed: Flower reports its error, the server drops this client
    else:
        # The Context is saved after the reply leaves: a node that dies in between restores
        # an older session. The journal, written before each reply, makes that session
        # re-send the same bytes or decline (it never signs or answers unmask twice).
        answer = session.receive(data)
        out = reply(msg, {"stage": expected.label, "data": answer})
    if session.stage is None:
        _drop_session(context)  # done: nothing secret left to keep
    else:
        _save(context, session)
    return out


def _save(context: Context, session: ClientSession) -> None:
    context.state[STATE_KEY] = ConfigRecord(
        {"session": session.export_state(), "signed": session.config.signed}
    )


# RecordDict's config_records, array_records and metric_records build a new synced view of
# every record of that kind on each access (about 15 us): these read the records directly.


def _config(records: RecordDict, key: str) -> ConfigRecord | None:
    """``records.config_records.get(key)``."""
    rec = records.get(key)
    return rec if isinstance(rec, ConfigRecord) else None


def _drop_session(context: Context) -> None:
    """``context.state.config_records.pop(STATE_KEY, None)``."""
    if _config(context.state, STATE_KEY) is not None:
        del context.state[STATE_KEY]


def _train_and_mask(
    msg: Message,
    context: Context,
    call_next: ClientAppCallable,
    session: ClientSession,
    data: bytes,
) -> Message:
    """Train on the global model in ``msg``; the reply is the masked update."""
    if session.committed(Stage.MASKED_INPUT):  # a restored session: never mask twice
        raise _Declined("its journal shows it already sent its masked input in this round")
    ddp = (
        NodeDistributed(session.config, context.node_config)
        if is_distributed(session.config)
        else None
    )
    encoder = _encoder(session.config) if ddp is None else None
    weighted_by = _setting(session.config, "weighted-by", str)
    arrays_key = _setting(session.config, "arrays-key", str)
    global_arrays = _arrays(msg, arrays_key)
    if global_arrays is None:
        raise _Declined("the server's message holds no global model arrays")
    _check_run_config(context, session.config)
    if train_digest(msg) != _setting(session.config, "train-content", str):
        # Another model, train config or train action than the round's other nodes got (lr
        # 0 for all but one node makes the sum that node's update): decline before training.
        raise _Declined("the train message is not the one the round config binds")
    own = msg.content.pop(RECORD_KEY)  # the app sees what plain Flower sends
    try:
        out = call_next(msg, context)
    finally:
        msg.content[RECORD_KEY] = own  # outer mods still see the stage
    if out.has_error():
        return out
    declined = record_of(out)
    if declined is not None and "declined" in declined:
        raise _Declined(str(declined["declined"]))
    local = _arrays(out, arrays_key)
    if local is None:
        raise _Declined("the ClientApp's reply holds no arrays")
    why = same_layout(global_arrays, local)
    if why is not None:
        raise _Declined(why)
    if ddp is not None:  # clip, rotate, round, add the noise share; charged in the node ledger
        session.provide_input(ddp.encode(update_vector(local, global_arrays)))
        masked = session.receive(data)
        return reply(msg, {"stage": Stage.MASKED_INPUT.label, "data": masked})
    assert encoder is not None
    # Uniform weighting never reads the count (w = 1): a missing or zero count must not
    # decide whether this node takes part (declining would tell the server it was 0).
    uniform = encoder.weighting == "uniform"
    num_examples = 1 if uniform else _num_examples(out, weighted_by)
    if num_examples > encoder.max_examples:
        # Capped, not declined: whether it takes part must not tell the server its count.
        log.warning(
            "secureagg: %s %d is above the round's max-examples %d: weighted as %d",
            weighted_by,
            num_examples,
            encoder.max_examples,
            encoder.max_examples,
        )
        num_examples = encoder.max_examples
    encoded = _encoded(encoder, local, global_arrays, num_examples)
    session.provide_input(encoded, copy=False)  # masked in place: no copy of d words
    masked = session.receive(data)
    return reply(msg, {"stage": Stage.MASKED_INPUT.label, "data": masked})


def _encoded(
    encoder: UpdateEncoder,
    local: ArrayRecord,
    start: ArrayRecord,
    num_examples: int,
    rng: np.random.Generator | None = None,
) -> npt.NDArray[Any]:
    """``encoder.encode`` of the update ``local - start``, in one buffer: with 32-bit words
    the float32 update is written into the words it is then quantised into, in place (the
    same bytes as a separate update vector and encoding; no model-sized temporaries)."""
    size = sum(int(np.prod(tuple(a.shape), dtype=np.int64)) for a in start.values())
    if size != encoder.d:
        raise _Declined(f"the model has {size} values, the round expects {encoder.d}")
    words = np.empty(encoder.length, dtype=element_dtype(encoder.bits))
    shared = words[: encoder.d].view(np.float32) if words.itemsize == 4 else None
    vector = update_vector(local, start, shared)
    update = LocalUpdate(vector=vector, num_examples=num_examples, steps=0)
    peak = max(float(vector.max()), -float(vector.min())) if vector.size else 0.0  # no |x| copy
    top = peak * encoder.weight(update)
    if top > encoder.quant.clip:
        log.warning(
            "secureagg: weighted update values up to %.3g are clipped to %.3g; raise "
            "secureagg-clip or clip updates before sending",
            top,
            encoder.quant.clip,
        )
    return encoder.encode(update, rng, out=words)


def _arrays(msg: Message, key: str) -> ArrayRecord | None:
    records = {k: v for k, v in msg.content.items() if isinstance(v, ArrayRecord)}
    if key in records:
        return records[key]
    if len(records) == 1:
        return next(iter(records.values()))
    return None


def _num_examples(msg: Message, key: str) -> int:
    for metrics in [m for m in msg.content.values() if isinstance(m, MetricRecord)]:
        value: Any = metrics.get(key)
        if value is not None:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _Declined(f"{key!r} is not a positive int")  # the value stays here
            return value
    raise _Declined(f"the ClientApp's reply has no {key!r} metric to weight its update by")
