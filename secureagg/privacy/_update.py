"""LocalUpdate: what one client's round produced (no torch here, so encoders stay light)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["LocalUpdate"]


@dataclass(frozen=True)
class LocalUpdate:
    """One client's round: ``vector`` = local minus global parameters (float32, flat).

    Attributes:
        vector: The update, flattened in the model's parameter order.
        num_examples: The client's example count (the update's weight in the average).
        steps: DP-SGD (or SGD) steps taken this round.
        norm: The update's L2 norm before any user-level clipping.
        clipped: Whether ``update_clip`` scaled it down.
    """

    vector: npt.NDArray[np.float32]
    num_examples: int
    steps: int
    norm: float = 0.0
    clipped: bool = False
