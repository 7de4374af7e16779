"""One round's entry in a privacy ledger: :class:`RoundRecord`, its checks and its JSON form."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from secureagg.privacy._steps import Step, as_int, as_real, step_problem
from secureagg.privacy.accounting import (
    ACCOUNTANTS,
    ADD_REMOVE,
    RELATIONS,
    REPLACE_ONE,
    relation_accountants,
)

__all__ = ["REASONS", "RoundRecord", "finite", "parse_record", "record_problem"]

REASONS = ("budget", "dropout")
_FIELDS = (
    "round",
    "participated",
    "reason",
    "steps",
    "sample_rate",
    "noise_multiplier",
    "max_grad_norm",
    "delta",
    "grad_sample_mode",
    "budget_epsilon",
    "epsilon",
)
_OPTIONAL = ("run", "count_noise", "relation")
"""Fields a record may lack: ``run`` (the Flower run id) is written only when known;
``count_noise`` only for a round whose example count was released with Gaussian noise;
``relation`` only when the neighbouring relation is not add/remove ("replace-one": the
client's example count was declared public and released)."""


@dataclass(frozen=True)
class RoundRecord:
    """One client's entry for one round; ``epsilon`` is cumulative over the whole history.

    Every recorded step counts towards the history, whether or not the client's update
    reached the aggregate (a client that trained and then dropped is charged: conservative).
    An infinite epsilon (no noise) is written as ``null``.

    Attributes:
        round: The round number (from 1 for rounds written by secureagg).
        participated: Whether the update reached the aggregate.
        reason: Why not: "budget" or "dropout" (None when it participated).
        steps: DP-SGD steps taken this round.
        sample_rate: Poisson sampling rate of each step.
        noise_multiplier: Noise standard deviation relative to ``max_grad_norm``.
        max_grad_norm: Per-example gradient clipping norm.
        delta: The delta of the epsilons.
        grad_sample_mode: How per-example gradients were computed.
        budget_epsilon: The client's budget, if any.
        epsilon: Accountant name -> cumulative epsilon after this round.
        run: The run the round belongs to (None: not given).
        count_noise: Standard deviation of the noisy count released this round, if any.
        relation: The neighbouring relation of the epsilons: "add-remove", or
            "replace-one" (the count was public; only dp-accounting PLD applies).
    """

    round: int
    participated: bool
    reason: str | None
    steps: int
    sample_rate: float
    noise_multiplier: float
    max_grad_norm: float
    delta: float
    grad_sample_mode: str
    budget_epsilon: float | None
    epsilon: Mapping[str, float] = field(default_factory=dict)
    run: int | None = None
    count_noise: float | None = None
    relation: str = ADD_REMOVE

    @property
    def releases(self) -> list[Step]:
        """Everything this round charged: its DP-SGD steps, and the noisy count release
        (a Gaussian mechanism of sensitivity 1: one step at sample rate 1) if there was one."""
        out = [self.step]
        if self.count_noise is not None:
            out.append(Step(self.count_noise, 1.0, 1))
        return out

    @property
    def key(self) -> tuple[int, int]:
        """``(run, round)``: what a record is unique by (run -1 when not given)."""
        return (-1 if self.run is None else self.run, self.round)

    @property
    def step(self) -> Step:
        """The DP-SGD steps this round added to the client's history."""
        return Step(self.noise_multiplier, self.sample_rate, self.steps)

    def to_json(self) -> dict[str, Any]:
        """The record as written in the ledger file.

        Returns:
            A JSON-ready dict.
        """
        out = {name: getattr(self, name) for name in _FIELDS[:-1]}
        out["epsilon"] = {k: (v if math.isfinite(v) else None) for k, v in self.epsilon.items()}
        if self.run is not None:
            out["run"] = self.run
        if self.count_noise is not None:
            out["count_noise"] = self.count_noise
        if self.relation != ADD_REMOVE:
            out["relation"] = self.relation
        return out


def finite(value: object) -> float | None:
    """``value`` as a float if it is a finite real number, else None."""
    x = as_real(value)
    return x if x is not None and math.isfinite(x) else None


def record_problem(entry: Mapping[str, Any]) -> str | None:
    """Say what is impossible about a record's fields, or None when it is consistent."""
    rnd = as_int(entry["round"])
    if rnd is None or rnd < 0:
        return f"round must be an integer >= 0, got {entry['round']!r}"
    if not isinstance(entry["participated"], bool):
        return f"participated must be true or false, got {entry['participated']!r}"
    problem = step_problem(entry["noise_multiplier"], entry["sample_rate"], entry["steps"])
    if problem is not None:
        return problem
    mgn, delta = finite(entry["max_grad_norm"]), finite(entry["delta"])
    budget = entry["budget_epsilon"]
    if mgn is None or mgn <= 0:
        return f"max_grad_norm must be finite and > 0, got {entry['max_grad_norm']!r}"
    if delta is None or not 0 < delta < 1:
        return f"delta must be in (0, 1), got {entry['delta']!r}"
    if budget is not None and ((b := finite(budget)) is None or b <= 0):
        return f"budget_epsilon must be null or finite and > 0, got {budget!r}"
    if not isinstance(entry["grad_sample_mode"], str) or not entry["grad_sample_mode"]:
        return f"grad_sample_mode must be a non-empty string, got {entry['grad_sample_mode']!r}"
    reason = entry["reason"]
    if entry["participated"] and reason is not None:
        return f"a participating record has no reason, got {reason!r}"
    if not entry["participated"] and reason not in REASONS:
        return f"reason must be one of {REASONS} when not participating, got {reason!r}"
    if reason == "budget" and entry["steps"] != 0:
        return f"a client that declined for budget took no steps, got steps={entry['steps']}"
    return None


def _parse_epsilon(raw: object) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise ValueError(f"epsilon must be an object, got {raw!r}")
    out: dict[str, float] = {}
    for name, value in raw.items():
        if name not in ACCOUNTANTS:
            raise ValueError(f"unknown accountant {name!r} in epsilon")
        x = finite(value)
        if value is None:
            out[name] = math.inf
        elif x is not None and x >= 0:
            out[name] = x
        else:
            raise ValueError(f"epsilon[{name!r}] must be a finite number >= 0, got {value!r}")
    return out


def parse_record(raw: object) -> RoundRecord:
    """The record a ledger file holds as ``raw``; ValueError says what is wrong with it."""
    if not isinstance(raw, dict):
        raise ValueError(f"a record must be an object, got {type(raw).__name__}")
    missing = [f for f in _FIELDS if f not in raw]
    extra = sorted(set(raw) - set(_FIELDS) - set(_OPTIONAL))
    if missing or extra:
        raise ValueError(f"missing fields {missing}" if missing else f"unknown fields {extra}")
    problem = record_problem(raw)
    if problem is not None:
        raise ValueError(problem)
    budget = raw["budget_epsilon"]
    run = raw.get("run")
    if run is not None and (as_int(run) is None or int(run) < 0):
        raise ValueError(f"run must be an integer >= 0, got {run!r}")
    count_noise = raw.get("count_noise")
    if count_noise is not None and ((c := finite(count_noise)) is None or c <= 0):
        raise ValueError(f"count_noise must be null or finite and > 0, got {count_noise!r}")
    relation = raw.get("relation", ADD_REMOVE)
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")
    if relation == REPLACE_ONE and count_noise is not None:
        raise ValueError("a replace-one record releases the true count: no count_noise")
    allowed = relation_accountants(relation)
    if relation != ADD_REMOVE and any(name not in allowed for name in raw["epsilon"] or {}):
        raise ValueError(f"under {relation} only {allowed} apply, got {sorted(raw['epsilon'])}")
    return RoundRecord(
        round=int(raw["round"]),
        participated=raw["participated"],
        reason=raw["reason"],
        steps=int(raw["steps"]),
        sample_rate=float(raw["sample_rate"]),
        noise_multiplier=float(raw["noise_multiplier"]),
        max_grad_norm=float(raw["max_grad_norm"]),
        delta=float(raw["delta"]),
        grad_sample_mode=raw["grad_sample_mode"],
        budget_epsilon=None if budget is None else float(budget),
        epsilon=_parse_epsilon(raw["epsilon"]),
        run=None if run is None else int(run),
        count_noise=None if count_noise is None else float(count_noise),
        relation=relation,
    )
