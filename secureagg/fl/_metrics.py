"""What a federated run reports: one RoundMetrics per round, and the FederatedResult."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from torch import nn

from secureagg.privacy import LocalUpdate, PrivacyLedger

__all__ = ["FederatedResult", "RoundMetrics"]


@dataclass
class RoundMetrics:
    """One round: who trained, whose update is in the average, errors, privacy and costs.

    Attributes:
        round: The round number, from 1.
        participants: Clients that trained this round (under hidden sampling every client:
            one not sampled makes a zero update instead of training).
        members: Clients whose update is in the average.
        dropped: Client id -> why its update is missing: "budget" (declined, the round would
            exceed its budget), "dropout:<stage>" (went silent at that protocol stage) or
            "aborted" (the protocol round aborted).
        accuracy: The evaluation after the round (None without ``evaluate``).
        max_abs_error: Largest coordinate difference between the securely aggregated average
            and the plain weighted average of the members' updates.
        error_bound: What the encoding promises ``max_abs_error`` stays under.
        epsilon: Each private client's cumulative epsilon (Opacus RDP) after the round.
        client_ms: Each client's time this round (training and its part of the protocol), in ms;
            under hidden sampling its part of the protocol only (training time shows the coin).
        client_bytes: Each client's protocol bytes, sent plus received.
        server_ms: The server's time this round (its part of the protocol, decoding), in ms.
        captured: ``(client, masked input, true input)`` kept with ``capture_client``.
        bits: The ring's bit width (None without secure aggregation).
        aborted: Whether the protocol round aborted (nothing was averaged).
        update_norms: Each trained client's update norm before user-level clipping (empty
            under hidden sampling: a zero norm shows the coin).
        grad_sample_mode: Each private client's per-example gradient mode.
        dropouts: Every client that declined or went silent -> "budget" or the stage's
            ``Stage.label`` ("advertise", "share-keys", "masked-input", "consistency",
            "unmask"), including one that dropped at "unmask" after sending its input, which
            is a member (:meth:`in_sum` tells them apart).
        updates: With ``run_federated(keep_vectors=True)``, each trained client's update as
            it was encoded (else empty). This, ``captured``'s true input and ``reference``
            are the clients' own view: under hidden sampling they show the coins.
        recovered: With ``keep_vectors``, the average the server decoded (else None).
        reference: With ``keep_vectors``, the plain weighted average of the members' updates
            (None when nothing was averaged).
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
    dropouts: dict[int, str] = field(default_factory=dict)
    updates: dict[int, LocalUpdate] = field(default_factory=dict)
    recovered: npt.NDArray[np.float64] | None = None
    reference: npt.NDArray[np.float64] | None = None

    def in_sum(self, client: int) -> bool:
        """Whether ``client``'s update is in this round's average.

        Parameters:
            client: The client id.

        Returns:
            True for a member.
        """
        return client in self.members

    def dropout_text(self, client: int) -> str:
        """``client``'s dropout for people, e.g. "4 at unmask (update in sum)".

        Parameters:
            client: A client in :attr:`dropouts`.

        Returns:
            One short phrase.
        """
        return self.describe_dropout(client, self.dropouts[client], self.in_sum(client))

    @staticmethod
    def describe_dropout(client: int | str, stage: str, in_sum: bool) -> str:
        """One dropout for people: who, at which stage, and whether its update is in the sum.

        Parameters:
            client: The client id.
            stage: The stage it went silent at, or "budget".
            in_sum: Whether its update is in the sum.

        Returns:
            One short phrase, e.g. "4 at unmask (update in sum)".
        """
        where = "declined (budget)" if stage == "budget" else f"at {stage}"
        return f"{client} {where} ({'update in sum' if in_sum else 'update lost'})"


@dataclass
class FederatedResult:
    """Every round's metrics, the final global model, and the ledger (None without DP).

    Attributes:
        rounds: One :class:`RoundMetrics` per round, in order.
        model: The final global model.
        ledger: The privacy ledger (None without DP).
        clients: Each client's trainer (PrivateTrainer or PlainTrainer), for inspection.
    """

    rounds: list[RoundMetrics]
    model: nn.Module
    ledger: PrivacyLedger | None
    clients: dict[int, Any] = field(default_factory=dict)
