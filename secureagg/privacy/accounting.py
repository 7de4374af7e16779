"""Privacy accountants for Poisson-sampled Gaussian steps (DP-SGD), side by side.

Four independent figures for the same step history:

* ``opacus_rdp``: Opacus ``RDPAccountant`` (Renyi DP, Balle et al. 2020 conversion);
* ``opacus_prv``: Opacus ``PRVAccountant`` (numerical composition, Gopi et al. 2021);
* ``dpa_rdp``: Google dp-accounting ``RdpAccountant``;
* ``dpa_pld``: Google dp-accounting ``PLDAccountant`` (privacy loss distributions).

Composition is commutative, so a history is reduced to its canonical form (identical
``(noise_multiplier, sample_rate)`` entries merged, sorted) before any accountant runs, and
results are cached per canonical history: two clients with the same steps cost one computation.

:data:`HEADLINE` (``dpa_pld``) is the accountant whose figure is stated, budgets are
enforced with and noise is calibrated with: the tightest of the four that is a proven upper
bound (PLD with pessimistic discretisation). The others are cross-checks.

* :class:`Step`: ``steps`` steps at one noise multiplier and one sample rate;
* :func:`epsilon` (one accountant), :func:`epsilons` (all of :data:`ACCOUNTANTS`, named for
  people by :data:`ACCOUNTANT_NAMES`), :func:`noise_for_epsilon` (the inverse);
* :data:`PRV_EPS_ERROR`, :data:`PLD_VALUE_DISCRETIZATION`: the numerical accountants' settings;
* :data:`RELATIONS` (:data:`ADD_REMOVE`, :data:`REPLACE_ONE`): the neighbouring relations,
  and :func:`relation_accountants`, the accountants that compute under each.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from secureagg._exceptions import ConfigError
from secureagg.privacy._steps import Canonical as Canonical
from secureagg.privacy._steps import Step, as_real, step_problem
from secureagg.privacy._steps import canonical as canonical

# The API; the other public-looking names here (canonical, as_int, prv_domain, ...) serve the
# rest of secureagg.privacy and are not exported.
__all__ = [
    "ACCOUNTANTS",
    "ACCOUNTANT_NAMES",
    "ADD_REMOVE",
    "HEADLINE",
    "PLD_VALUE_DISCRETIZATION",
    "PRV_EPS_ERROR",
    "RELATIONS",
    "REPLACE_ONE",
    "Step",
    "epsilon",
    "epsilons",
    "noise_for_epsilon",
    "relation_accountants",
]

ACCOUNTANTS: tuple[str, ...] = ("opacus_rdp", "opacus_prv", "dpa_rdp", "dpa_pld")
"""Names of the accountants, in report order."""

ACCOUNTANT_NAMES: dict[str, str] = {
    "opacus_rdp": "Opacus RDP",
    "opacus_prv": "Opacus PRV",
    "dpa_rdp": "dp-accounting RDP",
    "dpa_pld": "dp-accounting PLD",
}
"""Each accountant's name for people (reports, statements, tables)."""

HEADLINE = "dpa_pld"
"""The accountant of the stated epsilon, of budgets and of calibration (the others cross-check)."""

ADD_REMOVE = "add-remove"
"""Neighbouring datasets differ by one example added or removed (the default)."""

REPLACE_ONE = "replace-one"
"""Neighbouring datasets have the same size and differ in one example (the size is public)."""

RELATIONS: tuple[str, ...] = (ADD_REMOVE, REPLACE_ONE)
"""The neighbouring relations an epsilon can be computed under."""

_RELATION_ACCOUNTANTS: dict[str, tuple[str, ...]] = {
    ADD_REMOVE: ACCOUNTANTS,
    REPLACE_ONE: ("dpa_pld",),
}


def relation_accountants(relation: str) -> tuple[str, ...]:
    """The accountants that compute epsilon under ``relation``.

    Under replace-one only dp-accounting's PLD (``neighboring_relation=REPLACE_ONE``, which
    analyses the Poisson-subsampled Gaussian for a replaced example); Opacus RDP/PRV and
    dp-accounting RDP are add/remove analyses only, so they are not applicable (N/A).
    """
    if relation not in RELATIONS:
        raise ConfigError(f"unknown neighbouring relation {relation!r}; choose one of {RELATIONS}")
    return _RELATION_ACCOUNTANTS[relation]


def _check_relation(accountant: str, relation: str) -> None:
    if accountant not in relation_accountants(relation):
        raise ConfigError(
            f"{ACCOUNTANT_NAMES[accountant]} cannot account under {relation}; "
            f"use one of {relation_accountants(relation)}"
        )


