"""Flower's own SecAgg+ (flwr 1.42), run in this process as a benchmark baseline.

The server side is Flower's real ``SecAggPlusWorkflow`` (with Flower's legacy ``FedAvg``)
and the client side is Flower's real ``secaggplus_mod`` in front of a ``ClientApp`` built
from a ``NumPyClient``. The only piece written here is the transport: the loopback Grid of
``_flower_loopback.py``, which serialises every message both ways with Flower's own wire
format and times each node's side. Server time is the workflow's wall time minus the
nodes' time.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from _flower_loopback import LoopbackGrid  # benchmarks/ is on sys.path (script or test)

# SecAggPlusWorkflow's defaults, used for the error bound below.
MAX_WEIGHT = 1000.0
CLIPPING_RANGE = 8.0
QUANTIZATION_RANGE = 4194304


@dataclass
class FlowerRound:
    """One SecAgg+ round: each node's time and bytes, the server's time, and the outcome."""

    client_ms: list[float] = field(default_factory=list)  # per node that got a message
    client_cpu_ms: list[float] = field(default_factory=list)  # the same, CPU time
    client_app_ms: list[float] = field(default_factory=list)  # of which inside the ClientApp
    server_s: float = 0.0
    server_transport_s: float = 0.0  # of which packing and unpacking messages
    wall_s: float = 0.0
    client_bytes: list[int] = field(default_factory=list)  # sent + received, per node
    server_bytes: int = 0  # uploaded by the server + replies it pulled
    completed: bool = False
    model: npt.NDArray[np.float32] | None = None  # the new global model, if completed
    failure: str | None = None  # Flower's own log line or exception when not completed
    client_errors: dict[int, list[str]] = field(default_factory=dict)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def run_flower_round(
    n: int,
    d: int,
    num_shares: int,
    threshold: int,
    *,
    models: Mapping[int, npt.NDArray[np.float32]] | None = None,
    weights: Mapping[int, int] | None = None,
    global_model: npt.NDArray[np.float32] | None = None,
    drop_at: Mapping[int, int] | None = None,
    check: bool = True,
) -> FlowerRound:
    """One SecAgg+ round of nodes 1..n; node u trains to ``models[u]`` on ``weights[u]`` examples.

    Without ``models`` every node returns the same random d-vector (10 examples each) from a
    zero global model. With ``check`` (and no dropout), a completed round must match that
    average, else RuntimeError. ``drop_at`` is passed to the loopback Grid.
    """
    import flwr.compat.common.recorddict_compat as compat
    from flwr.app import ConfigRecord, Context, RecordDict
    from flwr.client import ClientApp, NumPyClient
    from flwr.client.mod import secaggplus_mod
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
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
    from flwr.supercore.task_identity import TaskIdentity

    if flwr_logger.level < logging.WARNING:
        flwr_logger.setLevel(logging.WARNING)
    TaskIdentity.run_id = 1
    TaskIdentity.task_id = 1
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    node_ids = list(range(1, n + 1))
    if models is None:
        same = np.random.default_rng(0).uniform(-1, 1, d).astype(np.float32)
        models = dict.fromkeys(node_ids, same)
        weights = dict.fromkeys(node_ids, 10)
        global_model = np.zeros(d, np.float32)
    if weights is None:
        weights = dict.fromkeys(node_ids, 10)
    if global_model is None:
        global_model = np.zeros(d, np.float32)
    trained, examples = models, weights

    class _Client(NumPyClient):  # type: ignore[misc]
        def __init__(self, node_id: int) -> None:
            self.node_id = node_id

        def fit(self, parameters: Any, config: Any) -> Any:
            return [trained[self.node_id]], examples[self.node_id], {}

    app = ClientApp(
        client_fn=lambda ctx: _Client(int(ctx.node_id)).to_client(), mods=[secaggplus_mod]
    )
    grid = LoopbackGrid(app, node_ids, drop_at=drop_at)
    manager = SimpleClientManager()
    for nid in node_ids:
        manager.register(GridClientProxy(nid, grid, 1))
    base = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    strategy = FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=n,
        min_available_clients=n,
        fit_metrics_aggregation_fn=lambda metrics: {},
    )
    ctx = LegacyContext(
        base, config=ServerConfig(num_rounds=1), strategy=strategy, client_manager=manager
    )
    ctx.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: 1})
    initial = compat.parameters_to_arrayrecord(ndarrays_to_parameters([global_model]), True)
    ctx.state.array_records[MAIN_PARAMS_RECORD] = initial
    workflow = SecAggPlusWorkflow(
        num_shares=num_shares,
        reconstruction_threshold=threshold,
        max_weight=MAX_WEIGHT,
        clipping_range=CLIPPING_RANGE,
        quantization_range=QUANTIZATION_RANGE,
    )
    capture = _Capture()
    handlers = list(flwr_logger.handlers)
    flwr_logger.handlers = [capture]  # Flower's errors become the reported outcome
    result = FlowerRound()
    t0 = time.perf_counter()
    try:
        workflow(grid, ctx)
    except Exception as exc:  # Flower's workflow raising is an outcome to report, not a crash
        result.failure = f"{type(exc).__name__}: {exc}"
    finally:
        result.wall_s = time.perf_counter() - t0
        flwr_logger.handlers = handlers
    result.server_s = result.wall_s - grid.client_seconds - grid.emulation_seconds
    used = [c for c in grid.cost.values() if c.messages]
    result.client_ms = [1000 * c.seconds for c in used]
    result.client_cpu_ms = [1000 * c.cpu_seconds for c in used]
    result.client_app_ms = [1000 * c.app_seconds for c in used]
    result.server_transport_s = grid.server_transport_seconds
    result.client_bytes = [c.bytes_sent + c.bytes_received for c in used]
    result.server_bytes = grid.server_bytes
    result.client_errors = {nid: c.errors for nid, c in grid.cost.items() if c.errors}
    params = ctx.state.array_records[MAIN_PARAMS_RECORD]
    if params is not initial:  # the workflow stores new parameters only when it completes
        result.completed = True
        (mean,) = parameters_to_ndarrays(compat.arrayrecord_to_parameters(params, True))
        result.model = mean
    elif result.failure is None:
        result.failure = " / ".join(capture.lines) or "no new model and no error logged"
    if check and not drop_at and result.completed:
        err, bound = flower_error(result.model, global_model, models, weights, node_ids)
        if err > bound:
            raise RuntimeError(f"Flower's SecAgg+ average is off by {err:.3g} > {bound:.3g}")
    return result


def flower_error(
    model: npt.NDArray[np.float32] | None,
    global_model: npt.NDArray[np.float32],
    models: Mapping[int, npt.NDArray[np.float32]],
    weights: Mapping[int, int],
    members: list[int],
) -> tuple[float, float]:
    """Max error of Flower's new model against the weighted average of ``members``, and
    the quantisation bound it should meet.

    Flower quantises ``dq_u * x_u`` (``dq_u`` = n_u / max_weight rounded to 1 / 2^22) with
    stochastic rounding of step 2 * clip / 2^22 and divides the sum by sum(dq_u): at most
    m * step / sum(dq_u), plus the weight rounding (2 * max|x| * sum|dq_u - r_u| / sum(dq_u)),
    plus float32 rounding of the stored model.
    """
    del global_model  # SecAgg+ averages whole models, not differences
    if model is None:
        return float("inf"), 0.0
    r = {u: weights[u] / MAX_WEIGHT for u in members}
    dq = {u: round(r[u] * QUANTIZATION_RANGE) / QUANTIZATION_RANGE for u in members}
    total = sum(weights[u] for u in members)
    expected = np.zeros(model.shape[0], np.float64)
    top = 0.0
    for u in members:
        expected += weights[u] * models[u].astype(np.float64)
        top = max(top, float(np.max(np.abs(models[u]))))
    expected /= total
    step = 2 * CLIPPING_RANGE / QUANTIZATION_RANGE
    sdq = sum(dq.values())
    bound = len(members) * step / sdq + 2 * top * sum(abs(dq[u] - r[u]) for u in members) / sdq
    bound += 4 * float(np.finfo(np.float32).eps) * float(np.max(np.abs(expected)))
    err = float(np.max(np.abs(model.astype(np.float64) - expected)))
    return err, bound


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
