"""run_demo: the private + secure federated run and its non-private baseline, side by side."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from secureagg._exceptions import ConfigError
from secureagg.demo._check import RoundCheck, check_rounds
from secureagg.demo._config import DemoConfig
from secureagg.demo._data import DemoData, make_loaders, prepare
from secureagg.demo._models import accuracy_on, model_factory
from secureagg.fl import (
    DistributedDP,
    FederatedResult,
    ProgressEvent,
    SecureAggConfig,
    run_federated,
)
from secureagg.privacy import DistributedLedger, PrivacyConfig, PrivacyLedger
from secureagg.protocol import default_threshold, plan_round

__all__ = [
    "DemoResult",
    "GraphChoice",
    "Progress",
    "choose_graph",
    "client_level_settings",
    "run_demo",
]

Progress = Callable[[str, int, int, str], None]
"""``progress(phase, done, total, detail)``; phases: data, private, baseline."""


def _relay(
    phase: str, tell: Progress, rounds: int, n: int, how: str | None = None
) -> Callable[[ProgressEvent], None]:
    """run_federated's progress events as ``tell(phase, done, total, detail)`` lines."""
    how = how or ("DP-SGD" if phase == "private" else "SGD")

    def on_progress(event: ProgressEvent) -> None:
        if event.stage == "train":
            detail = f"round {event.round}: client {event.client} of {n} training ({how})"
        else:
            detail = str(event)
        tell(phase, event.round - (event.stage != "done"), rounds, detail)

    return on_progress


@dataclass(frozen=True)
class GraphChoice:
    """The neighbour graph and threshold each round uses."""

    kind: str
    degree: int
    threshold: int
    explicit_degree: int | None
    explicit_threshold: int | None

    @property
    def majority(self) -> int:
        """The lowest threshold above half a neighbourhood (the client included)."""
        return default_threshold(self.degree)

    @property
    def below_majority(self) -> bool:
        """True when the demo's clients run with the minority-threshold opt-out."""
        return self.threshold < self.majority

    def note(self) -> str | None:
        """What the output and the report say when the threshold is below a majority."""
        if not self.below_majority:
            return None
        return (
            f"threshold {self.threshold} is below a majority of a neighbourhood of "
            f"{self.degree + 1} (at least {self.majority}): the clients run with the "
            "protocol's minority-threshold opt-out, for simulation only; a deployment's "
            "clients refuse it"
        )


@dataclass
class DemoResult:
    """Everything the report needs: inputs, both runs, the demo's own checks, wall times."""

    config: DemoConfig
    data: DemoData
    graph: GraphChoice
    private: FederatedResult
    baseline: FederatedResult
    checks: list[RoundCheck]
    seconds: dict[str, float] = field(default_factory=dict)
    distributed: DistributedLedger | None = None

    @property
    def ledger(self) -> PrivacyLedger:
        """The private run's (example-level) privacy ledger."""
        if self.private.ledger is None:
            raise ConfigError("internal: the private run kept no ledger")
        return self.private.ledger


def choose_graph(config: DemoConfig) -> GraphChoice:
    """Degree and threshold from the protocol's :func:`plan_round`: the user's, else a
    majority on the complete graph, or the helper's on the sparse one.

    On the complete graph the majority is lowered, when dropouts are on, to at most
    degree - 1, so that the one client that drops cannot make a round abort (n < 6 only).
    A threshold below a majority is allowed here (a simulation) and said so in the output
    and the report (:meth:`GraphChoice.note`).
    """
    n = config.clients
    if config.privacy == "client":  # the complete graph over each round's sampled clients
        degree = max(2, round(config.expected_clients) - 1)
        return GraphChoice("complete", degree, config.client_threshold, None, config.threshold)
    if config.graph == "complete":
        majority = default_threshold(n - 1)
        fallback = max(2, min(majority, n - 2)) if config.dropout_rate > 0 else majority
        threshold = config.threshold or fallback
        plan = plan_round(n, threshold=threshold, allow_minority_threshold=True)
        return GraphChoice("complete", plan.degree, plan.threshold, None, config.threshold)
    if config.degree is not None:
        top = config.degree
        plan_args: dict[str, Any] = {"degree": config.degree}
    else:
        drop = min(1.0 / n, 0.9 - config.corrupt_fraction) if config.dropout_rate > 0 else 0.0
        plan_args = {"dropout_rate": drop, "corrupt_fraction": config.corrupt_fraction}
        top = plan_round(n, allow_minority_threshold=True, **plan_args).degree
    if config.threshold is not None and config.threshold > top:
        raise ConfigError(
            f"threshold {config.threshold} is above the graph degree {top}: each client "
            "shares its keys among its neighbours only"
        )
    plan = plan_round(n, threshold=config.threshold, allow_minority_threshold=True, **plan_args)
    return GraphChoice("sparse", plan.degree, plan.threshold, config.degree, config.threshold)


