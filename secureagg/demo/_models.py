"""The demo's models (Opacus-compatible) and held-out accuracy."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from secureagg.demo._data import F32, I64

__all__ = ["accuracy_on", "model_factory"]


def model_factory(n_features: int, n_classes: int, hidden: int = 0) -> Callable[[], nn.Module]:
    """A builder of fresh models: logistic regression, or one hidden ReLU layer if ``hidden``."""

    def build() -> nn.Module:
        if hidden <= 0:
            return nn.Linear(n_features, n_classes)
        return nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    return build


def accuracy_on(x: F32, y: I64) -> Callable[[nn.Module], float]:
    """An ``evaluate`` callback: the model's accuracy on (x, y)."""
    xt = torch.from_numpy(np.ascontiguousarray(x))
    yt = torch.from_numpy(np.ascontiguousarray(y))

    def evaluate(model: nn.Module) -> float:
        with torch.no_grad():
            pred = model(xt).argmax(dim=1)
        return float((pred == yt).double().mean())

    return evaluate
