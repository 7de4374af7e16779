"""A hostile server against the real ClientSession / ServerSession (issue 12).

Each attack is run as a server would run it; each test fails on the code before the fix
(checked: encoding settings outside the config, no journal, no threshold rule in the
session).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secureagg import ConfigError, DecodeError, ProtocolError, RoundAborted
from secureagg.protocol import (
    ClientPolicy,
    ClientSession,
    ConsistencyRequest,
    ConsistencySignature,
    FileJournal,
    Graph,
    MaskedInput,
    MemoryJournal,
    RoundConfig,
    ServerSession,
    Stage,
    decode,
    encode,
    new_round_id,
    plan_round,
)
from secureagg.protocol._signing import identity_public, survivors_payload, verify

BITS, D = 16, 6
ENCODING = {"max-examples": 80, "clip": 1.0, "frac-bits": 8, "weighted-by": "num-examples"}


def config(
    n: int, t: int, *, signed: bool = False, **encoding: object
) -> tuple[RoundConfig, dict[int, Ed25519PrivateKey]]:
    ids = list(range(1, n + 1))
    keys = {u: Ed25519PrivateKey.generate() for u in ids} if signed else {}
    cfg = RoundConfig(
        new_round_id(1),
        BITS,
        D,
        t,
        Graph.complete(ids),
        signed=signed,
        identity_keys={u: identity_public(k) for u, k in keys.items()},
        encoding={**ENCODING, **encoding},
    )
    return cfg, keys


def inputs(n: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(n)
    return {u: rng.integers(0, 2**BITS, D, dtype=np.uint16) for u in range(1, n + 1)}


# -- 1. everything that shapes a client's message is in the config and its digest -------------


def test_every_encoding_setting_is_in_the_bytes_and_the_digest() -> None:
    cfg, _ = config(4, 3)
    again = RoundConfig.from_bytes(cfg.to_bytes())
    assert again == cfg and again.encoding == cfg.encoding and again.digest == cfg.digest
    for name, value in [
        ("max-examples", 2**62),
        ("clip", 1e-30),
        ("frac-bits", 9),
        ("weighted-by", "batches"),
        ("new-setting", True),
    ]:
        other = dataclasses.replace(cfg, encoding={**cfg.encoding, name: value})
        assert other.digest != cfg.digest, name
        assert RoundConfig.from_bytes(other.to_bytes()).encoding[name] == value
    with pytest.raises(ConfigError):
        dataclasses.replace(cfg, encoding={"clip": float("nan")})
    with pytest.raises(ConfigError):
        dataclasses.replace(cfg, encoding={"bad name": 1})
    with pytest.raises(ConfigError):
        dataclasses.replace(cfg, encoding={"x": [1]})  # type: ignore[dict-item]
    raw = cfg.to_bytes()
    with pytest.raises(DecodeError):
        RoundConfig.from_bytes(raw[:-1])
    with pytest.raises(DecodeError):
        RoundConfig.from_bytes(raw + b"\x00")


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize(
    ("name", "value"), [("max-examples", 2**62), ("clip", 1e-30), ("weighted-by", "batches")]
)
def test_a_client_shown_other_settings_is_never_summed_with_the_rest(
    signed: bool, name: str, value: object
) -> None:
    """The server shows client 1 the real settings and the others forged ones, all under one
    round id. Keys, share encryption and masks are bound to the config digest (and signed
    mode signs it): client 1 is never in a sum with any of the others."""
    n = 5
    real, keys = config(n, 3, signed=signed)
    forged = dataclasses.replace(real, encoding={**real.encoding, name: value})
    xs = inputs(n)
    clients = {u: ClientSession(real if u == 1 else forged, u, identity=keys.get(u)) for u in xs}
    for server_cfg in (real, forged):  # whichever config the server itself uses
        server = ServerSession(server_cfg)
        sessions = {u: ClientSession(c.config, u, identity=keys.get(u)) for u, c in clients.items()}
        live = set(xs)
        for u, c in sessions.items():
            c.provide_input(xs[u])
            server.receive(c.advertise(), sender=u)
        try:
            while True:
                out = server.close_stage()
                if server.stage is None:
                    break
                for u, data in out.items():
                    if u not in live:
                        continue
                    try:
                        server.receive(sessions[u].receive(data), sender=u)
                    except RoundAborted:
                        live.discard(u)
            summed = server.result.survivors
        except RoundAborted:
            summed = frozenset()
        assert not (1 in summed and len(summed) > 1), summed


def test_a_client_refuses_a_minority_threshold_unless_it_opts_out() -> None:
    cfg, _ = config(6, 3)  # a neighbourhood of 6: a majority is 4
    with pytest.raises(RoundAborted, match="not above half of a neighbourhood of 6"):
        ClientSession(cfg, 1)
    weak = ClientPolicy(allow_minority_threshold=True)
    assert ClientSession(cfg, 1, policy=weak).advertise()
    majority, _ = config(6, 4)
    assert ClientSession(majority, 1).advertise()
    with pytest.raises(RoundAborted, match="below this client's minimum 5"):
        ClientSession(majority, 1, policy=ClientPolicy(min_threshold=5))
    with pytest.raises(RoundAborted, match="minimum is 7"):
        ClientSession(majority, 1, policy=ClientPolicy(min_clients=7))


@pytest.mark.parametrize(
    ("policy", "why"),
    [
        (ClientPolicy(encoding={"max-examples": 81}), "max-examples is 80"),
        (ClientPolicy(encoding={"clip": 1}), "clip is 1.0"),  # an int is not the float
        (ClientPolicy(encoding={"weighting": "uniform"}), "weighting is None"),
        (ClientPolicy(bits=32), "bit width 16"),
        (ClientPolicy(d=7), "vector length 6"),
        (ClientPolicy(signed=True), "an unsigned round"),
    ],
)
def test_a_pinned_policy_refuses_other_settings_before_any_key_exists(
    policy: ClientPolicy, why: str
) -> None:
    cfg, _ = config(4, 3)
    with pytest.raises(RoundAborted, match=why):
        ClientSession(cfg, 1, policy=policy)
    pinned = ClientPolicy(encoding=dict(ENCODING), bits=BITS, d=D, signed=False)
    assert ClientSession(cfg, 1, policy=pinned).advertise()


def test_plan_round_is_the_one_place_for_degree_and_threshold() -> None:
    assert plan_round(8) == plan_round(8, degree=None, threshold=None)
    p = plan_round(8)
    assert (p.complete, p.degree, p.threshold, p.below_majority) == (True, 7, 5, False)
    s = plan_round(20, degree=6)
    assert (s.complete, s.degree, s.threshold) == (False, 6, 4)
    with pytest.raises(ConfigError, match="not above half"):
        plan_round(20, degree=6, threshold=3)
    weak = plan_round(20, degree=6, threshold=3, allow_minority_threshold=True)
    assert weak.below_majority and weak.threshold == 3
    helper = plan_round(100, dropout_rate=0.1, corrupt_fraction=0.1)
    assert helper.threshold >= helper.majority  # the helper's t, raised to a majority
    graph = plan_round(30, degree=8).graph(range(1, 31), bytes(16))
    assert graph.degree == 8 and len(graph) == 30


# -- 2. the journal: a restored session never commits twice -----------------------------------


class Round:
    """Honest sessions with journals; the test plays the server by hand."""

    def __init__(self, n: int, t: int, signed: bool) -> None:
        self.config, self.keys = config(n, t, signed=signed)
        self.journals = {u: MemoryJournal() for u in self.config.graph.ids}
        self.xs = inputs(n)
        self.clients = {
            u: ClientSession(self.config, u, identity=self.keys.get(u), journal=self.journals[u])
            for u in self.xs
        }
        self.server = ServerSession(self.config)
        for u, c in self.clients.items():
            c.provide_input(self.xs[u])
            self.server.receive(c.advertise(), sender=u)
        self.out = self.server.close_stage()

    def step(self) -> dict[int, bytes]:
        replies = {u: self.clients[u].receive(data) for u, data in self.out.items()}
        for u, data in replies.items():
            self.server.receive(data, sender=u)
        self.out = self.server.close_stage()
        return replies

    def restore(self, u: int, blob: bytes) -> ClientSession:
        return ClientSession.restore_state(
            blob, identity=self.keys.get(u), journal=self.journals[u]
        )


@pytest.mark.parametrize("signed", [False, True])
def test_rollback_before_masked_input_never_masks_a_second_input(signed: bool) -> None:
    """Restored to before its masked input and given another input (the node trained again
    with a learning rate of 0, say), a client would send y' with the same masks: y - y'
    is x - x'. Its journal makes it refuse."""
    r = Round(4, 3, signed)
    r.step()  # shares
    saved = r.clients[1].export_state()
    shares = r.out[1]
    first = r.step()[1]  # masked inputs
    restored = r.restore(1, saved)
    restored.provide_input(np.zeros(D, dtype=np.uint16))
    with pytest.raises(RoundAborted, match="journal"):
        restored.receive(shares)
    assert restored.aborted is not None
    assert isinstance(decode(first), MaskedInput)


