"""PrivacyConfig: the DP settings of every client in a federated run."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PrivacyConfig"]


@dataclass(frozen=True)
class PrivacyConfig:
    """Example-level DP-SGD settings for each client (checked when a trainer is built).

    Give ``noise_multiplier``, or ``target_epsilon`` (reached after ``planned_rounds``
    rounds; run_federated fills in its own round count). ``budget_epsilon`` makes a client
    decline a round that would take it past that epsilon. ``update_clip`` L2-clips each
    client's whole update (user-level) before it is encoded; the secure aggregator then
    uses it as the quantisation clip.
    """

    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    max_grad_norm: float = 1.0
    delta: float = 1e-5
    grad_sample_mode: str = "auto"
    budget_epsilon: float | None = None
    update_clip: float | None = None
    planned_rounds: int | None = None
