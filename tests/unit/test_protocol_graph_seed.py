"""The SecAgg+ graph seed: the clients' commit-reveal, and what a hostile server can still do.

The attack: a server that picks the Harary ring's seed tries seeds until t of its colluders
are neighbours of a victim; those colluders then hold t shares of both the victim's
self-mask seed and its mask key, and the server unmasks the victim's input alone. With the
server-seed opt-out it works (about 65 tries at n=30, k=8, t=3, 3 colluders); with the
default commit-reveal every client refuses any seed but the one its committed list gives.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from secureagg import RoundAborted
from secureagg.hazmat import LABEL_MASK, KeyPair, MaskBuffer, combine, derive_key
from secureagg.protocol import (
    ClientPolicy,
    ClientSession,
    Graph,
    KeysBroadcast,
    MaskedInput,
    MemoryJournal,
    RoundConfig,
    SeedCommitments,
    SeedReveal,
    ServerSession,
    Stage,
    decode,
    encode,
    new_round_id,
)
from secureagg.protocol._client_state import InputSent
from secureagg.protocol._codec import pairs_bytes
from secureagg.protocol._commitment import graph_commitment, graph_seed

N, K, T, D, BITS = 30, 8, 3, 6, 16
IDS = list(range(1, N + 1))
VICTIM, COLLUDERS = 1, (28, 29, 30)
WEAK = ClientPolicy(allow_minority_threshold=True)  # t=3 is below the majority of k+1=9
OPTED_OUT = dataclasses.replace(WEAK, allow_server_graph_seed=True)


def inputs() -> dict[int, npt.NDArray[Any]]:
    rng = np.random.default_rng(7)
    return {u: rng.integers(0, 2**BITS, D).astype(np.uint16) for u in IDS}


def surrounded(graph: Graph) -> bool:
    return set(COLLUDERS) <= graph.neighbours(VICTIM)


class Round:
    """Honest client sessions; the test plays the (hostile) server between them."""

    def __init__(self, config: RoundConfig, policy: ClientPolicy) -> None:
        self.config = config
        self.xs = inputs()
        self.journals = {u: MemoryJournal() for u in IDS}
        self.clients = {
            u: ClientSession(config, u, policy=policy, journal=self.journals[u]) for u in IDS
        }
        for u, c in self.clients.items():
            c.provide_input(self.xs[u])
        self.server = ServerSession(config)
        for c in self.clients.values():
            self.server.receive(c.advertise())
        self.masked: dict[int, npt.NDArray[Any]] = {}

    def deliver(self, out: dict[int, bytes]) -> None:
        for u, data in out.items():
            reply = self.clients[u].receive(data)
            msg = decode(reply)
            if isinstance(msg, MaskedInput):
                self.masked[u] = msg.vector.copy()
            self.server.receive(reply)

    def until_masked_inputs(self) -> None:
        out = self.server.close_stage()
        while self.server.stage is not Stage.MASKED_INPUT:
            self.deliver(out)
            out = self.server.close_stage()
        self.deliver(out)


def unmask_the_victim(r: Round) -> npt.NDArray[Any]:
    """The server and its colluding neighbours of the victim: t shares of b_v and s_sk_v."""
    holdings = []
    for c in COLLUDERS:
        state = r.clients[c]._state
        assert isinstance(state, InputSent)
        holdings.append((c, state.holdings[VICTIM]))
    s_sk = combine({c: s for c, (s, _) in holdings}, T)
    b = combine({c: b for c, (_, b) in holdings}, T)
    keys = KeyPair.from_private(s_sk)
    added, subtracted = [b], []
    for w in sorted(r.clients[VICTIM].masked_with):
        s_pk = r.server._state.u1[w].s_pk  # type: ignore[union-attr]
        seed = derive_key(
            keys.agree(s_pk), label=LABEL_MASK, id_a=VICTIM, id_b=w, round_id=r.config.digest
        )
        (added if w > VICTIM else subtracted).append(seed)
    y = r.masked[VICTIM].copy()
    MaskBuffer(D, BITS).apply(y, add=subtracted, subtract=added)
    return y


def test_with_the_server_seed_opt_out_grinding_surrounds_a_victim_and_unmasks_it() -> None:
    rid = new_round_id()
    tries = 0
    while True:
        tries += 1
        seed = os.urandom(16)
        graph = Graph.harary(IDS, K, seed)
        if surrounded(graph):
            break
        assert tries < 20_000
    config = RoundConfig(rid, BITS, D, T, graph, server_graph_seed=True)
    r = Round(config, OPTED_OUT)
    r.until_masked_inputs()
    assert np.array_equal(unmask_the_victim(r), r.xs[VICTIM])  # the victim's input, alone
    # and a client whose policy does not name the opt-out never takes part
    with pytest.raises(RoundAborted, match="allow_server_graph_seed"):
        ClientSession(config, 2, policy=WEAK)


def committed_round() -> tuple[Round, dict[int, bytes]]:
    """Default config: every client has advertised (with its commitment); the server holds
    the committed list it sends next."""
    config = RoundConfig(new_round_id(), BITS, D, T, Graph.harary(IDS, K))
    assert config.commit_reveal and not config.server_graph_seed
    r = Round(config, WEAK)
    return r, r.server.close_stage()


def test_by_default_the_server_cannot_move_the_seed_once_commitments_are_fixed() -> None:
    r, lists = committed_round()
    commitments = decode(lists[VICTIM]).commitments  # type: ignore[union-attr]
    r.deliver(lists)  # every client reveals; the server now knows every r_u
    reveals = dict(r.server._state.reveals)  # type: ignore[union-attr]
    # The grinding the opt-out allowed, done now by the server with every honest reveal in
    # hand: other values for its colluders' shares until the victim is surrounded.
    tries = 0
    while True:
        tries += 1
        forged = dict(reveals) | {c: os.urandom(32) for c in COLLUDERS}
        ground = Graph.harary(IDS, K).with_seed(
            graph_seed(r.config.digest, pairs_bytes(tuple(sorted(forged.items()))))
        )
        if surrounded(ground):
            break
        assert tries < 20_000
    victim = r.clients[VICTIM]
    members = sorted(ground.neighbours(VICTIM) | {VICTIM})
    entries = tuple(r.server._state.u1[v] for v in members)  # type: ignore[union-attr]
    keys = KeysBroadcast(r.config.round_id, VICTIM, entries, tuple(sorted(forged.items())))
    with pytest.raises(RoundAborted, match="do not open exactly the committed list"):
        victim.receive(encode(keys))
    # Re-committing the colluders to the ground values needs a new list for the victim; a
    # restored victim (saved before it revealed) refuses it: its journal holds its reveal.
    before = ClientSession.restore_state(
        r.clients[VICTIM]._saved_before_reveal,  # type: ignore[attr-defined]
        journal=r.journals[VICTIM],
        policy=WEAK,
    )
    relisted = dict(commitments) | {
        c: graph_commitment(r.config.digest, c, forged[c]) for c in COLLUDERS
    }
    again = SeedCommitments(r.config.round_id, VICTIM, tuple(sorted(relisted.items())))
    with pytest.raises(RoundAborted, match="already answered reveal"):
        before.receive(encode(again))


@pytest.fixture(autouse=True)
def _keep_state_before_reveal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a test restore a client as it was just before it revealed (a rollback)."""
    original = ClientSession.receive

    def receive(self: ClientSession, data: bytes) -> bytes:
        if self.stage is Stage.REVEAL:
            self._saved_before_reveal = self.export_state()  # type: ignore[attr-defined]
        return original(self, data)

    monkeypatch.setattr(ClientSession, "receive", receive)


