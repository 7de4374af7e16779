"""grad_sample_mode="auto" times ghost and hooks on the model and keeps the faster one."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import secureagg.privacy._probe as probe
from secureagg.privacy import PrivateTrainer, choose_mode
from secureagg.privacy._probe import fastest_mode, measure_modes, synthetic_like

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3)
    )


def loader() -> DataLoader[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 1, 4, 4, generator=g), torch.randint(0, 3, (40,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)


def fake_timer(slow: str, ran: list[str]) -> Callable[[str, Callable[[], None]], float]:
    """Runs the real step, reports ``slow`` as 10x slower than the other mode."""

    def timer(mode: str, step: Callable[[], None]) -> float:
        step()
        ran.append(mode)
        return 10.0 if mode == slow else 1.0

    return timer


@pytest.mark.parametrize("make", [mlp, cnn])
@pytest.mark.parametrize("slow", ["hooks", "ghost"])
def test_the_measured_faster_mode_wins_whatever_the_layer_types(
    make: Callable[[], nn.Module], slow: str
) -> None:
    ran: list[str] = []
    mode = fastest_mode(
        make(), loader(), nn.CrossEntropyLoss(), fallback="hooks", timer=fake_timer(slow, ran)
    )
    assert mode == ({"hooks", "ghost"} - {slow}).pop()
    assert sorted(set(ran)) == ["ghost", "hooks"] and len(ran) == 2 * probe.PROBE_STEPS


def test_the_trainer_takes_the_measured_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_mode(cnn()) == "hooks"  # what a guess by layer type would say
    monkeypatch.setattr(probe, "_CACHE", {})
    monkeypatch.setattr(probe, "_device_timer", lambda device: fake_timer("hooks", []))
    model = cnn()
    t = PrivateTrainer(
        model, torch.optim.SGD(model.parameters(), lr=0.1), loader(), noise_multiplier=1.0
    )
    assert t.grad_sample_mode == "ghost"
    model = cnn()
    t = PrivateTrainer(  # cached for this structure and batch shape: no second probe
        model, torch.optim.SGD(model.parameters(), lr=0.1), loader(), noise_multiplier=1.0
    )
    assert t.grad_sample_mode == "ghost" and len(probe._CACHE) == 1


def test_real_timing_returns_a_mode_and_leaves_no_trace() -> None:
    torch.manual_seed(5)
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = next(iter(loader()))
    rng = torch.get_rng_state()
    seconds = measure_modes(model, batch, nn.CrossEntropyLoss())
    assert set(seconds) == {"hooks", "ghost"} and all(s > 0 for s in seconds.values())
    assert torch.equal(torch.get_rng_state(), rng)  # the probe's noise came from a fork
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model[1]._forward_hooks and not hasattr(model[1].weight, "grad_sample")
    assert model[1].weight.grad is None


def test_a_mode_the_model_cannot_run_is_not_a_candidate() -> None:
    tied = nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 3))
    tied[2].weight = tied[1].weight  # ghost clipping refuses tied parameters
    seconds = measure_modes(tied, next(iter(loader())), nn.CrossEntropyLoss())
    assert set(seconds) == {"hooks"}


def test_synthetic_batch_keeps_shapes_and_dtypes_not_values() -> None:
    x, y = torch.full((4, 3), 7.0), torch.tensor([2, 1, 0, 2])
    fx, fy = synthetic_like((x, y))
    assert fx.shape == x.shape and fx.dtype == x.dtype and not torch.equal(fx, x)
    assert torch.equal(fy, torch.zeros_like(y))
    d = synthetic_like({"ids": y, "labels": y, "note": "kept"})
    assert torch.equal(d["ids"], torch.zeros_like(y)) and d["note"] == "kept"
