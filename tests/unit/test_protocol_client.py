"""The honest client refuses every deviation the server can make, revealing no share."""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import numpy as np
import pytest
from support import HandRound

from secureagg import ConfigError, RoundAborted
from secureagg.protocol import (
    ClientPolicy,
    ClientSession,
    ConsistencyRequest,
    ConsistencySignature,
    KeysBroadcast,
    MaskedInput,
    MemoryJournal,
    SharesDelivery,
    Stage,
    UnmaskRequest,
    UnmaskResponse,
    decode,
    encode,
    new_round_id,
)
from secureagg.protocol._client_state import Aborted

D, BITS = 6, 16

WEAK = ClientPolicy(allow_minority_threshold=True)
"""These tests study thresholds at or below half a neighbourhood: the named opt-out."""


# Honest clients and server driven by hand (tests/support.py), inputs u, u, ..., u.
Round = partial(
    HandRound, d=D, bits=BITS, counter=7, policy=WEAK, inputs=lambda u: np.full(D, u, np.uint16)
)


def reencode(data: bytes, **changes: Any) -> bytes:
    return encode(dataclasses.replace(decode(data), **changes))


def refuses(r: HandRound, u: int, data: bytes, match: str) -> None:
    """Client u refuses ``data``, reveals no share, and stays refused.

    Nothing comes back from the refused call (it raises); the client drops every share it
    held; and no later message, neither the bad one again nor the honest one the server
    should have sent, gets a reply out of it.
    """
    client = r.clients[u]
    with pytest.raises(RoundAborted, match=match):
        client.receive(data)
    assert client.aborted is not None and client.stage is None
    assert client.masked_with == frozenset()
    assert isinstance(client._state, Aborted)  # holds no key, seed or share any more
    for later in (data, r.out[u]):
        with pytest.raises(RoundAborted, match="already aborted"):
            client.receive(later)


def test_honest_round_sums_exactly() -> None:
    r = Round()
    r.until(Stage.UNMASK)
    r.step()
    assert r.server.result.survivors == set(r.inputs)
    assert np.array_equal(r.server.result.total, sum(r.inputs.values()))


def test_refuses_overlapping_survivor_and_dropout_lists() -> None:
    r = Round()
    r.until(Stage.UNMASK)
    msg = decode(r.out[1])
    assert isinstance(msg, UnmaskRequest)
    refuses(r, 1, reencode(r.out[1], dropped=(2,)), "overlap")


def test_refuses_a_second_unmask_request() -> None:
    r = Round()
    r.until(Stage.UNMASK)
    first = r.clients[1].receive(r.out[1])
    assert isinstance(decode(first), UnmaskResponse)
    # a second request, e.g. now claiming 2 dropped, would reveal 2's mask key as well
    second = reencode(r.out[1], survivors=(1, 3, 4, 5, 6), dropped=(2,))
    refuses(r, 1, second, "second unmask request")


def test_refuses_a_repeated_identical_unmask_request() -> None:
    r = Round()
    r.until(Stage.UNMASK)
    r.clients[1].receive(r.out[1])
    refuses(r, 1, r.out[1], "second unmask request")


def test_refuses_when_fewer_than_t_neighbours_survive() -> None:
    r = Round(n=6, t=3)
    r.until(Stage.UNMASK)
    # the server claims that 3, 4, 5, 6 dropped: only one neighbour (2) survives
    refuses(r, 1, reencode(r.out[1], survivors=(1, 2), dropped=(3, 4, 5, 6)), "survive")


def test_refuses_when_fewer_than_t_neighbours_advertise() -> None:
    r = Round(n=6, t=3)
    msg = decode(r.out[1])
    assert isinstance(msg, KeysBroadcast)
    fewer = [e for e in msg.entries if e.client in (1, 2, 3)]
    refuses(r, 1, reencode(r.out[1], entries=tuple(fewer)), "advertised")


