"""Empirical privacy audit in one training run (Steinke, Nasr and Jagielski, NeurIPS 2023).

The task: scikit-learn's bundled digits (1,797 8x8 images, no download), a linear softmax
model trained by secureagg's own :class:`PrivateTrainer` (the path a user gets: Opacus
DP-SGD with Poisson sampling, clipping and Gaussian noise from the OS CSPRNG, in the
trainer's ``ghost`` or ``hooks`` mode). m canaries
are added as extra examples, each included in the training set by a fair coin. Canary i is
the input that is ``scale`` in its own extra feature and 0 elsewhere, with a random label, so
its gradient moves only its own column of weights (an input-space version of the paper's
"Dirac canary"). The white-box score of canary i is how much training raised its label's
weight in that column relative to the other labels. The auditor guesses "included" for the
r/2 highest scores and "excluded" for the r/2 lowest; the paper's bound turns the number of
right guesses into an epsilon lower bound. Several r are tried with a Bonferroni correction,
so the reported bound keeps its confidence level.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from secureagg._exceptions import ConfigError
from secureagg.privacy.accounting import Step, epsilons
from secureagg.privacy.audit._bound import epsilon_lower_bound

__all__ = ["EmpiricalAudit", "EmpiricalConfig", "GuessResult", "run_empirical_audit"]


@dataclass(frozen=True)
class EmpiricalConfig:
    """One audited training run; ``noise_multiplier=0`` turns the noise off."""

    canaries: int = 1000
    noise_multiplier: float = 1.0
    sample_rate: float = 0.05
    epochs: int = 20
    max_grad_norm: float = 1.0
    learning_rate: float = 2.0
    delta: float = 1e-5
    confidence: float = 0.95
    canary_scale: float = 10.0
    guesses: tuple[int, ...] = ()
    seed: int = 0
    grad_sample_mode: str = "auto"

    def __post_init__(self) -> None:
        from secureagg.privacy._modes import GRAD_SAMPLE_MODES

        checks = [
            (
                self.grad_sample_mode in GRAD_SAMPLE_MODES,
                f"grad_sample_mode must be one of {GRAD_SAMPLE_MODES}",
            ),
            (self.canaries >= 10, "canaries must be >= 10"),
            (
                math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0,
                "noise_multiplier must be finite and >= 0",
            ),
            (0 < self.sample_rate <= 1, "sample_rate must be in (0, 1]"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.max_grad_norm > 0, "max_grad_norm must be > 0"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (0 < self.delta < 1, "delta must be in (0, 1)"),
            (0 < self.confidence < 1, "confidence must be in (0, 1)"),
            (self.canary_scale > 0, "canary_scale must be > 0"),
            (
                all(2 <= r <= self.canaries for r in self.guesses),
                "each number of guesses must be in [2, canaries]",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"empirical audit: {message}")

    def guess_counts(self) -> tuple[int, ...]:
        """The numbers of guesses r tried (default: m/20, m/10, m/5, m/2, m)."""
        if self.guesses:
            return tuple(sorted(set(self.guesses)))
        m = self.canaries
        return tuple(sorted({max(2, m // k) for k in (20, 10, 5, 2, 1)}))


@dataclass(frozen=True)
class GuessResult:
    """Guessing on the r most confident canaries: v right, and the bound it proves."""

    r: int
    v: int
    lower_bound: float


@dataclass(frozen=True)
class EmpiricalAudit:
    """The result: the lower bound next to the accountants' upper bounds for the same run."""

    config: EmpiricalConfig
    steps: int
    sample_rate: float
    included: int
    lower_bound: float
    best: GuessResult
    per_guess: list[GuessResult]
    upper_bounds: dict[str, float]
    test_accuracy: float
    seconds: float
    scores: list[float] = field(repr=False, default_factory=list)

    grad_sample_mode: str = ""

    @property
    def upper_bound(self) -> float:
        """The tightest accountant's epsilon for this run."""
        return min(self.upper_bounds.values())

    @property
    def violated(self) -> bool:
        """True when the run proves more leakage than the accountants allow: the trainer
        does not do what it is accounted for (e.g. its noise is missing)."""
        return self.lower_bound > self.upper_bound

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (infinite upper bounds as null)."""
        return {
            "method": "Steinke, Nasr & Jagielski 2023, one training run, white-box canaries",
            "config": {**asdict(self.config), "guesses": list(self.config.guess_counts())},
            "steps": self.steps,
            "sample_rate": self.sample_rate,
            "canaries_included": self.included,
            "lower_bound": self.lower_bound,
            "best_guess": asdict(self.best),
            "per_guess": [asdict(g) for g in self.per_guess],
            "upper_bounds": {
                k: (v if math.isfinite(v) else None) for k, v in self.upper_bounds.items()
            },
            "test_accuracy": self.test_accuracy,
            "trainer": f"secureagg PrivateTrainer, {self.grad_sample_mode} mode",
            "violated": self.violated,
            "seconds": round(self.seconds, 3),
        }


def _data(cfg: EmpiricalConfig, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32) / 16.0
    order = rng.permutation(len(y))
    cut = int(0.8 * len(y))
    train, test = order[:cut], order[cut:]
    m, d = cfg.canaries, x.shape[1]
    canary_x = np.zeros((m, d + m), dtype=np.float32)
    canary_x[np.arange(m), d + np.arange(m)] = cfg.canary_scale
    canary_y = rng.integers(0, 10, size=m)
    included = rng.random(m) < 0.5
    pad = np.zeros((len(train), m), dtype=np.float32)
    train_x = np.vstack([np.hstack([x[train], pad]), canary_x[included]])
    train_y = np.concatenate([y[train], canary_y[included]])
    test_x = np.hstack([x[test], np.zeros((len(test), m), dtype=np.float32)])
    return train_x, train_y, test_x, y[test], canary_y, included


def _train(cfg: EmpiricalConfig, train_x: np.ndarray, train_y: np.ndarray) -> tuple[Any, ...]:
    """One PrivateTrainer round of ``cfg.epochs`` local epochs, as a user would run it."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from secureagg.privacy._trainer import PrivateTrainer

    torch.manual_seed(cfg.seed)  # the initial weights; the DP noise never sees this seed
    model = torch.nn.Linear(train_x.shape[1], 10)
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    data = TensorDataset(torch.from_numpy(train_x), torch.from_numpy(train_y).long())
    batch = max(1, round(cfg.sample_rate * len(data)))
    loader = DataLoader(data, batch_size=batch)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.learning_rate)
    trainer = PrivateTrainer(
        model,
        optimizer,
        loader,
        noise_multiplier=cfg.noise_multiplier,
        max_grad_norm=cfg.max_grad_norm,
        delta=cfg.delta,
        local_epochs=cfg.epochs,
        grad_sample_mode=cfg.grad_sample_mode,
    )
    update = trainer.train_round(start)
    weight = model.weight.detach() - start["weight"]
    return weight, model, update.steps, trainer.sample_rate, trainer.grad_sample_mode


