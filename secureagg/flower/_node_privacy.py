"""The DP-SGD floors and the ledger a node pins in its own node config (never the server's).

Over Flower the run config (``Context.run_config``) is set by whoever starts the run, the
server side. Settings that protect the node's privacy therefore come from the node config,
which the node's operator sets (``flower-supernode --node-config``): ``train_privately``
checks every round's ``PrivacyConfig`` against them before any training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from secureagg._exceptions import ConfigError

if TYPE_CHECKING:  # importing secureagg.privacy loads torch; the mod's stages must not
    from secureagg.privacy import PrivacyConfig

__all__ = [
    "BUDGET_KEY",
    "CLIP_KEY",
    "DELTA_KEY",
    "LEDGER_KEY",
    "NOISE_KEY",
    "NodePrivacy",
]

LEDGER_KEY = "secureagg-ledger"
NOISE_KEY = "secureagg-noise-multiplier"
CLIP_KEY = "secureagg-max-grad-norm"
BUDGET_KEY = "secureagg-budget"
DELTA_KEY = "secureagg-delta"


@dataclass(frozen=True)
class NodePrivacy:
    """What a node pins: its ledger file and the weakest DP-SGD it will train with.

    Attributes:
        ledger: The node's privacy ledger file (node config ``secureagg-ledger``); it
            replaces any ledger the app passes, so a run cannot point the node at a fresh one.
        noise_multiplier: The least noise multiplier accepted (``secureagg-noise-multiplier``).
        max_grad_norm: The largest per-example clip accepted (``secureagg-max-grad-norm``).
        budget_epsilon: The largest budget accepted (``secureagg-budget``); a
            ``PrivacyConfig`` with no budget or a larger one is declined.
        delta: The largest delta accepted (``secureagg-delta``).
    """

    ledger: Path | None = None
    noise_multiplier: float | None = None
    max_grad_norm: float | None = None
    budget_epsilon: float | None = None
    delta: float | None = None

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, object]) -> NodePrivacy:
        """Read the pinned keys from a Flower node config (absent or "" pins nothing).

        Parameters:
            node_config: ``Context.node_config``.

        Returns:
            The node's pins.

        Raises:
            ConfigError: A key holds the wrong type or a value that is not positive.
        """
        ledger = node_config.get(LEDGER_KEY)
        if ledger is not None and not isinstance(ledger, str):
            raise ConfigError(f"the node config's {LEDGER_KEY} is not a path string")
        return cls(
            ledger=Path(ledger) if ledger else None,
            noise_multiplier=_number(node_config, NOISE_KEY),
            max_grad_norm=_number(node_config, CLIP_KEY),
            budget_epsilon=_number(node_config, BUDGET_KEY),
            delta=_number(node_config, DELTA_KEY),
        )

    def apply(self, privacy: PrivacyConfig) -> PrivacyConfig:
        """``privacy`` with every pinned DP-SGD setting replaced by the node's own.

        Parameters:
            privacy: The app's settings (used where the node pins nothing).

        Returns:
            The settings the node trains with.
        """
        pins = {
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.max_grad_norm,
            "budget_epsilon": self.budget_epsilon,
            "delta": self.delta,
        }
        changes: dict[str, object] = {k: v for k, v in pins.items() if v is not None}
        if self.noise_multiplier is not None:
            changes["target_epsilon"] = None  # the node's noise, not a calibrated one
        return dataclasses.replace(privacy, **changes)  # type: ignore[arg-type]

    def problem(self, privacy: PrivacyConfig, noise_multiplier: float) -> str | None:
        """Why ``privacy`` (training with ``noise_multiplier``) is weaker than the pins.

        Parameters:
            privacy: The settings the app asks for.
            noise_multiplier: The noise multiplier they train with (after any calibration).

        Returns:
            None when the settings are at least as strong as every pin, else the reason.
        """
        if self.noise_multiplier is not None and noise_multiplier < self.noise_multiplier:
            return (
                f"noise multiplier {noise_multiplier:g} is below this node's "
                f"{NOISE_KEY} {self.noise_multiplier:g}"
            )
        if self.max_grad_norm is not None and privacy.max_grad_norm > self.max_grad_norm:
            return (
                f"max grad norm {privacy.max_grad_norm:g} is above this node's "
                f"{CLIP_KEY} {self.max_grad_norm:g}"
            )
        if self.budget_epsilon is not None:
            budget = privacy.budget_epsilon
            if budget is None or budget > self.budget_epsilon:
                shown = "none" if budget is None else f"{budget:g}"
                return f"budget {shown} is above this node's {BUDGET_KEY} {self.budget_epsilon:g}"
        if self.delta is not None and privacy.delta > self.delta:
            return f"delta {privacy.delta:g} is above this node's {DELTA_KEY} {self.delta:g}"
        return None


def _number(node_config: Mapping[str, object], key: str) -> float | None:
    value = node_config.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"the node config's {key} is not a number")
    if not float(value) > 0:
        raise ConfigError(f"the node config's {key} must be positive, got {value!r}")
    return float(value)
