"""Shared test support: a round of real protocol sessions driven by hand, and a small DP
federated run of three clients (torch is imported only when that is used).

Importable as ``support`` from every test folder (pytest puts ``tests/`` on sys.path for
``tests/conftest.py``). Fixtures live in ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secureagg.protocol import (
    ClientPolicy,
    ClientSession,
    Graph,
    MemoryJournal,
    RoundConfig,
    ServerSession,
    Stage,
)
from secureagg.protocol import new_round_id as _new_round_id
from secureagg.protocol._signing import identity_public

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

    from secureagg.fl import FederatedResult
    from secureagg.privacy import PrivacyConfig, PrivacyLedger

Inputs = Callable[[int], np.ndarray]


def round_config(
    n: int = 6,
    t: int = 3,
    *,
    d: int,
    bits: int,
    signed: bool = False,
    identities: bool = True,
    counter: int = 0,
    round_id: bytes | None = None,
    degree: int | None = None,
    server_seed: bool = False,
) -> tuple[RoundConfig, dict[int, Ed25519PrivateKey]]:
    """A round of clients 1..n (complete graph, or Harary of ``degree``, its seed from the
    clients' commit-reveal or, with ``server_seed``, the round id) and their identity keys
    (none when ``identities`` is false)."""
    ids = list(range(1, n + 1))
    rid = _new_round_id(counter) if round_id is None else round_id
    seed = rid if server_seed else None
    graph = Graph.complete(ids) if degree is None else Graph.harary(ids, degree, seed)
    keys = {u: Ed25519PrivateKey.generate() for u in ids} if identities or signed else {}
    config = RoundConfig(
        rid,
        bits,
        d,
        t,
        graph,
        signed=signed,
        identity_keys={u: identity_public(k) for u, k in keys.items()},
        server_graph_seed=server_seed and degree is not None and degree < n - 1,
    )
    return config, keys


class HandRound:
    """Honest clients and an honest server, driven one stage at a time by the test.

    ``inputs(u)`` is client u's input; every client runs under ``policy``, and with
    ``journals`` each has its own MemoryJournal (``journals[u]``, needed to restore saved
    bytes). With ``advertise`` (the default) every client has advertised and the server has
    closed that stage: ``out`` holds its next messages.
    """

    def __init__(
        self,
        n: int = 6,
        t: int = 3,
        *,
        d: int,
        bits: int,
        inputs: Inputs,
        signed: bool = False,
        identities: bool = True,
        counter: int = 0,
        policy: ClientPolicy | None = None,
        journals: bool = False,
        advertise: bool = True,
    ) -> None:
        self.config, self.identities = round_config(
            n, t, d=d, bits=bits, signed=signed, identities=identities, counter=counter
        )
        ids = self.config.graph.ids
        self.inputs = {u: inputs(u) for u in ids}
        self.policy = policy
        self.journals = {u: MemoryJournal() for u in ids} if journals else {}
        self.clients = {
            u: ClientSession(
                self.config,
                u,
                identity=self.identities.get(u),
                policy=policy,
                journal=self.journals.get(u),
            )
            for u in ids
        }
        for u, c in self.clients.items():
            c.provide_input(self.inputs[u])
        self.server = ServerSession(self.config)
        self.out: dict[int, bytes] = {}
        if advertise:
            for c in self.clients.values():
                self.server.receive(c.advertise())
            self.out = self.server.close_stage()

    def step(self, skip: tuple[int, ...] = ()) -> dict[int, bytes]:
        """Deliver the server's messages to every client except ``skip``; close the stage."""
        for u, data in self.out.items():
            if u not in skip:
                self.server.receive(self.clients[u].receive(data))
        self.out = self.server.close_stage()
        return self.out

    def until(self, stage: Stage) -> None:
        """Run honest stages until the server collects ``stage``."""
        while self.server.stage is not stage:
            self.step()

    def finish(self, *, sender: bool = False) -> None:
        """Run the rest of the round honestly: see :func:`finish`."""
        finish(self.clients, self.server, sender=sender)

    def restore(self, u: int, blob: bytes) -> ClientSession:
        """Client u's session from its saved bytes (needs ``journals``)."""
        return ClientSession.restore_state(
            blob, identity=self.identities.get(u), journal=self.journals[u], policy=self.policy
        )


def finish(
    clients: dict[int, ClientSession], server: ServerSession, *, sender: bool = False
) -> None:
    """Run the rest of a round honestly, closing the stage being collected first; each reply
    goes in with its true sender when ``sender``."""
    while True:
        out = server.close_stage()
        if server.stage is None:
            return
        for u, data in out.items():
            reply = clients[u].receive(data)
            if sender:
                server.receive(reply, sender=u)
            else:
                server.receive(reply)


# -- a small DP federated run ----------------------------------------------------------------

FL_SIZES = {1: 30, 2: 45, 3: 60}
"""Example counts of the three clients of :func:`run_small_federated`."""

FL_LR = 0.5
"""Their local learning rate (plain SGD)."""


def fl_examples(cid: int, n: int, features: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Client ``cid``'s ``n`` examples: Gaussian features (seeded by ``cid``), label x0 > 0."""
    import torch

    g = torch.Generator().manual_seed(cid)
    x = torch.randn(n, features, generator=g)
    return x, (x[:, 0] > 0).long()


def fl_loaders(
    data: Mapping[int, tuple[torch.Tensor, torch.Tensor]] | None = None, features: int = 4
) -> dict[int, DataLoader[Any]]:
    """One full-batch loader per client (sample rate 1): ``data[c]`` where given, else
    :func:`fl_examples` of ``FL_SIZES[c]``."""
    from torch.utils.data import DataLoader, TensorDataset

    out: dict[int, DataLoader[Any]] = {}
    for cid, n in FL_SIZES.items():
        x, y = (data or {}).get(cid) or fl_examples(cid, n, features)
        out[cid] = DataLoader(TensorDataset(x, y), batch_size=len(y))
    return out


def run_small_federated(
    privacy: PrivacyConfig,
    weighting: str,
    *,
    ledger: PrivacyLedger | None = None,
    rounds: int = 2,
    loaders: Mapping[int, DataLoader[Any]] | None = None,
    features: int = 4,
    **kw: Any,
) -> FederatedResult:
    """``run_federated`` of a linear model over :func:`fl_loaders` with secure aggregation
    (complete graph, threshold 2) under ``weighting``; ``kw`` goes to run_federated."""
    import torch
    from torch import nn

    from secureagg.fl import SecureAggConfig, run_federated

    return run_federated(
        lambda: nn.Linear(features, 2),
        loaders if loaders is not None else fl_loaders(features=features),
        rounds=rounds,
        optimizer_fn=lambda p: torch.optim.SGD(p, lr=FL_LR),
        privacy=privacy,
        secure=SecureAggConfig(weighting=weighting, threshold=2),
        ledger=ledger,
        **kw,
    )


def accumulators(bits: int, d: int, seed: int) -> list[np.ndarray]:
    """Random starting sums in every dtype a packed add takes for b: the element dtype, the
    wider ones and a non-native byte order."""
    rng = np.random.default_rng(seed)
    out = []
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64, np.dtype(">u4"), np.dtype(">u8")):
        dt = np.dtype(dtype)
        if 8 * dt.itemsize >= bits:
            top = np.iinfo(dt.newbyteorder("=")).max
            out.append(rng.integers(0, top, d, dtype=np.uint64, endpoint=True).astype(dt))
    return out


def bad_packings(raw: bytes, bits: int, d: int) -> list[bytes]:
    """Packed bytes a decoder must refuse: one byte short, one too many, and each padding
    bit set alone."""
    bad_ones = [raw[:-1], raw + b"\x00"] if raw else [b"\x00"]
    for pad in range(bits * d, 8 * len(raw)):
        bad = bytearray(raw)
        bad[pad // 8] |= 1 << (pad % 8)
        bad_ones.append(bytes(bad))
    return bad_ones
