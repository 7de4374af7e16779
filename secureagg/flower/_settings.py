"""The strategy's settings: which ones work together, and reading them from a run config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from flwr.serverapp import strategy as strategies
from flwr.serverapp.strategy import Strategy

from secureagg._exceptions import ConfigError
from secureagg.fl import UpdateEncoder

__all__ = [
    "NEEDS_EACH_UPDATE",
    "Settings",
    "check_settings",
    "settings_from_run_config",
    "update_encoder",
]

NEEDS_EACH_UPDATE: tuple[type[Strategy], ...] = (
    strategies.Krum,
    strategies.MultiKrum,
    strategies.Bulyan,
    strategies.FedMedian,
    strategies.FedTrimmedAvg,
    strategies.QFedAvg,
    strategies.FedXgbBagging,
    strategies.FedXgbCyclic,
    strategies.DifferentialPrivacyServerSideFixedClipping,
    strategies.DifferentialPrivacyServerSideAdaptiveClipping,
)
"""Strategies that need each client's update (robust or server-side-clipped aggregation)."""


class Settings(Protocol):
    """The strategy's settings: :class:`~secureagg.flower.SecureAggregation`'s attributes of
    these names (see there for each)."""

    max_examples: int
    threshold: int | None
    degree: int | None
    frac_bits: int
    clip: float
    bits: int | None
    max_clients: int | None
    timeout: float | None
    signed: bool
    weighting: str
    server_graph_seed: bool


def update_encoder(settings: Settings, d: int, n: int) -> UpdateEncoder:
    """The encoder of a round of ``n`` nodes and model size ``d`` (max_clients None: n)."""
    return UpdateEncoder(
        d,
        max_clients=settings.max_clients or n,
        max_examples=settings.max_examples,
        clip=settings.clip,
        frac_bits=settings.frac_bits,
        bits=settings.bits,
        weighting=settings.weighting,
    )


def check_settings(strategy: Strategy, settings: Settings) -> None:
    """Check :class:`~secureagg.flower.SecureAggregation`'s settings before round 1.

    Parameters:
        strategy: The Flower strategy to wrap.
        settings: The settings.

    Raises:
        ConfigError: Settings that cannot work together, or a strategy that is not one.
    """
    if not isinstance(strategy, Strategy):
        raise ConfigError(f"strategy must be a Flower Strategy, got {type(strategy).__name__}")
    most = settings.max_clients
    if most is not None and (isinstance(most, bool) or not isinstance(most, int) or most < 3):
        raise ConfigError(
            f"max_clients must be an int >= 3 (secure aggregation needs 3 nodes), got {most!r}"
        )
    if most is not None and settings.threshold is not None and most < settings.threshold:
        raise ConfigError(
            f"max_clients {most} is below the threshold {settings.threshold}: no round fits"
        )
    try:
        update_encoder(settings, 1, 2)  # fail now, not in round 1, for bad settings
    except OverflowError as exc:
        raise ConfigError(f"clip {settings.clip!r} is out of range") from exc
    threshold, degree, timeout = settings.threshold, settings.degree, settings.timeout
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int)):
        raise ConfigError(f"threshold must be an int, got {threshold!r}")
    if threshold is not None and threshold < 2:
        raise ConfigError(f"threshold must be at least 2, got {threshold!r}")
    if degree is not None and (
        isinstance(degree, bool) or not isinstance(degree, int) or degree < 2 or degree % 2
    ):
        raise ConfigError(f"degree must be an even int >= 2 (Harary graph), got {degree!r}")
    if isinstance(strategy, NEEDS_EACH_UPDATE):
        raise ConfigError(
            f"{type(strategy).__name__} needs each client's update; secure aggregation "
            "reveals only their sum: wrap FedAvg, FedAvgM, FedProx, FedAdam, FedYogi or "
            "FedAdagrad"
        )
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"timeout must be positive seconds, got {timeout!r}")
    if not isinstance(settings.signed, bool):
        raise ConfigError(f"signed must be a bool, got {settings.signed!r}")
    if not isinstance(settings.server_graph_seed, bool):
        raise ConfigError(f"server_graph_seed must be a bool, got {settings.server_graph_seed!r}")


def settings_from_run_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The strategy's keyword settings from a Flower run config's ``secureagg-*`` entries.

    Parameters:
        config: The run config (see :meth:`SecureAggregation.from_config`).

    Returns:
        Keyword arguments for :class:`~secureagg.flower.SecureAggregation`, ``run_config``
        included.

    Raises:
        ConfigError: A missing or ill-typed setting.
    """

    def get(name: str, kind: type, default: Any) -> Any:
        value = config.get(f"secureagg-{name}", default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
            raise ConfigError(f"secureagg-{name} must be {kind.__name__}, got {value!r}")
        return value

    if "secureagg-max-examples" not in config:
        raise ConfigError("the run config needs secureagg-max-examples")
    return {
        "max_examples": get("max-examples", int, 0),
        "threshold": get("threshold", int, 0) or None,
        "degree": get("degree", int, 0) or None,
        "bits": get("bits", int, 0) or None,
        "max_clients": get("max-clients", int, 0) or None,
        "frac_bits": get("frac-bits", int, 16),
        "clip": get("clip", float, 1.0),
        "timeout": get("timeout", float, 120.0),
        "signed": get("signed", bool, False),
        "weighting": get("weighting", str, "uniform"),
        "server_graph_seed": get("server-graph-seed", bool, False),
        "run_config": config,
    }