def _privacy(config: DemoConfig) -> PrivacyConfig:
    return PrivacyConfig(
        noise_multiplier=config.noise_multiplier,
        target_epsilon=config.target_epsilon,
        max_grad_norm=config.max_grad_norm,
        delta=config.delta,
        update_clip=config.update_clip,
    )


def _secure(config: DemoConfig, graph: GraphChoice) -> SecureAggConfig:
    return SecureAggConfig(
        frac_bits=config.frac_bits,
        clip=config.update_clip,
        degree=None if graph.kind == "complete" else graph.degree,
        threshold=graph.threshold,
        signed=config.signed,
        weighting=config.weighting,
        allow_minority_threshold=graph.below_majority,
    )


def run_demo(
    config: DemoConfig,
    progress: Progress | None = None,
    *,
    ledger_path: str | os.PathLike[str] | None = None,
) -> DemoResult:
    """Train privately and securely across simulated hospitals, then the baseline.

    Both runs use the same split, loaders, model, optimiser, schedule and seed (the seed
    never reaches the DP noise); the baseline has no DP (no clipping, no noise), no
    masking and no dropouts. With ``ledger_path`` the privacy ledger is written there,
    atomically, after every round, so an interrupted run leaves the record of every round
    already released. ConfigError for a bad setting.

    With ``privacy="client"`` the private run is client-level distributed DP instead
    (:func:`client_level_settings`): plain local SGD, each client joins a round by its own
    OS coin, clips its update and adds a noise share inside the masked sum; the ledger is a
    :class:`~secureagg.privacy.DistributedLedger`. Its baseline trains every client every
    round without clipping, noise or masking.
    """
    config.validate()
    graph = choose_graph(config)
    tell: Progress = progress or (lambda *_: None)
    start = time.perf_counter()
    tell("data", 0, 1, f"loading {config.dataset}")
    data = prepare(
        config.dataset,
        config.clients,
        test_fraction=config.test_fraction,
        skew=config.skew,
        min_examples=config.min_examples,
        seed=config.seed,
    )
    tell("data", 1, 1, f"{len(data.clients)} clients, {data.y_test.shape[0]} held-out examples")
    evaluate = accuracy_on(data.x_test, data.y_test)
    build = model_factory(data.n_features, data.n_classes, config.hidden)

    def optimizer_fn(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=config.learning_rate)

    client_level = config.privacy == "client"

    def run(phase: str, **kw: Any) -> FederatedResult:
        how = "clip + noise share" if client_level and phase == "private" else None
        rate = 1.0 if client_level else config.sample_rate  # full-batch local SGD
        loaders = make_loaders(data, rate, config.seed)  # fresh samplers
        return run_federated(
            build,
            loaders,
            rounds=config.rounds,
            optimizer_fn=optimizer_fn,
            local_epochs=config.local_epochs,
            seed=config.seed,
            evaluate=evaluate,
            on_progress=_relay(phase, tell, config.rounds, len(loaders), how),
            **kw,
        )

    t0 = time.perf_counter()
    book = None
    if client_level:
        book = DistributedLedger(ledger_path)
        tell("private", 0, config.rounds, "planning the noise shares")
        private = run(
            "private",
            privacy=None,
            secure=SecureAggConfig(threshold=graph.threshold, signed=config.signed),
            distributed=client_level_settings(config),
            distributed_ledger=book,
            dropout_rate=config.dropout_rate,
            capture_client=True,
            keep_vectors=True,
        )
    else:
        tell("private", 0, config.rounds, "wrapping clients with Opacus")
        private = run(
            "private",
            privacy=_privacy(config),
            secure=_secure(config, graph),
            dropout_rate=config.dropout_rate,
            ledger=PrivacyLedger(ledger_path),
            capture_client=True,
            keep_vectors=True,
        )
    t1 = time.perf_counter()
    tell("baseline", 0, config.rounds, "no DP, no masking, no dropouts")
    baseline = run(
        "baseline", privacy=None, secure=None, dropout_rate=0.0, weighting=config.weighting
    )
    t2 = time.perf_counter()
    sizes = {cid: part.size for cid, part in data.clients.items()}
    clip = config.update_clip if client_level else None
    checks = check_rounds(private.rounds, sizes, config.weighting, clip)
    return DemoResult(
        config=config,
        data=data,
        graph=graph,
        private=private,
        baseline=baseline,
        checks=checks,
        seconds={"data": t0 - start, "private": t1 - t0, "baseline": t2 - t1},
        distributed=book,
    )


def client_level_settings(config: DemoConfig) -> DistributedDP:
    """The distributed-DP settings of a ``privacy="client"`` demo.

    Parameters:
        config: The demo's settings.

    Returns:
        The target, clip, bits, colluders and each client's OS-coin rate.
    """
    if config.target_epsilon is None:
        raise ConfigError("--privacy client is calibrated to a --target-epsilon")
    return DistributedDP(
        epsilon=config.target_epsilon,
        delta=config.delta,
        update_clip=config.update_clip,
        rounds=config.rounds,
        bits=config.bits,
        colluders=config.colluders,
        sample_rate=config.client_rate,
    )
