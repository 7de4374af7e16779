"""Live progress: which client trains, when a round aggregates, and rich's rendering."""

from __future__ import annotations

import torch
from rich.console import Console

from secureagg.demo._console import LiveProgress
from secureagg.demo._run import _StageTracker


def test_tracker_names_the_training_client_then_the_aggregation() -> None:
    seen: list[tuple[str, int, int, str]] = []
    live = _StageTracker("private", lambda *a: seen.append(a), 5, {2: 1, 1: 2}, secure=True)
    x, y = torch.zeros(3, 2), torch.zeros(3, dtype=torch.long)
    plain = torch.nn.CrossEntropyLoss()(x, y)
    for _ in range(3):
        assert torch.equal(live(x, y), plain)  # the loss itself is unchanged
    live.round_done("round 1/5: 2/2 members")
    live(x, y)
    assert [s[3] for s in seen] == [
        "round 1: client 1 of 2 training (DP-SGD)",
        "round 1: client 1 of 2 training (DP-SGD)",
        "round 1: client 2 of 2 training (DP-SGD), then masking, summing and unmasking 2 updates",
        "round 1/5: 2/2 members",
        "round 2: client 1 of 2 training (DP-SGD)",
    ]
    assert [s[1] for s in seen] == [0, 0, 0, 1, 1]


def test_baseline_tracker_does_not_claim_masking() -> None:
    seen: list[str] = []
    live = _StageTracker("baseline", lambda *a: seen.append(a[3]), 1, {1: 1}, secure=False)
    live(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
    assert seen == ["round 1: client 1 of 1 training (SGD), then averaging 1 updates"]


def test_live_progress_renders_phases() -> None:
    console = Console(record=True, width=100, force_terminal=False)
    with LiveProgress(console) as progress:
        progress("private", 3, 20, "round 3/20: 7/8 members; dropped 4(dropout:advertise)")
    text = console.export_text()
    assert "private + secure" in text and "3/20" in text
    assert "7/8 members; dropped 4(dropout:advertise)" in text
    assert "round 3/20:" not in text  # the bar already counts rounds
