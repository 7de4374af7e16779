"""The messages of a round: one frozen dataclass per message type.

Client to server messages carry ``sender``; server to client messages carry ``recipient``.
Every list of ids or of per-id entries is sorted by id with no repeats (the codec enforces it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "AdvertiseKeys",
    "ClientMessage",
    "ConsistencyRequest",
    "ConsistencySignature",
    "KeyEntry",
    "KeysBroadcast",
    "MaskedInput",
    "Message",
    "SeedCommitments",
    "SeedReveal",
    "ServerMessage",
    "ShareKeys",
    "SharesDelivery",
    "UnmaskRequest",
    "UnmaskResponse",
]


@dataclass(frozen=True, slots=True)
class AdvertiseKeys:
    """Stage 0, client -> server: the two fresh X25519 public keys (signed in signed mode).

    Attributes:
        round_id: The round's id (every message of a round carries it).
        sender: The client that sends it.
        c_pk: The public key the client's pairwise encryption keys come from.
        s_pk: The public key the client's pairwise masks come from.
        signature: The Ed25519 signature of the keys and the commitment (signed mode; else
            empty).
        graph_commitment: Commit-reveal rounds: the client's commitment to its share r_u of
            the graph seed (32 bytes; else empty).
    """

    round_id: bytes
    sender: int
    c_pk: bytes
    s_pk: bytes
    signature: bytes = b""
    graph_commitment: bytes = b""


@dataclass(frozen=True, slots=True)
class SeedCommitments:
    """Commit-reveal, server -> client: every advertiser's commitment to its share of the
    graph seed (the same list for every client).

    Attributes:
        round_id: The round's id (every message of a round carries it).
        recipient: The client it is for.
        commitments: (client, commitment) pairs, sorted by client.
    """

    round_id: bytes
    recipient: int
    commitments: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True, slots=True)
class SeedReveal:
    """Commit-reveal, client -> server: the client's share r_u of the graph seed.

    Attributes:
        round_id: The round's id (every message of a round carries it).
        sender: The client that sends it.
        reveal: r_u, 32 bytes.
    """

    round_id: bytes
    sender: int
    reveal: bytes


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One client's advertised keys as the server forwards them.

    Attributes:
        client: The client that advertised them.
        c_pk: Its public key for pairwise encryption keys.
        s_pk: Its public key for pairwise masks.
        signature: Its signature (signed mode; else empty).
    """

    client: int
    c_pk: bytes
    s_pk: bytes
    signature: bytes = b""


@dataclass(frozen=True, slots=True)
class KeysBroadcast:
    """Server -> client: the keys of the recipient and its neighbours in U1, and (commit-reveal)
    every committed share of the graph seed, from which the client computes the graph.

    Attributes:
        round_id: The round's id (every message of a round carries it).
        recipient: The client it is for.
        entries: One :class:`KeyEntry` per client, sorted by id.
        reveals: Commit-reveal rounds: (client, r_client) for every client on the committed
            list, sorted by client (else empty).
    """

    round_id: bytes
    recipient: int
    entries: tuple[KeyEntry, ...]
    reveals: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class ShareKeys:
    """Stage 1, client -> server: commitments, and (recipient, ciphertext) pairs.

    Attributes:
        round_id: The round's id (every message of a round carries it).
        sender: The client that sends it.
        seed_commitment: Lets the server check a rebuilt b_u.
        keys_digest: The digest of the KeysBroadcast the client received, so the server
            knows the client masks with the keys it was sent.
        ciphertexts: (recipient, ciphertext) pairs; each ciphertext holds the recipient's
            shares of s_sk_u and b_u.
    """

    round_id: bytes
    sender: int
    seed_commitment: bytes
    keys_digest: bytes
    ciphertexts: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True, slots=True)
class SharesDelivery:
    """Stage 1, server -> client: (sender, ciphertext) pairs addressed to the recipient.

    Attributes:
        round_id: The round's id (every message of a round carries it).
        recipient: The client it is for.
        ciphertexts: (sender, ciphertext) pairs, sorted by sender.
    """

    round_id: bytes
    recipient: int
    ciphertexts: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True, slots=True)
class MaskedInput:
    """Stage 2, client -> server: y_u, and the neighbours whose shares failed authentication.

    Attributes:
        round_id: The round's id (every message of a round carries it).
        sender: The client that sends it.
        excluded: The neighbours whose shares failed authentication.
        vector: y_u, elements of Z_{2^b} in element_dtype(b).
        bits: b; the wire carries each element in exactly b bits (None: the full width of
            the dtype).
    """

    round_id: bytes
    sender: int
    excluded: tuple[int, ...]
    vector: npt.NDArray[Any]
    bits: int | None = None

    @property
    def width(self) -> int:
        """b: ``bits``, or the dtype's width in bits when ``bits`` is None."""
        return 8 * self.vector.dtype.itemsize if self.bits is None else self.bits

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MaskedInput):
            return NotImplemented
        return (
            (self.round_id, self.sender, self.excluded, self.width)
            == (other.round_id, other.sender, other.excluded, other.width)
            and self.vector.dtype == other.vector.dtype
            and bool(np.array_equal(self.vector, other.vector))
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class ConsistencyRequest:
    """Stage 3 (signed mode), server -> client: U3, for the client to sign.

    Attributes:
        round_id: The round's id (every message of a round carries it).
        recipient: The client it is for.
        survivors: U3, the clients whose masked input arrived.
    """

    round_id: bytes
    recipient: int
    survivors: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ConsistencySignature:
    """Stage 3 (signed mode), client -> server: Ed25519 signature of U3.

    Attributes:
        round_id: The round's id (every message of a round carries it).
        sender: The client that sends it.
        signature: The signature over U3 and the round.
    """

    round_id: bytes
    sender: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class UnmaskRequest:
    """Stage 4, server -> client: survivors U3, dropped D, and (signed mode) U3's signatures.

    Attributes:
        round_id: The round's id (every message of a round carries it).
        recipient: The client it is for.
        survivors: U3.
        dropped: D = U2 minus U3, the clients that shared keys but sent no masked input.
        signatures: (client, signature) pairs over U3 (signed mode; else empty).
    """

    round_id: bytes
    recipient: int
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    signatures: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class UnmaskResponse:
    """Stage 4, client -> server: shares of b_v for v in U3, shares of s_sk_v for v in D.

    Attributes:
        round_id: The round's id (every message of a round carries it).
        sender: The client that sends it.
        seed_shares: (v, share of b_v) for the survivors v.
        key_shares: (v, share of s_sk_v) for the dropped v.
    """

    round_id: bytes
    sender: int
    seed_shares: tuple[tuple[int, bytes], ...]
    key_shares: tuple[tuple[int, bytes], ...]


ClientMessage = (
    AdvertiseKeys | SeedReveal | ShareKeys | MaskedInput | ConsistencySignature | UnmaskResponse
)
ServerMessage = (
    SeedCommitments | KeysBroadcast | SharesDelivery | ConsistencyRequest | UnmaskRequest
)
Message = ClientMessage | ServerMessage
