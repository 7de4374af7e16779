"""Shared test support: a round of real protocol sessions driven by hand.

Importable as ``support`` from every test folder (pytest puts ``tests/`` on sys.path for
``tests/conftest.py``). Fixtures live in ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secureagg.protocol import (
    ClientPolicy,
    ClientSession,
    Graph,
    MemoryJournal,
    RoundConfig,
    ServerSession,
    Stage,
)
from secureagg.protocol import new_round_id as _new_round_id
from secureagg.protocol._signing import identity_public

Inputs = Callable[[int], np.ndarray]


def round_config(
    n: int = 6,
    t: int = 3,
    *,
    d: int,
    bits: int,
    signed: bool = False,
    identities: bool = True,
    counter: int = 0,
    round_id: bytes | None = None,
    degree: int | None = None,
    server_seed: bool = False,
) -> tuple[RoundConfig, dict[int, Ed25519PrivateKey]]:
    """A round of clients 1..n (complete graph, or Harary of ``degree``, its seed from the
    clients' commit-reveal or, with ``server_seed``, the round id) and their identity keys
    (none when ``identities`` is false)."""
    ids = list(range(1, n + 1))
    rid = _new_round_id(counter) if round_id is None else round_id
    seed = rid if server_seed else None
    graph = Graph.complete(ids) if degree is None else Graph.harary(ids, degree, seed)
    keys = {u: Ed25519PrivateKey.generate() for u in ids} if identities or signed else {}
    config = RoundConfig(
        rid,
        bits,
        d,
        t,
        graph,
        signed=signed,
        identity_keys={u: identity_public(k) for u, k in keys.items()},
        server_graph_seed=server_seed and degree is not None and degree < n - 1,
    )
    return config, keys


class HandRound:
    """Honest clients and an honest server, driven one stage at a time by the test.

    ``inputs(u)`` is client u's input; every client runs under ``policy``, and with
    ``journals`` each has its own MemoryJournal (``journals[u]``, needed to restore saved
    bytes). With ``advertise`` (the default) every client has advertised and the server has
    closed that stage: ``out`` holds its next messages.
    """

    def __init__(
        self,
        n: int = 6,
        t: int = 3,
        *,
        d: int,
        bits: int,
        inputs: Inputs,
        signed: bool = False,
        identities: bool = True,
        counter: int = 0,
        policy: ClientPolicy | None = None,
        journals: bool = False,
        advertise: bool = True,
    ) -> None:
        self.config, self.identities = round_config(
            n, t, d=d, bits=bits, signed=signed, identities=identities, counter=counter
        )
        ids = self.config.graph.ids
        self.inputs = {u: inputs(u) for u in ids}
        self.policy = policy
        self.journals = {u: MemoryJournal() for u in ids} if journals else {}
        self.clients = {
            u: ClientSession(
                self.config,
                u,
                identity=self.identities.get(u),
                policy=policy,
                journal=self.journals.get(u),
            )
            for u in ids
        }
        for u, c in self.clients.items():
            c.provide_input(self.inputs[u])
        self.server = ServerSession(self.config)
        self.out: dict[int, bytes] = {}
        if advertise:
            for c in self.clients.values():
                self.server.receive(c.advertise())
            self.out = self.server.close_stage()

    def step(self, skip: tuple[int, ...] = ()) -> dict[int, bytes]:
        """Deliver the server's messages to every client except ``skip``; close the stage."""
        for u, data in self.out.items():
            if u not in skip:
                self.server.receive(self.clients[u].receive(data))
        self.out = self.server.close_stage()
        return self.out

    def until(self, stage: Stage) -> None:
        """Run honest stages until the server collects ``stage``."""
        while self.server.stage is not stage:
            self.step()

    def finish(self, *, sender: bool = False) -> None:
        """Run the rest of the round honestly: see :func:`finish`."""
        finish(self.clients, self.server, sender=sender)

    def restore(self, u: int, blob: bytes) -> ClientSession:
        """Client u's session from its saved bytes (needs ``journals``)."""
        return ClientSession.restore_state(
            blob, identity=self.identities.get(u), journal=self.journals[u], policy=self.policy
        )


def finish(
    clients: dict[int, ClientSession], server: ServerSession, *, sender: bool = False
) -> None:
    """Run the rest of a round honestly, closing the stage being collected first; each reply
    goes in with its true sender when ``sender``."""
    while True:
        out = server.close_stage()
        if server.stage is None:
            return
        for u, data in out.items():
            reply = clients[u].receive(data)
            if sender:
                server.receive(reply, sender=u)
            else:
                server.receive(reply)