PRV_EPS_ERROR = 0.01
"""Opacus PRV ``eps_error`` (its default); the figure returned is the PRV upper bound."""

PLD_VALUE_DISCRETIZATION = 1e-3
"""dp-accounting PLD ``value_discretization_interval``.

Ten times dp-accounting's default 1e-4: about 5x faster and at most 0.004 looser on the
pinned figures; rounding stays pessimistic, so the figure is still an upper bound.
"""


def _check_delta(delta: object) -> float:
    d = as_real(delta)
    if d is None or not 0 < d < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta!r}")
    return d


def _check_accountant(accountant: str) -> None:
    if accountant not in ACCOUNTANTS:
        raise ConfigError(f"unknown accountant {accountant!r}; choose one of {ACCOUNTANTS}")


# --- one function per accountant, each fed the canonical history -----------------------------


@lru_cache(maxsize=1024)
def _opacus_unit_rdp(noise_multiplier: float, sample_rate: float) -> np.ndarray:
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import compute_rdp

    unit = np.asarray(
        compute_rdp(
            q=sample_rate,
            noise_multiplier=noise_multiplier,
            steps=1,
            orders=RDPAccountant.DEFAULT_ALPHAS,
        ),
        dtype=float,
    )
    unit.setflags(write=False)
    return unit


def _opacus_rdp(history: Canonical, delta: float) -> float:
    """``RDPAccountant.get_epsilon`` with each step's RDP curve computed once per (z, q).

    Same arithmetic as Opacus (``compute_rdp`` is the one-step curve times the steps, summed
    over the history), so the figure is identical; ``test_accounting_unit`` checks that.
    """
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import get_privacy_spent

    rdp = sum([_opacus_unit_rdp(z, q) * n for z, q, n in history])
    eps, _ = get_privacy_spent(orders=RDPAccountant.DEFAULT_ALPHAS, rdp=rdp, delta=delta)
    return float(eps)


def prv_domain(
    prvs: Sequence[Any], counts: Sequence[int], eps_error: float, delta_error: float
) -> Any:
    """The Opacus PRV domain for ``counts`` steps of ``prvs``, widened to an FFT-friendly size.

    Opacus sizes the grid from eps_error and the step counts; sizes with a large prime
    factor make its FFTs several times slower. Widening the domain at the same mesh only
    shrinks the truncated tails, so the bound stays valid.
    """
    from opacus.accountants import PRVAccountant
    from opacus.accountants.analysis.prv import Domain
    from scipy.fft import next_fast_len

    d = PRVAccountant()._get_domain(
        prvs=list(prvs),
        num_self_compositions=list(counts),
        eps_error=eps_error,
        delta_error=delta_error,
    )
    size = next_fast_len(d.size, real=True)
    while size % 2:
        size = next_fast_len(size + 1, real=True)
    left = (size - d.size) // 2
    right = size - d.size - left
    return Domain(d.t_min - left * d.dt, d.t_max + right * d.dt, size)


def _opacus_prv(history: Canonical, delta: float) -> float:
    """Opacus ``PRVAccountant`` on the domain of :func:`prv_domain`.

    Figures agree with the plain accountant to about 1e-8 (``test_accounting_unit`` checks
    the pinned figures).
    """
    from opacus.accountants import PRVAccountant

    class _PaddedPRVAccountant(PRVAccountant):  # type: ignore[misc]
        def _get_domain(self, **kwargs: Any) -> Any:
            return prv_domain(
                kwargs["prvs"],
                kwargs["num_self_compositions"],
                kwargs["eps_error"],
                kwargs["delta_error"],
            )

    acc = _PaddedPRVAccountant()
    acc.history = list(history)
    return float(acc.get_epsilon(delta, eps_error=PRV_EPS_ERROR))


def _dpa_event(history: Canonical) -> object:
    import dp_accounting

    return dp_accounting.ComposedDpEvent(
        [
            dp_accounting.SelfComposedDpEvent(
                dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), n
            )
            for z, q, n in history
        ]
    )


@lru_cache(maxsize=1024)
def _dpa_unit_rdp(noise_multiplier: float, sample_rate: float) -> np.ndarray:
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

    acc = RdpAccountant()
    event = dp_accounting.PoissonSampledDpEvent(
        sample_rate, dp_accounting.GaussianDpEvent(noise_multiplier)
    )
    # dp-accounting logs a warning for every fractional order whose series does not
    # converge (it then leaves that order out, which is sound); keep that out of user logs
    absl_log = logging.getLogger("absl")
    level = absl_log.level
    absl_log.setLevel(logging.ERROR)
    try:
        acc.compose(event)
    finally:
        absl_log.setLevel(level)
    unit = np.asarray(acc.rdp, dtype=float)
    unit.setflags(write=False)
    return unit


