"""An independent check of each round: the plain average of the survivors' updates.

run_federated reports ``max_abs_error`` itself; the probe recomputes the true side from the
clients' own models (it keeps the models the run builds through ``model_fn``; after a round
each client's model still holds its local weights) and the recovered side from the change
of the global model, for the report's scatter plot.
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

    Every model built through :meth:`model_fn` other than the global one belongs to a
    client; :meth:`checks` maps them to client ids by identity (the trainers' ``model``).
    """

    def __init__(self, model_fn: Callable[[], nn.Module], update_clip: float) -> None:
        self._inner = model_fn
        self._clip = update_clip
        self._models: list[nn.Module] = []
        self._start: dict[int, npt.NDArray[np.float32]] = {}
        self._global: nn.Module | None = None
        self._rounds: list[list[npt.NDArray[np.float32]]] = []

    def model_fn(self) -> nn.Module:
        """Build a model with the wrapped builder and keep it."""
        model = self._inner()
        self._start[len(self._models)] = _vector(model)
        self._models.append(model)
        return model

    def after_round(self, global_model: nn.Module) -> None:
        """Record every model's parameters after a round."""
        if self._global is None:
            self._global = global_model
        if global_model is not self._global:
            raise ConfigError("internal: the probe was handed two different global models")
        self._rounds.append([_vector(m) for m in self._models])

    def checks(
        self,
        members: Sequence[Sequence[int]],
        examples: Mapping[int, int],
        client_models: Mapping[int, nn.Module],
    ) -> list[RoundCheck]:
        """Per round, recovered (global change) and true (weighted plain average) vectors."""
        if len(members) != len(self._rounds):
            raise ConfigError("internal: the probe saw a different number of rounds")
        index = {id(m): i for i, m in enumerate(self._models)}
        if self._global is None or any(id(m) not in index for m in client_models.values()):
            raise ConfigError("internal: the probe did not build every client's model")
        g = index[id(self._global)]
        slot = {cid: index[id(m)] for cid, m in client_models.items()}
        out: list[RoundCheck] = []
        before = self._start[g]
        for snap, who in zip(self._rounds, members, strict=True):
            recovered = snap[g].astype(np.float64) - before.astype(np.float64)
            total = np.zeros_like(recovered)
            weight = 0
            for cid in who:
                update = self._clipped(snap[slot[cid]] - before)
                total += examples[cid] * update.astype(np.float64)
                weight += examples[cid]
            out.append(RoundCheck(recovered, total / weight if weight else total))
            before = snap[g]
        return out

    def _clipped(self, update: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        norm = float(np.linalg.norm(update.astype(np.float64)))
        if norm > self._clip:
            return (update * np.float32(self._clip / norm)).astype(np.float32)
        return update