def test_rollback_before_consistency_never_signs_a_second_list() -> None:
    """Signed, n=5, t=3, quorum 4: one colluder (5) and two honest nodes (2, 3) that each
    lose one save. List L1 names everyone; L2 leaves out the target (1). Signatures from
    {1, 2, 3, 5} on L1 and {2, 3, 4, 5} on L2 would give both a quorum, so the server could
    collect b_1's shares under L1 and s_1's under L2. With the journal, 2 and 3 refuse L2."""
    r = Round(5, 3, signed=True)
    r.step()  # shares
    r.step()  # masked inputs; now the consistency requests
    assert r.config.consistency_quorum == 4
    saved = {u: r.clients[u].export_state() for u in (2, 3)}
    rid = r.config.round_id
    l1, l2 = (1, 2, 3, 4, 5), (2, 3, 4, 5)
    on_l1 = {}
    for u in (1, 2, 3):
        reply = decode(r.clients[u].receive(encode(ConsistencyRequest(rid, u, l1))))
        assert isinstance(reply, ConsistencySignature)
        on_l1[u] = reply.signature
    on_l2 = {5: r.keys[5].sign(survivors_payload(r.config, l2))}  # the colluder signs anything
    reply = decode(r.clients[4].receive(encode(ConsistencyRequest(rid, 4, l2))))
    assert isinstance(reply, ConsistencySignature)
    on_l2[4] = reply.signature
    for u in (2, 3):  # rolled back to before their signature
        restored = r.restore(u, saved[u])
        with pytest.raises(RoundAborted, match="already answered consistency"):
            restored.receive(encode(ConsistencyRequest(rid, u, l2)))
        # the same request again gets the same signature back, nothing new
        again = r.restore(u, saved[u])
        same = decode(again.receive(encode(ConsistencyRequest(rid, u, l1))))
        assert isinstance(same, ConsistencySignature) and same.signature == on_l1[u]
    payload = survivors_payload(r.config, l2)
    valid = [u for u, sig in on_l2.items() if verify(r.config.identity_keys[u], sig, payload)]
    assert len(valid) < r.config.consistency_quorum