def _dpa_rdp(history: Canonical, delta: float) -> float:
    """``RdpAccountant`` composing the history, with each one-step RDP curve computed once.

    dp-accounting adds ``count * curve`` per event and converts with ``compute_epsilon``;
    so does this, so the figure is identical (checked in ``test_accounting_unit``).
    """
    from dp_accounting.rdp import RdpAccountant
    from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon

    orders = RdpAccountant().orders
    rdp = np.zeros_like(orders, dtype=float)
    for z, q, n in history:
        rdp += n * _dpa_unit_rdp(z, q)
    eps, _ = compute_epsilon(orders, rdp, delta)
    return float(eps)


def _dpa_rdp_reference(history: Canonical, delta: float) -> float:
    """dp-accounting's ``RdpAccountant`` run as is (the reference for the cached path)."""
    from dp_accounting.rdp import RdpAccountant

    acc = RdpAccountant()
    acc.compose(_dpa_event(history))
    return float(acc.get_epsilon(delta))


def _opacus_rdp_reference(history: Canonical, delta: float) -> float:
    """Opacus's ``RDPAccountant`` run as is (the reference for the cached path)."""
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = list(history)
    return float(acc.get_epsilon(delta))


def _pld_accountant(relation: str = ADD_REMOVE) -> Any:
    import dp_accounting
    from dp_accounting.pld import PLDAccountant

    rel = dp_accounting.NeighboringRelation
    return PLDAccountant(
        neighboring_relation=rel.REPLACE_ONE if relation == REPLACE_ONE else rel.ADD_OR_REMOVE_ONE,
        value_discretization_interval=PLD_VALUE_DISCRETIZATION,
    )


def _dpa_pld(history: Canonical, delta: float) -> float:
    return _dpa_pld_under(history, delta, ADD_REMOVE)


@lru_cache(maxsize=256)
def _dpa_unit_pld(noise_multiplier: float, sample_rate: float, relation: str) -> Any:
    """One Poisson-subsampled Gaussian step's PLD (the costly part: ~60% of a figure).

    Built exactly as ``PLDAccountant`` builds it for a ``PoissonSampledDpEvent`` (the PLD
    objects are immutable: composing returns new ones), so it can be shared.
    """
    import dp_accounting
    from dp_accounting.pld import privacy_loss_distribution as pld

    rel = dp_accounting.NeighboringRelation
    return pld.from_gaussian_mechanism(
        standard_deviation=noise_multiplier,
        value_discretization_interval=PLD_VALUE_DISCRETIZATION,
        sampling_prob=sample_rate,
        neighboring_relation=rel.REPLACE_ONE if relation == REPLACE_ONE else rel.ADD_OR_REMOVE_ONE,
    )


def _dpa_pld_under(history: Canonical, delta: float, relation: str) -> float:
    """``PLDAccountant.compose(event).get_epsilon(delta)``, step for step, with each
    ``(z, q)``'s one-step PLD built once per process (:func:`_dpa_unit_pld`).

    The accountant starts from the identity PLD and composes, in the event's order, each
    entry's one-step PLD self-composed ``n`` times; so does this, so the figure is
    identical (``test_accounting_unit`` checks it against the accountant run as is). A
    trainer's per-round budget check then costs a self-composition and the epsilon search,
    not a rebuild of the mechanism's PLD.
    """
    from dp_accounting.pld import privacy_loss_distribution as pld

    total = pld.identity(value_discretization_interval=PLD_VALUE_DISCRETIZATION)
    for z, q, n in history:
        total = total.compose(_dpa_unit_pld(z, q, relation).self_compose(n))
    return float(total.get_epsilon_for_delta(delta))


def _dpa_pld_reference(history: Canonical, delta: float, relation: str = ADD_REMOVE) -> float:
    """dp-accounting's ``PLDAccountant`` run as is (the reference for the cached path)."""
    acc = _pld_accountant(relation)
    acc.compose(_dpa_event(history))
    return float(acc.get_epsilon(delta))


_COMPUTE: dict[str, Callable[[Canonical, float], float]] = {
    "opacus_rdp": _opacus_rdp,
    "opacus_prv": _opacus_prv,
    "dpa_rdp": _dpa_rdp,
    "dpa_pld": _dpa_pld,
}


_EVALUATIONS: dict[str, int] = dict.fromkeys(ACCOUNTANTS, 0)


