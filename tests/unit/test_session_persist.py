"""ClientSession.export_state / restore_state at every state, and refusal of bad bytes."""

from __future__ import annotations

import hashlib
import struct
from functools import partial

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import HandRound

from secureagg import ConfigError, DecodeError, RoundAborted
from secureagg.protocol import (
    ClientPolicy,
    ClientSession,
    MemoryJournal,
    Stage,
    UnmaskRequest,
    decode,
    encode,
)
from secureagg.protocol._client_state import (
    Aborted,
    Advertised,
    Done,
    Fresh,
    InputSent,
    SharesSent,
    Signed,
)
from secureagg.protocol._persist import decode_state

D, BITS = 5, 12

WEAK = ClientPolicy(allow_minority_threshold=True)
"""These tests study thresholds at or below half a neighbourhood: the named opt-out."""


# Honest sessions driven by hand (tests/support.py), inputs 0, u, 2u, ..., with journals.
Round = partial(
    HandRound,
    d=D,
    bits=BITS,
    counter=3,
    policy=WEAK,
    journals=True,
    inputs=lambda u: np.arange(D, dtype=np.uint16) * u,
)


def same_session(a: ClientSession, b: ClientSession) -> None:
    assert a is not b
    assert a.config == b.config and a.client_id == b.client_id
    assert a._state == b._state
    assert (a._input is None) == (b._input is None)
    if a._input is not None and b._input is not None:
        assert a._input.dtype == b._input.dtype and np.array_equal(a._input, b._input)
    assert (a.stage, a.aborted, a.masked_with) == (b.stage, b.aborted, b.masked_with)


@pytest.mark.parametrize("signed", [False, True])
def test_every_state_survives_export_and_restore(signed: bool) -> None:
    r = Round(signed=signed)
    c = r.clients[1]
    seen = []
    expected = [Advertised, SharesSent, InputSent] + ([Signed] if signed else []) + [Done]
    for _ in expected:
        blob = c.export_state()
        copy = r.restore(1, blob)
        same_session(c, copy)
        assert copy.export_state() == blob  # the format is canonical: nothing lost or added
        seen.append(type(c._state))
        r.step()
    assert seen == expected
    fresh = ClientSession(r.config, 2, identity=r.identities[2], policy=WEAK)
    same_session(fresh, r.restore(2, fresh.export_state()))
    assert isinstance(r.restore(2, fresh.export_state())._state, Fresh)


@pytest.mark.parametrize("signed", [False, True])
def test_a_restored_session_gives_the_same_replies_or_refuses(signed: bool) -> None:
    """A copy restored before a reply meets the journal: it re-sends the recorded bytes of
    a consistency or unmask reply, and refuses to mask again (its input is gone)."""
    r = Round(signed=signed)
    r.step()  # clients now in SharesSent, the server sends their shares
    stages = 0
    while r.server.stage is not None:
        for u, data in r.out.items():
            copy = r.restore(u, r.clients[u].export_state())
            reply = r.clients[u].receive(data)
            if stages == 0:
                with pytest.raises(RoundAborted, match="journal"):
                    copy.receive(data)
            else:
                assert copy.receive(data) == reply
                same_session(r.clients[u], copy)
            r.server.receive(reply)
        r.out = r.server.close_stage()
        stages += 1
    assert stages == (3 if signed else 2)  # shares, (consistency,) unmask
    assert np.array_equal(r.server.result.total, sum(r.inputs.values()) % 2**BITS)


def test_a_restored_session_makes_the_same_checks() -> None:
    r = Round(signed=True)
    while r.server.stage is not Stage.UNMASK:
        r.step()
    # client 1 signed U3; a request with another survivor list must be refused after restore too
    copy = r.restore(1, r.clients[1].export_state())
    assert isinstance(copy._state, Signed)
    msg = decode(r.out[1])
    assert isinstance(msg, UnmaskRequest)
    other = UnmaskRequest(msg.round_id, 1, msg.survivors[:-1], msg.survivors[-1:], msg.signatures)
    with pytest.raises(RoundAborted, match="differs from the one it signed"):
        copy.receive(encode(other))
    done = r.restore(2, r.clients[2].export_state())
    done.receive(r.out[2])
    again = r.restore(2, done.export_state())
    assert isinstance(again._state, Done)
    with pytest.raises(RoundAborted, match="second unmask request"):
        again.receive(r.out[2])


