"""Client-level distributed DP as an encoding: each client's share of discrete noise rides
inside the masked sum, so the sum the server unmasks is already differentially private.

Privacy unit: one client's whole update (L2-clipped to ``clip``), add/remove-one-client
neighbours, uniform weights. Released: each round's secure-aggregation sum (and the model
built from it). Against: the server and up to ``colluders`` clients, provided at least
``threshold - colluders`` honest clients' noise is in every sum: the protocol aborts a
round with fewer than ``threshold`` survivors, and :class:`DistributedEncoder` is calibrated
for that floor. See docs/privacy.md.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from secureagg._exceptions import ConfigError, RoundAborted
from secureagg.fl._encoding import Decoded
from secureagg.hazmat import DDPParams, ddp_decode, ddp_encode
from secureagg.privacy import LocalUpdate
from secureagg.privacy.distributed import DistributedPlan, epsilon, plan

__all__ = ["DistributedDP", "DistributedEncoder"]


@dataclass(frozen=True)
class DistributedDP:
    """Settings of client-level distributed DP for a whole training run.

    Attributes:
        epsilon: The target epsilon after ``rounds`` rounds.
        delta: The target delta.
        clip: L2 bound of each client's update.
        rounds: The rounds the target is spread over.
        bits: The modulus of the masked sum, in bits (12..20 is the useful range).
        mechanism: The integer noise: "dgauss" (discrete Gaussian) or "skellam".
        colluders: How many clients may share their noise with the server.
        sample_rate: The probability with which each client joins a round by its own OS
            coin (None: every client every round, no amplification).
        k: The standard deviations of the sum that must fit in 2^bits.
    """

    epsilon: float
    delta: float
    clip: float
    rounds: int
    bits: int = 16
    mechanism: str = "dgauss"
    colluders: int = 0
    sample_rate: float | None = None
    k: float = 4.0


class DistributedEncoder:
    """Encodes updates for one federation under distributed DP and decodes their sum.

    Built by :class:`SecureAggregator` from public settings. The rotation seed is public and
    fresh for every round (:meth:`next_round`).

    Parameters:
        d: Length of a flat update.
        settings: The run's distributed-DP settings.
        n_min: The floor of honest clients whose noise the sum always carries.
    """

    def __init__(self, d: int, settings: DistributedDP, n_min: int) -> None:
        if isinstance(n_min, bool) or not isinstance(n_min, int) or n_min < 1:
            raise ConfigError(f"the honest floor threshold - colluders must be >= 1, got {n_min!r}")
        self.settings = settings
        self.n_min = n_min
        self.plan: DistributedPlan = plan(
            settings.mechanism,
            epsilon=settings.epsilon,
            delta=settings.delta,
            clip=settings.clip,
            bits=settings.bits,
            n_min=n_min,
            d=d,
            rounds=settings.rounds,
            sample_rate=settings.sample_rate,
            k=settings.k,
        )
        self.params: DDPParams = self.plan.params(d)
        self.d = d
        self.seed = os.urandom(16)

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
        return {
            "mode": "distributed-dp",
            "mechanism": p.mechanism,
            "clip": float(p.clip),
            "gamma": float(p.gamma),
            "variance": float(p.variance),
            "beta": float(p.beta),
            "n-min": self.n_min,
            "colluders": self.settings.colluders,
        }

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

    def encode(self, update: LocalUpdate, seed: bytes | None = None) -> npt.NDArray[np.generic]:
        """The client's protocol input; its rounding and noise come from the OS.

        Parameters:
            update: The client's round update.
            seed: The round's public rotation seed (over a transport: the round id); default
                the in-process one of :meth:`next_round`.

        Returns:
            The protocol input, in Z_{2^bits}.
        """
        return ddp_encode(self.clipped(update), self.params, self.seed if seed is None else seed)

    def decode(
        self, total: npt.NDArray[np.generic], members: int, seed: bytes | None = None
    ) -> Decoded:
        """The uniform average of ``members`` noisy, clipped updates.

        The bound is infinite: the average carries DP noise of std :meth:`noise_std` (members)
        per coordinate by design.

        Parameters:
            total: The unmasked sum of the members' protocol inputs.
            members: How many inputs are in the sum.
            seed: The round's public rotation seed (default: the in-process one).

        Returns:
            The average, the number of members as its weight, and an infinite bound.

        Raises:
            RoundAborted: Fewer than ``n_min + colluders`` clients are in the sum (fewer than
                ``n_min`` honest shares of noise).
        """
        need = self.n_min + self.settings.colluders  # so that n_min of them are honest
        if members < need:
            raise RoundAborted(f"only {members} clients in the sum; distributed DP needs {need}")
        seed = self.seed if seed is None else seed
        total_vec = ddp_decode(np.asarray(total), self.params, seed)
        return Decoded(total_vec / members, float(members), math.inf)

    def noise_std(self, members: int) -> float:
        """Per-coordinate noise std of the decoded average.

        Parameters:
            members: The clients in the sum.

        Returns:
            The standard deviation.
        """
        return math.sqrt(members) * self.plan.local_std / members

    def epsilon_after(self, rounds: int) -> float:
        """The (epsilon, delta) guarantee after ``rounds`` rounds (the plan's accounting).

        Parameters:
            rounds: The rounds taken.

        Returns:
            The epsilon at the settings' delta.
        """
        p = self.plan
        return epsilon(
            p.mechanism,
            clip=p.clip,
            gamma=p.gamma,
            variance=p.variance,
            n=self.n_min,
            dim=p.dim,
            rounds=rounds,
            delta=p.delta,
            sample_rate=p.sample_rate,
        )
