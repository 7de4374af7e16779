"""What a federated run reports: one RoundMetrics per round, and the FederatedResult."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from torch import nn

from secureagg.privacy import PrivacyLedger

__all__ = ["FederatedResult", "RoundMetrics"]


@dataclass
class RoundMetrics:
    """One round: who trained, whose update is in the average, errors, privacy and costs.

    ``dropped`` maps a client id to why its update is missing: "budget" (declined, next
    round would exceed its budget), "dropout:<stage>" (went silent at that protocol stage)
    or "aborted" (the protocol round aborted). ``max_abs_error`` is the largest coordinate
    difference between the securely aggregated average and the plain weighted average of
    the members' updates; ``error_bound`` is what the encoding promises it stays under.
    ``epsilon`` is each private client's cumulative epsilon (Opacus RDP) after the round.
    """

    round: int
    participants: list[int]
    members: list[int]
    dropped: dict[int, str]
    accuracy: float | None
    max_abs_error: float
    error_bound: float
    epsilon: dict[int, float]
    client_ms: dict[int, float]
    client_bytes: dict[int, int]
    server_ms: float
    captured: tuple[int, npt.NDArray[np.generic], npt.NDArray[np.generic]] | None = None
    bits: int | None = None
    aborted: bool = False
    update_norms: dict[int, float] = field(default_factory=dict)
    grad_sample_mode: dict[int, str] = field(default_factory=dict)


@dataclass
class FederatedResult:
    """Every round's metrics, the final global model, and the ledger (None without DP).

    ``clients`` holds each client's trainer (PrivateTrainer or PlainTrainer), for inspection.
    """

    rounds: list[RoundMetrics]
    model: nn.Module
    ledger: PrivacyLedger | None
    clients: dict[int, Any] = field(default_factory=dict)
