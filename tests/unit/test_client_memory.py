"""Per-client memory: a client holds its neighbours' keys and shares packed, and a simulated
round's peak grows by little more than the records' own bytes per edge.

A simulated round keeps n clients in one process (100,000 in benchmarks/bench_scale.py), so
what each client holds from the share-keys stage to the unmask stage decides its memory. The
bounds below come from the records' sizes (4-byte ids, 32-byte keys, 66-byte shares) plus a
fixed allowance for the few objects around them, not from the code's own output: a dict of k
entries (a hash table, k tuples, 2k bytes objects) is 3-4x the records and fails them.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from functools import partial
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import HandRound

from secureagg.hazmat import SHARE_SIZE
from secureagg.protocol import ServerSession, Stage, simulate_round
from secureagg.protocol._client_state import Holdings, InputSent, Records, SharesSent
from secureagg.protocol._codec import CIPHERTEXT_SIZE

N, T, D, BITS = 24, 13, 4, 16
K = N - 1  # the complete graph: every other client is a neighbour
ID, KEY = 4, 32
OBJECTS = 1024
"""The allowance for what surrounds the records: about ten objects of at most about 100 bytes
each (the state, each table's header and id array, the client's own key pair, a tuple)."""


def retained(obj: object) -> int:
    """The bytes of ``obj`` and of everything it references, each object counted once."""
    seen: set[int] = set()
    stack, total = [obj], 0
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, type):
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        stack.extend(gc.get_referents(o))
    return total


Round = partial(HandRound, N, T, d=D, bits=BITS, inputs=lambda u: np.full(D, u, np.uint16))


def test_a_clients_share_keys_state_is_its_records_plus_a_constant() -> None:
    r = Round()
    r.step()  # the clients sent their shares: each holds one key pair row per neighbour
    for client in r.clients.values():
        state = client._state
        assert isinstance(state, SharesSent) and len(state.enc_keys) == K
        records = K * (ID + 2 * KEY) + KEY + 2 * SHARE_SIZE  # rows, its seed, its own shares
        assert retained(state) <= records + OBJECTS


def test_a_clients_holdings_are_its_shares_plus_a_constant() -> None:
    r = Round()
    r.until(Stage.MASKED_INPUT)
    r.step()  # every client masked its input and holds (s_sk share, b share) per neighbour
    for client in r.clients.values():
        state = client._state
        assert isinstance(state, InputSent) and len(state.holdings) == N
        records = N * (ID + 2 * SHARE_SIZE)  # its neighbours' shares and its own
        assert retained(state) <= records + OBJECTS
        assert state.u2 == frozenset(r.clients) - {client.client_id}


@given(st.dictionaries(st.integers(1, 2**32 - 1), st.binary(min_size=3, max_size=3)))
def test_packed_records_read_back_as_the_dict_they_were_made_from(rows: dict[int, bytes]) -> None:
    packed = Records(rows.items(), 3)
    assert dict(packed) == rows and list(packed) == sorted(rows) and len(packed) == len(rows)
    for absent in (0, 2**32, *(v + 1 for v in rows if v + 1 not in rows)):
        assert absent not in packed and packed.get(absent) is None


def test_packed_records_refuse_a_repeated_id_or_a_short_record() -> None:
    with pytest.raises(ValueError, match="twice"):
        Records([(5, b"abc"), (5, b"abd")], 3)
    with pytest.raises(ValueError, match="3 bytes"):
        Records([(5, b"abc"), (6, b"ab")], 3)
    shares = [(2, bytes(2 * SHARE_SIZE)), (7, bytes(range(2 * SHARE_SIZE)))]
    held = Holdings(shares, 7)
    assert held[7] == (bytes(range(SHARE_SIZE)), bytes(range(SHARE_SIZE, 2 * SHARE_SIZE)))
    assert held.u2 == {2}
    with pytest.raises(ValueError, match="own shares"):
        Holdings(shares, 3)


def stage_peaks(n: int, k: int, monkeypatch: pytest.MonkeyPatch) -> dict[Stage, int]:
    """The traced peak of each stage of a simulated round (n clients, degree k, d = 4)."""
    peaks: dict[Stage, int] = {}
    close = ServerSession.close_stage_lazily

    def measured(self: ServerSession) -> Any:
        stage = self.stage
        assert stage is not None
        peaks[stage] = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        return close(self)

    monkeypatch.setattr(ServerSession, "close_stage_lazily", measured)
    inputs = {u: np.full(D, u, np.uint16) for u in range(1, n + 1)}
    gc.collect()
    tracemalloc.start()
    try:
        simulate_round(inputs, bits=BITS, degree=k, threshold=k // 2 + 1, server_graph_seed=True)
    finally:
        tracemalloc.stop()
        monkeypatch.undo()
    return peaks


def test_a_rounds_peak_grows_by_about_the_records_per_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    """From degree 8 to 24 at n = 100, the peaks of the share-keys and masked-input stages
    grow per client and per extra neighbour by at most the records an edge needs then, plus
    a quarter: the server's routed ciphertext (its recipient's id and CIPHERTEXT_SIZE bytes),
    the recipient's shares once opened (an id and 2 * SHARE_SIZE), and 64 bytes for the
    neighbour's id in the graph's and the client's neighbour sets. (The unmask stage's close
    is left out: at small n its batch of secrets, O(batch * t^2), grows with k as well.)
    Shares kept as a dict of (bytes, bytes) tuples come to about 600 B an edge and fail."""
    stage_peaks(20, 8, monkeypatch)  # warm up: one-time caches are not per-edge memory
    n, low, high = 100, 8, 24
    small, large = stage_peaks(n, low, monkeypatch), stage_peaks(n, high, monkeypatch)
    per_edge = (ID + CIPHERTEXT_SIZE) + (ID + 2 * SHARE_SIZE) + 64
    for stage in (Stage.SHARE_KEYS, Stage.MASKED_INPUT):
        growth = (large[stage] - small[stage]) / n / (high - low)
        assert 0 < growth <= 1.25 * per_edge, (stage, growth, per_edge)