def _guess(scores: np.ndarray, included: np.ndarray, r: int) -> int:
    order = np.argsort(scores, kind="stable")
    top, bottom = order[len(order) - (r - r // 2) :], order[: r // 2]
    return int(included[top].sum() + (~included[bottom]).sum())


def run_empirical_audit(config: EmpiricalConfig | None = None) -> EmpiricalAudit:
    """Train once with canaries and return the epsilon lower bound it proves."""
    import torch

    cfg = config or EmpiricalConfig()
    began = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    train_x, train_y, test_x, test_y, canary_y, included = _data(cfg, rng)
    delta_w, model, steps, q, mode = _train(cfg, train_x, train_y)
    d = test_x.shape[1] - cfg.canaries
    cols = delta_w[:, d:].numpy().astype(np.float64)  # (10, m): each canary's own column
    m = cfg.canaries
    own = cols[canary_y, np.arange(m)]
    others = (cols.sum(axis=0) - own) / 9.0
    scores = own - others
    level = 1 - (1 - cfg.confidence) / len(cfg.guess_counts())  # Bonferroni over the r tried
    results = []
    for r in cfg.guess_counts():
        v = _guess(scores, included, r)
        bound = epsilon_lower_bound(m, r, v, delta=cfg.delta, confidence=level)
        results.append(GuessResult(r, v, bound))
    best = max(results, key=lambda g: g.lower_bound)
    with torch.no_grad():
        logits = model(torch.from_numpy(test_x))
        accuracy = float((logits.argmax(1).numpy() == test_y).mean())
    upper = epsilons([Step(cfg.noise_multiplier, q, steps)], cfg.delta)
    return EmpiricalAudit(
        config=cfg,
        steps=steps,
        sample_rate=q,
        included=int(included.sum()),
        lower_bound=best.lower_bound,
        best=best,
        per_guess=results,
        upper_bounds=upper,
        test_accuracy=accuracy,
        seconds=time.perf_counter() - began,
        scores=scores.tolist(),
        grad_sample_mode=mode,
    )
