"""The server survives every bad client message; replayed shares count as dropouts."""

from __future__ import annotations

import contextlib
import dataclasses
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secureagg import ConfigError, DecodeError, RoundAborted
from secureagg.hazmat import open_sealed, seal
from secureagg.protocol import (
    AdvertiseKeys,
    ClientPolicy,
    ClientSession,
    Graph,
    KeysBroadcast,
    MaskedInput,
    RoundConfig,
    RoundResult,
    ServerSession,
    ShareKeys,
    SharesDelivery,
    Stage,
    UnmaskResponse,
    decode,
    encode,
    new_round_id,
)
from secureagg.protocol import (
    simulate_configured_round as _run_round,
)
from secureagg.protocol._client_state import SharesSent
from secureagg.protocol._server import Outbox

N, D, BITS, T = 7, 12, 16, 3
IDS = list(range(1, N + 1))

WEAK = ClientPolicy(allow_minority_threshold=True)
"""These tests study thresholds at or below half a neighbourhood: the named opt-out."""


def run_round(*args: Any, **kwargs: Any) -> RoundResult:
    """simulate_configured_round with clients that take these tests' minority thresholds."""
    return _run_round(*args, policy=WEAK, **kwargs)


def make_config(graph: Graph | None = None, d: int = D, bits: int = BITS) -> RoundConfig:
    return RoundConfig(new_round_id(), bits, d, T, graph or Graph.complete(IDS))


def inputs(d: int = D) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(1)
    return {u: rng.integers(0, 2**BITS, d, dtype=np.uint16) for u in IDS}


def expected(xs: dict[int, np.ndarray], members: frozenset[int]) -> np.ndarray:
    total = sum(xs[u].astype(np.uint64) for u in members) % 2**BITS
    return np.asarray(total, dtype=np.uint16)


def tamper(victim: int, stage: Stage, fn: Callable[[bytes], bytes]) -> Callable[..., bytes]:
    def hook(s: Stage, u: int, data: bytes) -> bytes:
        return fn(data) if (s, u) == (stage, victim) else data

    return hook


def masked(data: bytes, vector: np.ndarray, bits: int | None = None) -> bytes:
    """The masked input re-encoded with another vector (and, if given, another b)."""
    msg = decode(data)
    assert isinstance(msg, MaskedInput)
    return encode(dataclasses.replace(msg, vector=vector, bits=msg.bits if bits is None else bits))


BAD_MASKED: dict[str, Callable[[bytes], bytes]] = {
    "garbage": lambda b: b"\x00garbage" * 5,
    "truncated": lambda b: b[:-3],
    "extended": lambda b: b + b"\x00",
    "short vector": lambda b: masked(b, np.zeros(D - 1, np.uint16)),
    "long vector": lambda b: masked(b, np.zeros(D + 1, np.uint16)),
    "wide elements": lambda b: masked(b, np.zeros(D, np.uint32), 32),
    "one bit wider": lambda b: masked(b, np.zeros(D, np.uint32), BITS + 1),
    "one bit narrower": lambda b: masked(b, np.zeros(D, np.uint16), BITS - 1),
    "64-bit elements": lambda b: masked(b, np.zeros(D, np.uint64), 64),
    "bit flip in header": lambda b: b[:5] + bytes([b[5] ^ 0x40]) + b[6:],
    "another round": lambda b: encode(dataclasses.replace(decode(b), round_id=new_round_id())),
    "empty": lambda b: b"",
}


@pytest.mark.parametrize("kind", list(BAD_MASKED))
def test_bad_masked_input_is_a_dropout(kind: str) -> None:
    xs = inputs()
    res = run_round(make_config(), xs, to_server=tamper(3, Stage.MASKED_INPUT, BAD_MASKED[kind]))
    assert res.survivors == frozenset(IDS) - {3}
    assert np.array_equal(res.total, expected(xs, res.survivors))
    assert res.dropouts == {3: Stage.MASKED_INPUT}
    assert res.rejected


def test_out_of_range_elements_are_refused_for_narrow_b() -> None:
    """At b = 12 an element 2^12 needs a 13th bit: a 13-bit vector is refused whole."""
    cfg = RoundConfig(new_round_id(), 12, D, T, Graph.complete(IDS))
    xs = {u: (v % 2**12).astype(np.uint16) for u, v in inputs().items()}
    hook = tamper(2, Stage.MASKED_INPUT, lambda b: masked(b, np.full(D, 2**12, np.uint16), 13))
    res = run_round(cfg, xs, to_server=hook)
    assert res.survivors == frozenset(IDS) - {2}
    want = sum(xs[u].astype(np.uint64) for u in res.survivors) % 2**12
    assert np.array_equal(res.total, want)


