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
import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flwr")
pytest.importorskip("ray")

import _flower_apps as apps  # tests/integration is on sys.path under pytest
from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

from secureagg.flower import RECORD_KEY, SecureAggregation

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

N = 5
TARGET = 0  # partition of the node that is rolled back
STAGE = "masked-input"


class Rollback:
    """A mod: the target's state before its first message of ``stage`` is saved to a file,
    and put back whenever that stage's message comes again (the lost save)."""

    def __init__(self, folder: str, stage: str = STAGE, target: int = TARGET) -> None:
        self.folder, self.stage, self.target = folder, stage, target

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        partition = int(context.node_config["partition-id"])
        rec = msg.content.config_records.get(RECORD_KEY) if msg.has_content() else None
        if partition == self.target and rec is not None and rec.get("stage") == self.stage:
            saved = Path(self.folder, f"state-{partition}")
            with Path(self.folder, f"pids-{partition}").open("a") as f:
                f.write(f"{os.getpid()}\n")  # which actor process ran it
            if saved.exists():  # the Context Flower saved after the reply is lost
                proto = ProtoRecordDict.FromString(saved.read_bytes())
                context.state = recorddict_from_proto(proto)
            else:
                saved.write_bytes(recorddict_to_proto(context.state).SerializeToString())
        return call_next(msg, context)


def _stage(msg: Message) -> object:
    rec = msg.content.config_records.get(RECORD_KEY)
    return None if rec is None else rec.get("stage")


def _client_app(script: apps.Script, folder: str) -> ClientApp:
    return apps.client_app(script, secure=True, before=[Rollback(folder)])


def _server_app(out: Path) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        sent: list[Message] = []
        real = grid.send_and_receive

        def recording(messages: Any, **kw: Any) -> Any:
            batch = list(messages)
            sent.extend(batch)
            return real(batch, **kw)

        grid.send_and_receive = recording  # type: ignore[method-assign]
        fedavg = FedAvg(
            fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=N, min_available_nodes=N
        )
        strategy = SecureAggregation(fedavg, max_examples=50, timeout=60.0)
        strategy.start(
            grid=grid, initial_arrays=apps.to_record(apps.initial_arrays()), num_rounds=1
        )
        nodes = {int(p.name): int(p.read_text()) for p in (out / "nodes").iterdir()}
        node = nodes[TARGET]
        (first,) = [m for m in sent if m.metadata.dst_node_id == node and _stage(m) == STAGE]
        # The same message again: another train config would already be refused by the round
        # config's digest of the train message; a node whose training is not deterministic
        # (sampled batches) would still mask a second, different update. Only the journal
        # stops that.
        content = RecordDict(dict(first.content.items()))
        again = Message(
            content,
            dst_node_id=node,
            message_type=first.metadata.message_type,
            group_id=first.metadata.group_id,
        )
        (answer,) = list(real([again], timeout=60.0))
        rec = answer.content.config_records.get(RECORD_KEY) if answer.has_content() else None
        result = {
            "report": {"survivors": strategy.reports[1].survivors},
            "declined": None if rec is None else rec.get("declined"),
            "data": None if rec is None else rec.get("data") is not None,
            "error": answer.error.reason if answer.has_error() else None,
        }
        (out / "result.json").write_text(json.dumps(result, default=str))

    return app


def _environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower's home (and so the nodes' default journal files) in ``tmp_path``; no telemetry."""
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


def test_a_node_rolled_back_before_its_masked_input_declines_in_the_simulation_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _environment(tmp_path, monkeypatch)
    (tmp_path / "nodes").mkdir()
    (tmp_path / "events").mkdir()
    script = apps.Script({}, str(tmp_path / "nodes"), events_dir=str(tmp_path / "events"))
    run_simulation(
        server_app=_server_app(tmp_path),
        client_app=_client_app(script, str(tmp_path)),
        num_supernodes=N,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": 2},
        },
    )
    result = json.loads((tmp_path / "result.json").read_text())
    result["actor processes"] = (tmp_path / f"pids-{TARGET}").read_text().split()
    assert len(result["report"]["survivors"]) == N, result
    why = result["declined"] or ""
    assert "already sent its masked input" in why, (result["actor processes"], result["data"])
    assert not result["data"], result
    events = (tmp_path / "events" / str(TARGET)).read_text().split()
    assert len(result["actor processes"]) == 2  # the mod saw both (and rolled back the second)
    assert events.count("trained") == 1, events  # declined before training again
