"""Flower's simulation engine (``run_simulation``: Ray's ClientApp actors) run by a test.

Every run has HOME and FLWR_HOME in the test's temporary folder (so the nodes' default
journal files are there too), with Flower's telemetry and update check and Ray's usage
stats off. The ServerApp runs in the test's process: it writes what the test checks
(:func:`save_reports`, :func:`model_saver`), and a hostile one can record what it sent
(:func:`record_sends`) and send a message again (:func:`send_again`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from _flower_apps import from_record
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

from secureagg.flower import RECORD_KEY, SecureAggregation

Send = Callable[..., Iterable[Message]]


def quiet_home(root: Path, setenv: Callable[[str, str], None]) -> None:
    """Flower's home in ``root / "home"`` and no telemetry, through ``setenv`` (a
    ``MonkeyPatch``'s, so that the test undoes it)."""
    home = root / "home"
    home.mkdir()
    for key, value in {
        "HOME": str(home),
        "FLWR_HOME": str(home / ".flwr"),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",  # no GPU here: silence its tip
    }.items():
        setenv(key, value)


def fedavg(nodes: int) -> FedAvg:
    """Flower's FedAvg training every one of ``nodes`` nodes each round, evaluating none."""
    return FedAvg(
        fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=nodes, min_available_nodes=nodes
    )


def simulate(server_app: ServerApp, client_app: ClientApp, nodes: int) -> float:
    """Run the apps with ``nodes`` SuperNodes (one CPU per actor, two for Ray); seconds taken."""
    t0 = time.perf_counter()
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=nodes,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": 2},
        },
    )
    return time.perf_counter() - t0


def save_reports(strategy: SecureAggregation, out: Path) -> None:
    """The strategy's round reports, to ``out / "reports.json"``."""
    reports = {r: asdict(rep) for r, rep in strategy.reports.items()}
    (out / "reports.json").write_text(json.dumps(reports))


def model_saver(out: Path) -> Callable[[int, ArrayRecord], MetricRecord | None]:
    """An ``evaluate_fn`` for ``Strategy.start`` that saves each round's global model
    (round 0: the initial one) for :func:`saved_model`."""

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        np.savez(out / f"round-{server_round}.npz", **from_record(arrays))
        return None

    return evaluate


def saved_model(out: Path, server_round: int) -> dict[str, npt.NDArray[np.float32]]:
    """The global model :func:`model_saver` saved after ``server_round``."""
    with np.load(out / f"round-{server_round}.npz") as f:
        return {k: f[k] for k in f.files}


def load_reports(out: Path) -> dict[int, dict[str, Any]]:
    """What :func:`save_reports` wrote, by round."""
    raw = json.loads((out / "reports.json").read_text())
    return {int(r): rep for r, rep in raw.items()}


def node_ids(nodes_dir: Path) -> dict[int, int]:
    """Partition id -> Flower node id, as the nodes' ``Script`` mod wrote them."""
    return {int(p.name): int(p.read_text()) for p in nodes_dir.iterdir()}


def stage_of(msg: Message) -> object:
    """The secureagg stage tag of a server message (None if it has no secureagg record)."""
    rec = msg.content.config_records.get(RECORD_KEY)
    return None if rec is None else rec.get("stage")


def record_sends(grid: Grid) -> tuple[list[tuple[Message, Message | None]], Send]:
    """Log every message sent over ``grid`` with its reply (None: no reply); the log and
    the grid's own send, which is not logged."""
    log: list[tuple[Message, Message | None]] = []
    real: Send = grid.send_and_receive

    def recording(messages: Iterable[Message], **kw: Any) -> list[Message]:
        batch = list(messages)
        replies = list(real(batch, **kw))
        by_id = {r.metadata.reply_to_message_id: r for r in replies}
        log.extend((m, by_id.get(m.metadata.message_id)) for m in batch)
        return replies

    grid.send_and_receive = recording  # type: ignore[method-assign]
    return log, real


def send_again(send: Send, first: Message, content: RecordDict | None = None) -> Message:
    """``first`` sent to its node again (with ``content`` instead of its own); the reply."""
    again = Message(
        RecordDict(dict(first.content.items())) if content is None else content,
        dst_node_id=first.metadata.dst_node_id,
        message_type=first.metadata.message_type,
        group_id=first.metadata.group_id,
    )
    (answer,) = list(send([again], timeout=60.0))
    return answer


def reply_record(answer: Message) -> ConfigRecord | None:
    """The secureagg record of a node's reply (None for an error or an empty reply)."""
    return answer.content.config_records.get(RECORD_KEY) if answer.has_content() else None
