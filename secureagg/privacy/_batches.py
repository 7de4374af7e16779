"""A training batch: moved to the model's device, and split into model inputs and target."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from secureagg._exceptions import ConfigError

__all__ = ["TARGET_KEYS", "split_batch", "to_device"]

TARGET_KEYS = ("labels", "target")
"""Keys under which a dict batch holds its target (the first one present is used)."""


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor in it on ``device``: tensors, and tensors nested in dicts,
    tuples (named tuples included) and lists; anything else is left as it is. Dtypes are
    kept. A tensor already there is not copied; pinned CPU memory copies to an accelerator
    asynchronously (in stream order, so the model sees the whole batch)."""
    if isinstance(batch, torch.Tensor):
        # asynchronous only towards an accelerator: a copy to the CPU must be complete
        # before the CPU reads it
        return batch.to(device, non_blocking=device.type != "cpu")
    if isinstance(batch, Mapping):
        return type(batch)({k: to_device(v, device) for k, v in batch.items()})  # type: ignore[call-arg]
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a named tuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def split_batch(batch: Any) -> tuple[tuple[Any, ...], dict[str, Any], Any]:
    """(positional inputs, keyword inputs, target) of one batch.

    A tuple or list batch is ``(*inputs, target)``: ``model(*inputs)``. A dict batch holds
    its target under "labels" or "target" and the model's keyword arguments under the other
    keys: ``model(**rest)``. ConfigError for any other batch.
    """
    if isinstance(batch, Mapping):
        key = next((k for k in TARGET_KEYS if k in batch), None)
        if key is None:
            raise ConfigError(
                f"a dict batch needs its target under one of {TARGET_KEYS}, got keys "
                f"{sorted(map(str, batch))[:8]}"
            )
        return (), {str(k): v for k, v in batch.items() if k != key}, batch[key]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return tuple(batch[:-1]), {}, batch[-1]
    raise ConfigError(
        "a batch must be (*inputs, target) or a dict with a 'labels' or 'target' entry, "
        f"got {type(batch).__name__}"
    )
