"""Live progress: which client trains, when a round aggregates, and rich's rendering."""

from __future__ import annotations

from rich.console import Console

from secureagg.demo._console import LiveProgress
from secureagg.demo._run import _relay
from secureagg.fl import ProgressEvent, RoundMetrics


def _metrics() -> RoundMetrics:
    return RoundMetrics(
        round=1,
        participants=[1, 2],
        members=[1],
        dropped={2: "dropout:advertise"},
        accuracy=0.5,
        max_abs_error=0.0,
        error_bound=0.0,
        epsilon={1: 1.0, 2: 1.0},
        client_ms={},
        client_bytes={},
        server_ms=0.0,
        dropouts={2: "advertise"},
    )


def test_relay_names_the_training_client_then_the_aggregation_then_the_round() -> None:
    seen: list[tuple[str, int, int, str]] = []
    relay = _relay("private", lambda *a: seen.append(a), 5, 2)
    relay(ProgressEvent(1, "train", 5, client=1))  # rounds are numbered from 1
    relay(ProgressEvent(1, "train", 5, client=2))
    relay(ProgressEvent(1, "aggregate", 5, clients=2, secure=True))
    relay(ProgressEvent(1, "done", 5, metrics=_metrics()))
    relay(ProgressEvent(2, "train", 5, client=1))
    assert [s[3] for s in seen] == [
        "round 1: client 1 of 2 training (DP-SGD)",
        "round 1: client 2 of 2 training (DP-SGD)",
        "round 1/5: masking, summing and unmasking 2 updates",
        "round 1/5: 1/2 members; dropped 2 at advertise (update lost); accuracy 0.500; "
        "epsilon <= 1.00",
        "round 2: client 1 of 2 training (DP-SGD)",
    ]
    assert [s[1] for s in seen] == [0, 0, 0, 1, 1]  # rounds done


def test_baseline_relay_does_not_claim_masking() -> None:
    seen: list[str] = []
    relay = _relay("baseline", lambda *a: seen.append(a[3]), 1, 1)
    relay(ProgressEvent(1, "train", 1, client=1))
    relay(ProgressEvent(1, "aggregate", 1, clients=1, secure=False))
    assert seen == ["round 1: client 1 of 1 training (SGD)", "round 1/1: averaging 1 updates"]


def test_live_progress_renders_phases() -> None:
    console = Console(record=True, width=100, force_terminal=False)
    with LiveProgress(console) as progress:
        progress("private", 3, 20, "round 3/20: 7/8 members; dropped 4 at advertise")
    text = console.export_text()
    assert "private + secure" in text and "3/20" in text
    assert "7/8 members; dropped 4 at advertise" in text
    assert "round 3/20:" not in text  # the bar already counts rounds
