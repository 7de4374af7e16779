"""The records a server keeps per client are left out of the garbage collector's scans."""

from __future__ import annotations

import gc
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from secureagg.protocol import Stage, simulate_round
from secureagg.protocol._server import ServerSession
from secureagg.protocol._server_state import CollectShares, CollectUnmask


def test_kept_share_records_are_not_tracked_by_the_collector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A full collection scans every tracked object: O(n * k) tracked records would make
    # each one O(n) and the server's cost per client grow with n.
    tracked: dict[str, list[bool]] = {}
    close = ServerSession.close_stage_lazily

    def spy(session: ServerSession) -> Mapping[int, bytes]:
        state: Any = session._state
        gc.collect()  # a tuple is untracked once a pass finds it holds no tracked object:
        gc.collect()  # a tuple of tuples may take a second pass
        if isinstance(state, CollectShares):
            tracked["inbox"] = [gc.is_tracked(r) for r in state.inbox.values()]
        if isinstance(state, CollectUnmask):
            tracked["responses"] = [gc.is_tracked(r) for r in state.responses.values()]
        return close(session)

    monkeypatch.setattr(ServerSession, "close_stage_lazily", spy)
    inputs = {u: np.full(8, u, np.uint64) for u in range(1, 31)}
    res = simulate_round(
        inputs, bits=16, degree=10, threshold=6, dropouts={Stage.MASKED_INPUT: [4, 9]}
    )
    assert res.survivors == frozenset(inputs) - {4, 9}
    assert len(tracked["inbox"]) == 30
    assert len(tracked["responses"]) == 28
    assert not any(tracked["inbox"]) and not any(tracked["responses"])
