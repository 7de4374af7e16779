"""SecureAggClient / SecureAggServer: a round over a caller's transport, driven here by hand."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from secureagg import (
    ConfigError,
    DecodeError,
    LocalUpdate,
    ProtocolError,
    RoundAborted,
    SecureAggClient,
    SecureAggConfig,
    SecureAggregator,
    SecureAggServer,
)
from secureagg.fl import plain_average
from secureagg.protocol import MaskedInput, Stage, decode

D = 6
IDS = [1, 2, 3, 4, 5, 6]  # complete graph: degree 5
T = 3  # threshold: each client needs 3 of its 5 neighbours (below a majority: opted in)
SPARE = len(IDS) - 1 - T  # dropouts that can never abort: 2


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def _aggregator(d: int = D, signed: bool = False) -> SecureAggregator:
    cfg = SecureAggConfig(signed=signed, threshold=T, allow_minority_threshold=True)
    return SecureAggregator({"w": torch.zeros(d)}, cfg, max_clients=8, max_examples=100)


def _update(u: int) -> LocalUpdate:
    vec = np.random.default_rng(100 + u).uniform(-0.5, 0.5, D).astype(np.float32)
    return LocalUpdate(vec, num_examples=10 * u, steps=1)


def _drive(
    server: SecureAggServer,
    clients: dict[int, SecureAggClient],
    gone: dict[int, Stage],
    sent: dict[int, list[bytes]] | None = None,
) -> None:
    """Run the round; client u stays silent from stage ``gone[u]`` on (a crash or timeout)."""

    def send(u: int, data: bytes) -> None:
        if sent is not None:
            sent.setdefault(u, []).append(data)
        server.receive(u, data)

    for u, client in clients.items():
        if gone.get(u) is not Stage.ADVERTISE:
            send(u, client.join(server.config_bytes))
    out = server.close_stage()
    while server.stage is not None:
        stage = server.stage
        for u, msg in out.items():
            if u in gone and gone[u].value <= stage.value:
                continue
            if clients[u].needs_update:
                clients[u].provide_update(_update(u), np.random.default_rng(u))
            send(u, clients[u].receive(msg))
        assert server.waiting_for == {u for u in out if u in gone and gone[u].value <= stage.value}
        out = server.close_stage()
    assert out == {}


def _expected_total(agg: SecureAggregator, members: list[int]) -> np.ndarray:
    """The survivors' encodings summed mod 2^b, computed here from the same rounding seeds."""
    enc = agg.client_encoder()
    total = sum(enc.encode(_update(u), np.random.default_rng(u)).astype(object) for u in members)
    return np.asarray(total % (1 << enc.bits), dtype=np.uint64)


def _round(gone: dict[int, Stage]) -> tuple[SecureAggregator, SecureAggServer]:
    agg = _aggregator()
    server = SecureAggServer(agg, IDS)
    clients = {
        u: SecureAggClient(agg.client_encoder(), u, allow_minority_threshold=True) for u in IDS
    }
    _drive(server, clients, gone)
    return agg, server


@pytest.mark.parametrize(
    "stage", [None, Stage.ADVERTISE, Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASK]
)
def test_a_dropout_at_each_stage_leaves_the_survivors_exact_sum(stage: Stage | None) -> None:
    gone = {} if stage is None else {3: stage, 5: stage}
    agg, server = _round(gone)
    res = server.result()
    # A client silent at unmask already sent its masked input: it is in the sum.
    members = [u for u in IDS if u not in gone or gone[u] is Stage.UNMASK]
    assert res.members == members
    assert server.dropouts == dict(gone)
    assert res.protocol is not None
    np.testing.assert_array_equal(
        res.protocol.total.astype(np.uint64), _expected_total(agg, members)
    )
    want = plain_average([_update(u) for u in members])
    assert np.max(np.abs(res.vector - want)) <= res.error_bound
    tol = len(members) * 2.0**-16  # each weight (1: uniform weighting) is off by < 2^-f
    assert res.total_examples == pytest.approx(len(members), abs=tol)


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(st.sampled_from(IDS), st.sampled_from(list(Stage)), max_size=5))
def test_any_dropout_pattern_sums_exactly_or_aborts(gone: dict[int, Stage]) -> None:
    gone = {u: s for u, s in gone.items() if s is not Stage.CONSISTENCY}  # unsigned round
    try:
        agg, server = _round(gone)
    except RoundAborted:
        assert len(gone) > SPARE
        return
    res = server.result()
    members = [u for u in IDS if u not in gone or gone[u] is Stage.UNMASK]
    assert res.members == members
    assert res.protocol is not None
    np.testing.assert_array_equal(
        res.protocol.total.astype(np.uint64), _expected_total(agg, members)
    )


