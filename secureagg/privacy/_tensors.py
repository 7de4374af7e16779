"""Flatten a model's named tensors into one vector and back (the one place this is done)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from secureagg._exceptions import ConfigError

__all__ = ["check_like", "flatten", "parameters_of", "unflatten"]


def parameters_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's trainable parameters by name, detached (these are what an update covers).

    Names are the model's own (no Opacus ``_module.`` prefix: pass the unwrapped model).

    Parameters:
        model: The model.

    Returns:
        Parameter name -> tensor.
    """
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def flatten(tensors: Mapping[str, torch.Tensor]) -> npt.NDArray[np.float32]:
    """Concatenate the tensors, in the mapping's order, into one float32 vector.

    Parameters:
        tensors: Tensors by name.

    Returns:
        The flat vector.
    """
    if not tensors:
        raise ConfigError("nothing to flatten: the mapping of tensors is empty")
    parts = []
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise ConfigError(f"{name!r} is a {type(t).__name__}, not a torch.Tensor")
        if not t.is_floating_point():
            raise ConfigError(f"{name!r} has dtype {t.dtype}; only float tensors are flattened")
        parts.append(t.detach().reshape(-1).to(dtype=torch.float32))
    if len({p.device for p in parts}) > 1:
        parts = [p.cpu() for p in parts]
    return torch.cat(parts).cpu().numpy()  # one device-to-host copy for a GPU model


def check_like(vec: npt.NDArray[np.floating], like: Mapping[str, torch.Tensor]) -> int:
    """The vector length ``like`` needs; ConfigError if ``vec`` is not a 1-D vector of it."""
    d = sum(int(t.numel()) for t in like.values())
    if not isinstance(vec, np.ndarray) or vec.ndim != 1 or vec.dtype.kind != "f":
        raise ConfigError("expected a 1-D numpy float vector")
    if vec.shape[0] != d:
        raise ConfigError(
            f"vector has {vec.shape[0]} entries but the model's tensors hold {d}: "
            "server and client models differ in shape"
        )
    return d


def unflatten(
    vec: npt.NDArray[np.floating], like: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Split ``vec`` into tensors shaped, typed and placed like ``like``; inverse of flatten.

    Parameters:
        vec: A flat vector as long as all of ``like`` together.
        like: Tensors by name, giving order, shapes, dtypes and devices.

    Returns:
        Name -> tensor.
    """
    check_like(vec, like)
    flat = torch.from_numpy(np.ascontiguousarray(vec))
    out: dict[str, torch.Tensor] = {}
    start = 0
    for name, t in like.items():
        n = int(t.numel())
        out[name] = (
            flat[start : start + n].reshape(t.shape).to(dtype=t.dtype, device=t.device, copy=True)
        )
        start += n
    return out