@pytest.mark.parametrize("stage", [Stage.ADVERTISE, Stage.SHARE_KEYS, Stage.UNMASK])
@pytest.mark.parametrize("kind", ["garbage", "truncated", "extended", "empty"])
def test_bad_messages_at_other_stages(stage: Stage, kind: str) -> None:
    xs = inputs()
    res = run_round(make_config(), xs, to_server=tamper(5, stage, BAD_MASKED[kind]))
    assert np.array_equal(res.total, expected(xs, res.survivors))
    if stage is Stage.UNMASK:
        assert res.survivors == frozenset(IDS)  # its input is in; others hold its shares
    else:
        assert res.survivors == frozenset(IDS) - {5}


class DuplicatingRound:
    """Sends the victim's message of ``stage`` twice: ``second(first bytes)`` follows it."""

    def __init__(
        self, stage: Stage, victim: int, second: Callable[[bytes], bytes] = lambda b: b
    ) -> None:
        self.stage, self.victim, self.second = stage, victim, second

    def run(self) -> tuple[dict[int, np.ndarray], frozenset[int], np.ndarray, ServerSession]:
        cfg = make_config()
        xs = inputs()
        clients = {u: ClientSession(cfg, u, policy=WEAK) for u in IDS}
        server = ServerSession(cfg)
        for u, c in clients.items():
            c.provide_input(xs[u])
            data = c.advertise()
            server.receive(data)
            if (Stage.ADVERTISE, u) == (self.stage, self.victim):
                server.receive(self.second(data))
        while True:
            out = server.close_stage()
            stage = server.stage
            if stage is None:
                break
            for u, data in out.items():
                reply = clients[u].receive(data)
                server.receive(reply)
                if (stage, u) == (self.stage, self.victim):
                    server.receive(self.second(reply))
        return xs, server.result.survivors, server.result.total, server


def _other_keys(data: bytes) -> bytes:
    msg = decode(data)
    assert isinstance(msg, AdvertiseKeys)
    fresh = decode(ClientSession(make_config(), msg.sender, policy=WEAK).advertise())
    assert isinstance(fresh, AdvertiseKeys)
    return encode(dataclasses.replace(msg, c_pk=fresh.c_pk, s_pk=fresh.s_pk))


def _other_commitment(data: bytes) -> bytes:
    msg = decode(data)
    assert isinstance(msg, ShareKeys)
    return encode(dataclasses.replace(msg, seed_commitment=bytes(32)))


def _other_share(data: bytes) -> bytes:
    msg = decode(data)
    assert isinstance(msg, UnmaskResponse)
    (v, share), *rest = msg.seed_shares
    return encode(dataclasses.replace(msg, seed_shares=((v, share[:-1] + b"\x01"), *rest)))


ALL_STAGES = [Stage.ADVERTISE, Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASK]


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_identical_retransmission_is_harmless(stage: Stage) -> None:
    xs, survivors, total, server = DuplicatingRound(stage, 4).run()
    assert survivors == frozenset(IDS)
    assert np.array_equal(total, expected(xs, survivors))  # counted once
    assert server.retransmissions == 1
    assert server.rejected == [] and server.dropouts == {}


@pytest.mark.parametrize(
    ("stage", "second"),
    [(Stage.ADVERTISE, _other_keys), (Stage.SHARE_KEYS, _other_commitment)],
)
def test_a_different_second_message_drops_the_client(
    stage: Stage, second: Callable[[bytes], bytes]
) -> None:
    xs, survivors, total, server = DuplicatingRound(stage, 4, second).run()
    assert survivors == frozenset(IDS) - {4}
    assert np.array_equal(total, expected(xs, survivors))
    assert [r.client for r in server.rejected] == [4]
    assert "two different messages" in server.rejected[0].reason
    assert server.dropouts == {4: stage}


