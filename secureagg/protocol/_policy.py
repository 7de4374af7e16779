"""What a client accepts: the checks it runs on a round config before any key leaves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from secureagg._exceptions import ConfigError
from secureagg.protocol._config import EncodingValue, RoundConfig
from secureagg.protocol._params import default_threshold

__all__ = ["ClientPolicy"]


@dataclass(frozen=True)
class ClientPolicy:
    """The settings a client pins in its own configuration; a round that breaks one is refused.

    Whatever the policy, a client refuses a threshold of at most half its neighbourhood
    (itself included): fewer than half its neighbours could then rebuild its secrets, so
    two disjoint groups could each rebuild a different one.

    Attributes:
        encoding: Each entry must be in the round's :attr:`RoundConfig.encoding` with exactly
            this value (entries not named here are taken as the server sends them, but every
            client of one sum used the same ones: they are in the config digest that keys and
            masks are bound to).
        bits: The exact bit width, if set.
        d: The exact vector length, if set.
        min_threshold: Lower bound on the Shamir threshold.
        min_clients: Lower bound on the clients in the round.
        signed: The mode, if set.
        allow_minority_threshold: The one opt-out of the majority rule, for simulations that
            study such weaker settings.
        allow_server_graph_seed: Accept a Harary graph whose seed the server chose
            (:attr:`RoundConfig.server_graph_seed`), which lets the server try seeds until its
            colluders surround this client; by default a client takes part only when the
            seed comes from every client's commit-reveal.
    """

    encoding: Mapping[str, EncodingValue] = field(default_factory=dict)
    bits: int | None = None
    d: int | None = None
    min_threshold: int = 2
    min_clients: int = 3
    signed: bool | None = None
    allow_minority_threshold: bool = False
    allow_server_graph_seed: bool = False

    def check(self, config: RoundConfig, client: int) -> str | None:
        """Why ``client`` refuses ``config``, or None if it accepts it.

        Parameters:
            config: The round config the server sent.
            client: This client's id.

        Returns:
            The reason for refusing, or None.
        """
        degree = config.graph.degree  # every client of a Harary or complete graph has k
        if config.server_graph_seed and not self.allow_server_graph_seed:
            return (
                "the server chose the graph's seed (server_graph_seed), which this client does "
                "not allow (ClientPolicy.allow_server_graph_seed)"
            )
        if config.threshold < self.min_threshold:
            return (
                f"threshold {config.threshold} is below this client's minimum {self.min_threshold}"
            )
        if not self.allow_minority_threshold and config.threshold < default_threshold(degree):
            return (
                f"threshold {config.threshold} is not above half of a neighbourhood of "
                f"{degree + 1}: too few neighbours could rebuild this client's secrets"
            )
        if len(config.graph) < self.min_clients:
            return f"{len(config.graph)} clients, this client's minimum is {self.min_clients}"
        if self.bits is not None and config.bits != self.bits:
            return f"bit width {config.bits}, this client expects {self.bits}"
        if self.d is not None and config.d != self.d:
            return f"vector length {config.d}, this client expects {self.d}"
        if self.signed is not None and config.signed != self.signed:
            return "an unsigned round" if self.signed else "a signed round"
        for name, want in sorted(self.encoding.items()):
            got = config.encoding.get(name)
            if got is None or type(got) is not type(want) or got != want:
                return f"the round's {name} is {got!r}, this client's is {want!r}"
        return None

    def __post_init__(self) -> None:
        for name in ("min_threshold", "min_clients"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        for flag in ("allow_minority_threshold", "allow_server_graph_seed"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag} must be a bool")
        if not isinstance(self.encoding, Mapping):
            raise ConfigError("encoding must be a mapping")
