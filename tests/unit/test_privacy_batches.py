"""Batches reach the model's device in every shape; dict and tuple batches train privately."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import secureagg.privacy._local as local_module
from secureagg import ConfigError
from secureagg.privacy import PrivateTrainer, parameters_of
from secureagg.privacy._batches import split_batch, to_device

pytestmark = pytest.mark.usefixtures("torch_one_thread")

META = torch.device("meta")
Pair = namedtuple("Pair", ["x", "y"])


def _leaves(batch: Any) -> list[Any]:
    if isinstance(batch, dict):
        return [leaf for v in batch.values() for leaf in _leaves(v)]
    if isinstance(batch, (tuple, list)):
        return [leaf for v in batch for leaf in _leaves(v)]
    return [batch]


_tensor = st.sampled_from([torch.float32, torch.float16, torch.int64, torch.bool]).map(
    lambda dt: torch.zeros(2, 3, dtype=dt)
)
_leaf = st.one_of(_tensor, st.integers(), st.text(max_size=3), st.none())
_batch = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.sampled_from(["a", "b", "labels"]), inner, max_size=3),
        st.tuples(inner, inner).map(lambda t: Pair(*t)),
    ),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(_batch)
def test_every_tensor_of_any_batch_shape_moves_and_keeps_its_dtype(batch: Any) -> None:
    moved = to_device(batch, META)
    assert type(moved) is type(batch)
    before, after = _leaves(batch), _leaves(moved)
    assert len(before) == len(after)
    for a, b in zip(before, after, strict=True):
        if isinstance(a, torch.Tensor):
            assert b.device == META and b.dtype == a.dtype and b.shape == a.shape
        else:
            assert b is a  # numbers, strings, None pass through


def test_a_tensor_already_on_the_device_is_not_copied() -> None:
    t = torch.ones(3)
    assert to_device((t,), torch.device("cpu"))[0] is t


def test_split_batch_shapes() -> None:
    x, y = torch.zeros(2, 3), torch.zeros(2)
    assert split_batch((x, y)) == ((x,), {}, y)
    assert split_batch([x, x, y]) == ((x, x), {}, y)
    args, kwargs, target = split_batch({"input_ids": x, "mask": x, "labels": y})
    assert args == () and set(kwargs) == {"input_ids", "mask"} and target is y
    assert split_batch({"x": x, "target": y})[2] is y
    with pytest.raises(ConfigError, match="labels"):
        split_batch({"x": x})
    with pytest.raises(ConfigError, match="inputs, target"):
        split_batch(x)
    with pytest.raises(ConfigError, match="inputs, target"):
        split_batch((x,))


class Recorder(nn.Module):
    """A small MLP that records the device and dtype of what it is called with."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)
        self.seen: list[tuple[str, torch.device]] = []

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        self.seen.append(("x", x.device))
        if scale is not None:
            self.seen.append(("scale", scale.device))
            x = x * scale
        return self.fc(x)


class DictData(Dataset[dict[str, torch.Tensor]]):
    def __init__(self, n: int = 40) -> None:
        g = torch.Generator().manual_seed(n)
        self.x = torch.randn(n, 6, generator=g)
        self.y = torch.randint(0, 3, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "scale": torch.ones(6), "labels": self.y[i]}


def _tuple_loader() -> DataLoader[Any]:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(40, 6, generator=g), torch.zeros(40).long()), 8)


@pytest.mark.parametrize("mode", ["hooks", "ghost"])
@pytest.mark.parametrize("kind", ["tuple", "dict"])
def test_private_training_moves_each_batch_to_the_models_device(
    mode: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = Recorder()
    data = DataLoader(DictData(), batch_size=8) if kind == "dict" else _tuple_loader()
    t = PrivateTrainer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        data,
        noise_multiplier=1.0,
        grad_sample_mode=mode,
        local_steps=3,
    )
    moved: list[torch.device] = []
    real = local_module.to_device

    def spy(batch: Any, device: torch.device) -> Any:
        moved.append(device)
        return real(batch, device)

    monkeypatch.setattr(local_module, "to_device", spy)
    before = {k: v.clone() for k, v in parameters_of(model).items()}
    update = t.train_round(before)
    assert update.steps == 3 and moved == [torch.device("cpu")] * 3
    names = {name for name, _ in model.seen}
    assert names == ({"x", "scale"} if kind == "dict" else {"x"})
    assert {dev for _, dev in model.seen} == {torch.device("cpu")}
    assert float(abs(update.vector).sum()) > 0  # it trained


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
@pytest.mark.parametrize("mode", ["hooks", "ghost", "auto"])
def test_cuda_model_with_a_cpu_loader_trains_and_seeds_on_cuda(mode: str) -> None:
    def run(seed: int | None) -> torch.Tensor:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).cuda()
        t = PrivateTrainer(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            _tuple_loader(),
            noise_multiplier=1.0,
            grad_sample_mode=mode,
            insecure_noise_seed=seed,
        )
        return torch.from_numpy(t.train_round(parameters_of(model)).vector)

    a, b = run(7), run(7)
    assert torch.equal(a, b)  # the seed reaches the CUDA noise and the sampling
    assert not torch.equal(run(None), run(None))  # OS-seeded noise differs
