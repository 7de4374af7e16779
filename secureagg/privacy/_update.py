"""LocalUpdate: what one client's round produced (no torch here, so encoders stay light)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["LocalUpdate"]


@dataclass(frozen=True)
class LocalUpdate:
    """One client's round: ``vector`` = local minus global parameters (float32, flat).

    ``norm`` is the update's L2 norm before any user-level clipping; ``clipped`` says
    whether ``update_clip`` scaled it down.
    """

    vector: npt.NDArray[np.float32]
    num_examples: int
    steps: int
    norm: float = 0.0
    clipped: bool = False
