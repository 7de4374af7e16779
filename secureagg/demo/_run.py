"""run_demo: the private + secure federated run and its non-private baseline, side by side."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from secureagg._exceptions import ConfigError
from secureagg.demo._config import DemoConfig
from secureagg.demo._data import DemoData, make_loaders, prepare
from secureagg.demo._models import accuracy_on, model_factory
from secureagg.demo._probe import RoundCheck, SumProbe
from secureagg.fl import FederatedResult, SecureAggConfig, run_federated
from secureagg.privacy import PrivacyConfig, PrivacyLedger
from secureagg.protocol import choose_parameters, default_threshold

__all__ = ["DemoResult", "GraphChoice", "Progress", "choose_graph", "run_demo"]

Progress = Callable[[str, int, int, str], None]
"""``progress(phase, done, total, detail)``; phases: data, private, baseline."""


class _StageTracker(nn.CrossEntropyLoss):
    """The usual loss, counting training steps to show which client trains (display only).

    run_federated trains the clients one after another in ascending id order, so the step
    count within a round says whose turn it is; after the last one the round aggregates.
    """

    def __init__(
        self, phase: str, tell: Progress, rounds: int, steps: dict[int, int], *, secure: bool
    ) -> None:
        super().__init__()
        self._phase, self._tell, self._rounds = phase, tell, rounds
        self._secure = secure
        self._ends: list[tuple[int, int]] = []
        total = 0
        for cid in sorted(steps):
            total += steps[cid]
            self._ends.append((total, cid))
        self.done = 0
        self._count = 0

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._count += 1
        cid = next((c for end, c in self._ends if self._count <= end), None)
        if cid is not None:
            n, r = len(self._ends), self.done + 1
            how = "DP-SGD" if self._secure else "SGD"
            where = f"round {r}: client {cid} of {n} training ({how})"
            if self._count == self._ends[-1][0]:
                what = "masking, summing and unmasking" if self._secure else "averaging"
                where = f"{where}, then {what} {n} updates"
            self._tell(self._phase, self.done, self._rounds, where)
        return super().forward(input, target)

    def round_done(self, line: str) -> None:
        """Called with run_federated's progress line at the end of each round."""
        self.done += 1
        self._count = 0
        self._tell(self._phase, self.done, self._rounds, line)


@dataclass(frozen=True)
class GraphChoice:
    """The neighbour graph and threshold each round uses."""

    kind: str
    degree: int
    threshold: int
    explicit_degree: int | None
    explicit_threshold: int | None


@dataclass
class DemoResult:
    """Everything the report needs: inputs, both runs, the probe's checks, wall times."""

    config: DemoConfig
    data: DemoData
    graph: GraphChoice
    private: FederatedResult
    baseline: FederatedResult
    checks: list[RoundCheck]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ledger(self) -> PrivacyLedger:
        """The private run's privacy ledger."""
        if self.private.ledger is None:
            raise ConfigError("internal: the private run kept no ledger")
        return self.private.ledger


def choose_graph(config: DemoConfig) -> GraphChoice:
    """Degree and threshold: the user's, else the protocol helper's (majority on complete).

    On the complete graph the majority is lowered, when dropouts are on, to at most
    degree - 1, so that the one client that drops cannot make a round abort (n < 6 only).
    """
    n = config.clients
    if config.graph == "complete":
        degree = n - 1
        # a majority of the neighbours, but low enough that one dropout cannot abort a round
        majority = default_threshold(degree)
        fallback = max(2, min(majority, degree - 1)) if config.dropout_rate > 0 else majority
        threshold = config.threshold or fallback
        return GraphChoice("complete", degree, threshold, None, config.threshold)
    if config.degree is not None:
        degree = config.degree
        threshold = config.threshold or default_threshold(degree)
    else:
        drop = min(1.0 / n, 0.9 - config.corrupt_fraction) if config.dropout_rate > 0 else 0.0
        params = choose_parameters(n, dropout_rate=drop, corrupt_fraction=config.corrupt_fraction)
        degree = params.degree
        threshold = config.threshold or params.threshold
    if threshold > degree:
        raise ConfigError(
            f"threshold {threshold} is above the graph degree {degree}: each client shares "
            "its keys among its neighbours only"
        )
    return GraphChoice("sparse", degree, threshold, config.degree, config.threshold)


def _privacy(config: DemoConfig) -> PrivacyConfig:
    return PrivacyConfig(
        noise_multiplier=config.noise_multiplier,
        target_epsilon=config.target_epsilon,
        max_grad_norm=config.clip_norm,
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
    )


def run_demo(config: DemoConfig, progress: Progress | None = None) -> DemoResult:
    """Train privately and securely across simulated hospitals, then the baseline.

    Both runs use the same split, loaders, model, optimiser, schedule and seed; the
    baseline has no DP (no clipping, no noise), no masking and no dropouts. ConfigError
    for a bad setting.
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
    probe = SumProbe(build, config.update_clip)

    def optimizer_fn(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=config.learning_rate)

    def eval_private(model: nn.Module) -> float:
        probe.after_round(model)
        return evaluate(model)

    def tracker(phase: str, loaders: Mapping[int, DataLoader[Any]]) -> _StageTracker:
        steps = {cid: config.local_epochs * len(loader) for cid, loader in loaders.items()}
        return _StageTracker(phase, tell, config.rounds, steps, secure=phase == "private")

    t0 = time.perf_counter()
    tell("private", 0, config.rounds, "wrapping clients with Opacus")
    loaders = make_loaders(data, config.sample_rate, config.seed)
    live = tracker("private", loaders)
    private = run_federated(
        probe.model_fn,
        loaders,
        rounds=config.rounds,
        optimizer_fn=optimizer_fn,
        local_epochs=config.local_epochs,
        privacy=_privacy(config),
        secure=_secure(config, graph),
        dropout_rate=config.dropout_rate,
        seed=config.seed,
        ledger=PrivacyLedger(),
        evaluate=eval_private,
        on_progress=live.round_done,
        capture_client=True,
        criterion=live,
    )
    t1 = time.perf_counter()
    tell("baseline", 0, config.rounds, "no DP, no masking, no dropouts")
    loaders = make_loaders(data, config.sample_rate, config.seed)
    live = tracker("baseline", loaders)
    baseline = run_federated(
        build,
        loaders,
        rounds=config.rounds,
        optimizer_fn=optimizer_fn,
        local_epochs=config.local_epochs,
        privacy=None,
        secure=None,
        dropout_rate=0.0,
        seed=config.seed,
        evaluate=evaluate,
        on_progress=live.round_done,
        criterion=live,
    )
    t2 = time.perf_counter()
    sizes = {cid: part.size for cid, part in data.clients.items()}
    models = {cid: trainer.model for cid, trainer in private.clients.items()}
    checks = probe.checks([m.members for m in private.rounds], sizes, models)
    return DemoResult(
        config=config,
        data=data,
        graph=graph,
        private=private,
        baseline=baseline,
        checks=checks,
        seconds={"data": t0 - start, "private": t1 - t0, "baseline": t2 - t1},
    )
