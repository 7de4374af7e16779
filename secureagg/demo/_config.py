"""DemoConfig: every knob of ``secureagg demo``, checked once, with one-line errors."""

from __future__ import annotations

import math
import warnings
from dataclasses import InitVar, asdict, dataclass
from pathlib import Path
from typing import Any

from secureagg._exceptions import ConfigError

__all__ = ["CLIENT_LEVEL_DEFAULTS", "DATASETS", "GRAPHS", "PRIVACY_MODES", "DemoConfig"]

DATASETS: tuple[str, ...] = ("breast-cancer", "digits")
"""Datasets bundled with scikit-learn (no download)."""

GRAPHS: tuple[str, ...] = ("complete", "sparse")

"""Neighbour graphs: complete (SecAgg) or a Harary graph (SecAgg+)."""

PRIVACY_MODES: tuple[str, ...] = ("example", "client")
"""example: DP-SGD at every client (one example is the unit); client: distributed DP (one
client's whole update is the unit, noise shares inside the masked sum)."""

CLIENT_LEVEL_DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "clients": 300,
    "rounds": 40,
    "local_epochs": 5,
    "learning_rate": 0.5,
    "update_clip": 0.5,
    "delta": 1e-4,
    "min_examples": 1,
}
"""The settings ``--privacy client`` changes unless given: a cross-device split (digits over
300 simulated devices of 1 to about 11 images each, 15% of them per round)."""


def _int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"{name} must be {span}, got {value}")
    return value


