"""Privacy audits: recompute a ledger with every accountant, and an empirical lower bound."""

from secureagg.privacy.audit._bound import epsilon_lower_bound, p_value
from secureagg.privacy.audit._empirical import (
    EmpiricalAudit,
    EmpiricalConfig,
    GuessResult,
    run_empirical_audit,
)
from secureagg.privacy.audit._ledger_audit import (
    AGREEING_PAIRS,
    CHEAP_ACCOUNTANTS,
    ClientAudit,
    Disagreement,
    LedgerAudit,
    RoundAudit,
    audit_ledger,
)
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
