"""Nodes that crash after a reply and come back with an older saved session (issue 12).

A hostile server runs an honest round, then, on random schedules, rolls clients back to the
state they saved before any reply (graph-seed reveal on a sparse graph, masked input,
consistency signature, unmask answer) and asks again: with another committed list, another
input, another survivor list, another split of survivors and dropouts, and, in signed mode,
with every signature it gathered. Whatever it does, it never holds two masked inputs of one
client, nor t shares of both secrets of one client (the self-mask seed b_v and the mask key
s_v), which is what recovering x_v takes, nor a client's reveal for two committed lists
(which would let it choose between two graph seeds).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from secureagg import RoundAborted
from secureagg.protocol import (
    ClientSession,
    ConsistencyRequest,
    ConsistencySignature,
    Graph,
    MaskedInput,
    MemoryJournal,
    RoundConfig,
    SeedCommitments,
    SeedReveal,
    ServerSession,
    Stage,
    UnmaskRequest,
    UnmaskResponse,
    decode,
    default_threshold,
    encode,
    new_round_id,
)
from secureagg.protocol._signing import identity_public

BITS, D = 16, 3


@dataclass
class Snapshot:
    stage: Stage  # the stage of the reply the client was about to send
    blob: bytes  # its saved session before that reply
    request: bytes


class Adversary:
    """The server's view: every reply any client ever sent it."""

    def __init__(self, config: RoundConfig) -> None:
        self.config = config
        self.masked: dict[int, set[bytes]] = {}
        self.seed_holders: dict[int, set[int]] = {}  # v -> clients that revealed b_v shares
        self.key_holders: dict[int, set[int]] = {}  # v -> clients that revealed s_v shares
        self.signatures: dict[tuple[int, ...], dict[int, bytes]] = {}
        self.revealed_for: dict[int, set[bytes]] = {}  # u -> the committed lists it revealed for

    def take(self, u: int, reply: bytes, request: bytes) -> None:
        msg = decode(reply)
        if isinstance(msg, MaskedInput):
            self.masked.setdefault(u, set()).add(msg.vector.tobytes())
        elif isinstance(msg, SeedReveal):
            self.revealed_for.setdefault(u, set()).add(request)
        elif isinstance(msg, ConsistencySignature):
            req = decode(request)
            assert isinstance(req, ConsistencyRequest)
            self.signatures.setdefault(req.survivors, {})[u] = msg.signature
        elif isinstance(msg, UnmaskResponse):
            for v, _ in msg.seed_shares:
                self.seed_holders.setdefault(v, set()).add(u)
            for v, _ in msg.key_shares:
                self.key_holders.setdefault(v, set()).add(u)

    def check(self) -> None:
        t = self.config.threshold
        for v in self.config.graph.ids:
            assert len(self.masked.get(v, ())) <= 1, f"two masked inputs of client {v}"
            both = len(self.seed_holders.get(v, ())) >= t and len(self.key_holders.get(v, ())) >= t
            assert not both, f"t shares of both secrets of client {v}"
            assert len(self.revealed_for.get(v, ())) <= 1, f"client {v} revealed for two lists"