def _real(name: str, value: object, *, low: float, high: float, open_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    v = float(value)
    too_low = v <= low if open_low else v < low
    if not math.isfinite(v) or too_low or v > high:
        left = "(" if open_low else "["
        raise ConfigError(f"{name} must be in {left}{low:g}, {high:g}], got {value!r}")
    return v


@dataclass(frozen=True)
class DemoConfig:
    """The demo's settings; :meth:`validate` raises ConfigError naming the bad one.

    ``noise_multiplier`` and ``target_epsilon`` are exclusive: with neither, the default
    target epsilon applies. ``sample_rate`` asks for each client's Poisson sampling rate per
    DP-SGD step (1.0 = full-batch DP gradient descent); a client of n examples gets
    1/ceil(n/ceil(rate*n)), the nearest rate Opacus gives its loader (see batch_size_for).
    ``degree`` and ``threshold`` None let the protocol's helper choose.
    ``max_grad_norm`` is DP-SGD's per-example gradient L2 clip (Opacus' name; the old
    keyword ``clip_norm`` is still accepted, with a DeprecationWarning, and sets it; it is
    not an attribute), ``update_clip`` the L2 clip of a client's whole round update.

    ``privacy="client"`` switches to client-level distributed DP: no DP-SGD; each client
    joins a round by its own OS coin of bias ``client_rate``, clips its whole update to
    ``update_clip`` and adds a share of discrete Gaussian noise inside the ``bits``-bit
    masked sum, calibrated so that ``target_epsilon`` holds after ``rounds`` rounds for
    ``threshold - colluders`` honest clients (``threshold`` default: 75% of the expected
    clients per round). ``max_grad_norm``, ``sample_rate``, ``noise_multiplier`` and
    ``frac_bits`` are example-level settings and are not used then.
    """

    dataset: str = "breast-cancer"
    clients: int = 8
    rounds: int = 20
    local_epochs: int = 3
    learning_rate: float = 2.0
    sample_rate: float = 1.0
    noise_multiplier: float | None = None
    target_epsilon: float | None = 4.0
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    update_clip: float = 0.75
    dropout_rate: float = 1.0
    graph: str = "complete"
    degree: int | None = None
    threshold: int | None = None
    corrupt_fraction: float = 0.1
    frac_bits: int = 16
    signed: bool = False
    weighting: str = "uniform"
    hidden: int = 0
    test_fraction: float = 0.25
    skew: float = 1.0
    min_examples: int = 10
    seed: int = 0
    privacy: str = "example"
    client_rate: float = 0.15
    bits: int = 16
    colluders: int = 0
    out: Path = Path("secureagg-report")
    clip_norm: InitVar[float | None] = None

    def __post_init__(self, clip_norm: float | None) -> None:
        if clip_norm is not None:  # the old name of max_grad_norm
            warnings.warn(
                "DemoConfig(clip_norm=...) is deprecated: use max_grad_norm",
                DeprecationWarning,
                stacklevel=3,
            )
            object.__setattr__(self, "max_grad_norm", clip_norm)

    def validate(self) -> DemoConfig:
        """Check every field; return self, or raise ConfigError naming the first bad value."""
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {self.dataset!r}; choose one of {DATASETS}")
        if self.graph not in GRAPHS:
            raise ConfigError(f"unknown graph {self.graph!r}; choose one of {GRAPHS}")
        _int("clients", self.clients, 3, 1000)
        _int("rounds", self.rounds, 1, 10_000)
        _int("local_epochs", self.local_epochs, 1, 1000)
        _real("learning_rate", self.learning_rate, low=0.0, high=1e3, open_low=True)
        _real("sample_rate", self.sample_rate, low=0.0, high=1.0, open_low=True)
        if self.noise_multiplier is not None and self.target_epsilon is not None:
            raise ConfigError("give either noise_multiplier or target_epsilon, not both")
        if self.noise_multiplier is None and self.target_epsilon is None:
            raise ConfigError("give a noise_multiplier or a target_epsilon")
        if self.noise_multiplier is not None:
            _real("noise_multiplier", self.noise_multiplier, low=0.0, high=1e4, open_low=True)
        if self.target_epsilon is not None:
            _real("target_epsilon", self.target_epsilon, low=0.0, high=1e3, open_low=True)
        _real("delta", self.delta, low=0.0, high=0.1, open_low=True)
        _real("max_grad_norm", self.max_grad_norm, low=0.0, high=1e6, open_low=True)
        _real("update_clip", self.update_clip, low=0.0, high=1e6, open_low=True)
        _real("dropout_rate", self.dropout_rate, low=0.0, high=1.0)
        if self.dropout_rate > 0 and self.clients < 4:
            raise ConfigError(
                f"with dropouts, {self.clients} clients cannot finish a round (the survivors "
                "keep too few neighbours): use 4 or more clients, or --dropout-rate 0"
            )
        _real("corrupt_fraction", self.corrupt_fraction, low=0.0, high=0.5)
        _int("frac_bits", self.frac_bits, 1, 40)
        _int("hidden", self.hidden, 0, 4096)
        _real("test_fraction", self.test_fraction, low=0.05, high=0.5)
        _real("skew", self.skew, low=0.0, high=1e6, open_low=True)
        _int("min_examples", self.min_examples, 1)
        _int("seed", self.seed, 0, 2**32 - 1)
        if self.graph == "complete" and self.degree is not None:
            raise ConfigError("degree applies to the sparse graph only (use --graph sparse)")
        if self.degree is not None:
            _int("degree", self.degree, 2, self.clients - 2)
            if self.degree % 2:
                raise ConfigError(f"degree must be even (a Harary graph), got {self.degree}")
        if self.threshold is not None:
            # each client shares among its neighbours: at most n - 1 (complete) or the degree
            top = self.clients - 1 if self.degree is None else self.degree
            _int("threshold", self.threshold, 2, top)
        if self.weighting not in ("uniform", "examples-public"):
            # uniform: no count leaves a hospital; examples-public: the true counts are
            # declared public and the guarantee is computed under replace-one
            raise ConfigError(
                f"weighting must be 'uniform' or 'examples-public', got {self.weighting!r}"
            )
        if not isinstance(self.signed, bool):
            raise ConfigError(f"signed must be a bool, got {self.signed!r}")
        if self.privacy not in PRIVACY_MODES:
            raise ConfigError(f"privacy must be one of {PRIVACY_MODES}, got {self.privacy!r}")
        if self.privacy == "client":
            self._validate_client_level()
        return self

    @property
    def expected_clients(self) -> float:
        """Clients per round on average under ``privacy="client"``: clients x client_rate."""
        return self.clients * self.client_rate

    @property
    def client_threshold(self) -> int:
        """The protocol threshold under ``privacy="client"`` (the honest floor plus colluders)."""
        return self.threshold or max(2, int(0.75 * self.expected_clients))

    def _validate_client_level(self) -> None:
        _real("client_rate", self.client_rate, low=0.0, high=1.0, open_low=True)
        _int("bits", self.bits, 8, 30)
        _int("colluders", self.colluders, 0, self.clients)
        if self.graph != "complete":
            raise ConfigError(
                "--privacy client runs the complete graph over each round's sampled clients"
            )
        if self.weighting != "uniform":
            raise ConfigError("--privacy client weights clients uniformly (--weighting uniform)")
        if self.target_epsilon is None:
            raise ConfigError("--privacy client is calibrated to a --target-epsilon")
        if self.client_threshold - self.colluders < 1:
            raise ConfigError(
                f"threshold {self.client_threshold} minus {self.colluders} colluders leaves no"
                " honest client: lower --colluders"
            )
        if self.client_threshold >= self.expected_clients:
            raise ConfigError(
                f"threshold {self.client_threshold} is not below the {self.expected_clients:g}"
                " clients expected per round: most rounds would abort; raise --client-rate"
            )

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON-ready values (the output folder as a string)."""
        doc = asdict(self)
        doc["out"] = str(self.out)
        return doc
