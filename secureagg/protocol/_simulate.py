"""Run one round in-process: n client sessions and a server, joined by the real wire bytes."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secureagg._exceptions import ConfigError, RoundAborted
from secureagg.protocol._client import ClientSession
from secureagg.protocol._codec import decode
from secureagg.protocol._config import RoundConfig, Stage, new_round_id
from secureagg.protocol._messages import MaskedInput
from secureagg.protocol._params import plan_round
from secureagg.protocol._policy import ClientPolicy
from secureagg.protocol._server import Rejection, ServerSession
from secureagg.protocol._signing import identity_public

__all__ = ["Cost", "Hook", "RoundResult", "simulate_configured_round", "simulate_round"]

Hook = Callable[[Stage, int, bytes], "bytes | None"]
"""Sees (stage, client id, bytes) in flight; returns the bytes to deliver, or None to drop."""


@dataclass
class Cost:
    """Compute time and traffic of one party in one round.

    Attributes:
        seconds: Compute time.
        bytes_sent: Bytes it sent.
        bytes_received: Bytes it received.
    """

    seconds: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0


@dataclass
class RoundResult:
    """The sum of the survivors' inputs in Z_{2^b}, who they are, and what it cost.

    Attributes:
        total: The sum, d elements of Z_{2^b}.
        survivors: The clients whose inputs are in it.
        client_cost: Each client's compute time and traffic.
        server_cost: The server's compute time and traffic.
        captured: The masked inputs of the clients in ``capture``, as the server saw them.
        dropouts: Each client that dropped, with the stage it went silent at.
        rejected: The client messages the server refused.
    """

    total: npt.NDArray[Any]
    survivors: frozenset[int]
    client_cost: dict[int, Cost]
    server_cost: Cost
    captured: dict[int, npt.NDArray[Any]] = field(default_factory=dict)
    dropouts: dict[int, Stage] = field(default_factory=dict)
    rejected: list[Rejection] = field(default_factory=list)


def simulate_round(
    inputs: Mapping[int, npt.NDArray[Any]],
    *,
    bits: int,
    threshold: int | None = None,
    degree: int | None = None,
    dropouts: Mapping[Stage, Collection[int]] | None = None,
    signed: bool = False,
    capture: Collection[int] = (),
    allow_minority_threshold: bool = False,
    server_graph_seed: bool = False,
) -> RoundResult:
    """One round over ``inputs``, every party in this process, over the real wire bytes.

    Inputs are read lazily, one at a time, so a lazy mapping keeps memory flat.

    Parameters:
        inputs: Client id -> d integers in [0, 2^bits).
        bits: The ring's bit width b.
        threshold: Shamir threshold (None: a majority of each neighbourhood).
        degree: Neighbours per client (None: the complete graph); with ``threshold`` it goes
            to :func:`plan_round`.
        dropouts: ``dropouts[stage]`` lists clients that go silent instead of sending their
            message of that stage (and everything after).
        signed: Run the signed mode.
        capture: Clients whose masked input to keep.
        allow_minority_threshold: The opt-out, for simulations of weaker settings, that lets
            both the plan and the clients take a threshold at or below half a neighbourhood.
        server_graph_seed: The opt-out of the graph-seed commit-reveal (Harary graphs): the
            server picks the seed and every client's policy allows it. For rounds where the
            O(n) bytes per client of the commit-reveal matter.

    Returns:
        The survivors' sum and the round's costs.

    Raises:
        RoundAborted: Too few clients remain.
    """
    ids = sorted(inputs)
    if len(ids) < 3:
        raise ConfigError("a round needs at least 3 clients")
    d = int(np.asarray(inputs[ids[0]]).shape[0])
    round_id = new_round_id()
    plan = plan_round(
        len(ids),
        degree=degree,
        threshold=threshold,
        allow_minority_threshold=allow_minority_threshold,
    )
    server_seed = server_graph_seed and not plan.complete
    graph = plan.graph(ids, round_id if server_seed else None)
    t = plan.threshold
    identities = {u: Ed25519PrivateKey.generate() for u in ids} if signed else {}
    config = RoundConfig(
        round_id=round_id,
        bits=bits,
        d=d,
        threshold=t,
        graph=graph,
        signed=signed,
        identity_keys={u: identity_public(k) for u, k in identities.items()},
        server_graph_seed=server_seed,
    )
    policy = ClientPolicy(
        allow_minority_threshold=allow_minority_threshold,
        allow_server_graph_seed=server_graph_seed,
    )
    return simulate_configured_round(
        config, inputs, identities=identities, dropouts=dropouts, capture=capture, policy=policy
    )


def simulate_configured_round(
    config: RoundConfig,
    inputs: Mapping[int, npt.NDArray[Any]],
    *,
    identities: Mapping[int, Ed25519PrivateKey] | None = None,
    dropouts: Mapping[Stage, Collection[int]] | None = None,
    capture: Collection[int] = (),
    to_server: Hook | None = None,
    to_client: Hook | None = None,
    policy: ClientPolicy | None = None,
) -> RoundResult:
    """:func:`simulate_round` for a given config, with optional hooks on the bytes in flight.

    Parameters:
        config: The round config every party uses.
        inputs: Client id -> d integers in [0, 2^bits).
        identities: Each client's Ed25519 key (signed mode).
        dropouts: Clients that go silent instead of sending their message of that stage.
        capture: Clients whose masked input to keep.
        to_server: Sees (stage, client id, bytes) of each client message in flight; returns
            the bytes to deliver, or None to drop them.
        to_client: The same for each server message.
        policy: What every client accepts (default :class:`ClientPolicy`).

    Returns:
        The survivors' sum and the round's costs.

    Raises:
        RoundAborted: Too few clients remain.
    """
    net = _Network(config, inputs, identities or {}, capture, to_server, to_client, policy)
    for stage, members in (dropouts or {}).items():
        for u in members:
            net.gone_at[u] = min(net.gone_at.get(u, _NEVER), stage.value)
    for u in net.clients:
        if net.answers(u, Stage.ADVERTISE):
            net.to_server_from(u, Stage.ADVERTISE, net.timed(u, net.clients[u].advertise))
    while True:
        start = time.perf_counter()
        out = net.server.close_stage_lazily()  # each message built when read: streamed
        net.server_cost.seconds += time.perf_counter() - start
        current = net.server.stage
        if current is None:
            break
        for u in out:
            start = time.perf_counter()
            data = out[u]
            net.server_cost.seconds += time.perf_counter() - start
            net.server_cost.bytes_sent += len(data)
            net.to_client(u, current, data)
        del out  # the last stage's messages are not held while the next one closes
    result = net.server.result
    return RoundResult(
        total=result.total,
        survivors=result.survivors,
        client_cost=net.costs,
        server_cost=net.server_cost,
        captured=net.captured,
        dropouts=dict(net.server.dropouts),
        rejected=list(net.server.rejected),
    )


_NEVER = 99  # a stage value after every stage: the client never goes silent


class _Network:
    """The sessions of one simulated round, the bytes between them, and what they cost."""

    def __init__(
        self,
        config: RoundConfig,
        inputs: Mapping[int, npt.NDArray[Any]],
        identities: Mapping[int, Ed25519PrivateKey],
        capture: Collection[int],
        to_server: Hook | None,
        to_client: Hook | None,
        policy: ClientPolicy | None,
    ) -> None:
        self.clients = {
            u: ClientSession(config, u, identity=identities.get(u), policy=policy)
            for u in config.graph.ids
        }
        self.server = ServerSession(config)
        self.inputs = inputs
        self.costs = {u: Cost() for u in self.clients}
        self.server_cost = Cost()
        self.captured: dict[int, npt.NDArray[Any]] = {}
        self.gone_at: dict[int, int] = {}  # client -> value of the first stage it misses
        self._lost: set[int] = set()  # clients that refused (RoundAborted)
        self._capture = capture
        self._hooks = (to_server, to_client)

    def answers(self, u: int, stage: Stage) -> bool:
        """Whether client u still takes part at ``stage``."""
        return u not in self._lost and self.gone_at.get(u, _NEVER) > stage.value

    def timed(self, u: int, fn: Callable[[], bytes]) -> bytes:
        """``fn()``, its time charged to client u."""
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.costs[u].seconds += time.perf_counter() - start

    def to_server_from(self, u: int, stage: Stage, data: bytes) -> None:
        """Client u sends ``data``; the hook may change or drop it on the way."""
        self.costs[u].bytes_sent += len(data)
        if u in self._capture and stage is Stage.MASKED_INPUT:
            msg = decode(data)
            if isinstance(msg, MaskedInput):
                self.captured[u] = msg.vector.copy()
        hook = self._hooks[0]
        delivered = data if hook is None else hook(stage, u, data)
        if delivered is None:
            return
        self.server_cost.bytes_received += len(delivered)
        start = time.perf_counter()
        self.server.receive(delivered)
        self.server_cost.seconds += time.perf_counter() - start

    def to_client(self, u: int, stage: Stage, data: bytes) -> None:
        """The server sends ``data`` to client u, which answers unless it is gone or refuses.

        A client that is gone, refused, or sent its unmask answer (its last message) is never
        asked again: its session is dropped, as a finished device would hold it on its own.
        """
        if not self.answers(u, stage):
            self.clients.pop(u, None)
            return
        hook = self._hooks[1]
        delivered = data if hook is None else hook(stage, u, data)
        if delivered is None:
            return
        self.costs[u].bytes_received += len(delivered)
        client = self.clients[u]

        def answer() -> bytes:
            if stage is Stage.MASKED_INPUT:
                client.provide_input(self.inputs[u])
            return client.receive(delivered)

        try:
            reply = self.timed(u, answer)
        except RoundAborted:
            self._lost.add(u)
            del self.clients[u]
            return
        if stage is Stage.UNMASK:
            del self.clients[u]  # its last message: nothing more is asked of it
        self.to_server_from(u, stage, reply)
