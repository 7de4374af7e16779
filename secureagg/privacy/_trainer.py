"""PrivateTrainer: a client's model, optimizer and data wrapped by Opacus once for good."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from secureagg._exceptions import BudgetExhaustedError, ConfigError
from secureagg.privacy._ledger import PrivacyLedger, RoundRecord
from secureagg.privacy._loaders import check_loader, check_model, check_optimizer, mark_owned
from secureagg.privacy._local import round_batches, train_local
from secureagg.privacy._modes import choose_mode
from secureagg.privacy._privacy_config import PrivacyConfig
from secureagg.privacy._probe import fastest_mode
from secureagg.privacy._randomness import fresh_generator, reproducible_generator
from secureagg.privacy._update import LocalUpdate
from secureagg.privacy.accounting import (
    ADD_REMOVE,
    HEADLINE,
    REPLACE_ONE,
    Step,
    epsilon,
    noise_for_epsilon,
    relation_accountants,
)

__all__ = ["LocalUpdate", "PrivateTrainer"]


def _positive(name: str, value: float | None, *, allow_none: bool = True) -> float | None:
    if value is None:
        if allow_none:
            return None
        raise ConfigError(f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be finite and > 0, got {value!r}")
    return float(value)


def _count(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")
    return value


class PrivateTrainer:
    """Example-level DP-SGD for one client, for the client's whole lifetime.

    ``make_private`` runs once, here; the Opacus accountant is never reset, so
    :meth:`epsilon` covers every step this client ever took (plus ``history``, the steps a
    previous process recorded in the ledger). Each :meth:`train_round` loads the server's
    weights into the user's own ``model`` (its state-dict keys stay unprefixed), trains
    ``local_epochs`` epochs or ``local_steps`` steps with Poisson sampling, and returns the
    update. A round that would take the client past ``budget_epsilon`` raises
    BudgetExhaustedError before any step is taken.

    On a GPU: put the model on the device before building the trainer (the optimizer over
    its parameters); every batch then moves to the model's device in ``train_round``, so an
    ordinary CPU DataLoader works. A batch is ``(*inputs, target)`` (tuple or list), or a
    dict holding its target under "labels" or "target" and the model's keyword arguments
    under its other keys. The DP noise is drawn on the model's device.
    ``grad_sample_mode="auto"`` times a few steps of "ghost" and "hooks" on a copy of the
    model with a synthetic batch shaped like the loader's, and keeps the faster.

    Every round draws its DP noise and its Poisson sampling from new generators whose whole
    state comes from ``os.urandom`` (:func:`fresh_generator`); no user seed reaches them.
    ``insecure_noise_seed`` makes both repeatable, for tests only: such a trainer is not
    private (:attr:`private` is False, and its ledger records say so).

    Parameters:
        model: The client's model (on the device it trains on).
        optimizer: An optimizer over ``model``'s parameters.
        data_loader: The client's training data; its dataset size is the example count.
        noise_multiplier: Gaussian noise standard deviation relative to ``max_grad_norm``.
        target_epsilon: Instead of ``noise_multiplier``: the epsilon to reach after
            ``planned_rounds`` rounds (the noise is calibrated once, here).
        planned_rounds: The rounds ``target_epsilon`` is spread over.
        max_grad_norm: Per-example gradient clipping norm.
        delta: The delta of every epsilon this trainer reports.
        local_epochs: Epochs per round (ignored when ``local_steps`` is given).
        local_steps: Exactly this many DP-SGD steps per round.
        grad_sample_mode: "auto", "hooks", "ghost", or another mode of Opacus.
        budget_epsilon: Decline (BudgetExhaustedError) a round that would pass this epsilon.
        update_clip: L2 bound of the whole round update (user-level clipping), if any.
        insecure_noise_seed: Tests only: repeatable noise and sampling; not private.
        count_noise: Release the example count each round with Gaussian noise of this
            standard deviation (in examples, rounded to an integer), for
            ``weighting="examples-dp"``; the release is charged to the accountant. None: the
            update carries the true count, which must then not leave the client.
        criterion: The loss (default: cross-entropy).
        history: DP-SGD steps this client took in earlier processes (from the ledger).
        relation: The neighbouring relation of every epsilon, budget and calibration:
            "add-remove" (default), or "replace-one" when the example count is declared
            public and sent (``weighting="examples-public"``): sensitivity 2C, accounted
            by dp-accounting PLD with ``REPLACE_ONE`` (the only accountant that applies).

    Raises:
        ConfigError: An impossible setting, or a model or optimizer Opacus cannot train.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data_loader: DataLoader[Any],
        *,
        noise_multiplier: float | None = None,
        target_epsilon: float | None = None,
        planned_rounds: int | None = None,
        max_grad_norm: float = 1.0,
        delta: float = 1e-5,
        local_epochs: int = 1,
        local_steps: int | None = None,
        grad_sample_mode: str = "auto",
        budget_epsilon: float | None = None,
        update_clip: float | None = None,
        insecure_noise_seed: int | None = None,
        count_noise: float | None = None,
        criterion: Callable[..., torch.Tensor] | None = None,
        history: Sequence[Step] = (),
        relation: str = ADD_REMOVE,
    ) -> None:
        self.model = check_model(model)
        relation_accountants(relation)  # a known relation
        if relation == REPLACE_ONE and count_noise is not None:
            raise ConfigError("under replace-one the count is public: count_noise does not apply")
        self.relation = relation
        check_optimizer(optimizer, self.model)
        loader = check_loader(data_loader)
        self.max_grad_norm = _positive("max_grad_norm", max_grad_norm, allow_none=False) or 1.0
        self.delta = float(delta)
        if not 0 < self.delta < 1:
            raise ConfigError(f"delta must be in (0, 1), got {delta!r}")
        self.budget_epsilon = _positive("budget_epsilon", budget_epsilon)
        self.update_clip = _positive("update_clip", update_clip)
        self.local_epochs = _count("local_epochs", local_epochs) or 1
        self.local_steps = _count("local_steps", local_steps)
        self.grad_sample_mode = choose_mode(self.model, grad_sample_mode)
        self._measure_mode = grad_sample_mode == "auto"
        self.num_examples = len(loader.dataset)  # type: ignore[arg-type]
        if (noise_multiplier is None) == (target_epsilon is None):
            raise ConfigError("give exactly one of noise_multiplier and target_epsilon")
        if noise_multiplier is not None and (
            isinstance(noise_multiplier, bool)
            or not isinstance(noise_multiplier, (int, float))
            or not math.isfinite(noise_multiplier)
            or noise_multiplier < 0
        ):
            raise ConfigError(f"noise_multiplier must be finite and >= 0, got {noise_multiplier}")
        if insecure_noise_seed is not None and (
            isinstance(insecure_noise_seed, bool) or not isinstance(insecure_noise_seed, int)
        ):
            raise ConfigError(f"insecure_noise_seed must be an int, got {insecure_noise_seed!r}")
        self.insecure_noise_seed = insecure_noise_seed
        if count_noise is not None:
            _positive("count_noise", count_noise)
        self.count_noise = None if count_noise is None else float(count_noise)
        self.last_count_released = False
        prior = list(history)
        if not all(isinstance(s, Step) for s in prior):
            raise ConfigError("history must be a sequence of secureagg.privacy.Step")

        # Opacus's Poisson loader: sample rate 1/len(loader), int(1/q) steps per epoch.
        self.sample_rate = 1 / len(loader)
        per_epoch = int(1 / self.sample_rate)
        self.steps_per_round = self.local_steps or self.local_epochs * per_epoch
        if target_epsilon is not None:
            rounds = _count("planned_rounds", planned_rounds)
            if rounds is None:
                raise ConfigError("target_epsilon needs planned_rounds (the rounds it must last)")
            _positive("target_epsilon", target_epsilon)
            noise_multiplier = noise_for_epsilon(
                target_epsilon,
                sample_rate=self.sample_rate,
                steps=rounds * self.steps_per_round,
                delta=self.delta,
                relation=relation,
            )
        assert noise_multiplier is not None
        self.noise_multiplier = float(noise_multiplier)
        self._wrap(loader, optimizer, criterion)  # last: a failed check leaves no trace
        self._engine.accountant.history.extend(
            (s.noise_multiplier, s.sample_rate, s.steps) for s in prior
        )
        self.rounds_trained = 0
        self.last_steps = 0

    @classmethod
    def from_config(
        cls,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data_loader: DataLoader[Any],
        config: PrivacyConfig,
        **kwargs: Any,
    ) -> PrivateTrainer:
        """A trainer with the settings of ``config``.

        Parameters:
            model: The client's model.
            optimizer: An optimizer over ``model``'s parameters.
            data_loader: The client's training data.
            config: The DP-SGD settings.
            **kwargs: More keyword arguments of :class:`PrivateTrainer`; they add to or override
                ``config``.

        Returns:
            The trainer.
        """
        settings: dict[str, Any] = {
            "noise_multiplier": config.noise_multiplier,
            "target_epsilon": config.target_epsilon,
            "planned_rounds": config.planned_rounds,
            "max_grad_norm": config.max_grad_norm,
            "delta": config.delta,
            "grad_sample_mode": config.grad_sample_mode,
            "budget_epsilon": config.budget_epsilon,
            "update_clip": config.update_clip,
            "count_noise": config.count_noise,
        }
        settings.update(kwargs)
        return cls(model, optimizer, data_loader, **settings)

    def _wrap(
        self,
        loader: DataLoader[Any],
        optimizer: torch.optim.Optimizer,
        criterion: Callable[..., torch.Tensor] | None,
    ) -> None:
        from opacus import PrivacyEngine

        if criterion is None:
            criterion = nn.CrossEntropyLoss()
        if getattr(criterion, "reduction", "mean") != "mean":
            raise ConfigError("the criterion must average over the batch (reduction='mean')")
        if self._measure_mode:  # "auto": time both modes on this model and this data's shapes
            self.grad_sample_mode = fastest_mode(
                self.model, loader, criterion, fallback=self.grad_sample_mode
            )
        with warnings.catch_warnings():
            # Opacus' secure_mode is off: the noise and sampling generators come from os.urandom
            warnings.filterwarnings("ignore", message="Secure RNG turned off", category=UserWarning)
            self._engine = PrivacyEngine(accountant="rdp")
            out = self._engine.make_private(
                module=self.model,
                optimizer=optimizer,
                data_loader=loader,
                criterion=criterion,
                noise_multiplier=self.noise_multiplier,
                max_grad_norm=self.max_grad_norm,
                poisson_sampling=True,
                grad_sample_mode=self.grad_sample_mode,
                noise_generator=None,  # replaced by a fresh generator every round
                wrap_model=False,
            )
        mark_owned(self.model)
        if self.grad_sample_mode == "ghost":
            self._hooks, self._optimizer, self._criterion, self._loader = out
        else:
            self._hooks, self._optimizer, self._loader = out
            self._criterion = criterion

    def _reseed(self) -> None:
        """New noise and sampling generators for the coming round (OS CSPRNG unless insecure)."""
        device = next(iter(self.model.parameters())).device
        if self.insecure_noise_seed is None:
            noise, sampling = fresh_generator(device), fresh_generator("cpu")
        else:
            base = self.insecure_noise_seed * 1_000_003 + 2 * self.rounds_trained
            noise = reproducible_generator(base, device)
            sampling = reproducible_generator(base + 1, "cpu")
        self._optimizer.generator = noise
        self._loader.batch_sampler.generator = sampling

    # --- public API ------------------------------------------------------------------------

    @property
    def accountant(self) -> Any:
        """The Opacus RDP accountant that counted every step (read it, do not reset it)."""
        return self._engine.accountant

    @property
    def private(self) -> bool:
        """False when the noise is repeatable (``insecure_noise_seed``) or absent."""
        return self.insecure_noise_seed is None and self.noise_multiplier > 0

    @property
    def history(self) -> list[Step]:
        """Every DP-SGD step this client has taken, as accountant entries."""
        return [Step(float(z), float(q), int(n)) for z, q, n in self._engine.accountant.history]

    def epsilon(self, delta: float | None = None, accountant: str = HEADLINE) -> float:
        """Epsilon spent so far.

        Parameters:
            delta: The delta (default: the trainer's delta).
            accountant: Which accountant computes it.

        Returns:
            The cumulative epsilon over every step this client took (inf without noise).
        """
        return epsilon(
            self.history,
            self.delta if delta is None else delta,
            accountant,
            relation=self.relation,
        )

    def next_round_epsilon(self) -> float:
        """Epsilon the client would have spent after one more round.

        Returns:
            The cumulative epsilon after one more round, at the trainer's delta.
        """
        step = [Step(self.noise_multiplier, self.sample_rate, self.steps_per_round)]
        if self.count_noise is not None:
            step.append(Step(self.count_noise, 1.0, 1))
        return epsilon([*self.history, *step], self.delta, relation=self.relation)

    def can_train(self) -> bool:
        """Whether one more round stays within ``budget_epsilon``.

        Returns:
            False when the next round would exceed the budget.
        """
        return self.budget_epsilon is None or self.next_round_epsilon() <= self.budget_epsilon

    def record_round(
        self,
        ledger: PrivacyLedger,
        client_id: int,
        round: int,
        *,
        participated: bool = True,
        reason: str | None = None,
        run: int | None = None,
    ) -> RoundRecord:
        """Write this round into ``ledger``: the last round's steps, or none if it declined.

        A trainer with repeatable noise marks the client not private in the ledger.

        Parameters:
            ledger: The ledger to append to.
            client_id: The client's id in the ledger.
            round: The round number (from 1, as in Flower).
            participated: Whether the update reached the aggregate (default: it did).
            reason: Why not: "budget" (declined; no steps recorded) or "dropout".
            run: The run the round belongs to, if the ledger spans several.

        Returns:
            The new ledger record.
        """
        if self.insecure_noise_seed is not None:
            ledger.mark_not_private(
                client_id, "insecure_noise_seed: the DP noise and sampling were repeatable"
            )
        return ledger.record(
            client_id,
            round,
            participated=participated,
            steps=0 if reason == "budget" else self.last_steps,
            sample_rate=self.sample_rate,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=self.max_grad_norm,
            delta=self.delta,
            grad_sample_mode=self.grad_sample_mode,
            budget_epsilon=self.budget_epsilon,
            reason=None if participated else reason,
            run=run,
            count_noise=(
                self.count_noise if reason != "budget" and self.last_count_released else None
            ),
            relation=self.relation,
        )

    def train_round(self, global_state: Mapping[str, torch.Tensor]) -> LocalUpdate:
        """Load ``global_state``, train one round privately, return local minus global.

        Parameters:
            global_state: The server's model tensors, by parameter name.

        Returns:
            The update, with the example count and the steps taken.

        Raises:
            BudgetExhaustedError: The round would take the client past ``budget_epsilon``.
        """
        if not self.can_train():
            raise BudgetExhaustedError(
                f"the next round would take epsilon to {self.next_round_epsilon():.4g} "
                f"> budget {self.budget_epsilon:.4g} (spent so far {self.epsilon():.4g})"
            )
        self._reseed()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook", category=UserWarning)
            update = train_local(
                self.model,
                self._optimizer,
                self._criterion,
                round_batches(self._loader, self.local_epochs, self.local_steps),
                global_state,
                update_clip=self.update_clip,
                num_examples=self.num_examples,
            )
        self.rounds_trained += 1
        self.last_steps = update.steps
        self.last_count_released = self.count_noise is not None
        if self.count_noise is not None:
            update = dataclasses.replace(update, num_examples=self._noisy_count())
            self._engine.accountant.history.append((self.count_noise, 1.0, 1))
        return update

    def _noisy_count(self) -> int:
        """The example count plus Gaussian noise (sd ``count_noise``), rounded, at least 1."""
        assert self.count_noise is not None
        if self.insecure_noise_seed is None:
            gen = fresh_generator("cpu")
        else:
            gen = reproducible_generator(self.insecure_noise_seed * 1_000_003 - 1, "cpu")
        noise = float(torch.randn((), generator=gen, dtype=torch.float64)) * self.count_noise
        return max(1, round(self.num_examples + noise))