def test_a_different_second_masked_input_is_refused_and_the_first_stands() -> None:
    changed = []

    def second(data: bytes) -> bytes:
        msg = decode(data)
        assert isinstance(msg, MaskedInput)
        changed.append(True)
        return masked(data, (msg.vector + 1).astype(msg.vector.dtype))

    xs, survivors, total, server = DuplicatingRound(Stage.MASKED_INPUT, 4, second).run()
    assert changed and survivors == frozenset(IDS)
    assert np.array_equal(total, expected(xs, survivors))  # the first, unchanged input
    assert [r.client for r in server.rejected] == [4]
    assert "the first one stands" in server.rejected[0].reason
    assert server.retransmissions == 0


def test_a_different_second_unmask_response_discards_its_shares() -> None:
    xs, survivors, total, server = DuplicatingRound(Stage.UNMASK, 4, _other_share).run()
    assert survivors == frozenset(IDS)  # its input is in; the others' shares rebuild
    assert np.array_equal(total, expected(xs, survivors))
    assert server.dropouts == {4: Stage.UNMASK}
    assert [r.client for r in server.rejected] == [4]


# -- replayed and re-addressed share ciphertexts ------------------------------------------


def first_delivery_of(victim: int, cfg: RoundConfig) -> dict[int, bytes]:
    """The share ciphertexts client ``victim`` receives in a round of ``cfg``."""
    seen: dict[int, bytes] = {}

    def grab(stage: Stage, u: int, data: bytes) -> bytes:
        if (stage, u) == (Stage.MASKED_INPUT, victim):
            msg = decode(data)
            assert isinstance(msg, SharesDelivery)
            seen.update(msg.ciphertexts)
        return data

    run_round(cfg, inputs(), to_client=grab)
    return seen


def swap_ciphertext(sender: int, ct: bytes) -> Callable[[bytes], bytes]:
    def fn(data: bytes) -> bytes:
        msg = decode(data)
        assert isinstance(msg, SharesDelivery)
        cts = tuple((v, ct if v == sender else c) for v, c in msg.ciphertexts)
        return encode(dataclasses.replace(msg, ciphertexts=cts))

    return fn


def test_share_ciphertext_replayed_from_another_round_fails_and_counts_as_a_dropout() -> None:
    old = first_delivery_of(1, make_config())
    xs = inputs()
    res = run_round(
        make_config(), xs, to_client=tamper(1, Stage.MASKED_INPUT, swap_ciphertext(2, old[2]))
    )
    # client 1 could not authenticate 2's shares: it masked without 2 and said so; the server
    # then leaves 1's input out (its masks with 2 would not cancel) and the sum stays exact.
    assert 1 not in res.survivors and 2 in res.survivors
    assert np.array_equal(res.total, expected(xs, res.survivors))
    assert_named_as_dropped(res, by=1, sender=2)


def test_share_ciphertext_readdressed_to_another_client_fails() -> None:
    cfg = make_config()
    xs = inputs()
    stolen: dict[str, bytes] = {}

    def up(stage: Stage, u: int, data: bytes) -> bytes:
        if (stage, u) == (Stage.SHARE_KEYS, 2):
            msg = decode(data)
            assert isinstance(msg, ShareKeys)
            stolen["ct"] = dict(msg.ciphertexts)[3]  # meant for client 3
        return data

    def down(stage: Stage, u: int, data: bytes) -> bytes:
        if (stage, u) == (Stage.MASKED_INPUT, 1):
            return swap_ciphertext(2, stolen["ct"])(data)
        return data

    res = run_round(cfg, xs, to_server=up, to_client=down)
    assert 1 not in res.survivors and {2, 3} <= res.survivors
    assert np.array_equal(res.total, expected(xs, res.survivors))
    assert_named_as_dropped(res, by=1, sender=2)


def assert_named_as_dropped(res: RoundResult, *, by: int, sender: int) -> None:
    """Client ``by`` masked without ``sender`` and named it; the server left ``by`` out."""
    (rejection,) = res.rejected
    assert (rejection.stage, rejection.client) == (Stage.MASKED_INPUT, by)
    assert f"could not authenticate the shares of [{sender}]" in rejection.reason
    assert res.dropouts == {by: Stage.MASKED_INPUT}


