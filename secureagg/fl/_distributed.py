"""Client-level distributed DP as an encoding: each client's share of discrete noise rides
inside the masked sum, so the sum the server unmasks is already differentially private.

Privacy unit: one client's whole update (L2-clipped to ``update_clip``), zero-out
neighbours (the client's update replaced by zero; its participation and its noise share
unchanged: each client's share is part of the sum's noise, so add/remove is not what the
accounting bounds), uniform weights or public per-client weights (scaled so the largest is 1,
which leaves every client's contribution to the sum within ``update_clip``). Released: each
round's secure-aggregation sum (and the model built from it). Against: the server and up to
``colluders`` clients, provided at least ``threshold - colluders`` honest clients' noise is
in every sum: the protocol aborts a round with fewer than ``threshold`` survivors, and
:class:`DistributedEncoder` is calibrated for that floor.

Client sampling (``sample_rate``) comes in two modes. Visible: a sampled client joins the
round, the others stay out; the server sees every round's members, so against it each
client has the unamplified zero-out guarantee of the rounds it took part in
(:meth:`~secureagg.privacy.DistributedLedger.server_epsilons`), and the ledger's amplified
epsilon (joint convexity) holds only against observers who see the sums but not who took
part. Hidden: every client of the population joins every round and adds its noise share;
its own OS coin decides only whether its clipped update or a zero update is encoded (same
bytes and sizes on the wire), and the server divides the sum by the fixed public q x the
population's weight. The sum's noise then does not depend on any coin, and the amplified
epsilon (Zhu and Wang's Theorem 5, the Poisson-subsampled pair) holds against the server
too, as long as nothing else (timing: a sampled client trains before it replies) reveals
the coin. See docs/privacy.md.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Collection, Mapping

import numpy as np
import numpy.typing as npt

from secureagg._exceptions import ConfigError, RoundAborted
from secureagg.fl._distributed_settings import DistributedDP
from secureagg.fl._encoding import Decoded
from secureagg.hazmat import DDPParams, ddp_decode, ddp_encode
from secureagg.privacy import LocalUpdate
from secureagg.privacy.distributed import (
    DistributedPlan,
    amplification_for,
    epsilon_for,
    plan,
)

__all__ = ["DistributedDP", "DistributedEncoder", "refuse_hidden"]


def refuse_hidden(encoder: DistributedEncoder | None, where: str) -> None:
    """ConfigError when ``encoder`` samples hidden and ``where`` flips no client's coin.

    Hidden sampling's guarantee and its fixed denominator assume every client flipped its
    own secret coin and sent zeros when not sampled; a path that flips none would sum every
    real update, divide by q N, and record an amplified epsilon for a run without sampling.
    """
    if encoder is not None and encoder.hidden:
        raise ConfigError(
            f"{where} flips no client's sampling coin, so it cannot run "
            "DistributedDP(sampling='hidden'): hidden sampling runs only in run_federated, "
            "whose clients each flip their own secret coin; use sampling='visible' here"
        )


def _scaled_weights(weights: Mapping[int, float] | None) -> dict[int, float] | None:
    """The public weights divided by the largest (ConfigError for a bad table)."""
    if weights is None:
        return None
    if not isinstance(weights, Mapping) or not weights:
        raise ConfigError("weights must be a non-empty mapping of client id -> weight")
    out: dict[int, float] = {}
    for cid, w in weights.items():
        if isinstance(cid, bool) or not isinstance(cid, int):
            raise ConfigError(f"weights are keyed by int client ids, got {cid!r}")
        if isinstance(w, bool) or not isinstance(w, (int, float)):
            raise ConfigError(f"client {cid}'s weight must be a number, got {w!r}")
        if not (math.isfinite(w) and w > 0):
            raise ConfigError(f"client {cid}'s weight must be positive and finite, got {w!r}")
        out[cid] = float(w)
    top = max(out.values())
    return {cid: w / top for cid, w in sorted(out.items())}


def _weights_digest(weights: Mapping[int, float]) -> str:
    """SHA-256 of a scaled weight table (ids and IEEE-754 weights, in id order), hex."""
    h = hashlib.sha256(b"secureagg/v1/ddp-weights")
    for cid in sorted(weights):
        h.update(cid.to_bytes(8, "big", signed=True) + float(weights[cid]).hex().encode() + b";")
    return h.hexdigest()


class DistributedEncoder:
    """Encodes updates for one federation under distributed DP and decodes their sum.

    Built by :class:`SecureAggregator` from public settings. The rotation seed is public and
    fresh for every round (:meth:`next_round`).

    Parameters:
        d: Length of a flat update.
        settings: The run's distributed-DP settings.
        n_min: The floor of honest clients whose noise the sum always carries.
        n_sum: The most clients whose shares one sum may hold (the bit width's rule is
            solved for it, so that a full round wraps no more coordinates than ``k``
            promises); default ``n_min``.
        population: Under hidden sampling with uniform weights, how many clients the
            population has (all of them join every round): the sum is divided by
            ``sample_rate x population``; default ``n_sum``. With public weights the
            population is the weight table.
    """

    def __init__(
        self,
        d: int,
        settings: DistributedDP,
        n_min: int,
        n_sum: int | None = None,
        population: int | None = None,
    ) -> None:
        if isinstance(n_min, bool) or not isinstance(n_min, int) or n_min < 1:
            raise ConfigError(f"the honest floor threshold - colluders must be >= 1, got {n_min!r}")
        self.settings = settings
        self.n_min = n_min
        self.plan: DistributedPlan = plan(
            settings.mechanism,
            epsilon=settings.epsilon,
            delta=settings.delta,
            clip=settings.update_clip,
            bits=settings.bits,
            n_min=n_min,
            d=d,
            rounds=settings.rounds,
            sample_rate=settings.sample_rate,
            k=settings.k,
            n_sum=n_sum,
            amplification=amplification_for(settings.sampling),
        )
        self.params: DDPParams = self.plan.params(d)
        self.d = d
        self.seed = os.urandom(16)
        self.weights: dict[int, float] | None = _scaled_weights(settings.weights)
        self.denominator: float | None = None
        if settings.sampling == "hidden":
            assert settings.sample_rate is not None  # DistributedDP checks it
            if self.weights is not None:
                total = math.fsum(self.weights.values())
            else:
                total = float(population if population is not None else n_sum or n_min)
                if total < n_min:
                    raise ConfigError(f"a population of {total:g} is below the floor {n_min}")
            self.denominator = settings.sample_rate * total

    @property
    def hidden(self) -> bool:
        """Whether sampling is hidden: every client in every sum, a fixed denominator."""
        return self.denominator is not None

    @property
    def floor(self) -> int:
        """The smallest protocol threshold a round may have: n_min + colluders."""
        return self.n_min + self.settings.colluders

    def public_settings(self) -> dict[str, int | float | str]:
        """The settings a client's message depends on, for the round config's ``encoding``.

        Bound into the config digest and pinned by each client (with :attr:`floor` as its
        minimum threshold), so a server cannot run a round with less noise than planned.

        Returns:
            Setting name -> value.
        """
        p = self.params
        out: dict[str, int | float | str] = {
            "mode": "distributed-dp",
            "mechanism": p.mechanism,
            "update-clip": float(p.clip),
            "gamma": float(p.gamma),
            "variance": float(p.variance),
            "beta": float(p.beta),
            "n-min": self.n_min,
            "colluders": self.settings.colluders,
        }
        if self.denominator is not None:
            out["sampling"] = "hidden"
            out["denominator"] = float(self.denominator)
        if self.weights is not None:
            out["weights"] = _weights_digest(self.weights)
        return out

    def weight(self, client: int | None) -> float:
        """A client's scaled public weight (1 under uniform weighting).

        Parameters:
            client: The client id (needed only with public weights).

        Returns:
            Its weight divided by the largest weight, in (0, 1].

        Raises:
            ConfigError: Public weights and a client that has none.
        """
        if self.weights is None:
            return 1.0
        if client is None or client not in self.weights:
            raise ConfigError(f"client {client!r} has no public weight in this run")
        return self.weights[client]

    @property
    def bits(self) -> int:
        """Bit width b of the summed vectors."""
        return self.params.bits

    @property
    def length(self) -> int:
        """Length of an encoded vector: d padded to a power of two."""
        return self.params.padded

    def next_round(self) -> None:
        """Draw the public rotation seed of the next round."""
        self.seed = os.urandom(16)

    def clipped(self, update: LocalUpdate) -> npt.NDArray[np.float64]:
        """The update as the encoding sees it: L2-clipped to ``clip`` (float64).

        Parameters:
            update: The client's round update.

        Returns:
            The clipped update, flat.
        """
        x = np.asarray(update.vector, dtype=np.float64)
        if x.shape != (self.d,):
            raise ConfigError(
                f"update has shape {x.shape}, the server's model has {self.d} parameters"
            )
        norm = float(np.linalg.norm(x))
        c = self.params.clip
        return x * (c / norm) if norm > c else x

    def encode(
        self, update: LocalUpdate, seed: bytes | None = None, *, client: int | None = None
    ) -> npt.NDArray[np.generic]:
        """The client's protocol input; its rounding and noise come from the OS.

        The clipped update is multiplied by the client's scaled public weight (at most 1);
        the noise share is the same for every client.

        Parameters:
            update: The client's round update.
            seed: The round's public rotation seed (over a transport: the round id); default
                the in-process one of :meth:`next_round`.
            client: The client's id (needed only with public weights).

        Returns:
            The protocol input, in Z_{2^bits}.
        """
        x = self.clipped(update) * self.weight(client)
        return ddp_encode(x, self.params, self.seed if seed is None else seed)

    def decode(
        self,
        total: npt.NDArray[np.generic],
        members: int | Collection[int],
        seed: bytes | None = None,
    ) -> Decoded:
        """The (weighted) average of the members' noisy, clipped updates.

        The bound is infinite: the average carries DP noise of std :meth:`noise_std` per
        coordinate by design. Under hidden sampling the sum is divided by the fixed
        :attr:`denominator` (q x the population's weight; how many updates are not zero is
        secret): the DP-FedAvg fixed-denominator estimate of the sampled clients' average.

        Parameters:
            total: The unmasked sum of the members' protocol inputs.
            members: The members' client ids, or (uniform weighting only) how many they are.
            seed: The round's public rotation seed (default: the in-process one).

        Returns:
            The average, the weight it was divided by, and an infinite bound.

        Raises:
            RoundAborted: Fewer than ``n_min + colluders`` clients are in the sum (fewer than
                ``n_min`` honest shares of noise).
            ConfigError: A count of members under public weights.
        """
        if isinstance(members, int):
            if self.weights is not None:
                raise ConfigError("with public weights, decode needs the members' client ids")
            count, weight = members, float(members)
        else:
            ids = list(members)
            count, weight = len(ids), math.fsum(self.weight(c) for c in ids)
        need = self.n_min + self.settings.colluders  # so that n_min of them are honest
        if count < need:
            raise RoundAborted(f"only {count} clients in the sum; distributed DP needs {need}")
        seed = self.seed if seed is None else seed
        total_vec = ddp_decode(np.asarray(total), self.params, seed)
        if self.denominator is not None:
            weight = self.denominator
        return Decoded(total_vec / weight, weight, math.inf)

    def noise_std(self, members: int | Collection[int]) -> float:
        """Per-coordinate noise std of the decoded average.

        Parameters:
            members: The members' client ids, or (uniform weighting) how many they are.

        Returns:
            The standard deviation: sqrt(members) local std / their summed scaled weight
            (under hidden sampling: / :attr:`denominator`).
        """
        if isinstance(members, int):
            count, weight = members, float(members)
        else:
            ids = list(members)
            count, weight = len(ids), math.fsum(self.weight(c) for c in ids)
        if self.denominator is not None:
            weight = self.denominator
        return math.sqrt(count) * self.plan.local_std / weight

    def epsilon_after(self, rounds: int) -> float:
        """The (epsilon, delta) guarantee after ``rounds`` rounds (the plan's accounting).

        Parameters:
            rounds: The rounds taken.

        Returns:
            The epsilon at the settings' delta.
        """
        return epsilon_for(
            self.params,
            n=self.n_min,
            rounds=rounds,
            delta=self.plan.delta,
            sample_rate=self.plan.sample_rate,
            sampling=self.settings.sampling,
        )
