"""Client-level distributed DP on a Flower node: check the round's noise, encode, keep a ledger.

A round config whose encoding says ``mode = "distributed-dp"`` carries every parameter of
the mechanism (mechanism, clip, gamma, variance, beta, model size, honest floor n-min,
colluders). The node rebuilds the :class:`~secureagg.hazmat.DDPParams` from them, declines a
threshold below ``n-min + colluders`` and, from its own node config, fewer assumed colluders
or more privacy loss than it accepts, all before any key leaves. At training it clips its
update, rotates, rounds and adds its noise share (:func:`~secureagg.hazmat.ddp_encode`, the
round id as the public rotation seed), and records the round in its own distributed-DP
ledger before the masked reply leaves.

Node config keys (all optional):

* ``secureagg-ddp-colluders``: the fewest colluders a round must assume;
* ``secureagg-ddp-epsilon`` and ``secureagg-ddp-delta``: the node's budget; with
  ``secureagg-ddp-ledger`` the node declines a round that would take its ledger past it,
  else with ``secureagg-ddp-rounds`` one whose noise would not meet it over that many rounds;
* ``secureagg-ddp-ledger``: the node's ledger file (needs ``secureagg-ddp-delta``).

The node cannot see who survives a round, so its ledger charges every round it sent a share
in at the floor: members are the round's clients and every one beyond ``n-min`` is counted
as possibly absent or colluding (``colluders = clients - n-min``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from secureagg._exceptions import ConfigError, DecodeError
from secureagg.hazmat import DDPParams, ddp_encode, padded_length
from secureagg.privacy import DistributedLedger
from secureagg.privacy.distributed import epsilon_for
from secureagg.protocol import RoundConfig

__all__ = ["DDP_MODE", "NodeDistributed", "is_distributed"]

DDP_MODE = "distributed-dp"
"""The round config encoding's ``mode`` under client-level distributed DP."""

COLLUDERS_KEY = "secureagg-ddp-colluders"
EPSILON_KEY = "secureagg-ddp-epsilon"
DELTA_KEY = "secureagg-ddp-delta"
ROUNDS_KEY = "secureagg-ddp-rounds"
LEDGER_KEY = "secureagg-ddp-ledger"


def is_distributed(config: RoundConfig) -> bool:
    """Whether ``config`` is a distributed-DP round.

    Parameters:
        config: The round config.

    Returns:
        True when its encoding's mode is distributed DP.
    """
    return config.encoding.get("mode") == DDP_MODE


def _get(config: RoundConfig, key: str, kind: type) -> Any:
    value = config.encoding.get(key)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"the round config's {key!r} is not a {kind.__name__}")
    return value


def _own(node_config: Mapping[str, Any], key: str, kind: type) -> Any:
    value = node_config.get(key)
    if value is None or value == "":
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"the node config's {key} is not a {kind.__name__}")
    return value


class NodeDistributed:
    """One node's side of one distributed-DP round, checked against its own node config.

    Parameters:
        config: The round config (its encoding carries the mechanism's parameters).
        node_config: The node's own Flower node config.

    Raises:
        ConfigError: Parameters this node refuses (the mod declines the round).
    """

    def __init__(self, config: RoundConfig, node_config: Mapping[str, Any]) -> None:
        try:
            self.params = DDPParams(
                _get(config, "mechanism", str),
                _get(config, "model-size", int),
                config.bits,
                _get(config, "update-clip", float),
                _get(config, "gamma", float),
                _get(config, "variance", float),
                _get(config, "beta", float),
            )
        except DecodeError as exc:  # pragma: no cover - DDPParams raises ConfigError
            raise ConfigError(str(exc)) from exc
        if padded_length(self.params.d) != config.d:
            raise ConfigError(
                f"the round's vector length {config.d} is not model size {self.params.d} padded"
            )
        self.config = config
        self.n_min = _get(config, "n-min", int)
        self.colluders = _get(config, "colluders", int)
        if self.n_min < 1 or self.colluders < 0:
            raise ConfigError("the round's n-min must be >= 1 and its colluders >= 0")
        if config.threshold < self.n_min + self.colluders:
            raise ConfigError(
                f"threshold {config.threshold} is below n-min + colluders = "
                f"{self.n_min + self.colluders}: a sum could hold fewer honest noise shares"
            )
        want = _own(node_config, COLLUDERS_KEY, int) or 0
        if self.colluders < want:
            raise ConfigError(
                f"the round assumes {self.colluders} colluders, this node at least {want}"
            )
        self.budget = _own(node_config, EPSILON_KEY, float)
        self.delta = _own(node_config, DELTA_KEY, float)
        ledger = _own(node_config, LEDGER_KEY, str)
        self.ledger_path = None if ledger is None else Path(ledger)
        if (self.budget is not None or self.ledger_path is not None) and self.delta is None:
            raise ConfigError(f"the node config needs {DELTA_KEY} with its budget or ledger")
        self._check_budget(_own(node_config, ROUNDS_KEY, int))

    def _ledger(self) -> DistributedLedger:
        if self.ledger_path is not None and self.ledger_path.exists():
            return DistributedLedger.load(self.ledger_path)
        return DistributedLedger(self.ledger_path)

    def _charge(self, book: DistributedLedger) -> float:
        """Record this round at the floor in ``book``; the composed epsilon after it."""
        ids = sorted(self.config.graph.ids)
        assert self.delta is not None
        rec = book.record(
            1 + max((r.round for r in book.rounds()), default=0),
            self.params,
            members=ids,
            colluders=len(ids) - self.n_min,  # who survives is unknown here: charge the floor
            n_min=self.n_min,
            sample_rate=None,
            delta=self.delta,
        )
        return rec.epsilon

    def _check_budget(self, rounds: int | None) -> None:
        if self.budget is None:
            return
        assert self.delta is not None
        if self.ledger_path is not None:
            book = self._ledger()
            book.path = None  # a projection: nothing is written
            spent = self._charge(book)
        elif rounds is not None:
            spent = epsilon_for(self.params, n=self.n_min, rounds=rounds, delta=self.delta)
        else:
            raise ConfigError(f"{EPSILON_KEY} needs {LEDGER_KEY} or {ROUNDS_KEY}")
        if not spent <= self.budget:
            raise ConfigError(
                f"this round's noise takes epsilon to {spent:.4g}, above this node's budget "
                f"{self.budget:g} (delta {self.delta:g})"
            )

    def encode(self, vector: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """This node's protocol input; the round is charged in its ledger first.

        Parameters:
            vector: The node's update (local model minus global model), flat.

        Returns:
            The encoded share in Z_{2^bits}: clipped, rotated, rounded, noised.
        """
        x = np.asarray(vector, dtype=np.float64)
        if x.shape != (self.params.d,):
            raise ConfigError(
                f"the model has {x.shape[0]} values, the round expects {self.params.d}"
            )
        if not np.all(np.isfinite(x)):
            raise ConfigError("the update has non-finite values")
        norm = float(np.linalg.norm(x))
        if norm > self.params.clip:
            x = x * (self.params.clip / norm)
        out = ddp_encode(x, self.params, self.config.round_id)
        if self.ledger_path is not None:
            self._check_budget(None)  # the ledger as it is now, not as it was at setup
            self._charge(self._ledger())  # saved atomically before the reply can leave
        return out

    @property
    def noise_std(self) -> float:
        """This node's noise share's std, in the update's units."""
        return math.sqrt(self.params.variance) * self.params.gamma
