"""Federated learning glue: encode updates, aggregate them securely, run rounds in-process.

* :func:`flatten` / :func:`unflatten`: a model's named tensors as one vector and back;
* :class:`SecureAggregator`: the server recipe (protocol over encoded updates -> average);
* :func:`run_round`: one round joining local trainers to the aggregator;
* :func:`run_federated`: n clients, R rounds, dropouts, per-round :class:`RoundMetrics`,
  live :class:`ProgressEvent` s.
"""

from secureagg.fl._aggregator import Aggregate, SecureAggregator
from secureagg.fl._config import SecureAggConfig
from secureagg.fl._encoding import Decoded, UpdateEncoder, plain_average
from secureagg.fl._metrics import FederatedResult, RoundMetrics
from secureagg.fl._plain import PlainTrainer
from secureagg.fl._progress import ProgressEvent
from secureagg.fl._round import LocalTrainer, RoundOutcome, run_round
from secureagg.fl._simulation import run_federated
from secureagg.privacy import flatten, parameters_of, unflatten

__all__ = [
    "Aggregate",
    "Decoded",
    "FederatedResult",
    "LocalTrainer",
    "PlainTrainer",
    "ProgressEvent",
    "RoundMetrics",
    "RoundOutcome",
    "SecureAggConfig",
    "SecureAggregator",
    "UpdateEncoder",
    "flatten",
    "parameters_of",
    "plain_average",
    "run_federated",
    "run_round",
    "unflatten",
]
