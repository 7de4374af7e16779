"""The client's states, one small class per stage; secrets live only in these."""

from __future__ import annotations

from dataclasses import dataclass

from secureagg.hazmat import KeyPair
from secureagg.protocol._config import Stage

__all__ = [
    "STAGE_OF",
    "Aborted",
    "Advertised",
    "ClientState",
    "Done",
    "Fresh",
    "InputSent",
    "Revealed",
    "SharesSent",
    "Signed",
]


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
    enc_keys: dict[int, bytes]
    s_pks: dict[int, bytes]
    seed: bytes
    own: tuple[bytes, bytes]


@dataclass(slots=True)
class InputSent:
    """Masked input sent; holds (share of s_sk_v, share of b_v) for v in U2 and itself."""

    holdings: dict[int, tuple[bytes, bytes]]
    u2: frozenset[int]


@dataclass(slots=True)
class Signed:
    """Signed mode: U3 signed; waiting for the unmask request."""

    holdings: dict[int, tuple[bytes, bytes]]
    u2: frozenset[int]
    survivors: tuple[int, ...]


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
