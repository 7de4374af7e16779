"""examples/plain_pytorch_loop.py runs, private and plain, and marks what secureagg adds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plain_pytorch_loop.py"


def _run(*args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    return out.stdout


def test_example_runs_private_and_secure() -> None:
    lines = _run("--rounds", "2", "--clients", "3").strip().splitlines()
    assert len(lines) == 2
    eps = []
    for i, line in enumerate(lines, start=1):
        m = re.fullmatch(
            rf"round {i}/2: accuracy ([0-9.]+), epsilon ([0-9.]+), error <= ([0-9.e+-]+)", line
        )
        assert m, line
        assert 0.0 <= float(m.group(1)) <= 1.0
        assert float(m.group(3)) < 1e-3
        eps.append(float(m.group(2)))
    assert 0 < eps[0] < eps[1]  # the accountant keeps counting across rounds


def test_example_plain_mode_and_markers() -> None:
    lines = _run("--rounds", "1", "--clients", "3", "--plain").strip().splitlines()
    assert re.fullmatch(r"round 1/1: accuracy [0-9.]+", lines[-1])
    source = EXAMPLE.read_text()
    for line in source.splitlines():
        if re.search(r"\b(PrivateTrainer|SecureAggregator|PrivacyLedger|record_round)\b", line):
            assert "# secureagg" in line or line.lstrip().startswith(('"', "-")), line