@pytest.mark.parametrize("forge", ["reflected", "other round"])
def test_share_ciphertext_fails_on_the_associated_data_alone(forge: str) -> None:
    """Ciphertexts under the *right* key that only the associated data can refuse.

    "reflected": the server hands client 1 its own ciphertext for 2 as if it came from 2
    (k_12 = k_21, the key derivation orders the ids). Accepted, 1 would later answer for
    "2" with shares of its own secrets. "other round": a bundle under k_12, addressed from 2
    to 1, but sealed with another round id. Either must fail and count, for client 1, as 2
    dropping; the server then leaves 1 out and the rest sum exactly.
    """
    cfg = make_config()
    xs = inputs()
    clients = {u: ClientSession(cfg, u, policy=WEAK) for u in IDS}
    server = ServerSession(cfg)
    for u, c in clients.items():
        c.provide_input(xs[u])
        server.receive(c.advertise())
    out = server.close_stage()
    sent = {u: clients[u].receive(data) for u, data in out.items()}
    for data in sent.values():
        server.receive(data)
    own = decode(sent[1])
    assert isinstance(own, ShareKeys)
    mine_for_2 = dict(own.ciphertexts)[2]
    state = clients[1]._state
    assert isinstance(state, SharesSent)
    key = state.enc_keys[2]
    if forge == "reflected":
        assert open_sealed(key, mine_for_2, round_id=cfg.digest, sender=1, recipient=2)
        bad = mine_for_2
    else:
        other = new_round_id()
        bundle = open_sealed(key, mine_for_2, round_id=cfg.digest, sender=1, recipient=2)
        bad = seal(key, bundle, round_id=other, sender=2, recipient=1)
        assert open_sealed(key, bad, round_id=other, sender=2, recipient=1) == bundle
    out = server.close_stage()
    reply = decode(clients[1].receive(swap_ciphertext(2, bad)(out[1])))
    assert isinstance(reply, MaskedInput) and reply.excluded == (2,)
    assert clients[1].masked_with == frozenset(IDS) - {1, 2}
    server.receive(encode(reply))
    for u in IDS[1:]:
        server.receive(clients[u].receive(out[u]))
    out = server.close_stage()
    for u, data in out.items():
        server.receive(clients[u].receive(data))
    server.close_stage()
    assert server.result.survivors == frozenset(IDS) - {1}
    assert np.array_equal(server.result.total, expected(xs, server.result.survivors))


def test_client_treats_failed_shares_as_that_sender_dropping() -> None:
    cfg = make_config()
    clients = {u: ClientSession(cfg, u, policy=WEAK) for u in IDS}
    server = ServerSession(cfg)
    for u, c in clients.items():
        c.provide_input(inputs()[u])
        server.receive(c.advertise())
    out = server.close_stage()
    for u, data in out.items():
        server.receive(clients[u].receive(data))
    out = server.close_stage()
    msg = decode(out[1])
    assert isinstance(msg, SharesDelivery)
    garbled = tuple((v, bytes(len(c)) if v == 5 else c) for v, c in msg.ciphertexts)
    reply = decode(clients[1].receive(encode(dataclasses.replace(msg, ciphertexts=garbled))))
    assert isinstance(reply, MaskedInput)
    assert reply.excluded == (5,)
    assert clients[1].masked_with == frozenset(IDS) - {1, 5}


# -- fuzzing --------------------------------------------------------------------------------


