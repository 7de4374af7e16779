"""The ClientApp: DP-SGD on this node's digits; the update leaves only through secureagg.

torch, the data and the model are imported inside the functions: in Flower's deployment
engine every message starts a fresh ClientApp process, and the protocol messages of a round
(answered by secureagg_mod alone) then start without loading them.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from secureagg import PrivacyConfig
from secureagg.flower import secureagg_mod

app = ClientApp(mods=[secureagg_mod])


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the global model on local data."""
    import torch

    from secure_app.task import Net, load_data
    from secureagg.flower import train_privately

    cfg, node = context.run_config, context.node_config
    model = Net()
    trainloader, _ = load_data(node["partition-id"], node["num-partitions"], cfg["batch-size"])
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg["lr"])
    privacy = PrivacyConfig(
        noise_multiplier=cfg["noise-multiplier"], max_grad_norm=cfg["max-grad-norm"]
    )
    ledger = None  # optional: this node's privacy ledger, for `secureagg audit`
    if cfg["ledger-dir"]:
        ledger = Path(str(cfg["ledger-dir"])) / f"ledger-{node['partition-id']}.json"
    epochs = cfg["local-epochs"]
    return train_privately(
        msg, context, model, optimizer, trainloader, privacy, local_epochs=epochs, ledger=ledger
    )


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the global model on local data (these metrics travel in clear)."""
    from secure_app.task import Net, load_data, test

    node = context.node_config
    model = Net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    _, valloader = load_data(node["partition-id"], node["num-partitions"], batch_size=256)
    loss, accuracy = test(model, valloader)
    metrics = {"eval_loss": loss, "eval_acc": accuracy, "num-examples": len(valloader.dataset)}
    return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)
