"""Fixtures shared across the test layers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[None]:
    """Train with one torch thread (far steadier on the shared 2-core machine), then restore."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
