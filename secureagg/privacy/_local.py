"""The one local-training loop of the private and the plain trainer, and its helpers."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader

from secureagg._exceptions import ConfigError
from secureagg.privacy._batches import split_batch, to_device
from secureagg.privacy._tensors import flatten, parameters_of
from secureagg.privacy._update import LocalUpdate

__all__ = ["clip_update", "load_global_state", "round_batches", "train_local"]

_PREFIX = "_module."
"""The prefix Opacus' GradSampleModule puts before a wrapped model's parameter names."""


def load_global_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy the server's tensors into ``model`` in place (Opacus's ``_module.`` prefix is dropped).

    Parameters:
        model: The client's model.
        state: The server's tensors, by parameter name.

    Raises:
        ConfigError: A trainable parameter is missing or has another shape.
    """
    if not isinstance(state, Mapping):
        raise ConfigError(f"global_state must be a mapping of tensors, got {type(state)}")
    own = model.state_dict(keep_vars=True)
    clean: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key[len(_PREFIX) :] if key.startswith(_PREFIX) else key
        if name not in own:
            raise ConfigError(f"server sent {key!r}, which the client's model does not have")
        if not isinstance(value, torch.Tensor):
            raise ConfigError(f"server value for {key!r} is a {type(value).__name__}")
        if tuple(value.shape) != tuple(own[name].shape):
            raise ConfigError(
                f"mismatched shapes between server and client for {name!r}: server "
                f"{tuple(value.shape)}, client {tuple(own[name].shape)}"
            )
        clean[name] = value
    missing = [n for n in parameters_of(model) if n not in clean]
    if missing:
        raise ConfigError(f"server state lacks the client's parameters {missing[:5]}")
    with torch.no_grad():
        for name, value in clean.items():
            own[name].copy_(value)


def round_batches(loader: DataLoader[Any], epochs: int | None, steps: int | None) -> Iterator[Any]:
    """The loader's batches for ``epochs`` epochs, or exactly ``steps`` steps if given.

    Parameters:
        loader: The client's data.
        epochs: Epochs to go through (used when ``steps`` is None).
        steps: Exactly this many batches, cycling through the loader.

    Returns:
        An iterator over the batches.
    """
    if steps is None:
        for _ in range(epochs or 1):
            yield from loader
        return
    done = 0
    while done < steps:
        for batch in loader:
            yield batch
            done += 1
            if done == steps:
                return


def train_local(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    criterion: Callable[..., Any],
    batches: Iterable[Any],
    global_state: Mapping[str, torch.Tensor],
    *,
    update_clip: float | None,
    num_examples: int,
) -> LocalUpdate:
    """Load ``global_state`` into ``model``, take one step per batch, return local minus global.

    The one local-training loop of the private and the plain trainer. Each batch first
    moves to the model's device (the device of its first parameter; see
    :func:`to_device`), so a CPU DataLoader feeds a CUDA model. A batch is
    ``(*inputs, target)`` (tuple or list) for ``model(*inputs)``, or a dict with its target
    under "labels" or "target" and keyword inputs under the other keys for
    ``model(**inputs)``.

    Parameters:
        model: The client's model.
        optimizer: An optimizer over ``model``'s parameters.
        criterion: Returns the loss (a tensor, or Opacus's ghost clipping loss).
        batches: The round's batches.
        global_state: The server's tensors, by parameter name.
        update_clip: L2 bound of the whole update, if any.
        num_examples: The client's example count, recorded in the update.

    Returns:
        The update, local minus global.
    """
    load_global_state(model, global_state)
    start = flatten(parameters_of(model)).copy()
    device = next(iter(model.parameters())).device
    model.train()
    steps = 0
    for batch in batches:
        args, kwargs, target = split_batch(to_device(batch, device))
        optimizer.zero_grad(set_to_none=True)
        criterion(model(*args, **kwargs), target).backward()
        optimizer.step()
        steps += 1
    optimizer.zero_grad(set_to_none=True)
    delta = flatten(parameters_of(model)) - start
    return clip_update(delta, update_clip, num_examples, steps)


def clip_update(
    vector: npt.NDArray[np.float32], update_clip: float | None, num_examples: int, steps: int
) -> LocalUpdate:
    """A LocalUpdate of ``vector`` with its L2 norm scaled down to ``update_clip`` if above it."""
    norm = float(np.linalg.norm(vector.astype(np.float64)))
    if not math.isfinite(norm):
        raise ConfigError("the local update is not finite (diverged training?)")
    clipped = update_clip is not None and norm > update_clip
    if clipped:
        assert update_clip is not None
        vector = (vector * np.float32(update_clip / norm)).astype(np.float32)
    return LocalUpdate(vector, num_examples, steps, norm, clipped)
