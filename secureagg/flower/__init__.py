"""secureagg over Flower's Message API (needs ``pip install 'secureagg[flower]'``).

Two changed lines turn a Flower app secure: the ClientApp gets ``mods=[secureagg_mod]`` and
the ServerApp wraps its strategy, ``SecureAggregation(FedAvg(...), max_examples=...)``.
``train_privately`` trains a client with Opacus DP-SGD and keeps its privacy history across
rounds. Only ``train_privately`` loads torch, so the protocol-stage messages (a fresh
ClientApp process each, in Flower's deployment engine) start fast. ``NodePrivacy`` is the
ledger and the DP-SGD floors a node pins in its own node config (``secureagg-ledger``,
``-noise-multiplier``, ``-max-grad-norm``, ``-budget``, ``-delta``), which
``train_privately`` enforces whatever the server's run config says. ``generate_identity``
and ``load_members`` handle signed mode's key and members files. ``RoundReport`` is what
``SecureAggregation.reports`` keeps per round. ``RECORD_KEY`` names the ConfigRecord that
carries secureagg's bytes in a message (a ClientApp leaves it alone), and ``STATE_KEY`` the
ConfigRecord in a node's ``Context.state`` that holds its saved protocol session. See
docs/flower.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    import flwr  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("secureagg.flower needs Flower: pip install 'secureagg[flower]'") from exc

from secureagg.flower._identity import generate_identity, load_identity, load_members
from secureagg.flower._mod import secureagg_mod
from secureagg.flower._node_privacy import NodePrivacy
from secureagg.flower._records import RECORD_KEY, STATE_KEY
from secureagg.flower._strategy import RoundReport, SecureAggregation

if TYPE_CHECKING:
    from secureagg.flower._private import train_privately

__all__ = [
    "RECORD_KEY",
    "STATE_KEY",
    "NodePrivacy",
    "RoundReport",
    "SecureAggregation",
    "generate_identity",
    "load_identity",
    "load_members",
    "secureagg_mod",
    "train_privately",
]


def __getattr__(name: str) -> Any:
    if name == "train_privately":
        from secureagg.flower._private import train_privately

        globals()[name] = train_privately
        return train_privately
    raise AttributeError(f"module 'secureagg.flower' has no attribute {name!r}")