def test_an_aborted_session_stays_aborted_and_reveals_nothing() -> None:
    r = Round()
    r.step()
    r.step()  # clients hold shares: the unmask request is next
    c = r.clients[1]
    with pytest.raises(RoundAborted):
        c.receive(b"not a message")
    c.provide_input(r.inputs[1])  # a caller that keeps going must not get the input saved
    blob = c.export_state()
    assert decode_state(blob).vector is None
    restored = r.restore(1, blob)
    assert isinstance(restored._state, Aborted) and restored.aborted == c.aborted
    assert restored.stage is None and restored.masked_with == frozenset()
    with pytest.raises(RoundAborted, match="already aborted"):
        restored.receive(r.out[1])  # the genuine unmask request: no share comes out
    with pytest.raises(RoundAborted):
        restored.advertise()
    assert isinstance(r.restore(1, restored.export_state())._state, Aborted)


def test_the_input_is_saved_only_until_it_is_masked() -> None:
    r = Round()
    assert decode_state(r.clients[1].export_state()).vector is not None  # Advertised
    r.step()
    r.step()
    r.clients[1].provide_input(r.inputs[1])  # already masked and sent: no use any more
    assert decode_state(r.clients[1].export_state()).vector is None


def test_the_identity_key_is_not_saved_and_must_match() -> None:
    r = Round(signed=True)
    blob = r.clients[1].export_state()
    private = r.identities[1].private_bytes_raw()
    assert private not in blob
    with pytest.raises(ConfigError, match="identity"):
        ClientSession.restore_state(blob, journal=MemoryJournal())
    with pytest.raises(ConfigError, match="does not match"):
        ClientSession.restore_state(blob, identity=r.identities[2], journal=MemoryJournal())


def test_the_private_keys_are_in_the_blob() -> None:
    """Documented: the bytes are as secret as the client's keys (so keep them on the client)."""
    r = Round()
    state = r.clients[1]._state
    assert isinstance(state, Advertised)
    assert state.s.private in r.clients[1].export_state()


# -- malformed bytes -------------------------------------------------------------------------


def reseal(body: bytes, version: int = 2) -> bytes:
    """A blob around ``body`` with a correct length and digest (to reach the inner checks)."""
    head = b"SACS" + bytes([version]) + struct.pack(">Q", len(body))
    return head + body + hashlib.sha256(head + body).digest()


def body_of(blob: bytes) -> bytes:
    return blob[13:-32]


def test_the_documented_envelope() -> None:
    blob = Round().clients[1].export_state()
    assert blob[:5] == b"SACS\x02"
    assert struct.unpack(">Q", blob[5:13])[0] == len(blob) - 13 - 32
    assert reseal(body_of(blob)) == blob


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda b: b"SAGG" + b[4:], "bad magic"),
        (lambda b: b[:4] + b"\x01" + b[5:], "version 1"),
        (lambda b: b + b"\x00", "1 trailing bytes"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b[:10], "truncated"),
        (lambda b: b[:-40] + bytes([b[-40] ^ 1]) + b[-39:], "digest"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "digest"),
        (lambda b: reseal(body_of(b) + b"\x00"), "trailing"),
    ],
)
def test_damaged_envelopes_are_refused(mangle: object, match: str) -> None:
    blob = Round().clients[1].export_state()
    with pytest.raises(DecodeError, match=match):
        ClientSession.restore_state(mangle(blob), journal=MemoryJournal())  # type: ignore[operator]


def test_not_bytes_is_refused() -> None:
    with pytest.raises(DecodeError, match="bytes, not str"):
        ClientSession.restore_state("SACS", journal=MemoryJournal())  # type: ignore[arg-type]


def parts(blob: bytes) -> tuple[bytes, int, int, bytes]:
    """(config + client id + graph seed, state tag, input flag, the rest) of a blob's body
    (complete graph: the graph seed is its length byte 0)."""
    body = body_of(blob)
    n = struct.unpack(">I", body[:4])[0]
    assert body[4 + n + 4] == 0
    head = body[: 4 + n + 5]
    return head, body[4 + n + 5], body[4 + n + 6], body[4 + n + 7 :]


