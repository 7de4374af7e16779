"""Fixtures shared across the test layers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests check outcomes, not speed: on a shared 2-core machine (and in CI) one
# example can take longer than hypothesis's default 200 ms deadline for reasons that have
# nothing to do with the code, which made a run fail at random. Speed is measured in
# benchmarks/ instead.
# Tests may import the benchmarks' support modules (the Flower loopback grid is one, shared
# by tests/unit/test_flower_loopback.py and benchmarks/bench_vs_flower.py); benchmarks never
# import tests.
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

settings.register_profile("secureagg", deadline=None)
settings.load_profile("secureagg")


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[None]:
    """Train with one torch thread (far steadier on the shared 2-core machine), then restore."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def flower_task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps new messages with the process's task identity; give it one (run 7)."""
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 7)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 1)