actions = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 3), st.integers(0, 2**10)),
    min_size=2,
    max_size=16,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.sampled_from([3, 4, 5, 5, 5]),
    signed=st.booleans(),
    sparse=st.booleans(),
    schedule=actions,
    victim=st.integers(0, 4),
    seed=st.integers(0, 2**16),
)
@example(  # unsigned: three clients rolled back before unmask, each asked with 1 dropped
    n=5, signed=False, schedule=[(1, 1, 1), (2, 1, 1), (3, 1, 1)], victim=0, sparse=False, seed=1
)
@example(  # signed: four rolled back before consistency sign "all but 1", then unmask
    n=5,
    signed=True,
    schedule=[(1, 1, 1), (2, 1, 1), (3, 1, 1), (4, 1, 1)],
    victim=0,
    sparse=False,
    seed=2,
)
@example(
    n=4, signed=False, schedule=[(0, 0, 0), (0, 0, 0)], victim=1, sparse=False, seed=3
)  # mask twice
def test_rolled_back_clients_never_give_the_server_an_individual_input(
    n: int,
    signed: bool,
    schedule: list[tuple[int, int, int]],
    victim: int,
    seed: int,
    sparse: bool,
) -> None:
    """``schedule``: (client, which saved state, list choice); a list leaves out ``victim``
    (the client whose input the server is after) or, one time in four, is any subset.
    ``sparse`` (n = 5): a Harary graph of degree 2, its seed from the commit-reveal."""
    ids = list(range(1, n + 1))
    victim = ids[victim % n]
    keys = {u: Ed25519PrivateKey.generate() for u in ids} if signed else {}
    graph = Graph.harary(ids, 2) if sparse and n == 5 else Graph.complete(ids)
    cfg = RoundConfig(
        new_round_id(seed),
        BITS,
        D,
        default_threshold(graph.degree),
        graph,
        signed=signed,
        identity_keys={u: identity_public(k) for u, k in keys.items()},
    )
    rng = np.random.default_rng(seed)
    journals = {u: MemoryJournal() for u in ids}
    clients = {u: ClientSession(cfg, u, identity=keys.get(u), journal=journals[u]) for u in ids}
    adversary = Adversary(cfg)
    snapshots: dict[int, list[Snapshot]] = {u: [] for u in ids}
    server = ServerSession(cfg)
    for u, c in clients.items():
        server.receive(c.advertise(), sender=u)
    while True:  # the honest round, every client saving before each reply
        out = server.close_stage()
        stage = server.stage
        if stage is None:
            break
        for u, request in out.items():
            if stage is Stage.MASKED_INPUT:
                clients[u].provide_input(rng.integers(0, 2**BITS, D, dtype=np.uint16))
            if stage is not Stage.SHARE_KEYS:
                snapshots[u].append(Snapshot(stage, clients[u].export_state(), request))
            reply = clients[u].receive(request)
            adversary.take(u, reply, request)
            server.receive(reply, sender=u)

    def restore(u: int, blob: bytes) -> ClientSession:
        return ClientSession.restore_state(blob, identity=keys.get(u), journal=journals[u])

    def ask(u: int, session: ClientSession, request: bytes) -> None:
        with contextlib.suppress(RoundAborted):
            adversary.take(u, session.receive(request), request)

    def subset(bits: int, must: int) -> tuple[int, ...]:
        if bits % 4:
            return tuple(v for v in ids if v != victim or v == must)
        return tuple(v for i, v in enumerate(ids) if bits >> (i + 2) & 1 or v == must)

    rid = cfg.round_id
    pending: list[tuple[int, ClientSession, tuple[int, ...]]] = []
    for who, which, bits in schedule:
        u = ids[who % n]
        snap = snapshots[u][which % len(snapshots[u])]
        session = restore(u, snap.blob)  # the crash: back to before that reply
        if snap.stage is Stage.REVEAL:  # reveal for another committed list
            listed = decode(snap.request)
            assert isinstance(listed, SeedCommitments)
            entries = list(listed.commitments)
            i = bits % len(entries)
            if entries[i][0] == u:
                i = (i + 1) % len(entries)
            entries[i] = (entries[i][0], bits.to_bytes(32, "big"))
            ask(u, session, encode(SeedCommitments(rid, u, tuple(entries))))
        elif snap.stage is Stage.MASKED_INPUT:  # mask another input (trained differently)
            session.provide_input(rng.integers(0, 2**BITS, D, dtype=np.uint16))
            ask(u, session, snap.request)
        elif snap.stage is Stage.CONSISTENCY:  # sign another list
            survivors = subset(bits, u)
            ask(u, session, encode(ConsistencyRequest(rid, u, survivors)))
            if session.stage is Stage.UNMASK:
                pending.append((u, session, survivors))
        else:  # answer unmask for another split (signed: the list it signed)
            survivors = snap_survivors(snap.request) if signed else subset(bits, u)
            dropped = tuple(v for v in ids if v not in survivors)
            sigs = tuple(sorted(adversary.signatures.get(survivors, {}).items()))
            ask(u, session, encode(UnmaskRequest(rid, u, survivors, dropped, sigs)))
    for u, session, survivors in pending:  # signed: unmask under every list it signed
        dropped = tuple(v for v in ids if v not in survivors)
        sigs = tuple(sorted(adversary.signatures.get(survivors, {}).items()))
        ask(u, session, encode(UnmaskRequest(rid, u, survivors, dropped, sigs)))
    adversary.check()


def snap_survivors(request: bytes) -> tuple[int, ...]:
    msg = decode(request)
    assert isinstance(msg, UnmaskRequest)
    return msg.survivors
