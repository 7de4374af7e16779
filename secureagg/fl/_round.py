"""The federated round driver: local training at each client, then secure (or plain) averaging."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from secureagg._exceptions import BudgetExhaustedError, RoundAborted
from secureagg.fl._aggregator import SecureAggregator
from secureagg.fl._distributed import refuse_hidden
from secureagg.fl._encoding import plain_average
from secureagg.fl._progress import OnProgress, ProgressEvent
from secureagg.fl._sampling import HiddenCoin, check_coins
from secureagg.privacy import LocalUpdate, unflatten
from secureagg.protocol import Stage

__all__ = ["LocalTrainer", "RoundOutcome", "run_round"]


class LocalTrainer(Protocol):
    """What the driver needs from a client: PrivateTrainer and PlainTrainer both fit."""

    num_examples: int
    last_steps: int
    grad_sample_mode: str

    def can_train(self) -> bool:
        """Whether the client can afford another round.

        Returns:
            False when the client must decline (its privacy budget).
        """
        ...

    def train_round(self, global_state: Mapping[str, torch.Tensor]) -> LocalUpdate:
        """Load ``global_state``, train one round, return local minus global.

        Parameters:
            global_state: The server's model tensors, by parameter name.

        Returns:
            The update.
        """
        ...


@dataclass
class RoundOutcome:
    """What one round produced, keyed by the caller's client ids.

    Attributes:
        average: The average update by parameter name (None when nothing was averaged).
        trained: Each trained client's update.
        members: The clients whose update is in the average.
        dropped: Client -> why its update is missing ("budget", "dropout:<stage>",
            "aborted").
        dropouts: Every client that declined or went silent -> "budget" or the stage,
            whether or not its update is in the average.
        max_abs_error: Largest coordinate difference between the recovered and the
            reference average.
        error_bound: What the encoding promises that difference stays under.
        client_ms: Each client's time this round, in ms (under hidden sampling its part of
            the protocol only: training and encoding time would show its coin).
        client_bytes: Each client's protocol bytes, sent plus received.
        server_ms: The server's time this round, in ms.
        captured: ``(client, masked input, true input)`` when asked for.
        aborted: Whether the protocol round aborted.
        recovered: The average update as the server decoded it (the plain average without
            an aggregator; None when nothing was averaged).
        reference: The plain weighted average of the members' updates (None when nothing
            was averaged).
    """

    average: dict[str, torch.Tensor] | None
    trained: dict[int, LocalUpdate]
    members: list[int]
    dropped: dict[int, str]
    dropouts: dict[int, str] = field(default_factory=dict)
    max_abs_error: float = 0.0
    error_bound: float = 0.0
    client_ms: dict[int, float] = field(default_factory=dict)
    client_bytes: dict[int, int] = field(default_factory=dict)
    server_ms: float = 0.0
    captured: tuple[int, npt.NDArray[Any], npt.NDArray[Any]] | None = None
    aborted: bool = False
    recovered: npt.NDArray[np.float64] | None = None
    reference: npt.NDArray[np.float64] | None = None


def run_round(
    clients: Mapping[int, LocalTrainer],
    global_state: Mapping[str, torch.Tensor],
    *,
    aggregator: SecureAggregator | None,
    dropout: tuple[int, Stage] | None = None,
    rng: np.random.Generator,
    capture_client: bool = False,
    on_progress: OnProgress | None = None,
    round_index: int = 1,
    rounds: int | None = None,
    weighting: str = "uniform",
) -> RoundOutcome:
    """One round: every client that can afford it trains; the members' updates are averaged.

    A client over budget declines (reason "budget"). The average is None when nothing could
    be averaged.

    Parameters:
        clients: Each client's trainer, by client id.
        global_state: The server's model tensors, by parameter name.
        aggregator: Sums the updates securely (in-process simulation); None: plain average.
        dropout: ``(client, stage)``: that client goes silent at that protocol stage (with
            no aggregator, its update is lost unless it drops at UNMASK, after sending it).
        rng: Drives the stochastic rounding of the encoding.
        capture_client: Keep one masked input as the server saw it.
        on_progress: Gets a :class:`ProgressEvent` as each client's turn starts ("train",
            then "declined" if it is over budget) and before the aggregation.
        round_index: The round's number (from 1), for the progress events.
        rounds: The run's round count, for the progress events.
        weighting: The plain average's rule (the aggregator's own rule applies when there is
            one).

    Returns:
        The round's outcome: ``dropouts`` lists every client that declined or went silent,
        with the stage, whether or not its update is in the average (``dropped`` lists only
        the clients left out).

    Raises:
        ConfigError: An aggregator under hidden sampling with clients that flip no coin
            (hidden sampling runs only in ``run_federated``), or a ``HiddenCoin``
            whose rate or length differs from the aggregator's hidden settings (or with no
            such settings).
    """

    def tell(stage: str, **kw: Any) -> None:
        if on_progress is not None:
            on_progress(ProgressEvent(round_index, stage, rounds, **kw))

    dist = None if aggregator is None else aggregator.distributed
    hidden = dist is not None and dist.hidden
    if aggregator is not None and not all(isinstance(t, HiddenCoin) for t in clients.values()):
        refuse_hidden(dist, "run_round")
    check_coins(clients, dist)
    out = RoundOutcome(average=None, trained={}, members=[], dropped={})
    for cid, trainer in clients.items():
        start = time.perf_counter()
        tell("train", client=cid)
        try:
            out.trained[cid] = trainer.train_round(global_state)
        except BudgetExhaustedError:
            tell("declined", client=cid)
            out.dropped[cid] = out.dropouts[cid] = "budget"
            continue
        # hidden sampling: training (and encoding) time would show the coin; not reported
        out.client_ms[cid] = 0.0 if hidden else (time.perf_counter() - start) * 1e3
    if dropout is not None and dropout[0] not in out.trained:
        dropout = None
    if dropout is not None:
        out.dropouts[dropout[0]] = dropout[1].label
    tell("aggregate", clients=len(out.trained), secure=aggregator is not None)
    if aggregator is None:
        _plain_round(out, dropout, weighting)
    else:
        _secure_round(out, dropout, aggregator, rng, capture_client)
    if out.recovered is not None:
        out.average = unflatten(out.recovered, global_state)
    return out


def _plain_round(out: RoundOutcome, dropout: tuple[int, Stage] | None, weighting: str) -> None:
    for cid in out.trained:
        if dropout is not None and cid == dropout[0] and dropout[1] is not Stage.UNMASK:
            out.dropped[cid] = f"dropout:{dropout[1].label}"
        else:
            out.members.append(cid)
    if out.members:
        members = [out.trained[c] for c in out.members]
        out.reference = out.recovered = plain_average(members, weighting)


def _secure_round(
    out: RoundOutcome,
    dropout: tuple[int, Stage] | None,
    aggregator: SecureAggregator,
    rng: np.random.Generator,
    capture_client: bool,
) -> None:
    ids = sorted(out.trained)
    pid = {cid: i + 1 for i, cid in enumerate(ids)}  # protocol ids are 1..n
    cid_of = {p: c for c, p in pid.items()}
    encoded: dict[int, npt.NDArray[Any]] = {}
    for cid in ids:
        start = time.perf_counter()
        encoded[pid[cid]] = aggregator.encode(out.trained[cid], rng, client=cid)
        if aggregator.distributed is None or not aggregator.distributed.hidden:
            out.client_ms[cid] += (time.perf_counter() - start) * 1e3
    dropouts = {} if dropout is None else {dropout[1]: [pid[dropout[0]]]}
    watch = [p for p in sorted(encoded) if dropout is None or p != pid[dropout[0]]]
    capture = watch[:1] if capture_client else []
    try:
        if len(encoded) < 2:
            raise RoundAborted("fewer than 2 clients trained this round")
        agg = aggregator.simulate(encoded, dropouts=dropouts, capture=capture, clients=cid_of)
    except RoundAborted:
        for cid in ids:
            out.dropped[cid] = _reason(cid, dropout)
        out.aborted = True
        return
    result = agg.protocol
    assert result is not None
    out.members = sorted(cid_of[p] for p in agg.members)
    for cid in ids:
        if cid not in out.members:
            out.dropped[cid] = _reason(cid, dropout)
        cost = result.client_cost.get(pid[cid])
        if cost is not None:
            out.client_ms[cid] += cost.seconds * 1e3
            out.client_bytes[cid] = cost.bytes_sent + cost.bytes_received
    out.server_ms = (result.server_cost.seconds + agg.decode_seconds) * 1e3
    out.recovered = agg.vector
    out.reference = aggregator.reference_average([out.trained[c] for c in out.members], out.members)
    out.max_abs_error = float(np.max(np.abs(agg.vector - out.reference)))
    out.error_bound = agg.error_bound
    if capture and capture[0] in result.captured:
        p = capture[0]
        out.captured = (cid_of[p], result.captured[p], encoded[p])


def _reason(cid: int, dropout: tuple[int, Stage] | None) -> str:
    if dropout is not None and dropout[0] == cid:
        return f"dropout:{dropout[1].label}"
    return "aborted"
