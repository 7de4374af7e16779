"""A DP-SGD step history: :class:`Step`, its checks, and its canonical (merged, sorted) form."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from secureagg._exceptions import ConfigError

__all__ = ["Canonical", "Step", "as_int", "as_real", "canonical", "step_problem"]

Canonical = tuple[tuple[float, float, int], ...]
"""A history reduced to sorted ``(noise_multiplier, sample_rate, steps)`` with steps > 0."""


@dataclass(frozen=True)
class Step:
    """``steps`` DP-SGD steps with one noise multiplier and one Poisson sample rate.

    Attributes:
        noise_multiplier: Noise standard deviation relative to the clipping norm.
        sample_rate: Poisson sampling rate of each step.
        steps: How many steps.
    """

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        problem = step_problem(self.noise_multiplier, self.sample_rate, self.steps)
        if problem is not None:
            raise ConfigError(f"invalid step {self!r}: {problem}")


def as_real(value: object) -> float | None:
    """``value`` as a float if it is a (non-bool) real number, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    return float(value)


def as_int(value: object) -> int | None:
    """``value`` as an int if it is a (non-bool) integer, else None."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        return None
    return int(value)


def step_problem(noise_multiplier: object, sample_rate: object, steps: object) -> str | None:
    """Say what is impossible about a step, or return None when it is valid."""
    n = as_int(steps)
    if n is None:
        return f"steps must be an integer, got {steps!r}"
    if n < 0:
        return f"steps must be >= 0, got {n}"
    z, q = as_real(noise_multiplier), as_real(sample_rate)
    for name, raw, value in (
        ("noise_multiplier", noise_multiplier, z),
        ("sample_rate", sample_rate, q),
    ):
        if value is None:
            return f"{name} must be a number, got {raw!r}"
        if not math.isfinite(value):
            return f"{name} must be finite, got {raw!r}"
    assert z is not None and q is not None
    if z < 0:
        return f"noise_multiplier must be >= 0, got {z}"
    if not 0 <= q <= 1:
        return f"sample_rate must be in [0, 1], got {q}"
    return None


def canonical(history: Sequence[Step]) -> Canonical:
    """Merge identical ``(noise_multiplier, sample_rate)`` entries; drop steps that leak nothing."""
    merged: dict[tuple[float, float], int] = {}
    for step in history:
        if not isinstance(step, Step):
            raise ConfigError(f"history entries must be Step, got {type(step).__name__}")
        if step.steps == 0 or step.sample_rate == 0:
            continue
        key = (float(step.noise_multiplier), float(step.sample_rate))
        merged[key] = merged.get(key, 0) + int(step.steps)
    return tuple((z, q, n) for (z, q), n in sorted(merged.items()))
