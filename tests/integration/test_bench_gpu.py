"""benchmarks/bench_gpu.py says plainly that it needs CUDA, and exits 0, where there is none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the bench runs")
def test_without_cuda_it_says_so_and_exits_0() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH)], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "CUDA is not available" in out.stdout and "nothing measured" in out.stdout
    assert out.stderr == ""
