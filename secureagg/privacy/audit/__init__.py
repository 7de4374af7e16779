"""Privacy audits: recompute a ledger with every accountant, and an empirical lower bound.

* :func:`audit_ledger`: every client's cumulative epsilon after every round, recomputed from
  its step history by every accountant, as a :class:`LedgerAudit` of :class:`ClientAudit` s
  and their :class:`RoundAudit` s, with the largest :class:`Disagreement` between the
  :data:`AGREEING_PAIRS` (accountants that implement one analysis independently).
  :data:`CHEAP_ACCOUNTANTS` run on every round; :data:`SERIES_ACCOUNTANTS` run for many
  histories at once by :func:`series_epsilons`, within :data:`SERIES_AGREEMENT` of the
  library run from scratch, sharing a PRV discretisation among histories whose step counts
  differ by at most :data:`PRV_BUCKET_RATIO`;
* :func:`client_statement`, :func:`common_statement`: the written (epsilon, delta) statement;
* :func:`run_empirical_audit`: train once with canaries (:class:`EmpiricalConfig`) and
  return the :class:`EmpiricalAudit`, the epsilon lower bound that the guesses
  (:class:`GuessResult`) prove, by :func:`epsilon_lower_bound` and :func:`p_value`.
"""

from secureagg.privacy.audit._audit_result import (
    ClientAudit,
    Disagreement,
    LedgerAudit,
    RoundAudit,
)
from secureagg.privacy.audit._bound import epsilon_lower_bound, p_value
from secureagg.privacy.audit._empirical import (
    EmpiricalAudit,
    EmpiricalConfig,
    GuessResult,
    run_empirical_audit,
)
from secureagg.privacy.audit._ledger_audit import AGREEING_PAIRS, CHEAP_ACCOUNTANTS, audit_ledger
from secureagg.privacy.audit._series import (
    PRV_BUCKET_RATIO,
    SERIES_ACCOUNTANTS,
    SERIES_AGREEMENT,
    series_epsilons,
)
from secureagg.privacy.audit._statement import client_statement, common_statement

__all__ = [
    "AGREEING_PAIRS",
    "CHEAP_ACCOUNTANTS",
    "PRV_BUCKET_RATIO",
    "SERIES_ACCOUNTANTS",
    "SERIES_AGREEMENT",
    "ClientAudit",
    "Disagreement",
    "EmpiricalAudit",
    "EmpiricalConfig",
    "GuessResult",
    "LedgerAudit",
    "RoundAudit",
    "audit_ledger",
    "client_statement",
    "common_statement",
    "epsilon_lower_bound",
    "p_value",
    "run_empirical_audit",
    "series_epsilons",
]