@lru_cache(maxsize=65536)
def _cached(accountant: str, history: Canonical, delta: float, relation: str = ADD_REMOVE) -> float:
    if not history:
        return 0.0
    if any(z == 0 for z, _, _ in history):
        return math.inf  # no noise: no finite guarantee
    _EVALUATIONS[accountant] += 1
    try:
        with warnings.catch_warnings():
            quiet_accountant_warnings()
            if relation == ADD_REMOVE:
                value = _COMPUTE[accountant](history, delta)
            else:
                value = _dpa_pld_under(history, delta, relation)
    except (ValueError, ArithmeticError, RuntimeError, MemoryError) as exc:
        raise ConfigError(f"{accountant} cannot account for {history}: {exc}") from exc
    return value if math.isfinite(value) and value >= 0 else math.inf


def quiet_accountant_warnings() -> None:
    """Inside ``warnings.catch_warnings()``: silence the accountants' known, handled warnings.

    Opacus' RDP warns when the best order is at the end of its grid (the figure is still a
    valid upper bound), and numpy warns of overflow or log(0) inside the libraries' code (a
    result that is not finite is reported as inf). Every other warning is shown.
    """
    warnings.filterwarnings(
        "ignore", message=r"Optimal order is the (smallest|largest) alpha", category=UserWarning
    )
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"(opacus|dp_accounting)\.")


def evaluations() -> dict[str, int]:
    """How many times each accountant has really run in this process (cache misses)."""
    return dict(_EVALUATIONS)


def epsilon_canonical(
    accountant: str, history: Canonical, delta: float, relation: str = ADD_REMOVE
) -> float:
    """:func:`epsilon` for a history already in :func:`canonical` form (cached)."""
    _check_relation(accountant, relation)
    return _cached(accountant, history, delta, relation)


_OTHER_CACHES: list[Callable[[], None]] = []


def register_cache(clear: Callable[[], None]) -> None:
    """Have :func:`clear_cache` also call ``clear`` (for caches of figures kept elsewhere)."""
    if clear not in _OTHER_CACHES:
        _OTHER_CACHES.append(clear)


def clear_cache() -> None:
    """Forget every cached figure (for tests and benchmarks)."""
    _cached.cache_clear()
    _opacus_unit_rdp.cache_clear()
    _dpa_unit_rdp.cache_clear()
    _dpa_unit_pld.cache_clear()
    for clear in _OTHER_CACHES:
        clear()


def epsilon(
    history: Sequence[Step],
    delta: float,
    accountant: str = HEADLINE,
    *,
    relation: str = ADD_REMOVE,
) -> float:
    """Epsilon spent by ``history`` at ``delta`` according to one accountant (inf if no noise).

    ``relation`` is the neighbouring relation (:data:`RELATIONS`); under replace-one only
    ``dpa_pld`` applies (ConfigError for the others).
    """
    _check_accountant(accountant)
    _check_relation(accountant, relation)
    return _cached(accountant, canonical(history), _check_delta(delta), relation)


def epsilons(
    history: Sequence[Step], delta: float, *, relation: str = ADD_REMOVE
) -> dict[str, float]:
    """Epsilon spent by ``history`` at ``delta`` by each accountant that applies to ``relation``."""
    key, d = canonical(history), _check_delta(delta)
    return {name: _cached(name, key, d, relation) for name in relation_accountants(relation)}


def noise_for_epsilon(
    target_epsilon: float,
    *,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: str = HEADLINE,
    relation: str = ADD_REMOVE,
) -> float:
    """The smallest noise multiplier whose epsilon after ``steps`` is <= the target.

    Under ``relation`` (:data:`RELATIONS`; replace-one: ``dpa_pld`` only).

    The libraries' own calibration, no search of ours: dp-accounting's
    ``calibrate_dp_mechanism`` (Brent's method, to 1e-4, returning a value within budget)
    for ``dpa_pld`` and ``dpa_rdp``; Opacus's ``get_noise_multiplier`` for ``opacus_rdp``
    and ``opacus_prv``. The result is checked against this module's own figure for the
    accountant (so a ledger never shows more than the target).
    """
    from secureagg.privacy._calibrate import calibrate  # it builds on this module

    _check_accountant(accountant)
    _check_relation(accountant, relation)
    d = _check_delta(delta)
    target = as_real(target_epsilon)
    if target is None or not (math.isfinite(target) and target > 0):
        raise ConfigError(f"target_epsilon must be finite and > 0, got {target_epsilon!r}")
    problem = step_problem(1.0, sample_rate, steps)
    if problem is not None:
        raise ConfigError(problem)
    q, n = float(sample_rate), int(steps)
    if n == 0 or q == 0:
        raise ConfigError("with no steps or a zero sample rate any noise multiplier reaches it")
    return calibrate(accountant, target, q, n, d, relation, target_epsilon)
