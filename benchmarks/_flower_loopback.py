"""An in-process Flower ``Grid`` that moves every Message through Flower's own wire format.

Flower 1.42's deployment transport sends a Message as (a) a protobuf ``Message`` with its
content removed (``message_to_proto(remove_content_from_message(msg))``), (b) the
``ObjectTree`` of its content, and (c) the ``deflate()`` bytes of every nested object
(RecordDict, records, arrays), each addressed by its SHA-256 object id; the receiver
rebuilds it with ``inflate_object_from_contents``. This Grid does exactly that for every
message in both directions and delivers it to the destination node's ClientApp in the same
process, so the cost of Flower's serialisation and the bytes it puts on the wire are real.
The server side packs each ``send_and_receive`` batch as ``HttpGrid.push_messages`` does:
one object-id pass for the batch, and an object shared by several messages (a broadcast
model) deflated and uploaded once; a node packs its reply as ``run_clientapp`` does.
Like a SuperNode's ClientApp process, each call also reads the node's ``Context`` from its
protobuf bytes and writes it back, also when the ClientApp raised (the exception becomes
an error reply; ``flwr.supernode.runtime.run_clientapp`` pushes the Context, as the app left
it, from its exit handler either way).

Attribution, the same for every app run through it: a node's time is what its side does
(unpack the instruction, load the context, run the ClientApp and its mods, save the
context, pack the reply); the grid's own copies of a node's Context around a delivery (see
below) are counted in ``emulation_seconds``, no one's; everything else in a
``send_and_receive`` call (packing the instructions, unpacking the replies) is the server's.
The SuperLink in between stores bytes and is not modelled. Bytes: a node's are its
instructions and replies in full; the server's are what it uploads (shared objects once per
batch) plus the replies. A node
listed in ``drop_at`` stops answering from its ``drop_at[node]``-th message on (0-based),
as a node that went away after a timeout would.

The tests drive ``secureagg.flower`` over this same grid (tests/unit/test_flower_loopback.py):
``contexts`` are the nodes' live Contexts (a test may change a node's config or roll its
state back between messages; each delivery still loads the Context from its protobuf bytes
and saves it back, and the bytes are made and read back outside the timed region),
``lose(node, message)`` says which replies never reach the server (the node still handles
the message), and with ``record=True`` ``sent`` and ``replies`` keep every message the
server sent and received.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.app.message import remove_content_from_message
from flwr.common.constant import ErrorCode
from flwr.common.serde import (
    context_from_proto,
    context_to_proto,
    message_from_proto,
    message_to_proto,
)
from flwr.proto.message_pb2 import Context as ProtoContext
from flwr.proto.message_pb2 import Message as ProtoMessage
from flwr.proto.message_pb2 import ObjectTree
from flwr.serverapp.grid import Grid
from flwr.supercore.inflatable.inflatable_object import (
    get_all_nested_objects,
    get_object_tree,
    iterate_object_tree,
    no_object_id_recompute,
)
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents

ClientAppLike = Callable[[Message, Context], Message]


@dataclass(frozen=True)
class Packed:
    """One Message as Flower's transport carries it."""

    head: bytes  # the content-less protobuf Message (PushMessages / PullMessages)
    tree: bytes  # its ObjectTree protobuf
    objects: dict[str, bytes]  # object id -> deflated object (PushObject / PullObject)

    @property
    def size(self) -> int:
        """Bytes on the wire: header, tree and every object's content."""
        return len(self.head) + len(self.tree) + sum(len(v) for v in self.objects.values())


def pack(msg: Message) -> Packed:
    """Serialise ``msg`` as Flower's push path does (sets its message id, the root object id)."""
    msg.metadata.__dict__["_message_id"] = msg.object_id
    head = message_to_proto(remove_content_from_message(msg)).SerializeToString()
    with no_object_id_recompute():
        tree = get_object_tree(msg)
        objects = {oid: obj.deflate() for oid, obj in get_all_nested_objects(msg).items()}
    return Packed(head, tree.SerializeToString(), objects)


def push(messages: list[Message]) -> tuple[list[Packed], int]:
    """Serialise a batch as Flower's server-side push does (``HttpGrid.push_messages``).

    Object ids are computed once per object within the batch and an object that several
    messages share (a broadcast model) is deflated and uploaded once; returns each
    message's wire form and the bytes the server uploads.
    """
    with no_object_id_recompute():
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = msg.object_id
        heads, trees = [], []
        unique: dict[str, Any] = {}
        for msg in messages:
            heads.append(message_to_proto(remove_content_from_message(msg)).SerializeToString())
            trees.append(get_object_tree(msg))
            unique.update(get_all_nested_objects(msg))
        contents = {oid: obj.deflate() for oid, obj in unique.items()}
    packed = [
        Packed(
            head,
            tree.SerializeToString(),
            {t.object_id: contents[t.object_id] for t in iterate_object_tree(tree)},
        )
        for head, tree in zip(heads, trees, strict=True)
    ]
    uploaded = sum(len(p.head) + len(p.tree) for p in packed)
    return packed, uploaded + sum(len(c) for c in contents.values())


def unpack(packed: Packed) -> Message:
    """Rebuild a Message from its wire form, as Flower's pull path does."""
    message_from_proto(ProtoMessage.FromString(packed.head))  # the receiver parses the header
    tree = ObjectTree.FromString(packed.tree)
    contents = {t.object_id: packed.objects[t.object_id] for t in iterate_object_tree(tree)}
    msg = inflate_object_from_contents(tree.object_id, contents)
    if not isinstance(msg, Message):
        raise TypeError(f"the wire held a {type(msg).__name__}, not a Message")
    msg.metadata.__dict__["_message_id"] = tree.object_id
    return msg