EDITS = st.one_of(
    st.binary(max_size=80).map(lambda junk: lambda b: junk),
    st.integers(0, 400).map(lambda cut: lambda b: b[: min(cut, len(b) - 1)]),
    st.tuples(st.integers(0, 10**6), st.integers(1, 255)).map(
        lambda p: (
            lambda b: b[: p[0] % len(b)] + bytes([b[p[0] % len(b)] ^ p[1]]) + b[p[0] % len(b) + 1 :]
        )
    ),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stage=st.sampled_from([Stage.ADVERTISE, Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASK]),
    victim=st.sampled_from(IDS),
    edit=EDITS,
)
def test_server_never_crashes_on_mangled_messages(
    stage: Stage, victim: int, edit: Callable[[bytes], bytes]
) -> None:
    xs = inputs()
    shift = np.zeros(D, np.uint16)
    forged = []

    def hook(s: Stage, u: int, data: bytes) -> bytes:
        if (s, u) != (stage, victim):
            return data
        mangled = edit(data)
        with contextlib.suppress(DecodeError):
            if getattr(decode(mangled), "sender", victim) != victim:
                # the flip rewrote the sender id: a forger on a transport that does not
                # authenticate senders (ServerSession.receive(sender=) is the defence)
                forged.append(mangled)
        if s is Stage.MASKED_INPUT:
            # A flip inside the vector itself is just another input (nothing can tell it
            # from a client's choice): account for it, so the check below stays exact.
            try:
                before, after = decode(data), decode(mangled)
            except DecodeError:
                return mangled
            if isinstance(after, MaskedInput) and after.vector.shape == (D,):
                assert isinstance(before, MaskedInput)
                if after.vector.dtype == before.vector.dtype and after.round_id == before.round_id:
                    shift[:] = after.vector - before.vector
        return mangled

    try:
        res = run_round(make_config(), xs, to_server=hook)
    except RoundAborted:
        return  # a clean abort is allowed; a wrong sum or any other exception is not
    if forged:
        return  # no crash is all that is asked of a forged sender
    want = expected(xs, res.survivors)
    if victim in res.survivors:
        want = want + shift
    assert np.array_equal(res.total, want)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stage=st.sampled_from([Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASK]),
    victim=st.sampled_from(IDS),
    edit=EDITS,
)
def test_mangled_server_messages_give_the_exact_sum_or_a_clean_abort(
    stage: Stage, victim: int, edit: Callable[[bytes], bytes]
) -> None:
    """A server message damaged on its way: the client refuses or the sender counts as lost."""
    xs = inputs()
    try:
        res = run_round(make_config(), xs, to_client=tamper(victim, stage, edit))
    except RoundAborted:
        return
    assert np.array_equal(res.total, expected(xs, res.survivors))


def test_server_ignores_garbage_in_every_state() -> None:
    cfg = make_config()
    server = ServerSession(cfg)
    junk = [b"", b"SAGG", b"SAGG\x01\x05", bytes(200), b"\xff" * 70]
    for _ in range(6):
        for j in junk:
            server.receive(j)
        try:
            server.close_stage()
        except RoundAborted:
            break
    assert server.stage is None
    assert len(server.rejected) >= len(junk)


# -- memory ----------------------------------------------------------------------------------


def server_peak_bytes(n: int, d: int) -> int:
    """Peak traced memory of the server's calls in the masked-input and unmask stages.

    Client 1 never sends its masked input (the server rebuilds its mask key and regenerates
    its pairwise masks with its 4 neighbours); client 2 does not answer the unmask request.
    """
    ids = list(range(1, n + 1))
    graph = Graph.harary(ids, 4, b"m" * 16)  # a fixed graph: the memory, not the seed
    cfg = RoundConfig(new_round_id(), 32, d, 3, graph, server_graph_seed=True)
    policy = dataclasses.replace(WEAK, allow_server_graph_seed=True)
    clients = {u: ClientSession(cfg, u, policy=policy) for u in ids}
    server = ServerSession(cfg)
    for c in clients.values():
        server.receive(c.advertise())
    for _ in range(2):
        out = server.close_stage()
        replies = {}
        for u, data in out.items():
            if server.stage is Stage.MASKED_INPUT:
                clients[u].provide_input(np.full(d, u, np.uint32))
            replies[u] = clients[u].receive(data)
        if server.stage is not Stage.MASKED_INPUT:
            for r in replies.values():
                server.receive(r)
    # the masked inputs (n * d words) exist before tracing starts; the server sees them
    # one at a time, as a transport would hand them over
    peak = 0
    for silent in (1, 2):
        tracemalloc.start()
        for u, data in replies.items():
            if u != silent:
                server.receive(data)
        out = server.close_stage()
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        replies = {u: clients[u].receive(data) for u, data in out.items()}
    assert server.result.survivors == frozenset(ids) - {1}
    want = (sum(ids) - 1) * np.ones(d, np.uint64) % 2**32
    assert np.array_equal(server.result.total, want)
    assert server.dropouts == {1: Stage.MASKED_INPUT, 2: Stage.UNMASK}
    return peak


def test_server_memory_does_not_grow_with_n_times_d() -> None:
    d = 40_000  # 160 kB per vector
    small, large = server_peak_bytes(8, d), server_peak_bytes(32, d)
    assert large < 4 * d * 4 + 600_000  # the accumulator, one mask buffer, tables
    assert large < 8 * d * 4  # far below n * d (32 vectors = 5 MB)
    assert large < 1.5 * small + 200_000


