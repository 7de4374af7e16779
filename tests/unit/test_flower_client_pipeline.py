"""The node's masked input built in place (the update written into the words it is quantised
and masked in, the session keeping that buffer) is byte for byte the one the plain pipeline
builds: a fresh update vector, a fresh encoding, the session's own copy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord
from support import HandRound

from secureagg import ConfigError
from secureagg.fl import WEIGHTINGS, UpdateEncoder
from secureagg.flower._mod import _encoded
from secureagg.flower._records import update_vector
from secureagg.privacy import LocalUpdate
from secureagg.protocol import ClientSession, MemoryJournal, Stage


def _records(
    shapes: list[tuple[int, ...]], dtypes: list[str], seed: int, spread: float
) -> tuple[ArrayRecord, ArrayRecord]:
    rng = np.random.default_rng(seed)
    start, local = {}, {}
    for i, (shape, dtype) in enumerate(zip(shapes, dtypes, strict=True)):
        g = rng.uniform(-1, 1, shape).astype(dtype)
        start[f"a{i}"] = Array(np.ascontiguousarray(g))
        step = rng.uniform(-spread, spread, shape)
        local[f"a{i}"] = Array(np.ascontiguousarray((g + step).astype(dtype)))
    return ArrayRecord(start), ArrayRecord(local)


@settings(max_examples=40, deadline=None)
@given(
    shapes=st.lists(
        st.lists(st.integers(1, 5), min_size=1, max_size=2).map(tuple), min_size=1, max_size=3
    ),
    dtype=st.sampled_from(["float32", "float64", "float16", "mixed"]),
    max_clients=st.sampled_from([2, 40, 10**5]),  # words of 16, 32 or 64 bits
    frac_bits=st.sampled_from([2, 8, 16, 30]),
    weighting=st.sampled_from(WEIGHTINGS),
    spread=st.sampled_from([0.1, 3.0]),  # 3.0: some coordinates above the clip
    seed=st.integers(0, 2**32 - 1),
)
def test_in_place_masked_input_is_the_plain_pipelines(
    shapes: list[tuple[int, ...]],
    dtype: str,
    max_clients: int,
    frac_bits: int,
    weighting: str,
    spread: float,
    seed: int,
) -> None:
    kinds = ["float32", "float64", "float16"]
    dtypes = [kinds[i % 3] for i in range(len(shapes))] if dtype == "mixed" else [dtype] * 3
    start, local = _records(shapes, dtypes[: len(shapes)], seed, spread)
    d = sum(int(np.prod(s)) for s in shapes)
    enc = UpdateEncoder(
        d,
        max_clients=max_clients,
        max_examples=9,
        clip=1.0,
        frac_bits=frac_bits,
        weighting=weighting,
    )
    examples = 1 + seed % 9

    plain = enc.encode(
        LocalUpdate(update_vector(local, start), examples, 0), np.random.default_rng(seed)
    )
    in_place = _encoded(enc, local, start, examples, np.random.default_rng(seed))
    assert in_place.dtype == plain.dtype
    assert in_place.tobytes() == plain.tobytes()

    # Masked by two sessions restored from one saved state: a copy of the plain encoding,
    # and the in-place buffer handed over without a copy.
    hand = HandRound(
        4, 3, d=enc.length, bits=enc.bits, inputs=lambda u: np.zeros(enc.length, np.int64)
    )
    hand.until(Stage.MASKED_INPUT)
    blob, delivery = hand.clients[1].export_state(), hand.out[1]
    sent = []
    for vector, copy in ((plain, True), (in_place, False)):
        session = ClientSession.restore_state(blob, journal=MemoryJournal())
        session.provide_input(vector, copy=copy)
        sent.append(session.receive(delivery))
    assert sent[0] == sent[1]


def test_a_model_of_another_size_is_declined_before_any_buffer() -> None:
    start, local = _records([(3,), (2, 2)], ["float32", "float32"], 1, 0.1)
    enc = UpdateEncoder(6, max_clients=4, max_examples=9, clip=1.0, frac_bits=8)
    with pytest.raises(Exception, match="the model has 7 values, the round expects 6"):
        _encoded(enc, local, start, 1)


def test_update_vector_into_a_buffer_of_another_size_is_refused() -> None:
    start, local = _records([(3,)], ["float32"], 1, 0.1)
    with pytest.raises(ConfigError, match="float32 vector of 3"):
        update_vector(local, start, np.empty(4, np.float32))


def test_encode_refuses_an_out_it_cannot_write_the_input_into() -> None:
    enc = UpdateEncoder(3, max_clients=4, max_examples=9, clip=1.0, frac_bits=8)  # 16 bits
    update = LocalUpdate(np.zeros(3, np.float32), 1, 0)
    for bad in (np.empty(3, np.uint16), np.empty(4, np.uint32), np.empty(8, np.uint16)[::2]):
        with pytest.raises(ConfigError, match="out must be"):
            enc.encode(update, out=bad)
    assert enc.encode(update, out=np.empty(4, np.uint16)).tolist()[:3] == [0, 0, 0]