def test_inconsistent_contents_are_refused() -> None:
    r = Round(n=6)
    advertised = r.clients[1].export_state()
    head, tag, flag, rest = parts(advertised)
    assert (tag, flag) == (1, 1)
    cases = {
        "unknown session state": head + bytes([9, 0]),
        "no longer holds one": head + bytes([5, 1]) + rest[: 1 + 4 + 2 * D],  # Done with input
        "input flag": head + bytes([1, 2]) + rest,
        "not 5 words": head + bytes([1, 1, 4]) + struct.pack(">I", D) + bytes(4 * D) + rest,
        "outside": head + bytes([1, 1, 2]) + struct.pack(">I", D) + b"\xff" * 2 * D,
        "Signed state in an unsigned": head + bytes([4, 0]) + struct.pack(">II", 0, 0),
        "not UTF-8": head + bytes([6, 0]) + struct.pack(">I", 2) + b"\xff\xfe",
    }
    r.step()
    r.step()
    head3, tag3, _, rest3 = parts(r.clients[1].export_state())
    assert tag3 == 3  # InputSent: holdings (count, rows of 4 + 132), then U2
    count = struct.unpack(">I", rest3[:4])[0]
    rows, u2 = rest3[4 : 4 + 136 * count], rest3[4 + 136 * count :]
    assert u2 == struct.pack(">6I", 5, 2, 3, 4, 5, 6)
    cases["do not match"] = (
        head3 + bytes([3, 0]) + rest3[:4] + rows + struct.pack(">5I", 4, 2, 3, 4, 5)
    )
    unsorted = rows[136:272] + rows[:136] + rows[272:]
    cases["increasing"] = head3 + bytes([3, 0]) + rest3[:4] + unsorted + u2
    cfg_len = struct.unpack(">I", head[:4])[0]
    bad_client = head[: 4 + cfg_len] + struct.pack(">I", 99)
    cases["not in the saved round"] = bad_client + bytes([0, 0, 0])
    cases["cannot have"] = head[:-1] + bytes([32]) + bytes(32) + bytes([1, 1]) + rest
    for match, body in cases.items():
        with pytest.raises(DecodeError, match=match):
            ClientSession.restore_state(reseal(body), journal=MemoryJournal())
    tail = head[4 + cfg_len :] + bytes([0, 0])
    with pytest.raises(DecodeError, match="bad magic"):
        ClientSession.restore_state(
            reseal(struct.pack(">I", 4) + b"abcd" + tail), journal=MemoryJournal()
        )
    cfg = r.config.to_bytes()
    at = 4 + 1 + 1 + len(r.config.round_id) + 1 + 4  # the threshold
    refused = cfg[:at] + struct.pack(">I", 100) + cfg[at + 4 :]  # t above the degree
    with pytest.raises(DecodeError, match="config is invalid: threshold"):
        ClientSession.restore_state(
            reseal(struct.pack(">I", len(refused)) + refused + tail), journal=MemoryJournal()
        )


def saved_blobs() -> list[bytes]:
    """One blob per state, signed mode, plus an aborted one."""
    r = Round(signed=True, n=5, t=3)
    out = [ClientSession(r.config, 1, identity=r.identities[1], policy=WEAK).export_state()]
    while r.server.stage is not None:
        out.append(r.clients[1].export_state())
        r.step()
    out.append(r.clients[1].export_state())
    with pytest.raises(RoundAborted):
        r.clients[1].receive(b"")
    out.append(r.clients[1].export_state())
    return out


BLOBS = saved_blobs()


@settings(max_examples=200, deadline=None)
@given(which=st.integers(0, len(BLOBS) - 1), cut=st.floats(0, 1, exclude_max=True))
def test_every_truncation_is_a_decode_error(which: int, cut: float) -> None:
    blob = BLOBS[which]
    with pytest.raises(DecodeError):
        ClientSession.restore_state(blob[: int(cut * len(blob))], journal=MemoryJournal())


@settings(max_examples=200, deadline=None)
@given(
    which=st.integers(0, len(BLOBS) - 1),
    where=st.floats(0, 1, exclude_max=True),
    xor=st.integers(1, 255),
    tail=st.binary(max_size=4),
)
def test_every_flipped_byte_is_a_decode_error(
    which: int, where: float, xor: int, tail: bytes
) -> None:
    blob = bytearray(BLOBS[which])
    blob[int(where * len(blob))] ^= xor
    with pytest.raises(DecodeError):
        ClientSession.restore_state(bytes(blob) + tail, journal=MemoryJournal())


@settings(max_examples=100, deadline=None)
@given(which=st.integers(0, len(BLOBS) - 1), tail=st.binary(min_size=1, max_size=64))
def test_trailing_garbage_is_a_decode_error(which: int, tail: bytes) -> None:
    with pytest.raises(DecodeError, match="trailing"):
        ClientSession.restore_state(BLOBS[which] + tail, journal=MemoryJournal())
