"""Federated learning glue: encode updates, aggregate them securely, run rounds in-process.

* :class:`SecureAggClient` / :class:`SecureAggServer`: one round of secure aggregation over
  the caller's own transport (bytes in, bytes out, one call per stage);
* :class:`SecureAggregator`: the federation's encoding and decoding, and ``simulate``, an
  in-process round simulator (it is handed every unmasked input);
* :func:`run_round`: one round joining local trainers to the aggregator;
* :func:`run_federated`: n clients, R rounds, dropouts, per-round :class:`RoundMetrics`,
  live :class:`ProgressEvent` s;
* :class:`UpdateEncoder`: the fixed-point encoding of a weighted update; its ``decode``
  returns a :class:`Decoded` (the average, the summed weight, the error bound);
  :data:`WEIGHTINGS` names the averaging rules ("uniform", "examples-public",
  "examples-dp"), and :func:`plain_average` computes the same average in the clear (the
  reference a secure round is checked against).

Names load on first use: :class:`UpdateEncoder` alone does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from secureagg._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from secureagg.fl._aggregator import Aggregate, SecureAggregator
    from secureagg.fl._client_recipe import SecureAggClient
    from secureagg.fl._config import SecureAggConfig
    from secureagg.fl._distributed import DistributedEncoder
    from secureagg.fl._distributed_settings import DistributedDP
    from secureagg.fl._encoding import WEIGHTINGS, Decoded, UpdateEncoder, plain_average
    from secureagg.fl._metrics import FederatedResult, RoundMetrics
    from secureagg.fl._plain import PlainTrainer
    from secureagg.fl._progress import ProgressEvent
    from secureagg.fl._round import LocalTrainer, RoundOutcome, run_round
    from secureagg.fl._server_recipe import SecureAggServer
    from secureagg.fl._simulation import run_federated

_LAZY = {
    "Aggregate": "secureagg.fl._aggregator",
    "Decoded": "secureagg.fl._encoding",
    "DistributedDP": "secureagg.fl._distributed_settings",
    "DistributedEncoder": "secureagg.fl._distributed",
    "FederatedResult": "secureagg.fl._metrics",
    "LocalTrainer": "secureagg.fl._round",
    "PlainTrainer": "secureagg.fl._plain",
    "ProgressEvent": "secureagg.fl._progress",
    "RoundMetrics": "secureagg.fl._metrics",
    "RoundOutcome": "secureagg.fl._round",
    "SecureAggClient": "secureagg.fl._client_recipe",
    "SecureAggConfig": "secureagg.fl._config",
    "SecureAggServer": "secureagg.fl._server_recipe",
    "SecureAggregator": "secureagg.fl._aggregator",
    "UpdateEncoder": "secureagg.fl._encoding",
    "plain_average": "secureagg.fl._encoding",
    "WEIGHTINGS": "secureagg.fl._encoding",
    "run_federated": "secureagg.fl._simulation",
    "run_round": "secureagg.fl._round",
}

__all__ = [
    "WEIGHTINGS",
    "Aggregate",
    "Decoded",
    "DistributedDP",
    "DistributedEncoder",
    "FederatedResult",
    "LocalTrainer",
    "PlainTrainer",
    "ProgressEvent",
    "RoundMetrics",
    "RoundOutcome",
    "SecureAggClient",
    "SecureAggConfig",
    "SecureAggServer",
    "SecureAggregator",
    "UpdateEncoder",
    "plain_average",
    "run_federated",
    "run_round",
]


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY)
