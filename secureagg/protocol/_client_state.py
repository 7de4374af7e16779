"""The client's states, one small class per stage; secrets live only in these."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise

from secureagg.hazmat import SHARE_SIZE, KeyPair
from secureagg.protocol._config import Stage

__all__ = [
    "STAGE_OF",
    "Aborted",
    "Advertised",
    "ClientState",
    "Done",
    "Fresh",
    "Holdings",
    "InputSent",
    "Records",
    "Revealed",
    "SharesSent",
    "Signed",
]


class Records(Mapping[int, bytes]):
    """Records of one fixed size keyed by client id, packed: the ids sorted in one u32 array,
    the records back to back in one bytes object, in the same order.

    Two objects per table instead of a dict of k entries (its hash table, k bytes objects,
    k ints): a client keeps its neighbours' keys and shares in these from the share-keys
    stage to the unmask stage, and a simulated round holds n clients at once.

    Parameters:
        rows: (client id, record) pairs, ids distinct, in any order.
        size: Every record's length in bytes.

    Raises:
        ValueError: A repeated id or a record of another length.
    """

    __slots__ = ("_blob", "_ids", "_size")

    def __init__(self, rows: Iterable[tuple[int, bytes]], size: int) -> None:
        items = sorted(rows, key=_first)
        ids = array("I", [v for v, _ in items])
        if any(a >= b for a, b in pairwise(ids)):
            raise ValueError("a client id appears twice")
        if any(len(row) != size for _, row in items):
            raise ValueError(f"records must be {size} bytes")
        self._ids = ids
        self._blob = b"".join([row for _, row in items])
        self._size = size

    def __getitem__(self, client: int) -> bytes:
        i = bisect_left(self._ids, client)
        if i == len(self._ids) or self._ids[i] != client:
            raise KeyError(client)
        return self._blob[i * self._size : (i + 1) * self._size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


def _first(row: tuple[int, bytes]) -> int:
    return row[0]


class Holdings(Mapping[int, tuple[bytes, bytes]]):
    """The shares a client holds, its own included: client v -> (share of s_sk_v, share of
    b_v), packed as :class:`Records` of 2 * SHARE_SIZE bytes (the two shares as they
    arrive, back to back).

    Parameters:
        rows: (client id, share of s_sk || share of b) pairs, ids distinct.
        owner: The client holding them (its own shares are among the rows).

    Raises:
        ValueError: A repeated id, a row of another length, or no row for ``owner``.
    """

    __slots__ = ("_records", "owner")

    def __init__(self, rows: Iterable[tuple[int, bytes]], owner: int) -> None:
        self._records = Records(rows, 2 * SHARE_SIZE)
        if owner not in self._records:
            raise ValueError("the holder's own shares are missing")
        self.owner = owner

    def __getitem__(self, client: int) -> tuple[bytes, bytes]:
        row = self._records[client]
        return row[:SHARE_SIZE], row[SHARE_SIZE:]

    def __iter__(self) -> Iterator[int]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    @property
    def u2(self) -> frozenset[int]:
        """The neighbours whose shares these are (every id but the owner's)."""
        return frozenset(self._records) - {self.owner}


@dataclass(slots=True)
class Fresh:
    """Nothing sent yet."""


@dataclass(slots=True)
class Advertised:
    """Keys advertised (with a commitment to ``reveal`` in commit-reveal rounds); waiting for
    the committed list (commit-reveal) or the neighbours' keys."""

    c: KeyPair
    s: KeyPair
    reveal: bytes = b""


@dataclass(slots=True)
class Revealed:
    """Commit-reveal: r_u revealed; keeps the digest of the committed list it was shown and
    waits for the neighbours' keys with every reveal."""

    c: KeyPair
    s: KeyPair
    commitments: bytes


@dataclass(slots=True)
class SharesSent:
    """Shares sent; waiting for the neighbours' shares."""

    s: KeyPair
    enc_keys: Records  # neighbour v in U1 -> the key of the shares exchanged with v
    s_pks: Records  # neighbour v in U1 -> s_pk_v
    seed: bytes
    own: tuple[bytes, bytes]


@dataclass(slots=True)
class InputSent:
    """Masked input sent; holds (share of s_sk_v, share of b_v) for v in U2 and itself."""

    holdings: Holdings

    @property
    def u2(self) -> frozenset[int]:
        """The neighbours whose shares it holds (U2 as this client sees it)."""
        return self.holdings.u2


@dataclass(slots=True)
class Signed:
    """Signed mode: U3 signed; waiting for the unmask request."""

    holdings: Holdings
    survivors: tuple[int, ...]

    @property
    def u2(self) -> frozenset[int]:
        """The neighbours whose shares it holds (U2 as this client sees it)."""
        return self.holdings.u2


@dataclass(slots=True)
class Done:
    """Unmask shares sent; the round is over for this client."""


@dataclass(slots=True)
class Aborted:
    """The client refused to go on."""

    reason: str


ClientState = Fresh | Advertised | Revealed | SharesSent | InputSent | Signed | Done | Aborted
STAGE_OF = {
    Fresh: Stage.ADVERTISE,
    Advertised: Stage.SHARE_KEYS,
    Revealed: Stage.SHARE_KEYS,
    SharesSent: Stage.MASKED_INPUT,
    InputSent: Stage.UNMASK,
    Signed: Stage.UNMASK,
}
