"""What a ledger audit found: per round, per client and for the whole ledger, and its JSON."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from secureagg.privacy.accounting import ADD_REMOVE

__all__ = ["ClientAudit", "Disagreement", "LedgerAudit", "RoundAudit"]


@dataclass(frozen=True)
class RoundAudit:
    """One client's figures after one round; ``epsilon[name]`` is None where not evaluated."""

    round: int
    participated: bool
    reason: str | None
    steps: int
    total_steps: int
    delta: float
    epsilon: dict[str, float | None]
    recorded: dict[str, float]


@dataclass(frozen=True)
class Disagreement:
    """The largest relative gap between two accountants that should agree."""

    value: float
    round: int | None
    pair: tuple[str, str] | None
    flagged: bool


@dataclass
class ClientAudit:
    """Everything the audit found about one client."""

    client_id: int
    rounds: list[RoundAudit]
    final: dict[str, float]
    delta: float
    budget_epsilon: float | None
    reference: str
    status: str
    disagreement: Disagreement
    recorded_mismatch: float
    participated_rounds: int
    dropouts: int
    budget_declines: int
    sample_rates: list[float]
    noise_multipliers: list[float]
    max_grad_norms: list[float]
    grad_sample_modes: list[str]
    notes: list[str] = field(default_factory=list)
    relation: str = ADD_REMOVE

    @property
    def trained_rounds(self) -> int:
        """Rounds in which this client took DP-SGD steps (including ones it then dropped)."""
        return sum(r.steps > 0 for r in self.rounds)

    @property
    def total_steps(self) -> int:
        """DP-SGD steps taken on this client's data, over the whole ledger."""
        return self.rounds[-1].total_steps if self.rounds else 0

    @property
    def spent(self) -> float:
        """Final epsilon by the reference accountant."""
        return self.final.get(self.reference, 0.0)


@dataclass
class LedgerAudit:
    """The audit of a whole ledger."""

    clients: list[ClientAudit]
    accountants: tuple[str, ...]
    reference: str
    tolerance: float
    tight_points: int
    seconds: float
    evaluations: dict[str, int]
    source: str | None = None

    @property
    def flagged(self) -> list[ClientAudit]:
        """Clients whose largest disagreement exceeds the tolerance."""
        return [c for c in self.clients if c.disagreement.flagged]

    @property
    def over_budget(self) -> list[ClientAudit]:
        """Clients whose reference epsilon exceeds their budget."""
        return [c for c in self.clients if c.status == "over budget"]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary plus every per-round figure (columns, nulls where skipped)."""
        return {
            "source": self.source,
            "accountants": list(self.accountants),
            "reference_accountant": self.reference,
            "tolerance": self.tolerance,
            "tight_points": self.tight_points,
            "seconds": round(self.seconds, 3),
            "evaluations": self.evaluations,
            "clients": [_client_json(c, self.accountants) for c in self.clients],
        }


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def _client_json(c: ClientAudit, accountants: Sequence[str]) -> dict[str, Any]:
    return {
        "client_id": c.client_id,
        "delta": c.delta,
        "budget_epsilon": c.budget_epsilon,
        "relation": c.relation,
        "status": c.status,
        "final_epsilon": {k: _num(v) for k, v in c.final.items()},
        "rounds_recorded": len(c.rounds),
        "rounds_trained": c.trained_rounds,
        "rounds_participated": c.participated_rounds,
        "dropouts": c.dropouts,
        "budget_declines": c.budget_declines,
        "total_steps": c.total_steps,
        "sample_rates": c.sample_rates,
        "noise_multipliers": c.noise_multipliers,
        "max_grad_norms": c.max_grad_norms,
        "grad_sample_modes": c.grad_sample_modes,
        "largest_disagreement": {
            "relative": c.disagreement.value,
            "round": c.disagreement.round,
            "pair": list(c.disagreement.pair) if c.disagreement.pair else None,
            "flagged": c.disagreement.flagged,
        },
        "largest_recorded_mismatch": c.recorded_mismatch,
        "notes": c.notes,
        "per_round": {
            "round": [r.round for r in c.rounds],
            "participated": [r.participated for r in c.rounds],
            "reason": [r.reason for r in c.rounds],
            "steps": [r.steps for r in c.rounds],
            "total_steps": [r.total_steps for r in c.rounds],
            "epsilon": {a: [_num(r.epsilon.get(a)) for r in c.rounds] for a in accountants},
        },
    }
