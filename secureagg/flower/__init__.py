"""secureagg over Flower's Message API (needs ``pip install 'secureagg[flower]'``).

Two changed lines turn a Flower app secure: the ClientApp gets ``mods=[secureagg_mod]`` and
the ServerApp wraps its strategy, ``SecureAggregation(FedAvg(...), max_examples=...)``.
``train_privately`` trains a client with Opacus DP-SGD and keeps its privacy history across
rounds. See docs/flower.md.
"""

from __future__ import annotations

try:
    import flwr  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("secureagg.flower needs Flower: pip install 'secureagg[flower]'") from exc

from secureagg.flower._mod import secureagg_mod
from secureagg.flower._private import train_privately
from secureagg.flower._records import RECORD_KEY, STATE_KEY
from secureagg.flower._strategy import RoundReport, SecureAggregation

__all__ = [
    "RECORD_KEY",
    "STATE_KEY",
    "RoundReport",
    "SecureAggregation",
    "secureagg_mod",
    "train_privately",
]
