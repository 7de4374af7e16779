"""The server's states, one small class per stage it collects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy.typing as npt

from secureagg.hazmat import PackedSum
from secureagg.protocol._codec import PackedInput, PackedShareKeys
from secureagg.protocol._config import Stage
from secureagg.protocol._messages import (
    AdvertiseKeys,
    ConsistencySignature,
    KeyEntry,
    SeedReveal,
    UnmaskResponse,
)

__all__ = [
    "EXPECTED",
    "STAGE_OF",
    "Aborted",
    "AggregateResult",
    "CollectKeys",
    "CollectMasked",
    "CollectReveals",
    "CollectShares",
    "CollectSignatures",
    "CollectUnmask",
    "Collecting",
    "Finished",
    "Packed",
    "Rejection",
    "ServerState",
    "tables",
]

_Vector = npt.NDArray[Any]
Packed = tuple[tuple[int, ...], bytes]
"""Records of one size by client id: the ids ascending (the graph's own int objects, not
copies), the records back to back in that order. A tuple of ints and a bytes object holds no
container, so the garbage collector stops scanning it after its first pass: the O(n * k)
records a round keeps do not make every full collection O(n)."""


@dataclass(frozen=True)
class AggregateResult:
    """The sum in Z_{2^b} of the masked inputs of ``survivors`` (U3), masks removed.

    Attributes:
        total: The sum, d elements of Z_{2^b}.
        survivors: U3, the clients whose inputs are in it.
    """

    total: _Vector
    survivors: frozenset[int]


@dataclass(frozen=True)
class Rejection:
    """A client message the server refused, and why.

    Attributes:
        stage: The stage it arrived in.
        client: Its sender (None if unreadable).
        reason: Why it was refused.
    """

    stage: Stage
    client: int | None
    reason: str


@dataclass(slots=True)
class CollectKeys:
    keys: dict[int, KeyEntry] = field(default_factory=dict)
    seen_keys: set[bytes] = field(default_factory=set)
    graph_commitments: dict[int, bytes] = field(default_factory=dict)  # commit-reveal only


@dataclass(slots=True)
class CollectReveals:
    u1: dict[int, KeyEntry]
    graph_commitments: dict[int, bytes]  # the committed list every client was sent
    reveals: dict[int, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class CollectShares:
    u1: dict[int, KeyEntry]
    sent_keys: dict[int, bytes]  # digest of the KeysBroadcast each client was sent
    # sender -> (its recipients' ids, sorted; their ciphertexts back to back, in that order)
    inbox: dict[int, Packed] = field(default_factory=dict)
    commitments: dict[int, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class CollectMasked:
    u1: dict[int, KeyEntry]
    commitments: dict[int, bytes]
    u2: frozenset[int]  # client w was sent the shares of its neighbours in U2
    acc: _Vector  # the sum once ``summed`` is flushed (on closing the stage)
    summed: PackedSum  # adds the masked inputs into ``acc``
    u3: set[int] = field(default_factory=set)


@dataclass(slots=True)
class _Unmasking:
    """What the stages after the masked inputs share: the sum so far and who is in it.

    ``u3``/``dropped`` are sorted tuples (what goes on the wire); ``alive``/``gone`` are the
    same ids as sets, built once, for the per-message membership checks.
    """

    u1: dict[int, KeyEntry]
    commitments: dict[int, bytes]
    u2: frozenset[int]
    acc: _Vector
    u3: tuple[int, ...]
    dropped: tuple[int, ...]
    alive: frozenset[int] = field(init=False)
    gone: frozenset[int] = field(init=False)

    def __post_init__(self) -> None:
        self.alive = frozenset(self.u3)
        self.gone = frozenset(self.dropped)


@dataclass(slots=True)
class CollectSignatures(_Unmasking):
    signatures: dict[int, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class CollectUnmask(_Unmasking):
    asked: frozenset[int] = field(kw_only=True)
    # holder -> its answer packed, one flat tuple (untracked by the collector after one pass):
    # seed-share ids, their shares, key-share ids, their shares; the ids ascending, the shares
    # back to back (not a tuple, an int and a bytes per share)
    responses: dict[int, tuple[tuple[int, ...], bytes, tuple[int, ...], bytes]] = field(
        default_factory=dict
    )


@dataclass(slots=True)
class Finished:
    result: AggregateResult


@dataclass(slots=True)
class Aborted:
    reason: str


Collecting = (
    CollectKeys | CollectReveals | CollectShares | CollectMasked | CollectSignatures | CollectUnmask
)
ServerState = Collecting | Finished | Aborted
STAGE_OF: dict[type, Stage] = {
    CollectKeys: Stage.ADVERTISE,
    CollectReveals: Stage.REVEAL,
    CollectShares: Stage.SHARE_KEYS,
    CollectMasked: Stage.MASKED_INPUT,
    CollectSignatures: Stage.CONSISTENCY,
    CollectUnmask: Stage.UNMASK,
}
EXPECTED: dict[type, type] = {
    CollectKeys: AdvertiseKeys,
    CollectReveals: SeedReveal,
    CollectShares: PackedShareKeys,  # a ShareKeys as decode_packed gives it
    CollectMasked: PackedInput,  # a MaskedInput as decode_packed gives it
    CollectSignatures: ConsistencySignature,
    CollectUnmask: UnmaskResponse,
}


def tables(state: Collecting) -> list[dict[int, Any]]:
    """The per-client tables of a stage, for dropping a client that sent twice."""
    if isinstance(state, CollectKeys):
        return [state.keys, state.graph_commitments]
    if isinstance(state, CollectReveals):
        return [state.reveals]
    if isinstance(state, CollectShares):
        return [state.inbox, state.commitments]
    if isinstance(state, CollectSignatures):
        return [state.signatures]
    if isinstance(state, CollectUnmask):
        return [state.responses]
    return []