def test_refuses_its_own_keys_altered() -> None:
    r = Round()
    msg = decode(r.out[1])
    assert isinstance(msg, KeysBroadcast)
    other = msg.entries[1]
    entries = [
        dataclasses.replace(e, s_pk=other.c_pk[:-1] + b"\x00") if e.client == 1 else e
        for e in msg.entries
    ]
    refuses(r, 1, reencode(r.out[1], entries=tuple(entries)), "own keys")


def test_refuses_its_own_keys_missing() -> None:
    r = Round()
    msg = decode(r.out[1])
    assert isinstance(msg, KeysBroadcast)
    others = tuple(e for e in msg.entries if e.client != 1)
    refuses(r, 1, reencode(r.out[1], entries=others), "own keys")


def test_refuses_two_clients_with_the_same_key() -> None:
    r = Round()
    msg = decode(r.out[1])
    assert isinstance(msg, KeysBroadcast)
    by_id = {e.client: e for e in msg.entries}
    entries = [
        dataclasses.replace(e, c_pk=by_id[2].c_pk) if e.client == 3 else e for e in msg.entries
    ]
    refuses(r, 1, reencode(r.out[1], entries=tuple(entries)), "keys are equal")


@pytest.mark.parametrize("stage", [Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASK])
def test_refuses_another_rounds_id(stage: Stage) -> None:
    r = Round()
    r.until(stage)
    other = new_round_id(8)
    refuses(r, 1, reencode(r.out[1], round_id=other), "another round")


def test_refuses_messages_out_of_order_and_misaddressed() -> None:
    r = Round()
    r.until(Stage.MASKED_INPUT)
    early = encode(UnmaskRequest(r.config.round_id, 1, (1, 2, 3, 4, 5, 6), ()))
    refuses(r, 1, early, "unexpected UnmaskRequest")
    refuses(r, 2, r.out[3], "not a server message addressed")
    refuses(r, 4, b"garbage", "malformed")


def test_refuses_lists_naming_clients_it_never_got_shares_from() -> None:
    r = Round()
    r.step(skip=(2,))  # 2 goes silent instead of sending its shares
    r.until(Stage.UNMASK)
    c = r.clients[1]
    assert c.masked_with == {3, 4, 5, 6}
    refuses(r, 1, reencode(r.out[1], dropped=(2,)), "never received")


def test_refuses_ids_outside_the_round() -> None:
    r = Round()
    r.until(Stage.UNMASK)
    refuses(r, 1, reencode(r.out[1], dropped=(99,)), "not in this round")


def test_input_checks() -> None:
    r = Round()
    c = r.clients[1]
    for bad in (
        np.zeros(D + 1, np.uint16),
        np.full(D, 2**BITS, np.uint32),
        np.zeros(D),
        np.full(D, -1, np.int32),
    ):
        for copy in (True, False):
            with pytest.raises(ConfigError):
                c.provide_input(bad, copy=copy)
    with pytest.raises(ConfigError):
        ClientSession(r.config, 77, policy=WEAK)


def test_provide_input_copies_unless_told_to_take_a_buffer_it_can_mask() -> None:
    """By default the caller's array is copied and never changes. copy=False takes an
    array of the ring's dtype as it is and masks it in place (the same bytes go out);
    any other array is still copied."""
    r = Round()
    r.step()
    blob, delivery = r.clients[1].export_state(), r.out[1]
    x = np.full(D, 1, np.uint16)
    sent = []
    for given, copy in ((x.copy(), True), (x.copy(), False), (x.astype(np.int64), False)):
        session = ClientSession.restore_state(blob, journal=MemoryJournal(), policy=WEAK)
        session.provide_input(given, copy=copy)
        kept = np.array_equal(given, x)
        sent.append(session.receive(delivery))
        masked = decode(sent[-1])
        assert isinstance(masked, MaskedInput)
        if copy or given.dtype != np.uint16:
            assert kept and np.array_equal(given, x)  # the caller's array is untouched
        else:
            assert np.array_equal(given, masked.vector)  # masked where it lay
    assert sent[0] == sent[1] == sent[2]


