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
    from secureagg.flower import NodePrivacy, train_privately

    cfg, node = context.run_config, context.node_config
    model = Net()
    trainloader, _ = load_data(node["partition-id"], node["num-partitions"], cfg["batch-size"])
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg["lr"])
    # what protects this node comes from its own node config, never from the server's run
    # config; train_privately declines settings weaker than the node pins
    privacy = NodePrivacy.from_node_config(node).apply(PrivacyConfig(noise_multiplier=1.0))
    home = Path.home() / ".secureagg" / f"flower-ledger-{node['partition-id']}.json"
    ledger = Path(str(node.get("secureagg-ledger") or home))  # this node's privacy ledger
    ledger.parent.mkdir(parents=True, exist_ok=True)
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
