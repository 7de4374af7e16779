"""benchmarks/bench_vs_flower.py --quick: Flower's SecAgg+ and secureagg.flower both run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("flwr")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("bench") / "figures.json"
    script = ROOT / "benchmarks" / "bench_vs_flower.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout, json.loads(out.read_text())


def test_prints_every_row_for_both(quick: tuple[str, dict]) -> None:
    stdout, figures = quick
    for name in ("n=5 d=1,000 complete t=3", "n=7 d=1,000 k=4 t=3"):
        lines = [line for line in stdout.splitlines() if line.startswith(name)]
        assert len(lines) == 2, stdout  # the full table and the transport-free one
        assert "FAILED" not in lines[0]
        assert lines[0].rstrip().endswith(("met", "NOT met"))
    assert len(figures["rows"]) == 2
    for row in figures["rows"]:
        for side in ("secureagg", "flower"):
            m = row[side]
            assert m["completed"], (side, m)
            assert m["client_ms"] > 0 and m["server_s"] > 0
            assert m["client_kb"] > 0 and m["server_mb"] > 0
            assert m["error"] <= m["bound"], (side, m)
        assert row["secureagg"]["survivors"] == list(range(1, row["row"]["n"] + 1))
        # the journal's cost per round is measured and printed: a file per node, 3 records
        assert row["secureagg"]["journal_ms"] > 0 and row["secureagg"]["journal_bytes"] > 100
    assert stdout.count("ms per client per round") == 2
    assert "journal included: " in stdout
    assert "fdatasync alone on that disk" in stdout and figures["fdatasync_ms"] > 0


def test_dropout_outcomes(quick: tuple[str, dict]) -> None:
    stdout, figures = quick
    drop = figures["dropout"]
    ours = drop["secureagg"]
    assert drop["secureagg_exact"]
    assert ours["survivors"] == [1, 2, 4, 5]  # node 3 left after advertising its keys
    assert ours["error"] <= ours["bound"]
    assert (
        "dropout secureagg: completed with 4 of 5 nodes (dropped: node 3 at share-keys)" in stdout
    )
    assert "exact sum of the other 4: yes" in stdout
    # Flower 1.42's SecAgg+ cannot finish this round; whatever it does is printed.
    assert any(line.startswith("dropout Flower: ") for line in stdout.splitlines())
    assert drop["flower"]["outcome"]
