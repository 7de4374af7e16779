"""run_federated's progress events and the vectors it keeps on request."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from secureagg.fl import FederatedResult, ProgressEvent, SecureAggConfig, run_federated
from secureagg.privacy import PrivacyConfig


def _loaders(sizes: dict[int, int]) -> dict[int, DataLoader]:
    out = {}
    for cid, n in sizes.items():
        g = torch.Generator().manual_seed(cid)
        x = torch.randn(n, 3, generator=g)
        out[cid] = DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8)
    return out


def _run(**kw: Any) -> tuple[list[ProgressEvent], FederatedResult]:
    events: list[ProgressEvent] = []
    res = run_federated(
        lambda: nn.Linear(3, 2),
        _loaders({3: 16, 5: 24, 8: 8, 9: 12}),
        rounds=2,
        optimizer_fn=lambda p: torch.optim.SGD(p, lr=0.5),
        on_progress=events.append,
        seed=1,
        **kw,
    )
    return events, res


def test_events_name_round_stage_and_client_in_order() -> None:
    events, res = _run(privacy=None, secure=SecureAggConfig(threshold=3), dropout_rate=1.0)
    for r in (1, 2):  # rounds are numbered from 1
        mine = [e for e in events if e.round == r]
        assert [(e.stage, e.client) for e in mine] == [
            ("train", 3),
            ("train", 5),
            ("train", 8),
            ("train", 9),
            ("aggregate", None),
            ("done", None),
        ]
        assert all(e.rounds == 2 for e in mine)
        assert mine[4].clients == 4 and mine[4].secure
        m = mine[5].metrics
        assert m is res.rounds[r - 1] and m.round == r and not m.aborted
        assert str(mine[5]).startswith(f"round {r}/2: {len(m.members)}/4 members; dropped ")
        [who] = m.dropouts
        assert m.dropout_text(who) in str(mine[5])


def test_budget_declines_are_events_and_dropouts() -> None:
    privacy = PrivacyConfig(noise_multiplier=1.0, budget_epsilon=1e-3)  # nobody can afford it
    events, res = _run(privacy=privacy, secure=None)
    assert [(e.stage, e.client) for e in events if e.round == 1][:2] == [
        ("train", 3),
        ("declined", 3),
    ]
    for m in res.rounds:
        assert m.dropouts == {c: "budget" for c in (3, 5, 8, 9)} and m.members == []
        assert m.recovered is None


def test_keep_vectors_holds_the_updates_and_the_recovered_average() -> None:
    _, res = _run(
        privacy=None, secure=SecureAggConfig(threshold=3), dropout_rate=1.0, keep_vectors=True
    )
    _, bare = _run(privacy=None, secure=SecureAggConfig(threshold=3), dropout_rate=1.0)
    for m in bare.rounds:
        assert m.updates == {} and m.recovered is None and m.reference is None
    for m in res.rounds:
        assert m.recovered is not None and m.recovered.shape == (8,)  # 3 * 2 weights + 2 biases
        assert sorted(m.updates) == m.participants
        plain = sum(m.updates[c].vector.astype(np.float64) for c in m.members)
        plain = plain / len(m.members)  # uniform weighting, the default
        np.testing.assert_allclose(m.reference, plain, rtol=0, atol=1e-12)
        assert np.max(np.abs(m.recovered - plain)) == m.max_abs_error <= m.error_bound
