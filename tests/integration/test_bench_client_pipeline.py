"""benchmarks/bench_client_pipeline.py at a tiny d: both pipelines run and send the same bytes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("flwr")

ROOT = Path(__file__).resolve().parents[2]


def test_both_pipelines_run_and_agree() -> None:
    script = ROOT / "benchmarks" / "bench_client_pipeline.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--d", "1000", "--n", "4", "--repeat", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("d =")]
    assert [line.split()[3] for line in lines] == ["plain", "in"], proc.stdout
    assert "the same bytes every time" in proc.stdout
