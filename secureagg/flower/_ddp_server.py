"""Client-level distributed DP in the Flower strategy: the plan, each round's config, the ledger.

The strategy plans gamma and each node's noise once (``privacy.distributed.plan``, through
:class:`~secureagg.fl.DistributedEncoder`) for the honest floor ``threshold - colluders``,
binds every parameter into the round config's encoding (so the nodes check them before any
key leaves), and decodes the unmasked sum with the round id as the public rotation seed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from secureagg._exceptions import ConfigError
from secureagg.fl import DistributedDP, DistributedEncoder
from secureagg.privacy import DistributedLedger
from secureagg.protocol import RoundConfig, default_threshold, new_round_id, plan_round

__all__ = ["DistributedRounds"]


class DistributedRounds:
    """A run's distributed-DP plan (made when the model size is first known) and its ledger.

    Parameters:
        settings: The run's distributed-DP settings.
        threshold: The run's Shamir threshold: the honest floor is ``threshold - colluders``.
        ledger: Gets one record per decoded round.
        max_clients: The most nodes a round may have; the bit width is planned for a sum of
            that many (None: the nodes of the first round; a later round with more nodes is
            skipped).

    Raises:
        ConfigError: Settings Flower's strategy cannot honour.
    """

    def __init__(
        self,
        settings: DistributedDP,
        threshold: int | None,
        ledger: DistributedLedger | None,
        max_clients: int | None = None,
    ) -> None:
        if not isinstance(settings, DistributedDP):
            raise ConfigError(f"distributed must be a DistributedDP, got {settings!r}")
        if threshold is None:
            raise ConfigError(
                "distributed DP needs threshold=: the noise is planned for threshold - colluders"
                " honest nodes, so it must be fixed for the run"
            )
        if settings.colluders >= threshold:
            raise ConfigError(
                f"colluders {settings.colluders} leave no honest node below threshold {threshold}"
            )
        if settings.sample_rate is not None:
            raise ConfigError(
                "the wrapped strategy samples the nodes (the server chooses, not the nodes' own "
                "coins): no sampling amplification, so DistributedDP(sample_rate=None)"
            )
        if settings.weights is not None:
            raise ConfigError("distributed DP over Flower weights nodes uniformly (weights=None)")
        if ledger is not None and not isinstance(ledger, DistributedLedger):
            raise ConfigError(f"distributed_ledger must be a DistributedLedger, got {ledger!r}")
        self.settings = settings
        self.threshold = threshold
        self.ledger = ledger
        self.max_clients = max_clients
        self._encoders: dict[int, DistributedEncoder] = {}

    @property
    def n_min(self) -> int:
        """The honest floor every released sum holds."""
        return self.threshold - self.settings.colluders

    def encoder(self, d: int, n: int | None = None) -> DistributedEncoder:
        """The run's encoder for a model of ``d`` values (planned once per size).

        Parameters:
            d: The model size.
            n: The nodes of the round asking (the plan's sum size when ``max_clients`` is
                None and no plan exists yet).

        Returns:
            The encoder.

        Raises:
            ConfigError: ``n`` is more nodes than the plan's bit width holds.
        """
        if d not in self._encoders:
            n_sum = max(self.max_clients or n or self.threshold, self.threshold)
            self._encoders[d] = DistributedEncoder(d, self.settings, self.n_min, n_sum)
        enc = self._encoders[d]
        top = enc.plan.n_sum or enc.n_min
        if n is not None and n > top:
            raise ConfigError(
                f"{n} nodes, but the bit width is planned for sums of at most {top}: set "
                "max_clients to the most nodes a round may have"
            )
        return enc

    def round_config(
        self,
        server_round: int,
        n: int,
        d: int,
        keys: Mapping[int, bytes],
        train: str,
        *,
        settings: Callable[[DistributedEncoder], Mapping[str, int | float | str | bool]],
        degree: int | None,
        signed: bool,
    ) -> tuple[DistributedEncoder, RoundConfig]:
        """The encoder and round config for ``n`` nodes; ConfigError if they cannot meet it.

        The round's threshold is the run's, or a majority of a neighbourhood when larger;
        the encoding carries every distributed-DP parameter and the model size.

        Parameters:
            server_round: Flower's round number.
            n: The nodes in the round.
            d: The model size.
            keys: Identity keys by client id (signed mode).
            train: The digest of the round's one train message.
            settings: The strategy's encoding settings for an encoder.
            degree: Neighbours per node (None: complete graph).
            signed: Whether the round is signed.

        Returns:
            The encoder and the config.
        """
        enc = self.encoder(d, n)
        neighbours = n - 1 if degree is None else min(degree, n - 1)
        threshold = max(self.threshold, default_threshold(neighbours))
        if n <= threshold:
            raise ConfigError(
                f"{n} nodes cannot meet distributed DP's threshold {threshold} (each node needs"
                " that many live neighbours)"
            )
        round_id = new_round_id(server_round)
        plan = plan_round(n, degree=degree, threshold=threshold)
        cfg = RoundConfig(
            round_id=round_id,
            bits=enc.bits,
            d=enc.length,
            threshold=plan.threshold,
            graph=plan.graph(range(1, n + 1)),  # Harary: the seed comes from the commit-reveal
            signed=signed,
            identity_keys=dict(keys),
            encoding={
                **settings(enc),
                "weighting": "uniform",
                "model-size": d,
                "train-content": train,
            },
        )
        return enc, cfg

    def record(self, enc: DistributedEncoder, members: list[int]) -> None:
        """Add a round to the ledger, if any (``members`` empty: nothing was released).

        Parameters:
            enc: The round's encoder.
            members: The Flower node ids whose shares are in the decoded sum.

        Raises:
            LedgerError: The sum holds fewer than the floor of honest shares (the decoding
                refuses such a sum first).
        """
        if self.ledger is None:
            return
        rounds = self.ledger.rounds()
        self.ledger.record(
            1 + max((r.round for r in rounds), default=0),
            enc.params,
            members=members,
            colluders=self.settings.colluders,
            n_min=self.n_min,
            sample_rate=None,
            delta=self.settings.delta,
        )
