"""SecureAggregator: a federation's encoding and decoding, and an in-process round simulator.

Over a real transport, :class:`SecureAggServer` and :class:`SecureAggClient` run a round
with this object's settings; :meth:`SecureAggregator.simulate` runs every party in one
process and is a simulation: it is handed every client's unmasked encoding.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from secureagg._exceptions import ConfigError, RoundAborted
from secureagg.fl._config import SecureAggConfig
from secureagg.fl._distributed import DistributedEncoder
from secureagg.fl._distributed_settings import DistributedDP
from secureagg.fl._encoding import Decoded, UpdateEncoder, plain_average
from secureagg.privacy import LocalUpdate, parameters_of, unflatten
from secureagg.protocol import RoundResult, Stage, default_threshold, simulate_round

__all__ = ["Aggregate", "SecureAggregator"]


@dataclass
class Aggregate:
    """The weighted average update of ``members``, shaped like the model, and how it was made.

    Attributes:
        average: The average update, by parameter name.
        vector: The same average, flat (float64).
        members: The clients whose update is in it.
        total_examples: The summed weight the average divides by.
        error_bound: Per-coordinate bound of the decoding error.
        protocol: The protocol round's result (None when decoded from a sum alone).
        decode_seconds: Time spent decoding.
        extra: Anything else the round recorded (e.g. captured vectors).
    """

    average: dict[str, torch.Tensor]
    vector: npt.NDArray[np.float64]
    members: list[int]
    total_examples: float
    error_bound: float
    protocol: RoundResult | None = None
    decode_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class SecureAggregator:
    """The federation's public encoding settings; decodes a protocol sum into an average.

    It is what :class:`SecureAggServer` (the server of a real round) decodes with, and what
    :meth:`client_encoder` gives the clients. :meth:`simulate` is an in-process simulator:
    it takes every client's *unmasked* encoding and runs all sessions in this process, so
    it hides nothing from whoever calls it; use it for tests, demos and measurements.

    With ``distributed``, the updates are encoded for client-level distributed DP instead
    (:class:`DistributedEncoder`): clipped, rotated, rounded and noised in the integers, with
    the noise calibrated for ``threshold - colluders`` honest clients, ``threshold`` being
    ``config.threshold`` (default: a majority of ``max_clients``); each round runs with that
    threshold or a majority of its own clients, whichever is larger. The bit width's rule
    is solved for ``max_clients`` clients in a sum. Under hidden sampling
    (``DistributedDP(sampling="hidden")``) every client joins every round, so
    ``max_clients`` is the population: the sum is divided by ``sample_rate x max_clients``
    (uniform weights). This class flips no coin: ``run_federated`` does, in each client's
    round; :class:`SecureAggServer`, :class:`SecureAggClient` and ``run_round`` refuse
    hidden settings (ConfigError).

    Parameters:
        like: A model or its named parameters: fixes the update's layout.
        config: Encoding and protocol settings (default: ``SecureAggConfig()``).
        max_clients: Public bound on the clients in one round (with ``max_examples``, it
            fixes the bit width so that no sum can wrap).
        max_examples: Public bound on one client's example count.
        update_clip: When the clients L2-clip their updates to it, it replaces
            ``config.clip`` as the quantisation bound.
        distributed: Client-level distributed DP settings, if any.

    Raises:
        ConfigError: Settings that cannot work together.
    """

    def __init__(
        self,
        like: nn.Module | Mapping[str, torch.Tensor],
        config: SecureAggConfig | None = None,
        *,
        max_clients: int,
        max_examples: int,
        update_clip: float | None = None,
        distributed: DistributedDP | None = None,
    ) -> None:
        self.config = config or SecureAggConfig()
        self.max_clients = max_clients
        named = parameters_of(like) if isinstance(like, nn.Module) else dict(like)
        self.like = {k: v.detach().clone() for k, v in named.items()}
        d = sum(int(t.numel()) for t in self.like.values())
        clip = self.config.clip if update_clip is None else update_clip
        self.encoder = UpdateEncoder(
            d,
            max_clients=max_clients,
            max_examples=max_examples,
            clip=clip,
            frac_bits=self.config.frac_bits,
            weighting=self.config.weighting,
        )
        self.threshold = self.config.threshold
        self.distributed: DistributedEncoder | None = None
        self.distributed_threshold = 0
        if distributed is not None:
            if max_clients < 2:
                raise ConfigError("distributed DP needs max_clients >= 2")
            if self.config.weighting != "uniform":
                raise ConfigError(
                    "distributed DP takes public weights from DistributedDP(weights=...): keep"
                    " SecureAggConfig(weighting='uniform')"
                )
            t = self.config.threshold or default_threshold(max_clients - 1)
            self.threshold = self.distributed_threshold = t
            # noise for the honest floor; the modulus for the fullest sum, max_clients
            # (hidden sampling: every client joins every round, max_clients is the population)
            self.distributed = DistributedEncoder(
                d, distributed, t - distributed.colluders, max(max_clients, t), max_clients
            )

    def public_settings(self) -> dict[str, int | float | str]:
        """The encoding's settings for a round config (distributed DP's when enabled).

        Returns:
            Setting name -> value.
        """
        if self.distributed is not None:
            return self.distributed.public_settings()
        return self.encoder.public_settings()

    def round_threshold(self, clients: int, degree: int | None = None) -> int | None:
        """The threshold of a round of ``clients``.

        Under distributed DP: the floor, raised to a majority of a neighbourhood.

        Parameters:
            clients: The clients in the round.
            degree: Neighbours per client (None: the complete graph).

        Returns:
            The threshold, or None for the protocol's default.
        """
        if self.distributed is None:
            return self.threshold
        neighbours = clients - 1 if degree is None else min(degree, clients - 1)
        return max(self.distributed_threshold, default_threshold(neighbours))

    @property
    def length(self) -> int:
        """Length of a client's protocol input."""
        return self.encoder.length if self.distributed is None else self.distributed.length

    @property
    def bits(self) -> int:
        """Bit width of the summed vectors."""
        return self.encoder.bits if self.distributed is None else self.distributed.bits

    def client_encoder(self) -> UpdateEncoder | DistributedEncoder:
        """The encoding the clients use (public settings only: no key, no secret).

        Returns:
            The federation's :class:`UpdateEncoder`, or its :class:`DistributedEncoder`
            under distributed DP.
        """
        return self.encoder if self.distributed is None else self.distributed

    def encode(
        self,
        update: LocalUpdate,
        rng: np.random.Generator | None = None,
        *,
        client: int | None = None,
    ) -> npt.NDArray[Any]:
        """Client side: the update as this federation's protocol input (``client_encoder()``).

        Under distributed DP, ``rng`` is ignored: rounding and noise come from the OS.

        Parameters:
            update: The client's round update.
            rng: Drives the stochastic rounding (default: seeded by the OS).
            client: The client's id: its public weight under distributed DP with ``weights``.

        Returns:
            The protocol input, a vector in Z_{2^b}.
        """
        if self.distributed is not None:
            return self.distributed.encode(update, client=client)
        return self.encoder.encode(update, rng)

    def reference_average(
        self, updates: list[LocalUpdate], clients: list[int] | None = None
    ) -> npt.NDArray[np.float64]:
        """What the decoded average estimates, computed in the clear (for metrics and tests).

        The weighted average; under distributed DP the mean of the clipped updates, weighted
        by the public weights when there are any (under hidden sampling: their weighted sum
        over the fixed denominator).

        Parameters:
            updates: The members' updates.
            clients: Their client ids, in the same order (needed only with public weights).

        Returns:
            The average, flat, in float64.
        """
        if self.distributed is None:
            return plain_average(updates, self.encoder.weighting, self.encoder.max_examples)
        dist = self.distributed
        ids: list[int | None] = [None] * len(updates) if clients is None else list(clients)
        w = np.array([dist.weight(c) for c in ids])
        x = np.array([dist.clipped(u) for u in updates])
        out: npt.NDArray[np.float64] = (w @ x) / (dist.denominator or math.fsum(w))
        return out

    def simulate(
        self,
        encoded: Mapping[int, npt.NDArray[Any]],
        *,
        dropouts: Mapping[Stage, Collection[int]] | None = None,
        capture: Collection[int] = (),
        clients: Mapping[int, int] | None = None,
    ) -> Aggregate:
        """Simulate one round in-process over ``encoded`` and decode the survivors' average.

        A simulation: the caller holds every unmasked input (simulate_round runs every
        client and the server here, over the real wire bytes).

        Parameters:
            encoded: Each client's protocol input, by client id.
            dropouts: Clients that go silent at each protocol stage.
            capture: Clients whose masked input to keep, as the server saw it.
            clients: The client id (for public weights) of each protocol id in ``encoded``
                (default: the same id).

        Returns:
            The survivors' average update and how it was made.

        Raises:
            RoundAborted: Too few clients remain.
            ConfigError: A malformed input.
        """
        if len(encoded) > self.max_clients:
            raise ConfigError(f"{len(encoded)} clients exceed max_clients={self.max_clients}")
        for cid, vec in encoded.items():
            if getattr(vec, "shape", None) != (self.length,):
                raise ConfigError(
                    f"client {cid} sent shape {getattr(vec, 'shape', None)}, "
                    f"expected ({self.length},): server and client models differ"
                )
        if self.distributed is not None and len(encoded) <= self.distributed_threshold:
            # each survivor needs `threshold` live neighbours: too few clients to start
            raise RoundAborted(f"{len(encoded)} clients cannot meet the threshold {self.threshold}")
        threshold = self.round_threshold(len(encoded), self.config.degree)
        result = simulate_round(
            encoded,
            bits=self.bits,
            threshold=threshold,
            degree=self.config.degree,
            dropouts=dropouts,
            signed=self.config.signed,
            capture=capture,
            allow_minority_threshold=self.config.allow_minority_threshold,
            server_graph_seed=self.config.server_graph_seed,
        )
        try:
            agg = self.decode(result.total, result.survivors, clients=clients)
        finally:
            if self.distributed is not None:
                self.distributed.next_round()
        agg.protocol = result
        return agg

    def aggregate(
        self,
        encoded: Mapping[int, npt.NDArray[Any]],
        *,
        dropouts: Mapping[Stage, Collection[int]] | None = None,
        capture: Collection[int] = (),
    ) -> Aggregate:
        """Deprecated name of :meth:`simulate` (an in-process simulation, not a server).

        Parameters:
            encoded: As for :meth:`simulate`.
            dropouts: As for :meth:`simulate`.
            capture: As for :meth:`simulate`.

        Returns:
            As :meth:`simulate`.
        """
        warnings.warn(
            "SecureAggregator.aggregate is the in-process simulator and is now called "
            "simulate(); over a real transport use SecureAggServer and SecureAggClient",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.simulate(encoded, dropouts=dropouts, capture=capture)

    def decode(
        self,
        total: npt.NDArray[Any],
        members: Collection[int],
        seed: bytes | None = None,
        *,
        clients: Mapping[int, int] | None = None,
    ) -> Aggregate:
        """The average update from a protocol sum over ``members``.

        Parameters:
            total: The unmasked sum of the members' protocol inputs.
            members: The clients whose inputs are in the sum.
            seed: Under distributed DP, the round's public rotation seed (default: the
                encoder's); ignored otherwise.
            clients: Under distributed DP with public weights, the client id of each member
                id (default: the same id).

        Returns:
            The average update, shaped like the model, with its error bound.
        """
        start = time.perf_counter()
        dec: Decoded
        if self.distributed is not None:
            ids = [m if clients is None else clients[m] for m in members]
            dec = self.distributed.decode(total, ids, seed)
        else:
            dec = self.encoder.decode(total, len(members))
        average = unflatten(dec.average, self.like)
        return Aggregate(
            average=average,
            vector=dec.average,
            members=sorted(members),
            total_examples=dec.total_examples,
            error_bound=dec.error_bound,
            decode_seconds=time.perf_counter() - start,
        )
