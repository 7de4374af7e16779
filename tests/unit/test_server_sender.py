"""ServerSession.receive(sender=...): the transport's id of the sender against the claimed one."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import support
from support import HandRound

from secureagg import ConfigError
from secureagg.protocol import (
    ClientPolicy,
    ClientSession,
    RoundConfig,
    ServerSession,
    Stage,
)

D, BITS = 4, 16
IDS = list(range(1, 7))

WEAK = ClientPolicy(allow_minority_threshold=True)
"""These tests study thresholds at or below half a neighbourhood: the named opt-out."""


def sessions() -> tuple[RoundConfig, dict[int, ClientSession], ServerSession]:
    r = HandRound(
        d=D,
        bits=BITS,
        identities=False,
        counter=1,
        policy=WEAK,
        advertise=False,
        inputs=lambda u: np.full(D, u, dtype=np.uint16),
    )
    return r.config, r.clients, r.server


finish = partial(support.finish, sender=True)  # each reply with its true sender


def test_a_message_claiming_another_id_is_refused_and_blamed_on_its_sender() -> None:
    _, clients, server = sessions()
    adverts = {u: c.advertise() for u, c in clients.items()}
    server.receive(adverts[2], sender=3)  # 3 relays (or forged) a message claiming to be 2
    (rej,) = server.rejected
    assert rej.stage is Stage.ADVERTISE and rej.client == 3
    assert "client 3" in rej.reason and "client 2" in rej.reason
    server.receive(adverts[2], sender=2)  # 2's own genuine message is still taken
    assert server.rejected == [rej] and server.retransmissions == 0
    server.receive(adverts[3], sender=3)  # 3 lied: it is out for this stage
    assert server.rejected[-1].client == 3 and "already rejected" in server.rejected[-1].reason
    for u in (1, 4, 5, 6):
        server.receive(adverts[u], sender=u)
    server.close_stage()
    assert server.dropouts == {3: Stage.ADVERTISE}


def test_a_forged_copy_after_the_genuine_message_changes_nothing_for_the_claimed_id() -> None:
    _, clients, server = sessions()
    for u, c in clients.items():
        data = c.advertise()
        server.receive(data, sender=u)
        if u == 2:
            server.receive(data, sender=4)  # not a retransmission of 2, not a conflict for 2
    assert server.retransmissions == 0
    lie, own = server.rejected  # 4's own advert, later in the stage, is refused too
    assert (lie.client, own.client) == (4, 4) and "claiming to be client 2" in lie.reason
    finish(clients, server)
    assert server.result.survivors == frozenset(IDS) - {4}
    assert server.dropouts == {4: Stage.ADVERTISE}
    expected = sum(u for u in IDS if u != 4)
    assert np.array_equal(server.result.total, np.full(D, expected, dtype=np.uint16))


def test_in_a_later_stage_too() -> None:
    _, clients, server = sessions()
    for u, c in clients.items():
        server.receive(c.advertise(), sender=u)
    out = server.close_stage()
    shares = {u: clients[u].receive(out[u]) for u in IDS}
    server.receive(shares[1], sender=5)
    for u in IDS:
        server.receive(shares[u], sender=u)
    assert [r.client for r in server.rejected] == [5, 5]  # the lie, then its own message
    finish(clients, server)
    assert server.result.survivors == frozenset(IDS) - {5}
    assert server.dropouts == {5: Stage.SHARE_KEYS}


def test_matching_senders_give_the_same_round_as_no_sender() -> None:
    _, clients, server = sessions()
    for u, c in clients.items():
        server.receive(c.advertise(), sender=u)
    finish(clients, server)
    assert server.rejected == [] and server.result.survivors == frozenset(IDS)
    assert np.array_equal(server.result.total, np.full(D, sum(IDS), dtype=np.uint16))


def test_unreadable_bytes_name_the_transport_sender() -> None:
    _, _, server = sessions()
    server.receive(b"junk", sender=4)
    server.receive(b"junk")
    assert [r.client for r in server.rejected] == [4, None]


@pytest.mark.parametrize("bad", [0, -1, 2**32, True, "2"])
def test_sender_must_be_a_client_id(bad: object) -> None:
    _, clients, server = sessions()
    with pytest.raises(ConfigError, match="client ids"):
        server.receive(clients[1].advertise(), sender=bad)  # type: ignore[arg-type]


def test_with_a_deduplicating_transport_any_repeat_is_a_conflict() -> None:
    """transport_dedupes: no fingerprints; a repeat (even byte-identical) is a conflict."""
    config, clients, _ = sessions()
    server = ServerSession(config, transport_dedupes=True)
    adverts = {u: c.advertise() for u, c in clients.items()}
    for u, data in adverts.items():
        server.receive(data, sender=u)
    server.receive(adverts[4], sender=4)  # the same bytes again: not a retransmission here
    assert server.retransmissions == 0
    assert server.rejected[-1].client == 4
    keys = server.close_stage()
    assert server.dropouts == {4: Stage.ADVERTISE}
    shares = {u: clients[u].receive(data) for u, data in keys.items()}
    for u, data in shares.items():
        server.receive(data, sender=u)
    masked = {u: clients[u].receive(data) for u, data in server.close_stage().items()}
    for u, data in masked.items():
        server.receive(data, sender=u)
    server.receive(masked[5], sender=5)  # a repeated masked input: the first one stands
    assert "first one stands" in server.rejected[-1].reason
    finish(clients, server)
    assert server.result.survivors == {1, 2, 3, 5, 6}
    expected = sum(np.full(D, u, dtype=np.int64) for u in (1, 2, 3, 5, 6))
    assert np.array_equal(server.result.total.astype(np.int64), expected)


def test_the_default_session_still_tells_a_retransmission_from_a_conflict() -> None:
    _, clients, server = sessions()
    adverts = {u: c.advertise() for u, c in clients.items()}
    for u, data in adverts.items():
        server.receive(data, sender=u)
    server.receive(adverts[4], sender=4)
    assert server.retransmissions == 1 and server.rejected == []
