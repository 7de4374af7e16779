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
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flwr")
pytest.importorskip("ray")

import _flower_apps as apps  # tests/integration is on sys.path under pytest
from flwr.app import ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

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
        fedavg = FedAvg(
            fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=N, min_available_nodes=N
        )
        strategy = SecureAggregation(fedavg, max_examples=50, timeout=60.0)
        strategy.start(
            grid=grid, initial_arrays=apps.to_record(apps.initial_arrays()), num_rounds=1
        )
        reports = {r: asdict(rep) for r, rep in strategy.reports.items()}
        (out / "reports.json").write_text(json.dumps(reports))

    return app


def test_nodes_shown_other_settings_are_never_summed_with_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    for key, value in {
        "HOME": str(home),
        "FLWR_HOME": str(home / ".flwr"),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(
        exchange_module, "encode_setup", _forged_setup(exchange_module.encode_setup)
    )
    (tmp_path / "nodes").mkdir()
    script = apps.Script({}, str(tmp_path / "nodes"))
    run_simulation(
        server_app=_server_app(tmp_path),
        client_app=apps.client_app(script, secure=True),
        num_supernodes=N,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": 2},
        },
    )
    report = json.loads((tmp_path / "reports.json").read_text())["1"]
    target = min(report["nodes"])  # client id 1
    survivors = set(report["survivors"])
    assert not (target in survivors and survivors - {target}), report
    assert report["total_examples"] not in {float(apps.num_examples(p)) for p in range(N)}
