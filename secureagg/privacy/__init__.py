"""Differential privacy: accountants, the privacy ledger, and the private trainer."""

from secureagg.privacy._ledger import PrivacyLedger, RoundRecord
from secureagg.privacy.accounting import Step

__all__ = [
    "PrivacyLedger",
    "RoundRecord",
    "Step",
]
