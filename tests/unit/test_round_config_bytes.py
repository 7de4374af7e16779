"""RoundConfig.to_bytes / from_bytes: exact round trips, a pinned layout, strict refusals."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secureagg import ConfigError, DecodeError
from secureagg.protocol import Graph, RoundConfig, new_round_id
from secureagg.protocol._codec import MAX_CLIENTS as CODEC_MAX_CLIENTS
from secureagg.protocol._config import MAX_CLIENTS
from secureagg.protocol._signing import identity_public

IDS = [3, 5, 8, 13, 21, 34, 55, 89, 144, 233]


def make(
    *, harary: bool, signed: bool, ids: list[int] = IDS, server_seed: bool = False
) -> RoundConfig:
    rid = new_round_id(5)
    graph = Graph.harary(ids, 4, rid if server_seed else None) if harary else Graph.complete(ids)
    keys = {u: identity_public(Ed25519PrivateKey.generate()) for u in ids} if signed else {}
    return RoundConfig(
        rid, 20, 1000, 3, graph, signed=signed, identity_keys=keys, server_graph_seed=server_seed
    )


def spec_bytes(
    *,
    rid: bytes,
    bits: int,
    d: int,
    t: int,
    flags: int,
    ids: list[int],
    degree: int,
    seed: bytes | None = None,
    keys: list[tuple[int, bytes]] = (),  # type: ignore[assignment]
    magic: bytes = b"SACF",
    version: int = 3,
    encoding: list[bytes] = (),  # type: ignore[assignment]
) -> bytes:
    """The layout of docs/protocol.md, written out independently of the code under test."""
    out = magic + bytes([version, len(rid)]) + rid + bytes([bits])
    out += struct.pack(">IIB", d, t, flags)
    out += struct.pack(f">I{len(ids)}I", len(ids), *ids) + struct.pack(">I", degree)
    if seed is not None:
        out += bytes([len(seed)]) + seed
    out += struct.pack(">I", len(keys)) + b"".join(struct.pack(">I", u) + k for u, k in keys)
    out += bytes([len(encoding)]) + b"".join(encoding)
    return out


@pytest.mark.parametrize(("harary", "server_seed"), [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("signed", [False, True])
def test_round_trip(harary: bool, signed: bool, server_seed: bool) -> None:
    cfg = make(harary=harary, signed=signed, server_seed=server_seed)
    data = cfg.to_bytes()
    back = RoundConfig.from_bytes(data)
    assert back == cfg
    assert back.graph.is_complete is (not harary)
    assert back.server_graph_seed is server_seed
    assert back.commit_reveal is (harary and not server_seed)
    if not back.commit_reveal:
        assert all(back.graph.neighbours(u) == cfg.graph.neighbours(u) for u in IDS)
    assert dict(back.identity_keys) == dict(cfg.identity_keys)
    assert back.to_bytes() == data


def test_layout_matches_the_documented_one() -> None:
    cfg = make(harary=True, signed=True, server_seed=True)
    seed = cfg.graph.rng_seed
    assert seed is not None
    keys = sorted(cfg.identity_keys.items())
    expected = spec_bytes(
        rid=cfg.round_id, bits=20, d=1000, t=3, flags=7, ids=IDS, degree=4, seed=seed, keys=keys
    )
    assert cfg.to_bytes() == expected
    revealed = make(harary=True, signed=True)  # commit-reveal: no seed in the config
    keys = sorted(revealed.identity_keys.items())
    assert revealed.to_bytes() == spec_bytes(
        rid=revealed.round_id, bits=20, d=1000, t=3, flags=3, ids=IDS, degree=4, keys=keys
    )
    plain = make(harary=False, signed=False)
    assert plain.to_bytes() == spec_bytes(
        rid=plain.round_id, bits=20, d=1000, t=3, flags=0, ids=IDS, degree=len(IDS) - 1
    )


def test_the_encoding_entries_follow_the_documented_layout() -> None:
    """Sorted by name; each: u8 name length, name, u8 tag (1 int, 2 float, 3 str, 4 bool),
    then i64 / f64 big-endian, u32 length + UTF-8, or one byte."""
    base = make(harary=False, signed=False)
    enc = {"max-examples": 80, "clip": 0.5, "weighting": "uniform", "signed-weights": False}
    cfg = dataclasses.replace(base, encoding=enc)
    entries = [
        bytes([4]) + b"clip" + bytes([2]) + struct.pack(">d", 0.5),
        bytes([12]) + b"max-examples" + bytes([1]) + struct.pack(">q", 80),
        bytes([14]) + b"signed-weights" + bytes([4, 0]),
        bytes([9]) + b"weighting" + bytes([3]) + struct.pack(">I", 7) + b"uniform",
    ]
    assert cfg.to_bytes() == spec_bytes(
        rid=cfg.round_id,
        bits=20,
        d=1000,
        t=3,
        flags=0,
        ids=IDS,
        degree=len(IDS) - 1,
        encoding=entries,
    )
    assert RoundConfig.from_bytes(cfg.to_bytes()).encoding == enc
    unsorted = spec_bytes(
        rid=cfg.round_id, bits=20, d=1000, t=3, flags=0, ids=IDS, degree=9, encoding=entries[::-1]
    )
    with pytest.raises(DecodeError, match="sorted"):
        RoundConfig.from_bytes(unsorted)


def test_unsigned_identity_keys_travel_too() -> None:
    cfg = make(harary=False, signed=True)
    unsigned = RoundConfig(cfg.round_id, 20, 1000, 3, cfg.graph, identity_keys=cfg.identity_keys)
    back = RoundConfig.from_bytes(unsigned.to_bytes())
    assert not back.signed and dict(back.identity_keys) == dict(cfg.identity_keys)


def test_limit_is_the_codec_limit() -> None:
    assert MAX_CLIENTS == CODEC_MAX_CLIENTS


def base(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "rid": bytes(range(16)),
        "bits": 16,
        "d": 10,
        "t": 2,
        "flags": 0,
        "ids": [1, 2, 3, 4],
        "degree": 3,
    }
    fields.update(changes)
    return fields


def test_the_hand_built_base_is_valid() -> None:
    cfg = RoundConfig.from_bytes(spec_bytes(**base()))  # type: ignore[arg-type]
    assert cfg.graph == Graph.complete([1, 2, 3, 4]) and cfg.threshold == 2


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"magic": b"SAGG"}, "bad magic"),
        ({"version": 1}, "version 1"),
        ({"version": 2}, "version 2"),
        ({"version": 4}, "version 4"),
        ({"rid": bytes(15)}, "round id of 15"),
        ({"ids": [1, 3, 2, 4]}, "increasing"),
        ({"ids": [1, 2, 2, 4]}, "increasing"),
        ({"ids": [0, 1, 2, 3]}, "increasing"),
        ({"ids": [7]}, "does not rebuild"),
        ({"degree": 2}, "does not match"),
        ({"flags": 8}, "flag"),
        ({"flags": 4, "seed": bytes(16)}, "complete graph"),  # a server seed needs Harary
        ({"d": 2**28 + 1}, "vector length"),
        ({"flags": 6, "degree": 4, "seed": bytes(16)}, "does not match"),  # complete really
        ({"flags": 2, "degree": 4}, "does not match"),
        ({"flags": 6, "ids": [1, 2, 3, 4, 5, 6], "degree": 3, "seed": bytes(16)}, "even"),
        ({"flags": 2, "ids": [1, 2, 3, 4, 5, 6], "degree": 3}, "even"),
        ({"flags": 6, "ids": [1, 2, 3, 4, 5, 6], "degree": 2, "seed": bytes(8)}, "16 bytes"),
        # a Harary seed with no server-seed flag: the seed's bytes are left over
        ({"flags": 2, "ids": [1, 2, 3, 4, 5, 6], "degree": 2, "seed": bytes(16)}, "."),
        ({"keys": [(2, bytes(32)), (1, bytes(32))]}, "increasing"),
        ({"keys": [(1, bytes(32)), (1, bytes(32))]}, "increasing"),
    ],
)
def test_malformed_is_a_decode_error(changes: dict[str, object], match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        RoundConfig.from_bytes(spec_bytes(**base(**changes)))  # type: ignore[arg-type]


def test_truncated_trailing_and_oversized_counts() -> None:
    data = spec_bytes(**base())  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match="truncated"):
        RoundConfig.from_bytes(data[:-1])
    with pytest.raises(DecodeError, match="trailing"):
        RoundConfig.from_bytes(data + b"\x00")
    count_at = 4 + 2 + 16 + 1 + 9
    huge = data[:count_at] + struct.pack(">I", MAX_CLIENTS + 1) + data[count_at + 4 :]
    with pytest.raises(DecodeError, match="exceeds the limit"):
        RoundConfig.from_bytes(huge)
    lying = data[:count_at] + struct.pack(">I", 1000) + data[count_at + 4 :]
    with pytest.raises(DecodeError, match="does not fit"):
        RoundConfig.from_bytes(lying)
    with pytest.raises(DecodeError, match="bytes, not str"):
        RoundConfig.from_bytes("SACF")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"bits": 0}, "bits"),
        ({"bits": 65}, "bits"),
        ({"d": 0}, "d must be"),
        ({"t": 4}, "threshold"),
        ({"t": 1}, "threshold"),
        ({"flags": 1}, "identity keys"),  # signed, no keys
        ({"flags": 1, "keys": [(u, bytes(32)) for u in (1, 2, 3)]}, "identity keys"),
    ],
)
def test_values_the_config_refuses_are_a_config_error(
    changes: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        RoundConfig.from_bytes(spec_bytes(**base(**changes)))  # type: ignore[arg-type]


def test_to_bytes_refuses_what_it_could_not_read_back() -> None:
    long_seed = Graph.harary(IDS, 4, bytes(256))
    with pytest.raises(ConfigError, match="seed"):
        RoundConfig(new_round_id(), 16, 4, 2, long_seed, server_graph_seed=True).to_bytes()
    bad_key = RoundConfig(new_round_id(), 16, 4, 2, Graph.complete(IDS), identity_keys={3: b"x"})
    with pytest.raises(ConfigError, match="not 32 bytes"):
        bad_key.to_bytes()
    bad_id = RoundConfig(
        new_round_id(), 16, 4, 2, Graph.complete(IDS), identity_keys={0: bytes(32)}
    )
    with pytest.raises(ConfigError, match="client ids"):
        bad_id.to_bytes()


def test_the_same_bytes_parse_once_and_other_bytes_are_still_checked() -> None:
    """A restored session parses its config per message: the same bytes give the same
    (immutable) config without a second parse; other or damaged bytes are parsed as ever."""
    cfg = make(harary=True, signed=True)
    data = cfg.to_bytes()
    first = RoundConfig.from_bytes(data)
    assert RoundConfig.from_bytes(bytearray(data)) is first
    assert first.to_bytes() is first.to_bytes() == data
    other = make(harary=True, signed=True).to_bytes()  # another round id and keys
    assert RoundConfig.from_bytes(other) is not first
    assert RoundConfig.from_bytes(other).to_bytes() == other
    with pytest.raises(DecodeError):
        RoundConfig.from_bytes(data + b"\0")
    with pytest.raises(DecodeError):
        RoundConfig.from_bytes(data[:-1])


def test_a_server_chosen_seed_is_only_the_named_opt_out() -> None:
    seeded = Graph.harary(IDS, 4, bytes(16))
    with pytest.raises(ConfigError, match="commit-reveal"):
        RoundConfig(new_round_id(), 16, 4, 2, seeded)
    for graph in (Graph.harary(IDS, 4), Graph.complete(IDS)):
        with pytest.raises(ConfigError, match="server_graph_seed"):
            RoundConfig(new_round_id(), 16, 4, 2, graph, server_graph_seed=True)
    opted = RoundConfig(new_round_id(), 16, 4, 2, seeded, server_graph_seed=True)
    plain = RoundConfig(opted.round_id, 16, 4, 2, Graph.harary(IDS, 4))
    assert opted.digest != plain.digest  # the choice is bound into the digest
