"""The public names of secureagg.protocol are pinned: changing them is an API change."""

from __future__ import annotations

import dataclasses

import secureagg.protocol as protocol

EXPECTED = {
    "AdvertiseKeys",
    "AggregateResult",
    "ClientPolicy",
    "ClientSession",
    "ConsistencyRequest",
    "ConsistencySignature",
    "Cost",
    "FileJournal",
    "Graph",
    "GraphParams",
    "Journal",
    "KeyEntry",
    "KeysBroadcast",
    "MaskedInput",
    "MemoryJournal",
    "Message",
    "Rejection",
    "RoundConfig",
    "RoundPlan",
    "RoundResult",
    "SeedCommitments",
    "SeedReveal",
    "ServerSession",
    "ShareKeys",
    "SharesDelivery",
    "Stage",
    "UnmaskRequest",
    "UnmaskResponse",
    "choose_parameters",
    "decode",
    "default_threshold",
    "encode",
    "new_round_id",
    "plan_round",
    "simulate_configured_round",
    "simulate_round",
}


def test_all_is_pinned() -> None:
    assert set(protocol.__all__) == EXPECTED
    for name in protocol.__all__:
        assert getattr(protocol, name) is not None


def test_contract_fields() -> None:
    """The fields docs/architecture.md promises to the layers above."""
    fields = {f.name for f in dataclasses.fields(protocol.RoundResult)}
    assert {"total", "survivors", "client_cost", "server_cost", "captured"} <= fields
    assert {f.name for f in dataclasses.fields(protocol.Cost)} == {
        "seconds",
        "bytes_sent",
        "bytes_received",
    }
    assert {f.name for f in dataclasses.fields(protocol.RoundConfig)} >= {
        "round_id",
        "bits",
        "d",
        "threshold",
        "graph",
        "signed",
    }
    assert [s.name for s in protocol.Stage] == [
        "ADVERTISE",
        "REVEAL",
        "SHARE_KEYS",
        "MASKED_INPUT",
        "CONSISTENCY",
        "UNMASK",
    ]
    params = protocol.choose_parameters(100, dropout_rate=0.1, corrupt_fraction=0.05)
    assert params.degree > 0 and params.threshold > 1
