"""PRV and PLD figures for many step histories at once, sharing work between them.

The audit needs the tight accountants after every round of every client: thousands of
canonical histories that are prefixes of one another. Computed one by one, each costs a fresh
discretisation and composition. Here:

* ``dpa_pld``: a history's privacy loss distribution is the PLD of a smaller history already
  computed (component-wise fewer steps) composed with the PLD of the missing steps. Composing
  discretised PLDs is exact up to tail truncation, which dp-accounting makes pessimistic, so
  each figure is still an upper bound; it agrees with ``PLDAccountant`` to about 1e-6.
* ``opacus_prv``: histories with the same (sigma, q) components and delta are bucketed by total
  steps (largest at most ``PRV_BUCKET_RATIO`` times the smallest); each bucket is discretised
  once on the domain Opacus would choose for the bucket's component-wise largest history.
  That domain is at least as wide and its mesh at least as fine as the one Opacus chooses for
  any smaller history (both grow with the step counts), so Gopi et al.'s error bound, and with
  it the ``+ eps_error`` upper bound, holds for every history in the bucket. Each history then
  costs one spectrum product, one inverse FFT and Opacus' own ``compute_epsilon``.

``tests/unit/test_accounting_series.py`` checks both against the library accountants run from
scratch. docs/audit.md ("Cost, and which figures are exact") says what this buys.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import numpy as np

from secureagg._exceptions import ConfigError
from secureagg.privacy import accounting
from secureagg.privacy.accounting import (
    PLD_VALUE_DISCRETIZATION,
    PRV_EPS_ERROR,
    Canonical,
    epsilon_canonical,
)

__all__ = [
    "PRV_BUCKET_RATIO",
    "SERIES_ACCOUNTANTS",
    "SERIES_AGREEMENT",
    "clear_series_cache",
    "series_epsilons",
    "series_evaluations",
]

SERIES_ACCOUNTANTS: tuple[str, ...] = ("opacus_prv", "dpa_pld")
"""Accountants computed here for many histories at once."""

SERIES_AGREEMENT = 2 * PRV_EPS_ERROR
"""Largest gap to the library accountant run from scratch that the construction allows.

