"""Random commit/reveal schedules of a hostile server against real client sessions.

The server shows each client a committed list of its choice (honest commitments left out,
its own commitments added, one swapped) and then reveals of its choice (the honest ones,
some left out, extra ones, altered ones, values for its own commitments chosen after every
honest reveal), and may roll a client back and ask again. Whatever it does, a client that
goes on uses exactly the seed of the list it revealed for: the hash of the values that open
that list, every one of them committed before the client revealed.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secureagg import RoundAborted
from secureagg.protocol import (
    ClientPolicy,
    ClientSession,
    Graph,
    KeyEntry,
    KeysBroadcast,
    MemoryJournal,
    RoundConfig,
    SeedCommitments,
    decode,
    encode,
    new_round_id,
)
from secureagg.protocol._codec import pairs_bytes
from secureagg.protocol._commitment import graph_commitment, graph_seed

N, K, T = 9, 4, 3
IDS = list(range(1, N + 1))
FAKE = (101, 102)  # ids outside the round: clients the server invents
POLICY = ClientPolicy(allow_minority_threshold=True)


@st.composite
def schedules(draw: st.DrawFn) -> dict[str, object]:
    return {
        "victim": draw(st.sampled_from(IDS)),
        "left_out": draw(st.sets(st.sampled_from(IDS), max_size=4)),
        "drop_own": draw(st.booleans()),
        "foreign": draw(st.booleans()),
        "reveal_drop": draw(st.sets(st.sampled_from(IDS), max_size=2)),
        "reveal_alter": draw(st.sets(st.sampled_from(IDS), max_size=2)),
        "reveal_extra": draw(st.booleans()),
        "rollback_other_list": draw(st.booleans()),
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=schedules())
def test_a_client_goes_on_only_with_the_seed_of_the_list_it_revealed_for(
    case: dict[str, object],
) -> None:
    config = RoundConfig(new_round_id(), 16, 4, T, Graph.harary(IDS, K))
    victim: int = case["victim"]  # type: ignore[assignment]
    journal = MemoryJournal()
    client = ClientSession(config, victim, policy=POLICY, journal=journal)
    adv = decode(client.advertise())
    others = {u: os.urandom(32) for u in IDS if u != victim}  # the honest others' r_u
    commitments = {u: graph_commitment(config.digest, u, r) for u, r in others.items()}
    commitments[victim] = adv.graph_commitment  # type: ignore[union-attr]
    shown = {u: c for u, c in commitments.items() if u not in case["left_out"]}  # type: ignore[operator]
    if case["drop_own"]:
        shown.pop(victim, None)
    if case["foreign"]:
        shown[FAKE[0]] = os.urandom(32)
    saved = client.export_state()
    request = encode(SeedCommitments(config.round_id, victim, tuple(sorted(shown.items()))))
    try:
        reveal = decode(client.receive(request))
    except RoundAborted:
        assert victim not in shown or case["foreign"] or len(shown) <= T
        return
    assert victim in shown and not case["foreign"] and len(shown) > T
    r_victim = reveal.reveal  # type: ignore[union-attr]
    if case["rollback_other_list"]:  # restored from before its reveal, shown another list
        again = ClientSession.restore_state(saved, journal=journal, policy=POLICY)
        swap = next(u for u in sorted(shown) if u != victim)
        other = shown | {swap: os.urandom(32)}  # another commitment for one entry
        raw = encode(SeedCommitments(config.round_id, victim, tuple(sorted(other.items()))))
        try:
            again.receive(raw)
        except RoundAborted as exc:
            assert "already answered reveal" in str(exc)
        else:
            raise AssertionError("a restored client revealed for a second list")
        same = ClientSession.restore_state(saved, journal=journal, policy=POLICY)
        assert decode(same.receive(request)) == reveal  # the same list: the same reveal
    # The reveals: honest values for the list it saw, changed as the schedule says; the
    # server may pick new values for any entry after it has seen every honest reveal.
    values = {u: others[u] for u in shown if u != victim} | {victim: r_victim}
    for u in case["reveal_drop"]:  # type: ignore[attr-defined]
        values.pop(u, None)
    for u in case["reveal_alter"]:  # type: ignore[attr-defined]
        if u in values:
            values[u] = os.urandom(32)
    if case["reveal_extra"]:
        values[FAKE[1]] = os.urandom(32)
    reveals = tuple(sorted(values.items()))
    honest = tuple(
        sorted(({u: others[u] for u in shown if u != victim} | {victim: r_victim}).items())
    )
    own = KeyEntry(victim, adv.c_pk, adv.s_pk)  # type: ignore[union-attr]
    keys = KeysBroadcast(config.round_id, victim, (own,), reveals)
    try:
        client.receive(encode(keys))
    except RoundAborted as exc:
        if reveals == honest:  # the true reveals: only the key checks may refuse (too few)
            assert "neighbours advertised keys" in str(exc)
        else:
            assert "do not open exactly the committed list" in str(exc)
        return
    raise AssertionError("a client went on with one key entry")  # pragma: no cover


@settings(max_examples=40, deadline=None)
@given(left_out=st.sets(st.sampled_from(IDS[1:]), max_size=4))
def test_the_graph_a_client_computes_is_the_seed_of_its_list(left_out: set[int]) -> None:
    """With the honest reveals of the list it was shown (and every key), the client's graph
    is the ring of exactly that list's seed."""
    config = RoundConfig(new_round_id(), 16, 4, T, Graph.harary(IDS, K))
    victim = IDS[0]
    client = ClientSession(config, victim, policy=POLICY)
    adv = decode(client.advertise())
    others = {u: os.urandom(32) for u in IDS if u != victim and u not in left_out}
    listed = {u: graph_commitment(config.digest, u, r) for u, r in others.items()}
    listed[victim] = adv.graph_commitment  # type: ignore[union-attr]
    reveal = decode(
        client.receive(
            encode(SeedCommitments(config.round_id, victim, tuple(sorted(listed.items()))))
        )
    )
    values = tuple(sorted((others | {victim: reveal.reveal}).items()))  # type: ignore[union-attr]
    want = config.graph.with_seed(graph_seed(config.digest, pairs_bytes(values)))
    own = KeyEntry(victim, adv.c_pk, adv.s_pk)  # type: ignore[union-attr]
    try:
        client.receive(encode(KeysBroadcast(config.round_id, victim, (own,), values)))
    except RoundAborted as exc:
        assert "neighbours advertised keys" in str(exc)  # keys of no neighbour were sent
    assert client.graph == want
