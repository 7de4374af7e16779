"""Calibration: the smallest noise multiplier that keeps a run within a target epsilon."""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

from secureagg._exceptions import ConfigError
from secureagg.privacy.accounting import (
    PRV_EPS_ERROR,
    _cached,
    _dpa_event,
    _pld_accountant,
    quiet_accountant_warnings,
)

__all__ = ["calibrate"]


def calibrate(
    accountant: str, target: float, q: float, n: int, delta: float, relation: str, asked: object
) -> float:
    """:func:`~secureagg.privacy.accounting.noise_for_epsilon` for settings it has checked
    (``asked``: the target as the caller gave it, for the messages): the library's
    calibration, then stepped up until this module's own figure is within the target."""
    from dp_accounting.mechanism_calibration import NoBracketIntervalFoundError

    try:
        with warnings.catch_warnings():
            quiet_accountant_warnings()
            z = _calibrate(accountant, target, q, n, delta, relation)
    except (ValueError, ArithmeticError, RuntimeError, NoBracketIntervalFoundError) as exc:
        raise ConfigError(f"no noise multiplier reaches epsilon {asked}: {exc}") from exc
    if not math.isfinite(z) or z > 1e4:
        raise ConfigError(f"no noise multiplier <= 1e4 reaches epsilon {asked}")
    for _ in range(50):  # the library's figure and ours agree; step up if rounding differs
        if _cached(accountant, ((z, q, n),), delta, relation) <= target:
            return z
        z *= 1 + 1e-4
    raise ConfigError(f"calibration for epsilon {asked} did not stay within it")


def _calibrate(
    accountant: str, target: float, q: float, n: int, delta: float, relation: str
) -> float:
    if accountant.startswith("opacus_"):
        from opacus.accountants.utils import get_noise_multiplier

        return float(
            get_noise_multiplier(
                target_epsilon=target,
                target_delta=delta,
                sample_rate=q,
                steps=n,
                accountant=accountant.removeprefix("opacus_"),
                epsilon_tolerance=0.001 * target,
                **({"eps_error": PRV_EPS_ERROR} if accountant == "opacus_prv" else {}),
            )
        )
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

    def fresh() -> Any:
        if accountant == "dpa_pld":
            return _pld_accountant(relation)
        return RdpAccountant()

    def event(z: float) -> Any:
        return _dpa_event(((z, q, n),)) if z > 0 else dp_accounting.NonPrivateDpEvent()

    absl_log = logging.getLogger("absl")
    level = absl_log.level
    absl_log.setLevel(logging.ERROR)
    try:
        return float(dp_accounting.calibrate_dp_mechanism(fresh, event, target, delta, tol=1e-4))
    finally:
        absl_log.setLevel(level)
