"""PrivacyConfig: the DP settings of every client in a federated run."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PrivacyConfig"]


@dataclass(frozen=True)
class PrivacyConfig:
    """Example-level DP-SGD settings for each client (checked when a trainer is built).

    Give ``noise_multiplier``, or ``target_epsilon`` (reached after ``planned_rounds``
    rounds; run_federated fills in its own round count).

    Attributes:
        noise_multiplier: Gaussian noise standard deviation relative to ``max_grad_norm``.
        target_epsilon: Instead of ``noise_multiplier``: the epsilon to reach after
            ``planned_rounds`` rounds.
        max_grad_norm: Per-example gradient clipping norm.
        delta: The delta of every epsilon.
        grad_sample_mode: "auto" (time "ghost" and "hooks", keep the faster) or an Opacus mode.
        budget_epsilon: A client declines a round that would take it past this epsilon.
        update_clip: L2 bound of each client's whole update (user-level), applied before it
            is encoded; the secure aggregator then uses it as the quantisation clip.
        planned_rounds: The rounds ``target_epsilon`` is spread over.
        count_noise: For example-count weighting (``weighting="examples-dp"``): the standard
            deviation, in examples, of the Gaussian noise added to the count each round
            before it leaves the client (rounded to an integer); each release is charged in
            the ledger as a Gaussian mechanism of sensitivity 1. None: no count is released.
    """

    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    max_grad_norm: float = 1.0
    delta: float = 1e-5
    grad_sample_mode: str = "auto"
    budget_epsilon: float | None = None
    update_clip: float | None = None
    planned_rounds: int | None = None
    count_noise: float | None = None
