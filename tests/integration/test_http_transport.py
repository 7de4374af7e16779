"""examples/http_transport: clients and a server as processes over HTTP, one client killed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parents[2] / "examples" / "http_transport" / "run.py"


def test_a_client_killed_mid_round_leaves_the_survivors_average() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Stage deadline 5 s: only the stage the killed client misses waits that long; the
    # others close as soon as every live client has answered, even on a loaded machine.
    out = subprocess.run(
        [sys.executable, str(RUN), "--clients", "5", "--kill", "3", "--stage-timeout", "5"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=RUN.parents[2],
    )
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["members"] == [1, 2, 4, 5]
    assert report["dropouts"] == {"3": "MASKED_INPUT"}  # shares sent, masked update never
    assert report["exit_codes"] == {"1": 0, "2": 0, "3": -9, "4": 0, "5": 0}  # 3: SIGKILL
    # The survivors' weighted average, to within the quantisation bound ...
    assert report["max_error"] <= report["error_bound"] < 1e-3
    # ... and not the average that would include the dead client's update.
    assert report["distance_to_all_clients_average"] > 100 * report["error_bound"]
    # Uniform weighting: each weight is 1, so the summed weight counts the survivors exactly
    # (no example count reaches the server).
    assert report["total_examples"] == len(report["members"]) == 4
