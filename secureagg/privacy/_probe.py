"""Pick the faster of Opacus's "ghost" and "hooks" modes for a model by timing both.

The probe runs a few DP-SGD steps in each mode on a copy of the model, on the model's
device, with a synthetic batch shaped like one of the loader's (random floats, zero
integers: the data's values are never used), and keeps the mode with the shorter step.
The user's model, optimizer and global random state are left as they were. Results are
cached per process by model structure, batch shapes and device.
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from secureagg.privacy._batches import split_batch, to_device

__all__ = ["PROBE_STEPS", "Timer", "fastest_mode", "measure_modes", "synthetic_like"]

PROBE_STEPS = 5
"""Timed steps per mode (after one warm-up step, interleaved across modes); the median is
kept."""

Timer = Callable[[str, Callable[[], None]], float]
"""Runs one probe step of a mode and returns its duration in seconds."""

_CACHE: dict[tuple[Any, ...], str] = {}
_CACHE_SIZE = 64


def synthetic_like(batch: Any) -> Any:
    """``batch`` with every float tensor replaced by standard normals and every other tensor
    by zeros (valid class labels and embedding indices), same shapes and dtypes."""
    if isinstance(batch, torch.Tensor):
        return torch.randn_like(batch) if batch.is_floating_point() else torch.zeros_like(batch)
    if isinstance(batch, Mapping):
        return {k: synthetic_like(v) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a named tuple
        return type(batch)(*(synthetic_like(v) for v in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(synthetic_like(v) for v in batch)
    return batch


def _signature(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return ("t", tuple(value.shape), str(value.dtype))
    if isinstance(value, Mapping):
        return ("d", tuple((str(k), _signature(v)) for k, v in value.items()))
    if isinstance(value, (tuple, list)):
        return ("s", tuple(_signature(v) for v in value))
    return ("o", type(value).__name__)


def _model_signature(model: nn.Module) -> tuple[Any, ...]:
    return tuple(
        (name, type(m).__qualname__, tuple(tuple(p.shape) for p in m.parameters(recurse=False)))
        for name, m in model.named_modules()
    )


def _device_timer(device: torch.device) -> Timer:
    """CUDA: wall time between synchronisations. CPU: this process's CPU time, which other
    processes on a shared machine disturb far less than wall time."""
    cuda = device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time

    def timer(mode: str, step: Callable[[], None]) -> float:
        if cuda:
            torch.cuda.synchronize(device)
        start = clock()
        step()
        if cuda:
            torch.cuda.synchronize(device)
        return clock() - start

    return timer


def _dp_step(
    model: nn.Module, criterion: Callable[..., torch.Tensor], mode: str, batch: Any
) -> Callable[[], None]:
    """One DP-SGD step of ``mode`` on a copy of ``model`` (lr 0), as a callable."""
    from opacus import PrivacyEngine

    twin = copy.deepcopy(model)
    optimizer = torch.optim.SGD(twin.parameters(), lr=0.0)
    dummy: DataLoader[Any] = DataLoader(TensorDataset(torch.zeros(1, 1)), batch_size=1)
    with warnings.catch_warnings():
        # as in PrivateTrainer: secure_mode is off, the probe's noise protects nothing
        warnings.filterwarnings("ignore", message="Secure RNG turned off", category=UserWarning)
        out = PrivacyEngine(accountant="rdp").make_private(
            module=twin,
            optimizer=optimizer,
            data_loader=dummy,
            criterion=criterion,
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            poisson_sampling=False,
            grad_sample_mode=mode,
            wrap_model=False,
        )
    dp_optimizer = out[1]
    loss_fn = out[2] if mode == "ghost" else criterion
    args, kwargs, target = split_batch(batch)

    def step() -> None:
        dp_optimizer.zero_grad(set_to_none=True)
        loss_fn(twin(*args, **kwargs), target).backward()
        dp_optimizer.step()

    return step


def measure_modes(
    model: nn.Module,
    batch: Any,
    criterion: Callable[..., torch.Tensor],
    *,
    modes: Iterable[str] = ("hooks", "ghost"),
    steps: int = PROBE_STEPS,
    timer: Timer | None = None,
) -> dict[str, float]:
    """Median seconds per DP-SGD step of each mode that runs on this model (a mode that
    raises is left out). ``batch`` gives shapes and dtypes only (:func:`synthetic_like`)."""
    device = next(iter(model.parameters())).device
    timer = timer or _device_timer(device)
    devices = [device] if device.type == "cuda" else []
    runs: dict[str, list[float]] = {}
    with torch.random.fork_rng(devices=devices):  # the probe's noise leaves no trace
        fake = to_device(synthetic_like(batch), device)
        ready: dict[str, Callable[[], None]] = {}
        for mode in modes:
            try:
                step = _dp_step(model, criterion, mode, fake)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Full backward hook")
                    step()  # warm-up
            except Exception:  # a mode this model cannot run is not a candidate
                continue
            ready[mode] = step
            runs[mode] = []
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook")
            for _ in range(steps):  # interleaved, so a load spike hits every mode alike
                for mode, step in ready.items():
                    runs[mode].append(timer(mode, step))
    return {mode: statistics.median(times) for mode, times in runs.items()}


def fastest_mode(
    model: nn.Module,
    loader: DataLoader[Any],
    criterion: Callable[..., torch.Tensor],
    *,
    fallback: str,
    timer: Timer | None = None,
) -> str:
    """The faster of "hooks" and "ghost" for ``model`` with batches of ``loader``, by
    :func:`measure_modes` (cached per process); ``fallback`` if neither runs."""
    with torch.random.fork_rng():  # a shuffling sampler draws from the global generator
        batch = next(iter(loader))
    device = next(iter(model.parameters())).device
    key = (_model_signature(model), _signature(batch), str(device), type(criterion).__qualname__)
    if timer is None and key in _CACHE:
        return _CACHE[key]
    seconds = measure_modes(model, batch, criterion, timer=timer)
    mode = min(seconds, key=seconds.__getitem__) if seconds else fallback
    if timer is None:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = mode
    return mode