def test_client_without_input_refuses_at_the_masked_stage() -> None:
    r = Round()
    r.clients[1]._input = None
    r.step()
    with pytest.raises(RoundAborted, match="no input"):
        r.clients[1].receive(r.out[1])


class TestSignedMode:
    def test_honest_signed_round(self) -> None:
        r = Round(signed=True)
        r.until(Stage.CONSISTENCY)
        assert isinstance(decode(r.out[1]), ConsistencyRequest)
        r.step()
        r.step()
        assert np.array_equal(r.server.result.total, sum(r.inputs.values()))

    def test_refuses_a_forged_key_signature(self) -> None:
        r = Round(signed=True)
        msg = decode(r.out[1])
        assert isinstance(msg, KeysBroadcast)
        entries = [
            dataclasses.replace(e, signature=bytes(64)) if e.client == 4 else e for e in msg.entries
        ]
        refuses(r, 1, reencode(r.out[1], entries=tuple(entries)), "signature")

    def test_refuses_a_survivor_list_other_than_the_one_it_signed(self) -> None:
        r = Round(signed=True)
        r.until(Stage.CONSISTENCY)
        r.step()
        # the server shows client 1 a different U3 in the unmask request
        refuses(r, 1, reencode(r.out[1], survivors=(1, 3, 4, 5, 6), dropped=(2,)), "differs")

    def test_refuses_bad_or_too_few_consistency_signatures(self) -> None:
        r = Round(signed=True)
        r.until(Stage.CONSISTENCY)
        r.step()
        msg = decode(r.out[1])
        assert isinstance(msg, UnmaskRequest)
        forged = tuple((v, bytes(64)) if v == 3 else (v, s) for v, s in msg.signatures)
        refuses(r, 1, reencode(r.out[1], signatures=forged), "signature from client 3")
        refuses(r, 2, reencode(r.out[2], signatures=msg.signatures[:2]), "only 2")

    def test_refuses_another_rounds_id_at_the_consistency_check(self) -> None:
        r = Round(signed=True)
        r.until(Stage.CONSISTENCY)
        refuses(r, 1, reencode(r.out[1], round_id=new_round_id(8)), "another round")

    def test_refuses_a_second_consistency_request(self) -> None:
        r = Round(signed=True)
        r.until(Stage.CONSISTENCY)
        r.clients[1].receive(r.out[1])
        refuses(r, 1, reencode(r.out[1], survivors=(1, 2, 3, 4, 5)), "unexpected")

    def test_two_groups_shown_two_lists_both_refuse(self) -> None:
        """The partition attack: each group gets its own U3 and its own t signatures.

        Group A = {1, 2, 3} is told U3 = {1, 2, 3, 4} (so 6 dropped), group B = {4, 5, 6} is
        told U3 = {3, 4, 5, 6}. Each group signs its list honestly, so each request carries
        t = 3 valid signatures on the list it names. Were t signatures enough, A would send
        t shares of s_sk_6 and B t shares of b_6: the server would unmask x_6. The quorum of
        floor((n + t - 1) / 2) + 1 = 5 signatures makes every client refuse.
        """
        r = Round(n=6, t=3, signed=True)
        assert r.config.consistency_quorum == 5
        r.until(Stage.CONSISTENCY)
        views = {1: (1, 2, 3, 4), 2: (1, 2, 3, 4), 3: (1, 2, 3, 4)}
        views |= {4: (3, 4, 5, 6), 5: (3, 4, 5, 6), 6: (3, 4, 5, 6)}
        sigs: dict[int, bytes] = {}
        for u, view in views.items():
            reply = decode(r.clients[u].receive(reencode(r.out[u], survivors=view)))
            assert isinstance(reply, ConsistencySignature)
            sigs[u] = reply.signature
        for u, view in views.items():
            signers = tuple((v, sigs[v]) for v in sorted(views) if views[v] == view)
            assert len(signers) == r.config.threshold
            dropped = tuple(v for v in range(1, 7) if v not in view)
            request = UnmaskRequest(r.config.round_id, u, view, dropped, signers)
            refuses(r, u, encode(request), "only 3 clients signed")

    def test_a_quorum_of_signatures_is_accepted(self) -> None:
        r = Round(n=6, t=3, signed=True)
        r.until(Stage.CONSISTENCY)
        r.step(skip=(6,))  # 6 does not sign: 5 signatures, exactly the quorum
        msg = decode(r.out[1])
        assert isinstance(msg, UnmaskRequest) and len(msg.signatures) == 5
        r.step()
        assert np.array_equal(r.server.result.total, sum(r.inputs.values()))

    def test_showing_two_clients_two_views_is_caught(self) -> None:
        """The server tells client 2 that 6 dropped while the others saw 6 survive."""
        r = Round(signed=True)
        r.until(Stage.CONSISTENCY)
        sigs = {}
        for u in (1, 3, 4, 5, 6):
            reply = decode(r.clients[u].receive(r.out[u]))
            assert isinstance(reply, ConsistencySignature)
            sigs[u] = reply.signature
        lie = (1, 2, 3, 4, 5)
        reply2 = decode(r.clients[2].receive(reencode(r.out[2], survivors=lie)))
        assert isinstance(reply2, ConsistencySignature)
        forged = tuple(sorted({**{u: sigs[u] for u in (1, 3, 4, 5)}, 2: reply2.signature}.items()))
        request = UnmaskRequest(r.config.round_id, 2, lie, (6,), forged)
        # the others' signatures are on the real U3, so they fail on the lie: no share of 6
        refuses(r, 2, encode(request), "bad consistency signature from client 1")


