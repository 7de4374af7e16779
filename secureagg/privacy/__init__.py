"""Differential privacy: accountants, the privacy ledger, and the private trainer."""

from secureagg.privacy._ledger import PrivacyLedger, RoundRecord
from secureagg.privacy._modes import GRAD_SAMPLE_MODES, choose_mode
from secureagg.privacy._privacy_config import PrivacyConfig
from secureagg.privacy._tensors import flatten, parameters_of, unflatten
from secureagg.privacy._trainer import LocalUpdate, PrivateTrainer
from secureagg.privacy.accounting import Step

__all__ = [
    "GRAD_SAMPLE_MODES",
    "LocalUpdate",
    "PrivacyConfig",
    "PrivacyLedger",
    "PrivateTrainer",
    "RoundRecord",
    "Step",
    "choose_mode",
    "flatten",
    "parameters_of",
    "unflatten",
]
