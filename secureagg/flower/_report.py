"""What one secure round did, as the strategy reports it."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RoundReport"]


@dataclass
class RoundReport:
    """What one secure round did: who is in the sum, who dropped where, and what it cost.

    Attributes:
        round: Flower's server round (from 1).
        nodes: The Flower node ids the round started with.
        survivors: Nodes whose update is in the sum.
        dropouts: Node -> the protocol stage it went silent at.
        rejected: Why each refused node message was refused.
        declined: Node -> the reason it declined the round.
        aborted: Why the round aborted (None if it completed).
        total_examples: The summed weight the average divides by.
        error_bound: Per-coordinate bound of the decoding error.
        server_seconds: The server's protocol time.
        bytes_sent: Protocol bytes the server sent.
        bytes_received: Protocol bytes the server received.
    """

    round: int
    nodes: list[int]
    survivors: list[int] = field(default_factory=list)
    dropouts: dict[int, str] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    declined: dict[int, str] = field(default_factory=dict)
    aborted: str | None = None
    total_examples: float = 0.0
    error_bound: float = 0.0
    server_seconds: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