@pytest.mark.parametrize("batch", [1024, 2])
def test_a_wrong_unmask_share_is_outvoted_when_more_than_t_arrive(
    batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Client 1 answers with well-formed but wrong shares; the others' shares rebuild (also
    when the server rebuilds the secrets two per batch)."""
    from secureagg.protocol import _server

    monkeypatch.setattr(_server, "_BATCH", batch)
    xs = inputs()

    def corrupt(data: bytes) -> bytes:
        msg = decode(data)
        assert isinstance(msg, UnmaskResponse)

        def bad(pairs: tuple[tuple[int, bytes], ...]) -> tuple[tuple[int, bytes], ...]:
            return tuple((v, s[:-1] + bytes([s[-1] ^ 1])) for v, s in pairs)

        wrong = dataclasses.replace(
            msg, seed_shares=bad(msg.seed_shares), key_shares=bad(msg.key_shares)
        )
        return encode(wrong)

    res = run_round(
        make_config(),
        xs,
        dropouts={Stage.MASKED_INPUT: [6]},
        to_server=tamper(1, Stage.UNMASK, corrupt),
    )
    assert res.survivors == frozenset(IDS) - {6}
    assert np.array_equal(res.total, expected(xs, res.survivors))


def test_secrets_rebuilt_in_ring_order_batches_give_the_exact_sum(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Harary round whose secrets are rebuilt three per batch, in the ring's order (seeds of
    the survivors and keys of the dropped): the exact sum."""
    from secureagg.protocol import _server

    monkeypatch.setattr(_server, "_BATCH", 3)
    ids = list(range(1, 13))
    graph = Graph.harary(ids, 6, new_round_id())
    config = RoundConfig(new_round_id(), BITS, D, 4, graph, server_graph_seed=True)
    xs = {u: np.full(D, 3 * u, np.uint16) for u in ids}
    policy = ClientPolicy(allow_server_graph_seed=True)
    dropouts = {Stage.MASKED_INPUT: [2, 7], Stage.UNMASK: [5]}
    res = _run_round(config, xs, dropouts=dropouts, policy=policy)
    assert res.survivors == frozenset(ids) - {2, 7}
    assert np.array_equal(res.total, expected(xs, res.survivors))


def test_too_few_shares_of_one_secret_abort_the_round() -> None:
    """Enough clients answer the unmask request, but only 2 (< t) hold client 1's shares:
    the round aborts naming that secret, not with a wrong sum."""
    ids = list(range(1, 11))
    graph = Graph.harary(ids, 4, new_round_id())  # client 1 and 4 neighbours
    config = RoundConfig(new_round_id(), BITS, D, T, graph, server_graph_seed=True)
    silent = set(sorted(graph.neighbours(1))[1:])  # 3 of them never answer the unmask request
    xs = {u: np.full(D, u, np.uint16) for u in ids}

    def drop(stage: Stage, u: int, data: bytes) -> bytes | None:
        return None if stage is Stage.UNMASK and u in silent else data

    policy = ClientPolicy(allow_server_graph_seed=True)
    with pytest.raises(RoundAborted, match="only 2 shares of client 1's self-mask seed"):
        _run_round(config, xs, to_server=drop, policy=policy)


# -- each meaning check of the server, by the reason it logs ------------------------------


def edit(**changes: object) -> Callable[[bytes], bytes]:
    """Re-encode a message with some fields changed."""
    return lambda b: encode(dataclasses.replace(decode(b), **changes))  # type: ignore[arg-type]


def edit_with(fn: Callable[[object], dict[str, object]]) -> Callable[[bytes], bytes]:
    """Re-encode a message with fields computed from the decoded message."""
    return lambda b: encode(dataclasses.replace(decode(b), **fn(decode(b))))  # type: ignore[arg-type]


