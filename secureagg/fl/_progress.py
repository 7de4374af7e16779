"""ProgressEvent: what run_federated and run_round tell an ``on_progress`` callback."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from secureagg.fl._metrics import RoundMetrics

__all__ = ["STAGES", "OnProgress", "ProgressEvent"]

STAGES: tuple[str, ...] = ("train", "declined", "aggregate", "done")
"""In order within a round: each client's turn to train ("declined" follows "train" for a
client over budget); the trained updates are aggregated; the round is done (``metrics``)."""


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a round. ``str(event)`` is a one-line description.

    Attributes:
        round: The round's number, from 1.
        stage: "train", "declined", "aggregate" or "done".
        rounds: The run's round count, if known.
        client: The client, for "train" and "declined".
        clients: How many updates, for "aggregate".
        secure: Whether the aggregation is secure, for "aggregate".
        metrics: The round's metrics, for "done".
    """

    round: int
    stage: str
    rounds: int | None = None
    client: int | None = None
    clients: int | None = None
    secure: bool = False
    metrics: RoundMetrics | None = None

    def __str__(self) -> str:
        head = f"round {self.round}" + ("" if self.rounds is None else f"/{self.rounds}")
        if self.stage == "train":
            return f"{head}: client {self.client} training"
        if self.stage == "declined":
            return f"{head}: client {self.client} declined (budget)"
        if self.stage == "aggregate":
            how = "masking, summing and unmasking" if self.secure else "averaging"
            return f"{head}: {how} {self.clients} updates"
        if self.metrics is None:
            return f"{head}: {self.stage}"
        return f"{head}: {_summary(self.metrics)}"


def _summary(m: RoundMetrics) -> str:
    parts = [f"{len(m.members)}/{len(m.participants)} members"]
    if m.aborted:
        parts.append("aborted")
    if m.dropouts:
        parts.append("dropped " + ", ".join(m.dropout_text(c) for c in sorted(m.dropouts)))
    if m.accuracy is not None:
        parts.append(f"accuracy {m.accuracy:.3f}")
    if m.epsilon:
        parts.append(f"epsilon <= {max(m.epsilon.values()):.2f}")
    return "; ".join(parts)


OnProgress = Callable[[ProgressEvent], None]
"""The type of an ``on_progress`` callback."""
