"""PlainTrainer: the non-private local training step, the baseline of a private run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from secureagg._exceptions import ConfigError
from secureagg.privacy import LocalUpdate, round_batches, train_local

__all__ = ["PlainTrainer"]


class PlainTrainer:
    """Local SGD without DP, with the same ``train_round`` as PrivateTrainer.

    Parameters:
        model: The client's model.
        optimizer: An optimizer over ``model``'s parameters.
        data_loader: The client's training data.
        local_epochs: Epochs per round.
        update_clip: L2 bound of the whole round update, if any.
        criterion: The loss (default: cross-entropy).
    """

    grad_sample_mode = "none"

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data_loader: DataLoader[Any],
        *,
        local_epochs: int = 1,
        update_clip: float | None = None,
        criterion: Callable[..., torch.Tensor] | None = None,
    ) -> None:
        if not isinstance(data_loader, DataLoader) or not hasattr(data_loader.dataset, "__len__"):
            raise ConfigError("data_loader must be a DataLoader over a sized dataset")
        self.model = model
        self.optimizer = optimizer
        self.loader = data_loader
        self.local_epochs = local_epochs
        self.update_clip = update_clip
        self.criterion = criterion or nn.CrossEntropyLoss()
        self.num_examples = len(data_loader.dataset)
        self.last_steps = 0

    def can_train(self) -> bool:
        """Always True: a non-private client has no budget.

        Returns:
            True.
        """
        return True

    def train_round(self, global_state: Mapping[str, torch.Tensor]) -> LocalUpdate:
        """Load ``global_state``, train ``local_epochs`` epochs, return local minus global.

        Parameters:
            global_state: The server's model tensors, by parameter name.

        Returns:
            The update.
        """
        update = train_local(
            self.model,
            self.optimizer,
            self.criterion,
            round_batches(self.loader, self.local_epochs, None),
            global_state,
            update_clip=self.update_clip,
            num_examples=self.num_examples,
        )
        self.last_steps = update.steps
        return update
