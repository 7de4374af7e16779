"""The demo's own check of each round: the decoded secure average against the true one.

run_federated reports ``max_abs_error`` itself; the demo recomputes the true side on its
own: the weighted average of the members' updates (as each client encoded them), weighted
by the client sizes of the demo's split, against the average the server decoded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from secureagg._exceptions import ConfigError
from secureagg.fl import RoundMetrics

__all__ = ["RoundCheck", "check_rounds"]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RoundCheck:
    """One round: what the server recovered and the true weighted average of the members."""

    recovered: F64
    true: F64

    @property
    def max_abs_error(self) -> float:
        """Largest coordinate difference (0 for a round that aggregated nothing)."""
        return float(np.max(np.abs(self.recovered - self.true))) if self.true.size else 0.0


def check_rounds(
    rounds: Sequence[RoundMetrics],
    sizes: Mapping[int, int],
    weighting: str = "uniform",
    clip: float | None = None,
) -> list[RoundCheck]:
    """Per round, the recovered average and the true average of its members.

    ``rounds`` must come from ``run_federated(..., keep_vectors=True)``; ``sizes`` are the
    clients' example counts, the weights under ``weighting="examples-public"`` (under
    ``"uniform"`` every member weighs 1). With ``clip`` (client-level DP) each update is
    first L2-clipped to it, as the clients encode it.
    """
    weight = dict(sizes) if weighting == "examples-public" else dict.fromkeys(sizes, 1)
    out: list[RoundCheck] = []
    for m in rounds:
        if m.recovered is None:
            out.append(RoundCheck(np.zeros(0), np.zeros(0)))
            continue
        if any(c not in m.updates for c in m.members):
            raise ConfigError("internal: run_federated kept no updates (keep_vectors=True)")
        total = np.zeros(m.recovered.shape[0], dtype=np.float64)
        for cid in m.members:
            v = m.updates[cid].vector.astype(np.float64)
            norm = float(np.linalg.norm(v))
            if clip is not None and norm > clip:
                v = v * (clip / norm)
            total += weight[cid] * v
        out.append(RoundCheck(m.recovered, total / sum(weight[c] for c in m.members)))
    return out