def test_a_rollback_before_the_reveal_resends_the_same_bytes_for_the_same_list() -> None:
    r, lists = committed_round()
    first = r.clients[VICTIM].receive(lists[VICTIM])
    restored = ClientSession.restore_state(
        r.clients[VICTIM]._saved_before_reveal,  # type: ignore[attr-defined]
        journal=r.journals[VICTIM],
        policy=WEAK,
    )
    assert restored.receive(lists[VICTIM]) == first
    other = decode(lists[VICTIM])
    assert isinstance(other, SeedCommitments)
    dropped = tuple(p for p in other.commitments if p[0] != COLLUDERS[0])
    again = ClientSession.restore_state(
        r.clients[VICTIM]._saved_before_reveal,  # type: ignore[attr-defined]
        journal=r.journals[VICTIM],
        policy=WEAK,
    )
    with pytest.raises(RoundAborted, match="already answered reveal"):
        again.receive(encode(dataclasses.replace(other, commitments=dropped)))


def test_a_list_without_the_clients_own_commitment_is_refused() -> None:
    r, lists = committed_round()
    shown = decode(lists[VICTIM])
    assert isinstance(shown, SeedCommitments)
    for bad in (
        tuple(p for p in shown.commitments if p[0] != VICTIM),  # left out
        tuple((v, os.urandom(32) if v == VICTIM else c) for v, c in shown.commitments),  # swapped
    ):
        c = ClientSession(r.config, VICTIM, policy=WEAK)
        c.advertise()
        with pytest.raises(RoundAborted, match="own graph-seed commitment"):
            c.receive(encode(dataclasses.replace(shown, recipient=VICTIM, commitments=bad)))
    with pytest.raises(RoundAborted, match="not in this round"):
        extra = (*shown.commitments, (N + 1, os.urandom(32)))
        r.clients[VICTIM].receive(encode(dataclasses.replace(shown, commitments=extra)))


