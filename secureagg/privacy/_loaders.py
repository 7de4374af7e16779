"""Checks on the objects a user hands to the private trainer, with errors that say what to do."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from secureagg._exceptions import ConfigError

__all__ = ["check_loader", "check_model", "check_optimizer"]

_MARK = "_secureagg_private_trainer"


def check_model(model: object) -> nn.Module:
    """The model, if Opacus can train it privately and no PrivateTrainer owns it yet."""
    from opacus.grad_sample import AbstractGradSampleModule
    from opacus.validators import ModuleValidator

    if isinstance(model, AbstractGradSampleModule) or getattr(model, _MARK, False):
        raise ConfigError(
            "this model is already wrapped for DP (make_private was called on it): create "
            "one PrivateTrainer per client, once, and call train_round() every round; a "
            "second wrap would start a fresh privacy accountant and under-count epsilon"
        )
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        found = "; ".join(sorted({str(e) for e in errors}))
        raise ConfigError(
            f"Opacus cannot train this model privately: {found}. Fix it with "
            "`model = opacus.validators.ModuleValidator.fix(model)` (e.g. BatchNorm -> "
            "GroupNorm) and build the optimizer AFTER that, over the fixed model's parameters"
        )
    return model


def mark_owned(model: nn.Module) -> None:
    """Record on the model that a PrivateTrainer owns it (so a second wrap fails loudly)."""
    object.__setattr__(model, _MARK, True)


def check_optimizer(optimizer: object, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer, if it is a plain one over this model's parameters."""
    from opacus.optimizers import DPOptimizer

    if isinstance(optimizer, DPOptimizer):
        raise ConfigError(
            "the optimizer is already a DPOptimizer: pass the plain optimizer; "
            "PrivateTrainer calls make_private once for the client's lifetime"
        )
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer)}")
    own = {id(p) for p in model.parameters()}
    params: Iterable[torch.Tensor] = (p for g in optimizer.param_groups for p in g["params"])
    foreign = sum(1 for p in params if id(p) not in own)
    if foreign:
        raise ConfigError(
            f"the optimizer holds {foreign} parameter tensor(s) that are not the model's: "
            "it was built over another model (typically before ModuleValidator.fix, which "
            "returns a new model). Build the optimizer from the model you pass here"
        )
    return optimizer


def check_loader(loader: object) -> DataLoader[object]:
    """The loader, if Opacus can Poisson-sample it: a DataLoader over a sized dataset."""
    if not isinstance(loader, DataLoader):
        raise ConfigError(f"data_loader must be a torch DataLoader, got {type(loader).__name__}")
    dataset = loader.dataset
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        raise ConfigError(
            "the data loader has no length (its dataset is iterable or unsized): Poisson "
            "sampling needs a map-style dataset with __len__ and __getitem__"
        )
    try:
        n, batches = len(dataset), len(loader)
    except TypeError as exc:
        raise ConfigError(f"the data loader has no length: {exc}") from exc
    if n == 0 or batches == 0:
        raise ConfigError("the data loader is empty")
    return loader
