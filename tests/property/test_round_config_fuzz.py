"""RoundConfig bytes: any config round-trips; damaged bytes never raise anything untyped."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from secureagg import ConfigError, DecodeError
from secureagg.protocol import Graph, RoundConfig, new_round_id


@st.composite
def configs(draw: st.DrawFn) -> RoundConfig:
    ids = draw(st.lists(st.integers(1, 2**32 - 1), min_size=3, max_size=14, unique=True))
    n = len(ids)
    sparse = n >= 5 and draw(st.booleans())
    server_seed = sparse and draw(st.booleans())
    rid = new_round_id(draw(st.integers(0, 2**64 - 1)))
    if sparse:
        degree = 2 * draw(st.integers(1, (n - 2) // 2))
        seed = rid + draw(st.binary(max_size=8)) if server_seed else None
        graph = Graph.harary(ids, degree, seed)
    else:
        graph = Graph.complete(ids)
    signed = draw(st.booleans())
    keys = {u: draw(st.binary(min_size=32, max_size=32)) for u in ids} if signed else {}
    names = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1)
    values = st.one_of(
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=40),
        st.booleans(),
    )
    encoding = draw(st.dictionaries(names.filter(lambda x: len(x) <= 64), values, max_size=6))
    return RoundConfig(
        round_id=rid,
        bits=draw(st.integers(1, 64)),
        d=draw(st.integers(1, 2**28)),
        threshold=draw(st.integers(2, graph.degree)),
        graph=graph,
        signed=signed,
        identity_keys=keys,
        encoding=encoding,
        server_graph_seed=server_seed,
    )


@settings(max_examples=150, deadline=None)
@given(cfg=configs())
def test_round_trip(cfg: RoundConfig) -> None:
    back = RoundConfig.from_bytes(cfg.to_bytes())
    assert back == cfg
    assert back.commit_reveal == cfg.commit_reveal
    if not cfg.commit_reveal:
        assert all(back.graph.neighbours(u) == cfg.graph.neighbours(u) for u in cfg.graph.ids)
    assert dict(back.identity_keys) == dict(cfg.identity_keys)
    assert dict(back.encoding) == dict(cfg.encoding)
    assert all(type(back.encoding[k]) is type(v) for k, v in cfg.encoding.items())
    assert back.digest == cfg.digest


def decodes_or_refuses(data: bytes) -> None:
    """A typed refusal, or a config that re-encodes to exactly these bytes (no two encodings)."""
    try:
        cfg = RoundConfig.from_bytes(data)
    except (DecodeError, ConfigError):
        return
    assert cfg.to_bytes() == data


@settings(max_examples=200, deadline=None)
@given(cfg=configs(), cut=st.floats(0, 1, exclude_max=True))
def test_truncations_are_refused(cfg: RoundConfig, cut: float) -> None:
    data = cfg.to_bytes()
    short = data[: int(cut * len(data))]
    try:
        RoundConfig.from_bytes(short)
    except DecodeError:
        return
    raise AssertionError(f"a prefix of {len(short)} of {len(data)} bytes decoded")


@settings(max_examples=300, deadline=None)
@given(
    cfg=configs(),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1),
    tail=st.binary(max_size=3),
)
def test_flipped_bytes_give_a_typed_error_or_a_valid_config(
    cfg: RoundConfig, flips: list[tuple[float, int]], tail: bytes
) -> None:
    data = bytearray(cfg.to_bytes())
    for where, xor in flips:
        data[int(where * len(data))] ^= xor
    decodes_or_refuses(bytes(data) + tail)