@pytest.mark.parametrize("signed", [False, True])
def test_rollback_before_unmask_answers_only_the_same_request(signed: bool) -> None:
    r = Round(4, 3, signed)
    while r.server.stage is not Stage.UNMASK:
        r.step()
    saved = r.clients[1].export_state()
    request = r.out[1]
    first = r.step()[1]
    assert r.server.stage is None
    again = r.restore(1, saved).receive(request)
    assert again == first  # byte-identical: nothing new leaves
    msg = decode(request)
    other = encode(dataclasses.replace(msg, dropped=(), survivors=msg.survivors))
    if other == request:  # no one dropped: ask about a neighbour as if it had
        other = encode(
            dataclasses.replace(msg, survivors=msg.survivors[:-1], dropped=msg.survivors[-1:])
        )
    with pytest.raises(RoundAborted):
        r.restore(1, saved).receive(other)


def test_restore_needs_a_journal() -> None:
    cfg, _ = config(4, 3)
    blob = ClientSession(cfg, 1).export_state()
    with pytest.raises(TypeError):
        ClientSession.restore_state(blob)  # type: ignore[call-arg]


def test_the_file_journal_is_durable_append_only_and_survives_a_torn_record(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node.journal"
    j = FileJournal(path)
    assert j.lookup(b"k1") is None
    j.record(b"k1", b"v1")
    j.record(b"k2", b"v" * 1000)
    with pytest.raises(ProtocolError):
        FileJournal(path).record(b"k1", b"other")
    assert os.stat(path).st_mode & 0o077 == 0
    again = FileJournal(path)
    assert again.lookup(b"k1") == b"v1" and again.lookup(b"k2") == b"v" * 1000
    whole = path.read_bytes()
    path.write_bytes(whole + whole[4:20])  # a record torn while being written
    torn = FileJournal(path)
    assert torn.lookup(b"k2") == b"v" * 1000
    torn.record(b"k3", b"v3")  # the torn tail is cut off first
    assert path.read_bytes().startswith(whole)
    assert FileJournal(path).lookup(b"k3") == b"v3"
    damaged = bytearray(path.read_bytes())
    damaged[12] ^= 1  # inside the first record, not its tail
    path.write_bytes(bytes(damaged))
    with pytest.raises(ConfigError, match="damaged"):
        FileJournal(path)
    (tmp_path / "other").write_bytes(b"not a journal")
    with pytest.raises(ConfigError, match="not a secureagg journal"):
        FileJournal(tmp_path / "other")


def test_a_client_whose_journal_cannot_record_refuses_to_reply(tmp_path: Path) -> None:
    folder = tmp_path / "gone"
    r = Round(4, 3, signed=False)
    r.step()  # shares
    blob = r.clients[1].export_state()
    session = ClientSession.restore_state(blob, journal=FileJournal(folder / "j"))  # no folder
    session.provide_input(r.xs[1])
    with pytest.raises(RoundAborted, match="journal refused"):
        session.receive(r.out[1])


class _Interleaved(FileJournal):
    """A FileJournal that, having read the file before recording, waits (up to 0.5 s) for
    the other writer to have read it too: the interleaving two processes of one node can hit
    when a server sends the same message twice at once."""

    def __init__(self, path: Path, barrier: threading.Barrier) -> None:
        self.barrier = barrier
        super().__init__(path)

    def _load_fresh(self) -> None:
        super()._load_fresh()
        # BrokenBarrierError: the other writer is held off (the journal's lock): go on alone
        with contextlib.suppress(threading.BrokenBarrierError):
            self.barrier.wait()


def test_two_concurrent_restored_sessions_never_both_send_a_masked_input(tmp_path: Path) -> None:
    """Two sessions restored from one saved state (two processes of one node, the shares
    message sent twice at once), each given another input: both mask with the same masks.
    The file journal admits one record per key under an exclusive lock, so at most one
    masked input leaves (y - y' would be x - x'). Found in review r1: both records were
    written (the second writer also cut the first one off the file) and both replies left."""
    path = tmp_path / "node.journal"
    r = Round(4, 3, signed=False)
    r.step()  # shares
    saved = r.clients[1].export_state()
    barrier = threading.Barrier(2, timeout=0.5)
    results: dict[int, bytes | Exception] = {}

    def run(i: int) -> None:
        session = ClientSession.restore_state(saved, journal=_Interleaved(path, barrier))
        session.provide_input(r.xs[1] if i == 0 else np.zeros(D, dtype=np.uint16))
        try:
            results[i] = session.receive(r.out[1])
        except RoundAborted as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = [v for v in results.values() if isinstance(v, bytes)]
    assert len(sent) == 1, results
    assert len(FileJournal(path)._entries) == 1
