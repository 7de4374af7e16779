"""The clients' sampling coins under client-level distributed DP: visible (a client joins a
round only if its coin says so) and hidden (every client joins; its coin, secret, decides
whether it trains or sends a zero update). See docs/privacy.md, "Hidden sampling"."""

from __future__ import annotations

import math
import secrets
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch

from secureagg._exceptions import ConfigError
from secureagg.fl._distributed_settings import DistributedDP
from secureagg.privacy import LocalUpdate

if TYPE_CHECKING:  # run_round (fl._round) checks for HiddenCoin
    from secureagg.fl._distributed import DistributedEncoder
    from secureagg.fl._round import LocalTrainer

__all__ = ["HiddenCoin", "check_coins", "coin", "visible_sample"]


def visible_sample(
    clients: dict[int, LocalTrainer], distributed: DistributedDP | None
) -> dict[int, LocalTrainer]:
    """This round's participants under visible sampling: each client by its own OS coin of
    bias ``sample_rate`` (every client without one).

    Parameters:
        clients: Each client's trainer, by client id.
        distributed: The run's distributed-DP settings, if any.

    Returns:
        The sampled clients' trainers.
    """
    q = None if distributed is None else distributed.sample_rate
    if q is None:
        return clients
    return {c: t for c, t in clients.items() if coin(q)}


def coin(q: float) -> bool:
    """One client's sampling coin from the OS CSPRNG: True with probability floor(q 2^53) / 2^53.

    Never more often than q, the rate the accounting assumes.
    """
    scale = 1 << 53
    return secrets.randbelow(scale) < math.floor(q * scale)


class HiddenCoin:
    """A client under hidden sampling: its own secret coin, flipped inside its round.

    Sampled, it trains as usual; not sampled, it does not train and its update is zero
    (same length, so the encoding, the wire bytes and their sizes are the same; the noise
    share is added either way). Nothing outside this object learns the coin, except
    through timing (training takes time before the reply): the deployer's to equalise.
    ``last_steps`` stays 0 whatever the coin (the inner trainer's own count would show it).
    A sampled client whose training raises, or gives anything but ``d`` finite floats,
    sends the zero update too, with a RuntimeWarning here, on the client's side: an error
    only sampled clients can hit (the encoder refuses a non-finite update) would show
    their coins by their dropping out.

    Parameters:
        inner: The client's trainer.
        sample_rate: The coin's bias q.
        d: Length of a flat update.
    """

    def __init__(self, inner: LocalTrainer, sample_rate: float, d: int) -> None:
        self.inner = inner
        self.sample_rate = sample_rate
        self.d = d
        self.num_examples = inner.num_examples
        self.grad_sample_mode = inner.grad_sample_mode
        self.last_steps = 0

    def can_train(self) -> bool:
        """Whether the inner trainer can afford another round.

        Returns:
            The inner trainer's answer.
        """
        return self.inner.can_train()

    def train_round(self, global_state: Mapping[str, torch.Tensor]) -> LocalUpdate:
        """Flip the coin; train if it says so, else a zero update.

        Parameters:
            global_state: The server's model tensors, by parameter name.

        Returns:
            The trained update, or zeros of the same length when the coin says no or the
            training failed (RuntimeWarning).
        """
        zeros = LocalUpdate(np.zeros(self.d, dtype=np.float32), self.num_examples, 0)
        if not coin(self.sample_rate):
            return zeros
        try:
            update = self.inner.train_round(global_state)
        except Exception as exc:  # any error of a sampled client only would show its coin
            return self._failed(zeros, f"training raised {type(exc).__name__}: {exc}")
        try:
            x = np.asarray(update.vector, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            return self._failed(zeros, f"its update is not a float array ({exc})")
        if x.shape != (self.d,):
            return self._failed(zeros, f"its update has shape {x.shape}, not ({self.d},)")
        if not np.isfinite(x).all():
            return self._failed(zeros, "its update is not finite")
        return update

    def _failed(self, zeros: LocalUpdate, why: str) -> LocalUpdate:
        warnings.warn(
            f"hidden sampling: this client was sampled but {why}; it sends the zero update "
            "(as if not sampled) so that its failure does not show its coin",
            RuntimeWarning,
            stacklevel=3,
        )
        return zeros


def check_coins(clients: Mapping[int, object], encoder: DistributedEncoder | None) -> None:
    """ConfigError unless every :class:`HiddenCoin` among ``clients`` matches ``encoder``.

    A coin of another bias than the settings' ``sample_rate`` would make the ledger's
    amplified epsilon and the fixed denominator q N wrong; a coin outside hidden sampling
    would send zeros nothing divides for; another length would make only the unsampled
    clients' zero updates fail to encode (an error that shows their coins).

    Parameters:
        clients: This round's trainers, by client id.
        encoder: The aggregator's distributed-DP encoder, if any.
    """
    for cid, t in clients.items():
        if not isinstance(t, HiddenCoin):
            continue
        if encoder is None or not encoder.hidden:
            raise ConfigError(
                f"client {cid} flips a hidden coin, but the aggregator is not under "
                "DistributedDP(sampling='hidden')"
            )
        if t.sample_rate != encoder.settings.sample_rate:
            raise ConfigError(
                f"client {cid}'s hidden coin has sample_rate {t.sample_rate!r}, the "
                f"aggregator's settings {encoder.settings.sample_rate!r}: the accounting "
                "and the denominator assume the settings' rate"
            )
        if t.d != encoder.d:
            raise ConfigError(
                f"client {cid}'s hidden coin sends {t.d} zeros, the model has {encoder.d} "
                "parameters"
            )
