"""Rollback before the masked input, inside Flower's own simulation engine (issue 12, attack 3).

Five nodes run the real ``secureagg_mod`` in Ray's ClientApp actors. A test-only mod in
front of it plays the lost save: it writes the target node's ``Context.state`` to a file
when the masked-input message first comes, and puts it back when that message comes again
(as a node that crashed after its reply, before Flower saved its Context, comes back). The
ServerApp runs one honest round, then, as a hostile server, sends the target the same
masked-input message again with another train config (lr 0: a second, different update
masked with the same masks gives y - y' = x - x'). The node must decline, untrained.

The nodes name no journal file (the simulation engine gives every node the same node
config), so this also checks where their journal lives: a node's messages may run in
different actor processes. With the journal in process memory (the default before the
file in Flower's home) this failed about one run in three, each time the second message
ran in another actor than the first: the node trained again and sent a second masked
input.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("ray")

import _flower_apps as apps  # tests/integration is on sys.path under pytest
import _flower_sim as sim
from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from secureagg.flower import SecureAggregation

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

N = 5
TARGET = 0  # partition of the node that is rolled back
STAGE = "masked-input"


def _client_app(script: apps.Script, folder: str) -> ClientApp:
    return apps.client_app(script, secure=True, before=[apps.Rollback(folder, STAGE, TARGET)])


def _server_app(out: Path) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        log, real = sim.record_sends(grid)
        strategy = SecureAggregation(sim.fedavg(N), max_examples=50, timeout=60.0)
        strategy.start(
            grid=grid, initial_arrays=apps.to_record(apps.initial_arrays()), num_rounds=1
        )
        node = sim.node_ids(out / "nodes")[TARGET]
        (first,) = [
            m for m, _ in log if m.metadata.dst_node_id == node and sim.stage_of(m) == STAGE
        ]
        # The same message again: another train config would already be refused by the round
        # config's digest of the train message; a node whose training is not deterministic
        # (sampled batches) would still mask a second, different update. Only the journal
        # stops that.
        answer = sim.send_again(real, first)
        rec = sim.reply_record(answer)
        result = {
            "report": {"survivors": strategy.reports[1].survivors},
            "declined": None if rec is None else rec.get("declined"),
            "data": None if rec is None else rec.get("data") is not None,
            "error": answer.error.reason if answer.has_error() else None,
        }
        (out / "result.json").write_text(json.dumps(result, default=str))

    return app


def test_a_node_rolled_back_before_its_masked_input_declines_in_the_simulation_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.quiet_home(tmp_path, monkeypatch.setenv)
    (tmp_path / "nodes").mkdir()
    (tmp_path / "events").mkdir()
    script = apps.Script({}, str(tmp_path / "nodes"), events_dir=str(tmp_path / "events"))
    sim.simulate(_server_app(tmp_path), _client_app(script, str(tmp_path)), N)
    result = json.loads((tmp_path / "result.json").read_text())
    result["actor processes"] = (tmp_path / f"pids-{TARGET}").read_text().split()
    assert len(result["report"]["survivors"]) == N, result
    why = result["declined"] or ""
    assert "already sent its masked input" in why, (result["actor processes"], result["data"])
    assert not result["data"], result
    events = (tmp_path / "events" / str(TARGET)).read_text().split()
    assert len(result["actor processes"]) == 2  # the mod saw both (and rolled back the second)
    assert events.count("trained") == 1, events  # declined before training again