LOW_ORDER = (1).to_bytes(32, "little")  # the point u = 1 of RFC 7748 section 6.1
SHARE66 = bytes(66)
# (stage, victim, edit, reason, dropouts before, clients missing from the sum)
MEANING_CASES = {
    "zero key": (Stage.ADVERTISE, 3, edit(c_pk=bytes(32)), "invalid", {}, {3}),
    "low-order key": (Stage.ADVERTISE, 3, edit(s_pk=LOW_ORDER), "invalid", {}, {3}),
    "c_pk equal to s_pk": (
        Stage.ADVERTISE,
        3,
        edit_with(lambda m: {"s_pk": m.c_pk}),  # type: ignore[attr-defined]
        "a key equal",
        {},
        {3},
    ),
    "signature when unsigned": (
        Stage.ADVERTISE,
        3,
        edit(signature=bytes(64)),
        "signature in an unsigned round",
        {},
        {3},
    ),
    "unknown sender": (Stage.ADVERTISE, 3, edit(sender=99), "unknown", {}, {3}),
    "server message": (
        Stage.ADVERTISE,
        3,
        lambda b: encode(KeysBroadcast(decode(b).round_id, 3, ())),
        "not a client message",
        {},
        {3},
    ),
    "wrong stage": (
        Stage.SHARE_KEYS,
        3,
        lambda b: encode(
            AdvertiseKeys(decode(b).round_id, 3, LOW_ORDER, LOW_ORDER)  # a stage-0 message
        ),
        "does not belong to SHARE_KEYS",
        {},
        {3},
    ),
    "shares for too few": (
        Stage.SHARE_KEYS,
        3,
        edit_with(lambda m: {"ciphertexts": m.ciphertexts[1:]}),  # type: ignore[attr-defined]
        "exactly its neighbours",
        {},
        {3},
    ),
    "other keys digest": (
        Stage.SHARE_KEYS,
        3,
        edit(keys_digest=bytes(32)),
        "other keys than the server sent",
        {},
        {3},
    ),
    "shares from a silent client": (
        Stage.SHARE_KEYS,
        5,
        edit(sender=3),
        "did not advertise",
        {Stage.ADVERTISE: [3]},
        {3, 5},
    ),
    "masked input from outside U2": (
        Stage.MASKED_INPUT,
        5,
        edit(sender=3),
        "not in U2",
        {Stage.SHARE_KEYS: [3]},
        {3, 5},
    ),
    "excludes a stranger": (
        Stage.MASKED_INPUT,
        3,
        edit(excluded=(99,)),
        "never sent",
        {},
        {3},
    ),
    "seed shares for the wrong clients": (
        Stage.UNMASK,
        3,
        edit_with(lambda m: {"seed_shares": m.seed_shares[1:]}),  # type: ignore[attr-defined]
        "self-mask shares for the wrong clients",
        {},
        set(),
    ),
    "key shares for a survivor": (
        Stage.UNMASK,
        3,
        edit(key_shares=((2, SHARE66),)),
        "key shares for the wrong clients",
        {},
        set(),
    ),
    "unmask answer from one not asked": (
        Stage.UNMASK,
        5,
        edit(sender=3),
        "not asked",
        {Stage.MASKED_INPUT: [3]},
        {3},
    ),
}


@pytest.mark.parametrize("case", list(MEANING_CASES))
def test_each_meaning_check_refuses_and_the_rest_sum_exactly(case: str) -> None:
    stage, victim, fn, reason, dropouts, missing = MEANING_CASES[case]
    xs = inputs()
    res = run_round(
        make_config(),
        xs,
        dropouts=dropouts,
        to_server=tamper(victim, stage, fn),
    )
    assert res.survivors == frozenset(IDS) - missing
    assert np.array_equal(res.total, expected(xs, res.survivors))
    (rejection,) = res.rejected
    assert rejection.stage is stage and reason in rejection.reason