def test_masked_vector_leaves_no_input_behind() -> None:
    r = Round()
    r.step()
    data = r.clients[1].receive(r.out[1])
    msg = decode(data)
    assert isinstance(msg, MaskedInput) and msg.excluded == ()
    assert r.clients[1]._input is None
    assert isinstance(decode(r.out[2]), SharesDelivery)


def test_signatures_made_under_one_config_do_not_count_under_another() -> None:
    """A server that shows two groups two configs under one round id (another n, t or
    graph) would get two quorums with no honest signer in common. Every signed payload
    carries the config's digest, so the groups' signatures never verify across configs,
    and a client shown another group's signatures refuses to unmask."""
    from secureagg.protocol._signing import advertise_payload, survivors_payload, verify

    r = Round(n=6, t=3, signed=True)
    r.until(Stage.CONSISTENCY)
    r.step()  # every client signs the real U3 under r.config
    msg = decode(r.out[1])
    assert isinstance(msg, UnmaskRequest)
    other = dataclasses.replace(r.config, threshold=4)  # same round id, same keys
    assert other.round_id == r.config.round_id and other.digest != r.config.digest
    keys = r.config.identity_keys
    for v, sig in msg.signatures:
        assert verify(keys[v], sig, survivors_payload(r.config, msg.survivors))
        assert not verify(keys[v], sig, survivors_payload(other, msg.survivors))
    key = r.identities[3]
    c_pk, s_pk = bytes(32), bytes(range(32))
    signed = key.sign(advertise_payload(r.config, 3, c_pk, s_pk))
    assert not verify(keys[3], signed, advertise_payload(other, 3, c_pk, s_pk))
    # A client holding the other config rejects the first group's signatures outright.
    c1 = ClientSession(other, 1, identity=r.identities[1], policy=WEAK)
    c1._state = r.clients[1]._state  # the same secrets and signed U3, only the config differs
    with pytest.raises(RoundAborted, match="bad consistency signature"):
        c1.receive(r.out[1])
