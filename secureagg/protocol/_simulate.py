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
from secureagg.protocol._graph import Graph
from secureagg.protocol._messages import MaskedInput
from secureagg.protocol._params import default_threshold
from secureagg.protocol._server import Rejection, ServerSession
from secureagg.protocol._signing import identity_public

__all__ = ["Cost", "Hook", "RoundResult", "run_round", "simulate_round"]

Hook = Callable[[Stage, int, bytes], "bytes | None"]
"""Sees (stage, client id, bytes) in flight; returns the bytes to deliver, or None to drop."""


@dataclass
class Cost:
    """Compute time and traffic of one party in one round."""

    seconds: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0


@dataclass
class RoundResult:
    """The sum of the survivors' inputs in Z_{2^b}, who they are, and what it cost."""

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
) -> RoundResult:
    """One round over ``inputs`` (client id -> d integers in [0, 2^bits)).

    ``degree`` None means the complete graph; ``threshold`` None means a majority of each
    neighbourhood. ``dropouts[stage]`` lists clients that go silent instead of sending
    their message of that stage (and everything after). Inputs are read lazily, one at a
    time, so a lazy mapping keeps memory flat. RoundAborted when too few clients remain.
    """
    ids = sorted(inputs)
    if len(ids) < 2:
        raise ConfigError("a round needs at least 2 clients")
    d = int(np.asarray(inputs[ids[0]]).shape[0])
    round_id = new_round_id()
    graph = Graph.complete(ids) if degree is None else Graph.harary(ids, degree, rng_seed=round_id)
    t = default_threshold(graph.degree) if threshold is None else threshold
    identities = {u: Ed25519PrivateKey.generate() for u in ids} if signed else {}
    config = RoundConfig(
        round_id=round_id,
        bits=bits,
        d=d,
        threshold=t,
        graph=graph,
        signed=signed,
        identity_keys={u: identity_public(k) for u, k in identities.items()},
    )
    return run_round(config, inputs, identities=identities, dropouts=dropouts, capture=capture)


def run_round(
    config: RoundConfig,
    inputs: Mapping[int, npt.NDArray[Any]],
    *,
    identities: Mapping[int, Ed25519PrivateKey] | None = None,
    dropouts: Mapping[Stage, Collection[int]] | None = None,
    capture: Collection[int] = (),
    to_server: Hook | None = None,
    to_client: Hook | None = None,
) -> RoundResult:
    """:func:`simulate_round` for a given config, with optional hooks on the bytes in flight."""
    identities = identities or {}
    gone_at: dict[int, int] = {}
    for stage, members in (dropouts or {}).items():
        for u in members:
            gone_at[u] = min(gone_at.get(u, 99), stage.value)
    clients = {u: ClientSession(config, u, identity=identities.get(u)) for u in config.graph.ids}
    server = ServerSession(config)
    costs = {u: Cost() for u in clients}
    server_cost = Cost()
    captured: dict[int, npt.NDArray[Any]] = {}
    lost: set[int] = set()

    def up(stage: Stage, u: int, data: bytes) -> None:
        costs[u].bytes_sent += len(data)
        if u in capture and stage is Stage.MASKED_INPUT:
            msg = decode(data)
            if isinstance(msg, MaskedInput):
                captured[u] = msg.vector.copy()
        delivered = data if to_server is None else to_server(stage, u, data)
        if delivered is None:
            return
        server_cost.bytes_received += len(delivered)
        start = time.perf_counter()
        server.receive(delivered)
        server_cost.seconds += time.perf_counter() - start

    for u, client in clients.items():
        if gone_at.get(u, 99) <= Stage.ADVERTISE.value:
            continue
        start = time.perf_counter()
        data = client.advertise()
        costs[u].seconds += time.perf_counter() - start
        up(Stage.ADVERTISE, u, data)

    while True:
        start = time.perf_counter()
        out = server.close_stage()
        server_cost.seconds += time.perf_counter() - start
        next_stage = server.stage
        if next_stage is None:
            break
        stage = next_stage
        for u, data in out.items():
            server_cost.bytes_sent += len(data)
            if u in lost or gone_at.get(u, 99) <= stage.value:
                continue
            delivered = data if to_client is None else to_client(stage, u, data)
            if delivered is None:
                continue
            costs[u].bytes_received += len(delivered)
            start = time.perf_counter()
            try:
                if stage is Stage.MASKED_INPUT:
                    clients[u].provide_input(inputs[u])
                reply = clients[u].receive(delivered)
            except RoundAborted:
                lost.add(u)
                continue
            finally:
                costs[u].seconds += time.perf_counter() - start
            up(stage, u, reply)
    result = server.result
    return RoundResult(
        total=result.total,
        survivors=result.survivors,
        client_cost=costs,
        server_cost=server_cost,
        captured=captured,
        dropouts=dict(server.dropouts),
        rejected=list(server.rejected),
    )
