"""DistributedDP: the settings of client-level distributed DP for a whole training run
(what they mean: :mod:`secureagg.fl._distributed`, docs/privacy.md)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

from secureagg._exceptions import ConfigError
from secureagg.privacy.distributed import SAMPLINGS

__all__ = ["DistributedDP"]


@dataclass(frozen=True, init=False)
class DistributedDP:
    """Settings of client-level distributed DP for a whole training run.

    The constructor takes the attributes below, in this order; ``clip=`` is the deprecated
    name of ``update_clip`` (it works, with a DeprecationWarning, as does reading ``.clip``).

    Attributes:
        epsilon: The target epsilon after ``rounds`` rounds.
        delta: The target delta.
        update_clip: L2 bound of each client's whole update (the ``update_clip`` of
            :class:`~secureagg.privacy.PrivacyConfig` and :class:`SecureAggregator`; the
            papers' and :class:`~secureagg.hazmat.DDPParams`' c).
        rounds: The rounds the target is spread over.
        bits: The modulus of the masked sum, in bits (12..20 is the useful range).
        mechanism: The integer noise: "dgauss" (discrete Gaussian) or "skellam".
        colluders: How many clients may share their noise with the server.
        sample_rate: The probability with which each client's own OS coin samples it in
            a round (None: every client every round, no amplification).
        k: The standard deviations of the sum that must fit in 2^bits.
        weights: Public weights by client id (None: uniform). They are scaled so that the
            largest is 1: each client sends ``w_i / max(w) x clip(update_i)``, so one
            client still moves the sum by at most ``update_clip`` and the accounting is the
            uniform one; the server divides the sum by the members' scaled weights. The
            weights are public parameters (not protected), fixed for the run.
        sampling: With ``sample_rate``: "visible" (a sampled client joins the round, the
            others stay out; the amplification does not hold against the server, which
            sees who took part) or "hidden" (every client joins every round with its noise
            share and a zero update when its coin says no; the amplification holds against
            the server too; the sum is divided by q x the population's weight).
    """

    epsilon: float
    delta: float
    update_clip: float
    rounds: int
    bits: int = 16
    mechanism: str = "dgauss"
    colluders: int = 0
    sample_rate: float | None = None
    k: float = 4.0
    weights: Mapping[int, float] | None = field(default=None, hash=False)
    sampling: str = "visible"

    def __init__(
        self,
        epsilon: float,
        delta: float,
        update_clip: float | None = None,
        rounds: int | None = None,
        bits: int = 16,
        mechanism: str = "dgauss",
        colluders: int = 0,
        sample_rate: float | None = None,
        k: float = 4.0,
        weights: Mapping[int, float] | None = None,
        sampling: str = "visible",
        *,
        clip: float | None = None,
    ) -> None:
        if clip is not None:
            warnings.warn(
                "DistributedDP(clip=...) is deprecated: use update_clip",
                DeprecationWarning,
                stacklevel=2,
            )
            if update_clip is not None:
                raise ConfigError("give update_clip, not both update_clip and clip")
            update_clip = clip
        if update_clip is None or rounds is None:
            raise ConfigError("DistributedDP needs update_clip and rounds")
        if sampling not in SAMPLINGS:
            raise ConfigError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if sampling == "hidden" and sample_rate is None:
            raise ConfigError("sampling='hidden' needs a sample_rate")
        for name, value in (
            ("epsilon", epsilon),
            ("delta", delta),
            ("update_clip", update_clip),
            ("rounds", rounds),
            ("bits", bits),
            ("mechanism", mechanism),
            ("colluders", colluders),
            ("sample_rate", sample_rate),
            ("k", k),
            ("weights", weights),
            ("sampling", sampling),
        ):
            object.__setattr__(self, name, value)

    @property
    def clip(self) -> float:
        """Deprecated: :attr:`update_clip`."""
        warnings.warn(
            "DistributedDP.clip is deprecated: use update_clip", DeprecationWarning, stacklevel=2
        )
        return self.update_clip