@pytest.mark.parametrize("workers", [1, 3])
def test_mask_removal_threads_do_not_change_the_sum(
    workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Single-core mode and three threads both give the exact sum, with dropouts."""
    from secureagg.hazmat import _prg
    from secureagg.protocol import _server

    monkeypatch.setattr(_server, "_DEFAULT_WORKERS", workers)
    monkeypatch.setattr(_prg, "PARALLEL_MIN", 0)  # threads even for this small round
    monkeypatch.setattr(_prg, "PARALLEL_MIN_D", 0)
    xs = inputs()
    res = run_round(make_config(), xs, dropouts={Stage.MASKED_INPUT: [2], Stage.UNMASK: [5]})
    assert res.survivors == frozenset(IDS) - {2}
    assert np.array_equal(res.total, expected(xs, res.survivors))
    with pytest.raises(ConfigError):
        _server.ServerSession(make_config(), workers=0)
    with pytest.raises(ConfigError):
        _server.set_server_workers(0)


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("bits", [12, 21, 23, 36])
def test_high_bits_summed_packed_give_the_exact_sum(
    workers: int, bits: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """b with r >= 4 high bits: the server sums them still packed (hazmat.PackedSum), in
    pieces of one 8-element group on 1 or 3 threads, with dropouts at both late stages."""
    from secureagg.hazmat import _packed_sum
    from secureagg.protocol import _server

    monkeypatch.setattr(_server, "_DEFAULT_WORKERS", workers)
    monkeypatch.setattr(_packed_sum, "_GROUPS", 1)
    monkeypatch.setattr(_packed_sum, "PARALLEL_MIN_D", 0)
    d = 37
    rng = np.random.default_rng(bits)
    xs = {u: rng.integers(0, 2**bits, d, dtype=np.uint64) for u in IDS}
    xs[1][:] = 2**bits - 1  # all ones: the most a lane holds
    config = RoundConfig(new_round_id(), bits, d, T, Graph.complete(IDS))
    res = run_round(config, xs, dropouts={Stage.MASKED_INPUT: [2], Stage.UNMASK: [5]})
    assert res.survivors == frozenset(IDS) - {2}
    want = sum(xs[u] for u in res.survivors) % 2**bits  # no wrap: 6 inputs of < 2^36
    assert res.total.tolist() == want.tolist()


def test_lazily_closed_stages_give_close_stages_messages() -> None:
    """close_stage_lazily gives the same bytes as close_stage at every stage (read twice,
    and read after the round moved on), with clients dropping before share-keys (so a
    sender's recipients include clients outside U2), at masked input and at unmask."""
    ids = list(range(1, 15))
    # commit-reveal: the ring is random, but no ring of degree 6 lets these dropouts abort
    config = RoundConfig(new_round_id(), BITS, D, 3, Graph.harary(ids, 6))
    clients = {u: ClientSession(config, u, policy=WEAK) for u in ids}
    for u in ids:
        clients[u].provide_input(np.full(D, u, np.uint16))
    eager, lazy = ServerSession(config), ServerSession(config)
    silent = {Stage.SHARE_KEYS: {2, 9}, Stage.MASKED_INPUT: {5}, Stage.UNMASK: {11}}
    replies = {u: clients[u].advertise() for u in ids}
    outboxes = []
    while True:
        for data in replies.values():
            eager.receive(data)
            lazy.receive(data)
        want = eager.close_stage()
        got = lazy.close_stage_lazily()
        assert dict(got) == want and dict(got) == want and list(got) == list(want)
        with pytest.raises(KeyError):
            got[max(ids) + 1]
        outboxes.append((got, want))
        if eager.stage is None:
            break
        gone = set().union(*(s for st, s in silent.items() if st.value <= eager.stage.value))
        replies = {u: clients[u].receive(m) for u, m in want.items() if u not in gone}
    assert lazy.result.survivors == eager.result.survivors == frozenset(ids) - {2, 9, 5}
    assert np.array_equal(lazy.result.total, eager.result.total)
    for got, want in outboxes:
        assert dict(got) == want


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 40),
    st.integers(1, 9),
    st.lists(st.integers(0, 45), max_size=60),
    st.booleans(),
)
def test_outbox_reading_ahead_gives_each_message_and_builds_little_more(
    n: int, read_ahead: int, reads: list[int], in_order_first: bool
) -> None:
    """An Outbox gives build(recipient) for every read, in any order, twice or after a
    KeyError; read in sending order it builds each message once (read_ahead at a time);
    however it is read, it builds at most read_ahead - 1 messages more than it is asked for."""
    recipients = [3 * i + 1 for i in range(n)]
    built: list[int] = []

    def build(u: int) -> bytes:
        built.append(u)
        return u.to_bytes(4, "big") * 3

    box = Outbox(recipients, build, read_ahead)
    asked = 0
    if in_order_first:
        assert [box[u] for u in box] == [build(u) for u in recipients]
        built.clear()  # the reference calls above are not the outbox's
        asked = 0
        box = Outbox(recipients, build, read_ahead)
        assert dict(box) == {u: u.to_bytes(4, "big") * 3 for u in recipients}
        assert sorted(built) == recipients  # each built once
        built.clear()
    for r in reads:
        u = 3 * r + 1 if r % 7 else 2  # 2 is no recipient
        if u not in recipients:
            with pytest.raises(KeyError):
                box[u]
            continue
        assert box[u] == u.to_bytes(4, "big") * 3
        asked += 1
    assert len(built) <= asked + read_ahead - 1
