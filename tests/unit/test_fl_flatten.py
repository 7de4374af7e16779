"""flatten / unflatten: one utility, inverse of each other, strict about shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from secureagg import ConfigError
from secureagg.privacy import flatten, parameters_of, unflatten

shapes = st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3), min_size=1, max_size=5)


@settings(max_examples=60, deadline=None)
@given(shapes, st.sampled_from([torch.float32, torch.float64]), st.integers(0, 2**31))
def test_unflatten_inverts_flatten(dims: list[list[int]], dtype: torch.dtype, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    tensors = {f"t{i}": torch.randn(tuple(d), generator=g, dtype=dtype) for i, d in enumerate(dims)}
    vec = flatten(tensors)
    assert vec.dtype == np.float32
    assert vec.shape == (sum(int(t.numel()) for t in tensors.values()),)
    back = unflatten(vec, tensors)
    assert list(back) == list(tensors)
    for k, t in tensors.items():
        assert back[k].shape == t.shape and back[k].dtype == t.dtype
        torch.testing.assert_close(back[k], t.to(torch.float32).to(dtype), rtol=0, atol=0)


def test_unflatten_copies_and_follows_model_order() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    named = parameters_of(model)
    assert list(named) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    vec = flatten(named)
    np.testing.assert_array_equal(vec[:6], model[0].weight.detach().reshape(-1).numpy())
    out = unflatten(vec, named)
    vec[:] = 0
    assert out["0.weight"].abs().sum() > 0  # not a view of vec


def test_shape_mismatch_and_bad_input_are_config_errors() -> None:
    named = parameters_of(nn.Linear(3, 2))
    with pytest.raises(ConfigError, match="models differ in shape"):
        unflatten(np.zeros(7, dtype=np.float32), named)
    with pytest.raises(ConfigError):
        unflatten(np.zeros((2, 4), dtype=np.float32), named)
    with pytest.raises(ConfigError, match="only float"):
        flatten({"i": torch.zeros(3, dtype=torch.int64)})
    with pytest.raises(ConfigError, match="empty"):
        flatten({})