def test_the_update_leaves_the_client_only_masked() -> None:
    agg = _aggregator()
    server = SecureAggServer(agg, IDS)
    clients = {
        u: SecureAggClient(agg.client_encoder(), u, allow_minority_threshold=True) for u in IDS
    }
    sent: dict[int, list[bytes]] = {}
    _drive(server, clients, {}, sent)
    for u in IDS:
        encoded = agg.client_encoder().encode(_update(u), np.random.default_rng(u))
        raw = _update(u).vector.tobytes()
        masked = [m for m in map(decode, sent[u]) if isinstance(m, MaskedInput)]
        assert len(masked) == 1
        assert not np.array_equal(masked[0].vector, encoded)
        assert all(raw not in data and encoded.tobytes() not in data for data in sent[u])


def test_too_many_dropouts_abort_and_no_result() -> None:
    agg = _aggregator()
    server = SecureAggServer(agg, IDS)
    clients = {
        u: SecureAggClient(agg.client_encoder(), u, allow_minority_threshold=True) for u in IDS
    }
    with pytest.raises(RoundAborted):
        _drive(server, clients, {1: Stage.MASKED_INPUT, 2: Stage.MASKED_INPUT, 3: Stage.SHARE_KEYS})
    with pytest.raises(RoundAborted):
        server.result()


def test_result_before_the_end_is_refused() -> None:
    server = SecureAggServer(_aggregator(), IDS)
    with pytest.raises(RoundAborted, match="still collecting"):
        server.result()


def test_client_bad_bytes_are_typed_errors() -> None:
    agg = _aggregator()
    server = SecureAggServer(agg, IDS)
    client = SecureAggClient(agg.client_encoder(), 1, allow_minority_threshold=True)
    with pytest.raises(ProtocolError, match="before join"):
        client.receive(b"anything")
    with pytest.raises(DecodeError):
        client.join(b"not a config")
    with pytest.raises(DecodeError):
        client.join("text")  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        client.join(server.config_bytes[:-3])
    other = SecureAggServer(_aggregator(d=D + 1), IDS)
    with pytest.raises(ConfigError, match="models or settings differ"):
        client.join(other.config_bytes)
    with pytest.raises(ConfigError, match="not in the round"):
        SecureAggClient(agg.client_encoder(), 9, allow_minority_threshold=True).join(
            server.config_bytes
        )
    client.join(server.config_bytes)
    with pytest.raises(ProtocolError, match="twice"):
        client.join(server.config_bytes)
    with pytest.raises(RoundAborted, match="malformed"):
        client.receive(b"\x00garbage")
    assert client.aborted is not None and client.stage is None
    with pytest.raises(RoundAborted):
        client.provide_update(_update(1))


def test_server_records_bad_bytes_and_drops_the_sender() -> None:
    agg = _aggregator()
    server = SecureAggServer(agg, IDS)
    clients = {
        u: SecureAggClient(agg.client_encoder(), u, allow_minority_threshold=True) for u in IDS
    }
    with pytest.raises(DecodeError):
        server.receive(1, "text")  # type: ignore[arg-type]
    server.receive(1, b"junk")
    server.receive(3, b"\x01" * 40)
    for u in (2, 4, 5, 6):
        server.receive(u, clients[u].join(server.config_bytes))
    assert server.waiting_for == set()  # heard from all; two were bad
    out = server.close_stage()
    assert set(out) == {2, 4, 5, 6}
    assert [r.client for r in server.rejected] == [1, 3]
    assert server.dropouts == {1: Stage.ADVERTISE, 3: Stage.ADVERTISE}


def test_masked_stage_without_update_is_a_config_error_not_an_abort() -> None:
    agg = _aggregator()
    server = SecureAggServer(agg, IDS)
    clients = {
        u: SecureAggClient(agg.client_encoder(), u, allow_minority_threshold=True) for u in IDS
    }
    for u in IDS:
        server.receive(u, clients[u].join(server.config_bytes))
    for stage in (Stage.SHARE_KEYS, Stage.MASKED_INPUT):
        out = server.close_stage()
        for u, msg in out.items():
            if stage is Stage.MASKED_INPUT and u == 1:
                assert clients[1].needs_update
                with pytest.raises(ConfigError, match="provide_update"):
                    clients[1].receive(msg)
                assert clients[1].aborted is None
                server.receive(1, clients[1].receive(msg, update=_update(1)))
                continue
            if clients[u].needs_update:
                clients[u].provide_update(_update(u))
            server.receive(u, clients[u].receive(msg))
    for u, msg in server.close_stage().items():
        server.receive(u, clients[u].receive(msg))
    server.close_stage()
    assert server.result().members == IDS
    with pytest.raises(ProtocolError, match="already been sent"):
        clients[1].provide_update(_update(1))


def test_an_update_given_before_join_is_used() -> None:
    agg = _aggregator()
    server = SecureAggServer(agg, IDS)
    clients = {
        u: SecureAggClient(agg.client_encoder(), u, allow_minority_threshold=True) for u in IDS
    }
    for u in IDS:
        clients[u].provide_update(_update(u), np.random.default_rng(u))
        assert not clients[u].needs_update
    _drive(server, clients, {})
    res = server.result()
    assert res.protocol is not None
    np.testing.assert_array_equal(res.protocol.total.astype(np.uint64), _expected_total(agg, IDS))


