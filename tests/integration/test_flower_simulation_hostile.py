"""A hostile server inside Flower's own simulation engine (Ray, real ClientApp actors).

The ServerApp runs in this process with ``encode_setup`` replaced, so that every node but
partition 0 is shown other encoding settings (max-examples 2^62 and example-count
weighting) in its round config, and, as the server of the code before issue 12 did, as
fields of its setup record. The nodes run the real ``secureagg_mod`` in Ray's actors. The
target must never be summed with any other node (on the old code all five were summed and
the round's total_examples was the target's exact example count).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flwr")
pytest.importorskip("ray")

import _flower_apps as apps  # tests/integration is on sys.path under pytest
import _flower_sim as sim
from flwr.app import ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

import secureagg.flower._exchange as exchange_module
from secureagg.flower import SecureAggregation
from secureagg.protocol import RoundConfig

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

N = 5
FORGED: dict[str, Any] = {"max-examples": 2**62, "weighting": "examples-public"}


def _forged_setup(real: Any) -> Any:
    def forged(setup: Any, client: int) -> ConfigRecord:
        rec = real(setup, client)
        if client == 1:  # client ids follow the sorted node ids; whichever node that is
            return rec
        cfg = RoundConfig.from_bytes(rec["config"])
        other = dataclasses.replace(cfg, encoding={**cfg.encoding, **FORGED})
        return ConfigRecord({**rec, "config": other.to_bytes(), **FORGED})

    return forged


def _server_app(out: Path) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = SecureAggregation(sim.fedavg(N), max_examples=50, timeout=60.0)
        strategy.start(
            grid=grid, initial_arrays=apps.to_record(apps.initial_arrays()), num_rounds=1
        )
        sim.save_reports(strategy, out)

    return app


def test_nodes_shown_other_settings_are_never_summed_with_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.quiet_home(tmp_path, monkeypatch.setenv)
    monkeypatch.setattr(
        exchange_module, "encode_setup", _forged_setup(exchange_module.encode_setup)
    )
    (tmp_path / "nodes").mkdir()
    script = apps.Script({}, str(tmp_path / "nodes"))
    sim.simulate(_server_app(tmp_path), apps.client_app(script, secure=True), N)
    report = sim.load_reports(tmp_path)[1]
    target = min(report["nodes"])  # client id 1
    survivors = set(report["survivors"])
    assert not (target in survivors and survivors - {target}), report
    assert report["total_examples"] not in {float(apps.num_examples(p)) for p in range(N)}
