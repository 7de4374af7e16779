"""SecureAggregator: a federation's encoding and decoding, and an in-process round simulator.

Over a real transport, :class:`SecureAggServer` and :class:`SecureAggClient` run a round
with this object's settings; :meth:`SecureAggregator.simulate` runs every party in one
process and is a simulation: it is handed every client's unmasked encoding.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from secureagg._exceptions import ConfigError
from secureagg.fl._config import SecureAggConfig
from secureagg.fl._encoding import UpdateEncoder
from secureagg.privacy import LocalUpdate, parameters_of, unflatten
from secureagg.protocol import RoundResult, Stage, simulate_round

__all__ = ["Aggregate", "SecureAggregator"]


@dataclass
class Aggregate:
    """The weighted average update of ``members``, shaped like the model, and how it was made."""

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

    ``like`` (a model or its named parameters) fixes the update's layout; ``max_clients``
    and ``max_examples`` (public bounds: clients per round, examples per client) fix the
    bit width so that no sum can wrap. ``update_clip``, when the clients L2-clip their
    updates to it, replaces ``config.clip`` as the quantisation bound.
    """

    def __init__(
        self,
        like: nn.Module | Mapping[str, torch.Tensor],
        config: SecureAggConfig | None = None,
        *,
        max_clients: int,
        max_examples: int,
        update_clip: float | None = None,
    ) -> None:
        self.config = config or SecureAggConfig()
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

    def client_encoder(self) -> UpdateEncoder:
        """The encoding the clients use (public settings only: no key, no secret)."""
        return self.encoder

    def encode(
        self, update: LocalUpdate, rng: np.random.Generator | None = None
    ) -> npt.NDArray[Any]:
        """Client side: the update as this federation's protocol input (``client_encoder()``)."""
        return self.encoder.encode(update, rng)

    def simulate(
        self,
        encoded: Mapping[int, npt.NDArray[Any]],
        *,
        dropouts: Mapping[Stage, Collection[int]] | None = None,
        capture: Collection[int] = (),
    ) -> Aggregate:
        """Simulate one round in-process over ``encoded`` and decode the survivors' average.

        A simulation: the caller holds every unmasked input (simulate_round runs every
        client and the server here, over the real wire bytes). RoundAborted when too few
        clients remain; ConfigError for a malformed input.
        """
        if len(encoded) > self.encoder.quant.max_clients:
            raise ConfigError(
                f"{len(encoded)} clients exceed max_clients={self.encoder.quant.max_clients}"
            )
        for cid, vec in encoded.items():
            if getattr(vec, "shape", None) != (self.encoder.length,):
                raise ConfigError(
                    f"client {cid} sent shape {getattr(vec, 'shape', None)}, "
                    f"expected ({self.encoder.length},): server and client models differ"
                )
        result = simulate_round(
            encoded,
            bits=self.encoder.bits,
            threshold=self.config.threshold,
            degree=self.config.degree,
            dropouts=dropouts,
            signed=self.config.signed,
            capture=capture,
        )
        agg = self.decode(result.total, result.survivors)
        agg.protocol = result
        return agg

    def aggregate(
        self,
        encoded: Mapping[int, npt.NDArray[Any]],
        *,
        dropouts: Mapping[Stage, Collection[int]] | None = None,
        capture: Collection[int] = (),
    ) -> Aggregate:
        """Deprecated name of :meth:`simulate` (an in-process simulation, not a server)."""
        warnings.warn(
            "SecureAggregator.aggregate is the in-process simulator and is now called "
            "simulate(); over a real transport use SecureAggServer and SecureAggClient",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.simulate(encoded, dropouts=dropouts, capture=capture)

    def decode(self, total: npt.NDArray[Any], members: Collection[int]) -> Aggregate:
        """The average update from a protocol sum over ``members``."""
        start = time.perf_counter()
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