def _signed_client(
    agg: SecureAggregator, u: int, keys: dict[int, Ed25519PrivateKey], public: dict[int, bytes]
) -> SecureAggClient:
    """Client ``u`` of a signed round, trusting exactly the keys in ``public``."""
    return SecureAggClient(
        agg.client_encoder(),
        u,
        allow_minority_threshold=True,
        identity=keys[u],
        trusted_keys=public,
    )


def test_signed_round_with_trusted_keys() -> None:
    agg = _aggregator(signed=True)
    keys = {u: Ed25519PrivateKey.generate() for u in IDS}
    public = {u: public_bytes(k) for u, k in keys.items()}
    with pytest.raises(ConfigError, match="identity"):
        SecureAggServer(agg, IDS)
    server = SecureAggServer(agg, IDS, identity_keys=public)
    clients = {u: _signed_client(agg, u, keys, public) for u in IDS}
    _drive(server, clients, {4: Stage.CONSISTENCY})
    assert server.result().members == IDS  # its masked input is in the sum
    assert server.dropouts == {4: Stage.CONSISTENCY}
    # A config whose identity keys are not the trusted ones is refused before any message.
    forged = dict(public)
    forged[2] = public_bytes(Ed25519PrivateKey.generate())
    rogue = SecureAggServer(agg, IDS, identity_keys=forged)
    with pytest.raises(ConfigError, match="trusts"):
        _signed_client(agg, 1, keys, public).join(rogue.config_bytes)
    unsigned = SecureAggServer(_aggregator(), IDS)
    with pytest.raises(ConfigError, match="trusts"):
        _signed_client(agg, 1, keys, public).join(unsigned.config_bytes)


def test_server_refuses_too_few_or_too_many_clients() -> None:
    with pytest.raises(ConfigError, match="at least 2"):
        SecureAggServer(_aggregator(), [1])
    with pytest.raises(ConfigError, match="max_clients"):
        SecureAggServer(_aggregator(), range(1, 10))


def test_aggregate_is_the_simulator_under_its_old_name() -> None:
    agg = _aggregator()
    enc = agg.client_encoder()
    encoded = {u: enc.encode(_update(u), np.random.default_rng(u)) for u in IDS}
    with pytest.warns(DeprecationWarning, match="simulate"):
        old = agg.aggregate(encoded)
    new = agg.simulate(encoded)
    assert old.members == new.members == IDS
    np.testing.assert_array_equal(old.vector, new.vector)


def test_a_client_joins_only_a_round_with_its_own_encoding_settings() -> None:
    """The settings are in the round config (and its digest); a client whose encoder has
    other ones refuses before any key exists (issue 12)."""
    server = SecureAggServer(_aggregator(), IDS)
    assert server.config.encoding["max-examples"] == 100
    other = SecureAggregator(
        {"w": torch.zeros(D)},
        SecureAggConfig(threshold=T, allow_minority_threshold=True),
        max_clients=8,
        max_examples=99,
    )
    client = SecureAggClient(other.client_encoder(), 1, allow_minority_threshold=True)
    with pytest.raises(RoundAborted, match="max-examples is 100, this client's is 99"):
        client.join(server.config_bytes)
    majority = SecureAggClient(_aggregator().client_encoder(), 1)  # no opt-out: t=3 of 6
    with pytest.raises(RoundAborted, match="not above half"):
        majority.join(server.config_bytes)


def test_clients_trained_from_different_models_are_never_summed_together() -> None:
    """The recipes never see the global model: a server that sends every client but one a
    model or train settings that make its update zero (lr 0) would read that one client's
    update from the sum. ``bound`` puts a digest of what was sent into the round config; a
    client passes the digest of what it trained from and refuses any other, so the round
    cannot finish with the target alone (review r1: the recipes had no such binding)."""
    agg = _aggregator()
    target_model = hashlib.sha256(b"global model, lr 0.1").hexdigest()
    zero_model = hashlib.sha256(b"global model, lr 0").hexdigest()
    server = SecureAggServer(agg, IDS, bound={"model": target_model})
    assert server.config.encoding["model"] == target_model
    target = SecureAggClient(
        agg.client_encoder(), 1, allow_minority_threshold=True, bound={"model": target_model}
    )
    target.join(server.config_bytes)  # the digest it trained from: it joins
    for u in IDS[1:]:  # trained from the other model: each refuses before any key exists
        other = SecureAggClient(
            agg.client_encoder(), u, allow_minority_threshold=True, bound={"model": zero_model}
        )
        with pytest.raises(RoundAborted, match="model"):
            other.join(server.config_bytes)
    # A config made for them (their digest) has another config digest, which keys and masks
    # are bound to: test_protocol_hostile_server's other-settings test shows such clients
    # are never summed with the target.
    with pytest.raises(ConfigError, match="encoder's own settings"):
        SecureAggServer(agg, IDS, bound={"max-examples": 5})