@dataclass
class NodeCost:
    """What one node did in the messages it was sent."""

    seconds: float = 0.0  # node side: unpack, context load, ClientApp, context save, pack
    cpu_seconds: float = 0.0  # the same, CPU time of the thread (no waiting: fsync, the queue)
    app_seconds: float = 0.0  # of which inside the ClientApp (its mods included)
    bytes_received: int = 0  # packed instructions delivered to it, in full
    bytes_sent: int = 0  # packed replies
    messages: int = 0  # instructions delivered
    errors: list[str] = field(default_factory=list)  # exceptions its ClientApp raised


class LoopbackGrid(Grid):  # type: ignore[misc]
    """Delivers each message to ``app`` for its destination node, through Flower's wire format."""

    def __init__(
        self,
        app: ClientAppLike,
        node_ids: Iterable[int],
        *,
        drop_at: Mapping[int, int] | None = None,
        run_id: int = 1,
        node_config: Callable[[int], dict[str, Any]] | None = None,
        lose: Callable[[int, Message], bool] | None = None,
        record: bool = False,
    ) -> None:
        self._app = app
        self._nodes = list(node_ids)
        self._drop_at = dict(drop_at or {})
        self._asked = dict.fromkeys(self._nodes, 0)
        self._lose = lose
        self._record = record
        self.sent: list[Message] = []  # with record=True: every message the server sent
        self.replies: list[Message] = []  # with record=True: every reply it received
        self.cost = {nid: NodeCost() for nid in self._nodes}
        self.server_bytes = 0  # uploaded (each object once per batch) + replies pulled
        self.server_transport_seconds = 0.0  # server side: packing the batches, unpacking replies
        # the grid's own copies of the nodes' Contexts (bytes made before a delivery, read back
        # into the live Context after it): neither node nor server work, left out of both
        self.emulation_seconds = 0.0
        self.contexts = {
            nid: Context(
                run_id=run_id,
                node_id=nid,
                node_config=node_config(nid) if node_config is not None else {},
                state=RecordDict(),
                run_config={},
            )
            for nid in self._nodes
        }

    # -- Grid API ---------------------------------------------------------------------------

    def set_run(self, run: Any) -> None:
        pass

    @property
    def run(self) -> Any:
        return None

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._nodes)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError("the loopback grid only does send_and_receive")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError("the loopback grid only does send_and_receive")

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        batch = list(messages)
        if self._record:
            self.sent.extend(batch)
        t0 = time.perf_counter()
        wires, uploaded = push(batch)  # server side
        self.server_transport_seconds += time.perf_counter() - t0
        self.server_bytes += uploaded
        replies = []
        for msg, wire in zip(batch, wires, strict=True):
            dst = msg.metadata.dst_node_id
            if dst not in self.cost:
                continue  # no such node: nothing comes back
            k = self._asked[dst]
            self._asked[dst] = k + 1
            if dst in self._drop_at and k >= self._drop_at[dst]:
                continue  # the node is gone: it never pulls, never answers
            back, lost = self._deliver(dst, wire)
            if lost:
                continue  # handled by the node, never seen by the server
            self.server_bytes += back.size
            t0 = time.perf_counter()
            replies.append(unpack(back))  # server side
            self.server_transport_seconds += time.perf_counter() - t0
        if self._record:
            self.replies.extend(replies)
        return replies

    # -- the node side ----------------------------------------------------------------------

    def _deliver(self, dst: int, wire: Packed) -> tuple[Packed, bool]:
        e0 = time.perf_counter()
        stored = context_to_proto(self.contexts[dst]).SerializeToString()  # the node's disk
        self.emulation_seconds += time.perf_counter() - e0
        cost = self.cost[dst]
        c0 = time.thread_time()
        t0 = time.perf_counter()
        incoming = unpack(wire)
        context = context_from_proto(ProtoContext.FromString(stored))
        # Asked before the app runs: secureagg_mod takes its record out of a train message.
        lost = self._lose is not None and self._lose(dst, incoming)
        t1 = time.perf_counter()
        try:
            reply = self._app(incoming, context)
        except Exception as exc:  # a ClientApp exception becomes an error reply
            cost.app_seconds += time.perf_counter() - t1
            cost.errors.append(f"{type(exc).__name__}: {exc}")
            reason = f"{type(exc)}:<'{exc}'>"
            reply = Message(
                Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason),
                reply_to=incoming,
            )
        else:
            cost.app_seconds += time.perf_counter() - t1
        saved = context_to_proto(context).SerializeToString()
        back = pack(reply)
        cost.seconds += time.perf_counter() - t0
        cost.cpu_seconds += time.thread_time() - c0
        cost.messages += 1
        cost.bytes_received += wire.size
        cost.bytes_sent += back.size
        e0 = time.perf_counter()
        self._keep(dst, saved)
        self.emulation_seconds += time.perf_counter() - e0
        return back, lost

    def _keep(self, node: int, saved: bytes) -> None:
        """Read the saved Context back into the node's live one (same object, new values)."""
        read = context_from_proto(ProtoContext.FromString(saved))
        live = self.contexts[node]
        live.node_config = read.node_config
        live.state = read.state
        live.run_config = read.run_config

    # -- totals -----------------------------------------------------------------------------

    @property
    def client_seconds(self) -> float:
        """All nodes' time together."""
        return sum(c.seconds for c in self.cost.values())

    def client_transport_seconds(self, node: int) -> float:
        """A node's time outside its ClientApp: unpacking, context load and save, packing."""
        c = self.cost[node]
        return c.seconds - c.app_seconds
