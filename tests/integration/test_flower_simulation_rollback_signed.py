"""Rollback before consistency, signed mode, inside Flower's simulation engine (issue 12, attack 2).

Five nodes (t = 3, quorum 4) run the real ``secureagg_mod`` in Ray's ClientApp actors,
each with its own Ed25519 identity key and the members list of all five (a test-only mod
puts the paths in the node's node config: the engine gives every node the same one). The
``Rollback`` mod of _flower_apps.py plays the lost save at the target's
consistency message. After an honest round the ServerApp, as a hostile server, sends the
target its consistency request twice more, each time to a node restored to before it
signed: the same request must get the same signature bytes, a shorter survivor list a
refusal (two signed lists, each with a quorum, would let a server get both shares of one
client).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flwr")
pytest.importorskip("ray")

import _flower_apps as apps  # tests/integration is on sys.path under pytest
import _flower_sim as sim
from flwr.app import Context, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable
from flwr.serverapp import Grid, ServerApp

from secureagg.flower import RECORD_KEY, SecureAggregation, generate_identity
from secureagg.flower._records import payload
from secureagg.protocol import ConsistencyRequest, decode, encode

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

N = 5
TARGET = 0
STAGE = "consistency"


class Identity:
    """A mod: the node's identity key and the members list, named in its node config."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        partition = int(context.node_config["partition-id"])
        key = Path(self.folder, f"node{partition}.key")
        context.node_config["secureagg-identity-key"] = str(key)
        context.node_config["secureagg-members"] = str(Path(self.folder, "members.txt"))
        return call_next(msg, context)


def _server_app(out: Path) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        log, real = sim.record_sends(grid)
        strategy = SecureAggregation(sim.fedavg(N), max_examples=50, timeout=60.0, signed=True)
        strategy.start(
            grid=grid, initial_arrays=apps.to_record(apps.initial_arrays()), num_rounds=1
        )
        node = sim.node_ids(out / "nodes")[TARGET]
        ((first, signed_once),) = [
            (m, r) for m, r in log if m.metadata.dst_node_id == node and sim.stage_of(m) == STAGE
        ]
        assert signed_once is not None
        request = decode(payload(first, first.content[RECORD_KEY]) or b"")
        assert isinstance(request, ConsistencyRequest)
        # leave out another survivor (leaving out the target itself trips an earlier check)
        gone = next(s for s in request.survivors if s != request.recipient)
        kept = tuple(s for s in request.survivors if s != gone)
        shorter = ConsistencyRequest(request.round_id, request.recipient, kept)

        def ask(data: bytes | None) -> dict[str, Any]:
            content = RecordDict(dict(first.content.items()))
            if data is not None:
                fields = dict(first.content[RECORD_KEY].items())
                content[RECORD_KEY] = type(first.content[RECORD_KEY])({**fields, "data": data})
            rec = sim.reply_record(sim.send_again(real, first, content))
            return {
                "declined": None if rec is None else rec.get("declined"),
                "same": rec is not None
                and rec.get("data") == signed_once.content[RECORD_KEY].get("data"),
            }

        result = {
            "survivors": len(strategy.reports[1].survivors),
            "same request": ask(None),
            "shorter list": ask(encode(shorter)),
        }
        (out / "result.json").write_text(json.dumps(result, default=str))

    return app


def test_a_signed_node_rolled_back_before_consistency_never_signs_a_second_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.quiet_home(tmp_path, monkeypatch.setenv)
    keys = [generate_identity(tmp_path / f"node{p}.key") for p in range(N)]
    (tmp_path / "members.txt").write_text("".join(f"{k.hex()}\n" for k in keys))
    (tmp_path / "nodes").mkdir()
    script = apps.Script({}, str(tmp_path / "nodes"))
    mods = [Identity(str(tmp_path)), apps.Rollback(str(tmp_path), STAGE, TARGET)]
    sim.simulate(_server_app(tmp_path), apps.client_app(script, secure=True, before=mods), N)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["survivors"] == N, result
    assert result["same request"] == {"declined": None, "same": True}, result
    why = result["shorter list"]["declined"] or ""
    assert "already answered consistency" in why, result
    assert len((tmp_path / f"pids-{TARGET}").read_text().split()) == 3  # rolled back twice