PRV: both figures are estimates within ``eps_error`` of the true value plus ``eps_error``, so
they can differ by at most ``2 * eps_error``; PLD: measured gaps are about 1e-6.
"""

PRV_BUCKET_RATIO = 1.5
"""Largest over smallest total steps among the histories sharing one PRV discretisation."""

_KEEP_RECENT = 32
_KEEP_PER_FAMILY = 4
_CACHE_LIMIT = 1 << 18
_KEEP_FACTORS = 4
_Key = tuple[str, Canonical, float]
_CACHE: dict[_Key, float] = {}
_EVALUATIONS: dict[str, int] = dict.fromkeys(SERIES_ACCOUNTANTS, 0)


def series_evaluations() -> dict[str, int]:
    """How many histories each series accountant has really computed in this process."""
    return dict(_EVALUATIONS)


def clear_series_cache() -> None:
    """Forget every figure computed here (for tests and benchmarks)."""
    _CACHE.clear()
    _unit_pld.cache_clear()


accounting.register_cache(clear_series_cache)


def series_epsilons(
    accountant: str, histories: Iterable[Canonical], delta: float
) -> dict[Canonical, float]:
    """Epsilon at ``delta`` for every canonical history, by ``opacus_prv`` or ``dpa_pld``.

    Histories must be in :func:`~secureagg.privacy.accounting.canonical` form. An empty
    history gives 0 and one with a zero noise multiplier gives inf, as in ``accounting``.
    """
    if accountant not in SERIES_ACCOUNTANTS:
        raise ConfigError(f"no series form for {accountant!r}; one of {SERIES_ACCOUNTANTS}")
    wanted = set(histories)
    out: dict[Canonical, float] = {}
    todo: list[Canonical] = []
    for h in wanted:
        hit = _CACHE.get((accountant, h, delta))
        if hit is not None:
            out[h] = hit
        elif not h:
            out[h] = 0.0
        elif any(z == 0 for z, _, _ in h):
            out[h] = math.inf
        else:
            todo.append(h)
    if todo:
        compute = _prv_series if accountant == "opacus_prv" else _pld_series
        try:
            with warnings.catch_warnings():
                accounting.quiet_accountant_warnings()
                fresh = compute(todo, delta)
        except (ValueError, ArithmeticError, RuntimeError, MemoryError) as exc:
            raise ConfigError(f"{accountant} cannot account for these histories: {exc}") from exc
        _EVALUATIONS[accountant] += len(fresh)
        if len(_CACHE) + len(fresh) > _CACHE_LIMIT:
            _CACHE.clear()
        for h, value in fresh.items():
            value = value if math.isfinite(value) and value >= 0 else math.inf
            _CACHE[(accountant, h, delta)] = out[h] = value
    return out


def _total(history: Canonical) -> int:
    return sum(n for _, _, n in history)


def _counts(history: Canonical) -> dict[tuple[float, float], int]:
    return {(z, q): n for z, q, n in history}


# --- dp-accounting PLD: compose onto the largest smaller history already computed -----------


@lru_cache(maxsize=64)
def _unit_pld(noise_multiplier: float, sample_rate: float) -> Any:
    from dp_accounting import NeighboringRelation
    from dp_accounting.pld import privacy_loss_distribution as pld

    return pld.from_gaussian_mechanism(
        standard_deviation=noise_multiplier,
        value_discretization_interval=PLD_VALUE_DISCRETIZATION,
        sampling_prob=sample_rate,
        neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
    )


def _pld_series(histories: list[Canonical], delta: float) -> dict[Canonical, float]:
    """Walk the histories by total steps; each is a recent smaller one plus the missing steps."""
    out: dict[Canonical, float] = {}
    # the last few PLDs of each set of (sigma, q) components: where a history's base is found
    recent: dict[frozenset[tuple[float, float]], list[tuple[dict[tuple[float, float], int], Any]]]
    recent = {}
    powers: dict[tuple[float, float, int], Any] = {}
    for h in sorted(histories, key=lambda h: (_total(h), h)):
        want = _counts(h)
        base: tuple[dict[tuple[float, float], int], Any] | None = None
        for parts, kept in recent.items():
            if not parts <= want.keys():
                continue
            for counts, pld in kept:
                below = all(n <= want[k] for k, n in counts.items())
                if below and (base is None or sum(counts.values()) > sum(base[0].values())):
                    base = (counts, pld)
        have, current = base if base is not None else ({}, None)
        for (z, q), n in sorted(want.items()):
            missing = n - have.get((z, q), 0)
            if missing == 0:
                continue
            piece = powers.get((z, q, missing))
            if piece is None:
                piece = _unit_pld(z, q).self_compose(missing)
                if len(powers) >= _KEEP_RECENT:
                    powers.pop(next(iter(powers)))
                powers[(z, q, missing)] = piece
            current = piece if current is None else current.compose(piece)
        assert current is not None  # h is non-empty and differs from every earlier history
        out[h] = float(current.get_epsilon_for_delta(delta))
        kept = recent.pop(frozenset(want), [])  # re-inserted last: the newest family
        recent[frozenset(want)] = kept
        if len(recent) > _KEEP_RECENT:
            recent.pop(next(iter(recent)))
        kept.append((want, current))
        if len(kept) > _KEEP_PER_FAMILY:
            kept.pop(0)
    return out


# --- Opacus PRV: one discretisation per bucket of similar histories --------------------------


def _prv_series(histories: list[Canonical], delta: float) -> dict[Canonical, float]:
    groups: dict[tuple[tuple[float, float], ...], list[Canonical]] = {}
    for h in histories:
        groups.setdefault(tuple((z, q) for z, q, _ in h), []).append(h)
    out: dict[Canonical, float] = {}
    for members in groups.values():
        members.sort(key=lambda h: (_total(h), h), reverse=True)
        while members:
            top = _total(members[0])
            cut = next(
                (i for i, h in enumerate(members) if _total(h) * PRV_BUCKET_RATIO < top),
                len(members),
            )
            bucket, members = members[:cut], members[cut:]
            try:
                out.update(_prv_bucket(bucket[::-1], delta))
            except (ValueError, ArithmeticError, RuntimeError):
                # e.g. a domain too large for Opacus' float check at this delta: fall back to
                # the library on each history alone (which raises a ConfigError if it fails too)
                out.update({h: epsilon_canonical("opacus_prv", h, delta) for h in bucket})
    return out


def _prv_bucket(bucket: list[Canonical], delta: float) -> dict[Canonical, float]:
    """Histories with the same components, ascending; one domain fits them all."""
    from opacus.accountants.analysis.prv import (
        DiscretePRV,
        PoissonSubsampledGaussianPRV,
        TruncatedPrivacyRandomVariable,
        discretize,
    )
    from opacus.accountants.analysis.prv.compose import _compose_convolution_tree
    from scipy.fft import irfft, rfft

    delta_error = delta / 1000  # PRVAccountant.get_epsilon's default
    parts = [(z, q) for z, q, _ in bucket[0]]
    largest = [max(h[i][2] for h in bucket) for i in range(len(parts))]
    prvs = [PoissonSubsampledGaussianPRV(q, z) for z, q in parts]
    domain = accounting.prv_domain(prvs, largest, PRV_EPS_ERROR, delta_error)
    dprvs = [
        discretize(TruncatedPrivacyRandomVariable(p, domain.t_min, domain.t_max), domain)
        for p in prvs
    ]
    spectra = [rfft(d.pmf) for d in dprvs]
    size = domain.size
    out: dict[Canonical, float] = {}
    last: list[tuple[int, np.ndarray]] = [(0, np.ones_like(s)) for s in spectra]
    steps: dict[tuple[int, int], np.ndarray] = {}
    for h in bucket:
        composed = []
        for i, (_, _, n) in enumerate(h):
            had, power = last[i]
            gap = n - had
            if gap < 0 or had == 0:
                power = spectra[i] ** n
            elif gap > 0:
                factor = steps.get((i, gap))
                if factor is None:
                    factor = spectra[i] ** gap
                    if len(steps) >= _KEEP_FACTORS:  # each is as large as the domain
                        steps.pop(next(iter(steps)))
                    steps[(i, gap)] = factor
                power = power * factor
            last[i] = (n, power)
            composed.append(_from_spectrum(DiscretePRV, dprvs[i], power, n, size, irfft))
        dprv = _compose_convolution_tree(composed)
        _, _, eps_upper = dprv.compute_epsilon(delta, delta_error, PRV_EPS_ERROR)
        out[h] = float(eps_upper)
    return out


def _from_spectrum(
    discrete_prv: Any, dprv: Any, power: np.ndarray, n: int, size: int, irfft: Any
) -> Any:
    """Opacus' ``_compose_fourier`` with the spectrum power already at hand."""
    pmf = irfft(power, size)
    m = n - 1
    if n % 2 == 0:
        m += size // 2
    pmf = np.roll(pmf, m)
    return discrete_prv(pmf=pmf, domain=dprv.domain.shift_right(dprv.domain.shifts * (n - 1)))
