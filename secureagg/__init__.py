"""secureagg: federated learning with differential privacy and secure aggregation."""

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
from secureagg._version import __version__

__all__ = [
    "AuthenticationError",
    "BudgetExhaustedError",
    "ConfigError",
    "CryptoError",
    "DecodeError",
    "InvalidKeyError",
    "LedgerError",
    "ProtocolError",
    "RoundAborted",
    "SecureAggError",
    "ShareError",
    "__version__",
]
