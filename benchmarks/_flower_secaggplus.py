"""Flower's own SecAgg+ (flwr 1.42), run in this process as the round benchmark's baseline.

The server side is Flower's real ``SecAggPlusWorkflow`` and the client side is Flower's real
``secaggplus_mod`` in front of a ``ClientApp``. The only piece written here is the transport:
a loopback ``Grid`` that hands each Flower ``Message`` to the destination node's ClientApp
in the same process and returns its reply, timing every client call. Server time is the
wall time of the workflow minus the time spent inside client calls.
"""

from __future__ import annotations

import copy
import logging
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class FlowerRound:
    client_ms: list[float] = field(default_factory=list)  # per client, all stages
    server_s: float = 0.0


def run_flower_round(n: int, d: int, num_shares: int, threshold: int) -> FlowerRound:
    """One SecAgg+ round of n clients with a d-element float32 update each."""
    import flwr.compat.common.recorddict_compat as compat
    from flwr.app import ConfigRecord, Context, Message, RecordDict
    from flwr.client import ClientApp, NumPyClient
    from flwr.client.mod import secaggplus_mod
    from flwr.common import ndarrays_to_parameters
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.common.logger import FLOWER_LOGGER as flwr_logger
    from flwr.server import ServerConfig
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.compat import LegacyContext
    from flwr.server.compat.grid_client_proxy import GridClientProxy
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import SecAggPlusWorkflow
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
    from flwr.server.workflow.constant import Key as WorkflowKey
    from flwr.serverapp.grid import Grid
    from flwr.supercore.task_identity import TaskIdentity

    flwr_logger.setLevel(logging.WARNING)
    TaskIdentity.run_id = 1
    TaskIdentity.task_id = 1
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    update = [np.random.default_rng(0).uniform(-1, 1, d).astype(np.float32)]

    class _Client(NumPyClient):  # type: ignore[misc]
        def fit(self, parameters: Any, config: Any) -> Any:
            return update, 10, {}

    app = ClientApp(client_fn=lambda ctx: _Client().to_client(), mods=[secaggplus_mod])
    result = FlowerRound()
    spent: dict[int, float] = {}

    class LoopbackGrid(Grid):  # type: ignore[misc]
        def __init__(self, node_ids: list[int]) -> None:
            self._nodes = node_ids
            self._ctx = {
                nid: Context(
                    run_id=1, node_id=nid, node_config={}, state=RecordDict(), run_config={}
                )
                for nid in node_ids
            }

        def set_run(self, run: Any) -> None:
            pass

        @property
        def run(self) -> Any:
            return None

        def create_message(
            self,
            content: Any,
            message_type: str,
            dst_node_id: int,
            group_id: str,
            ttl: float | None = None,
        ) -> Any:
            return Message(
                content=content,
                dst_node_id=dst_node_id,
                message_type=message_type,
                group_id=group_id,
                ttl=ttl,
            )

        def get_node_ids(self) -> Iterable[int]:
            return list(self._nodes)

        def push_messages(self, messages: Iterable[Any]) -> Iterable[str]:
            raise NotImplementedError

        def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Any]:
            raise NotImplementedError

        def send_and_receive(
            self, messages: Iterable[Any], *, timeout: float | None = None
        ) -> Iterable[Any]:
            replies = []
            for sent in messages:
                msg = copy.deepcopy(sent)  # a real transport serialises; never share objects
                dst = msg.metadata.dst_node_id
                t0 = time.perf_counter()
                reply = app(msg, self._ctx[dst])
                spent[dst] = spent.get(dst, 0.0) + time.perf_counter() - t0
                replies.append(copy.deepcopy(reply))
            return replies

    node_ids = list(range(1, n + 1))
    grid = LoopbackGrid(node_ids)
    manager = SimpleClientManager()
    for nid in node_ids:
        manager.register(GridClientProxy(nid, grid, 1))
    base = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    strategy = FedAvg(
        fraction_fit=1.0,
        min_fit_clients=n,
        min_available_clients=n,
        fit_metrics_aggregation_fn=lambda metrics: {},
    )
    ctx = LegacyContext(
        base, config=ServerConfig(num_rounds=1), strategy=strategy, client_manager=manager
    )
    ctx.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: 1})
    ctx.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
        ndarrays_to_parameters([np.zeros(d, np.float32)]), True
    )
    workflow = SecAggPlusWorkflow(num_shares=num_shares, reconstruction_threshold=threshold)
    t0 = time.perf_counter()
    workflow(grid, ctx)
    total = time.perf_counter() - t0
    result.client_ms = [1000 * spent[nid] for nid in node_ids]
    result.server_s = total - sum(spent.values())
    recovered = compat.arrayrecord_to_parameters(ctx.state.array_records[MAIN_PARAMS_RECORD], True)
    from flwr.common import parameters_to_ndarrays

    (mean,) = parameters_to_ndarrays(recovered)
    if float(np.max(np.abs(mean - update[0]))) > 1e-3:
        raise RuntimeError("Flower's SecAgg+ round did not recover the average update")
    return result


if __name__ == "__main__":
    for n, d, k, t in [(10, 100_000, 10, 6), (50, 100_000, 11, 6), (50, 100_000, 50, 26)]:
        r = run_flower_round(n, d, k, t)
        print(
            n,
            d,
            k,
            t,
            f"client median {statistics.median(r.client_ms):.1f} ms",
            f"server {r.server_s:.2f} s",
        )
