"""The ServerApp: FedAvg, with every training round summed by secure aggregation."""

from __future__ import annotations

import json
from dataclasses import asdict

from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from secure_app.task import Net, load_test_data, test
from secureagg.flower import SecureAggregation

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the rounds; optionally write what each round did to ``results-path``."""
    cfg = context.run_config
    fedavg = FedAvg(
        fraction_evaluate=cfg["fraction-evaluate"],
        min_train_nodes=cfg["min-nodes"],
        min_evaluate_nodes=cfg["min-nodes"],
        min_available_nodes=cfg["min-nodes"],
    )
    strategy = SecureAggregation.from_config(fedavg, cfg)
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(Net().state_dict()),
        num_rounds=cfg["num-server-rounds"],
        evaluate_fn=central_evaluate,
    )
    if cfg["results-path"]:
        accuracy = {r: m["accuracy"] for r, m in result.evaluate_metrics_serverapp.items()}
        rounds = {r: asdict(report) for r, report in strategy.reports.items()}
        with open(str(cfg["results-path"]), "w") as f:
            json.dump({"rounds": rounds, "accuracy": accuracy}, f, indent=1)


def central_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
    """Accuracy of the global model on the digits that no node holds."""
    model = Net()
    model.load_state_dict(arrays.to_torch_state_dict())
    loss, accuracy = test(model, load_test_data())
    return MetricRecord({"loss": loss, "accuracy": accuracy})
