"""The sans-I/O secure aggregation protocol: SecAgg (complete graph) and SecAgg+ (Harary graph).

Sessions take bytes and return bytes; transports are someone else's job. See docs/protocol.md.
"""

import warnings as _warnings
from typing import Any as _Any

from secureagg.protocol._client import ClientSession
from secureagg.protocol._codec import decode, encode
from secureagg.protocol._config import RoundConfig, Stage, new_round_id
from secureagg.protocol._graph import Graph
from secureagg.protocol._journal import FileJournal, Journal, MemoryJournal
from secureagg.protocol._messages import (
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencySignature,
    KeyEntry,
    KeysBroadcast,
    MaskedInput,
    Message,
    SeedCommitments,
    SeedReveal,
    ShareKeys,
    SharesDelivery,
    UnmaskRequest,
    UnmaskResponse,
)
from secureagg.protocol._params import (
    GraphParams,
    RoundPlan,
    choose_parameters,
    default_threshold,
    plan_round,
)
from secureagg.protocol._policy import ClientPolicy
from secureagg.protocol._server import AggregateResult, Rejection, ServerSession
from secureagg.protocol._simulate import (
    Cost,
    RoundResult,
    simulate_configured_round,
    simulate_round,
)

__all__ = [
    "AdvertiseKeys",
    "AggregateResult",
    "ClientPolicy",
    "ClientSession",
    "ConsistencyRequest",
    "ConsistencySignature",
    "Cost",
    "FileJournal",
    "Graph",
    "GraphParams",
    "Journal",
    "KeyEntry",
    "KeysBroadcast",
    "MaskedInput",
    "MemoryJournal",
    "Message",
    "Rejection",
    "RoundConfig",
    "RoundPlan",
    "RoundResult",
    "SeedCommitments",
    "SeedReveal",
    "ServerSession",
    "ShareKeys",
    "SharesDelivery",
    "Stage",
    "UnmaskRequest",
    "UnmaskResponse",
    "choose_parameters",
    "decode",
    "default_threshold",
    "encode",
    "new_round_id",
    "plan_round",
    "simulate_configured_round",
    "simulate_round",
]

_DEPRECATED = {"run_round": ("simulate_configured_round", simulate_configured_round)}


def __getattr__(name: str) -> _Any:
    if name in _DEPRECATED:
        new, value = _DEPRECATED[name]
        _warnings.warn(
            f"secureagg.protocol.{name} is deprecated: use {new} "
            "(secureagg.fl.run_round is the federated-learning round)",
            DeprecationWarning,
            stacklevel=2,
        )
        return value
    raise AttributeError(f"module 'secureagg.protocol' has no attribute {name!r}")
