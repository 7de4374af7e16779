"""secureagg: federated learning with differential privacy and secure aggregation.

The recipes a user needs in an existing loop are exported here; they load torch and
Opacus on first use, so ``import secureagg.protocol`` stays light. Primitives live in
:mod:`secureagg.hazmat`, the sans-I/O protocol in :mod:`secureagg.protocol`.

Every error secureagg raises on purpose is a :class:`SecureAggError`: :class:`ConfigError`
(also a ValueError), :class:`DecodeError`, :class:`CryptoError` (:class:`InvalidKeyError`,
:class:`AuthenticationError`), :class:`ShareError`, :class:`ProtocolError`
(:class:`RoundAborted`), :class:`BudgetExhaustedError`, :class:`LedgerError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from secureagg._exceptions import (
    AuthenticationError,
    BudgetExhaustedError,
    ConfigError,
    CryptoError,
    DecodeError,
    InvalidKeyError,
    LedgerError,
    ProtocolError,
    RoundAborted,
    SecureAggError,
    ShareError,
)
from secureagg._lazy import lazy_exports as _lazy_exports
from secureagg._version import __version__

if TYPE_CHECKING:
    from secureagg.fl import (
        FederatedResult,
        RoundMetrics,
        SecureAggClient,
        SecureAggConfig,
        SecureAggregator,
        SecureAggServer,
        UpdateEncoder,
        run_federated,
    )
    from secureagg.privacy import LocalUpdate, PrivacyConfig, PrivacyLedger, PrivateTrainer

_LAZY = {
    "FederatedResult": "secureagg.fl",
    "RoundMetrics": "secureagg.fl",
    "SecureAggClient": "secureagg.fl",
    "SecureAggConfig": "secureagg.fl",
    "SecureAggServer": "secureagg.fl",
    "SecureAggregator": "secureagg.fl",
    "UpdateEncoder": "secureagg.fl",
    "run_federated": "secureagg.fl",
    "LocalUpdate": "secureagg.privacy",
    "PrivacyConfig": "secureagg.privacy",
    "PrivacyLedger": "secureagg.privacy",
    "PrivateTrainer": "secureagg.privacy",
}

__all__ = [
    "AuthenticationError",
    "BudgetExhaustedError",
    "ConfigError",
    "CryptoError",
    "DecodeError",
    "FederatedResult",
    "InvalidKeyError",
    "LedgerError",
    "LocalUpdate",
    "PrivacyConfig",
    "PrivacyLedger",
    "PrivateTrainer",
    "ProtocolError",
    "RoundAborted",
    "RoundMetrics",
    "SecureAggClient",
    "SecureAggConfig",
    "SecureAggError",
    "SecureAggServer",
    "SecureAggregator",
    "ShareError",
    "UpdateEncoder",
    "__version__",
    "run_federated",
]


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY)