@pytest.mark.parametrize("change", ["drop", "add", "alter"])
def test_reveals_that_do_not_open_exactly_the_committed_list_are_refused(change: str) -> None:
    r, lists = committed_round()
    r.deliver(lists)
    out = r.server.close_stage()  # the honest keys message, with every reveal
    honest = decode(out[VICTIM])
    assert isinstance(honest, KeysBroadcast) and len(honest.reveals) == N
    reveals = list(honest.reveals)
    if change == "drop":  # a subset: the seed a dropped committer would have let it pick
        reveals = [p for p in reveals if p[0] != COLLUDERS[0]]
    elif change == "add":
        reveals = [*reveals, (N + 5, bytes(32))]  # one more than the list committed
    else:
        reveals[3] = (reveals[3][0], os.urandom(32))
    with pytest.raises(RoundAborted, match="do not open exactly"):
        r.clients[VICTIM].receive(encode(dataclasses.replace(honest, reveals=tuple(reveals))))
    r2, lists2 = committed_round()  # the honest message is taken, and the graph is the seed's
    r2.deliver(lists2)
    out2 = r2.server.close_stage()
    r2.deliver(out2)
    for u in (VICTIM, 2):
        assert r2.clients[u].graph == r2.server.graph


def test_a_committer_that_does_not_reveal_aborts_the_round() -> None:
    r, lists = committed_round()
    silent = COLLUDERS[0]
    r.deliver({u: data for u, data in lists.items() if u != silent})
    with pytest.raises(RoundAborted, match=rf"\[{silent}\] committed to the graph seed"):
        r.server.close_stage()
    assert r.server.dropouts == {silent: Stage.REVEAL}


def test_the_server_refuses_a_reveal_that_does_not_open_its_commitment() -> None:
    r, lists = committed_round()
    liar = COLLUDERS[0]
    r.deliver({u: data for u, data in lists.items() if u != liar})
    r.clients[liar].receive(lists[liar])
    r.server.receive(encode(SeedReveal(r.config.round_id, liar, os.urandom(32))))
    assert any("does not open" in x.reason for x in r.server.rejected)
    with pytest.raises(RoundAborted, match="did not reveal"):
        r.server.close_stage()


def test_the_whole_round_sums_exactly_and_the_reveal_stage_costs_o_n_bytes() -> None:
    r, lists = committed_round()
    assert all(len(data) > 36 * N for data in lists.values())  # every commitment, each client
    out = lists
    while r.server.stage is not None:
        r.deliver(out)
        out = r.server.close_stage()
    total = sum(r.xs[u].astype(np.uint64) for u in IDS) % 2**BITS
    assert np.array_equal(r.server.result.total, total)
