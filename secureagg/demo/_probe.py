"""An independent check of each round: the plain average of the survivors' updates.

run_federated reports ``max_abs_error`` itself; the probe recomputes the true side from the
clients' own models (it keeps the models the run builds through ``model_fn``) and the
recovered side from the change of the global model, for the report's scatter plot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from torch import nn

from secureagg._exceptions import ConfigError
from secureagg.privacy import flatten, parameters_of

__all__ = ["RoundCheck", "SumProbe"]

F64 = npt.NDArray[np.float64]


def _vector(model: nn.Module) -> npt.NDArray[np.float32]:
    return np.asarray(flatten(parameters_of(model)), dtype=np.float32).copy()


@dataclass(frozen=True)
class RoundCheck:
    """One round: what the server recovered and the true weighted average of the members."""

    recovered: F64
    true: F64

    @property
    def max_abs_error(self) -> float:
        """Largest coordinate difference."""
        return float(np.max(np.abs(self.recovered - self.true))) if self.true.size else 0.0


class SumProbe:
    """Wraps ``model_fn``; call :meth:`after_round` with the global model after every round.

    The first model built is the global one, the next ones the clients' in ascending id
    order (how run_federated builds them); :meth:`checks` verifies that mapping.
    """

    def __init__(
        self, model_fn: Callable[[], nn.Module], client_ids: Sequence[int], update_clip: float
    ) -> None:
        self._inner = model_fn
        self._ids = sorted(client_ids)
        self._clip = update_clip
        self._models: list[nn.Module] = []
        self._start: npt.NDArray[np.float32] | None = None
        self._rounds: list[
            tuple[
                npt.NDArray[np.float32], npt.NDArray[np.float32], dict[int, npt.NDArray[np.float32]]
            ]
        ] = []

    def model_fn(self) -> nn.Module:
        """Build a model with the wrapped builder and keep it."""
        model = self._inner()
        if not self._models:
            self._start = _vector(model)
        self._models.append(model)
        return model

    def after_round(self, global_model: nn.Module) -> None:
        """Record the global model and every client's local model after a round."""
        if len(self._models) != len(self._ids) + 1 or global_model is not self._models[0]:
            raise ConfigError("internal: the probe cannot map models to clients")
        assert self._start is not None
        before = self._start if not self._rounds else self._rounds[-1][1]
        after = _vector(global_model)
        local = {
            cid: _vector(m) - before for cid, m in zip(self._ids, self._models[1:], strict=True)
        }
        self._rounds.append((before, after, local))

    def checks(
        self, members: Sequence[Sequence[int]], examples: Mapping[int, int]
    ) -> list[RoundCheck]:
        """Per round, recovered (global change) and true (weighted plain average) vectors."""
        if len(members) != len(self._rounds):
            raise ConfigError("internal: the probe saw a different number of rounds")
        out: list[RoundCheck] = []
        for (before, after, local), who in zip(self._rounds, members, strict=True):
            recovered = after.astype(np.float64) - before.astype(np.float64)
            if not who:
                out.append(RoundCheck(recovered, np.zeros_like(recovered)))
                continue
            total = np.zeros_like(recovered)
            weight = 0
            for cid in who:
                total += examples[cid] * self._clipped(local[cid]).astype(np.float64)
                weight += examples[cid]
            out.append(RoundCheck(recovered, total / weight))
        return out

    def _clipped(self, update: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        norm = float(np.linalg.norm(update.astype(np.float64)))
        if norm > self._clip:
            return (update * np.float32(self._clip / norm)).astype(np.float32)
        return update
