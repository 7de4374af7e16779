"""A round's config: the one train message it binds, the encoding, the graph, the setup record."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flwr.app import ConfigRecord, Message, MessageType
from flwr.app.typing import ConfigRecordValues
from flwr.serverapp.strategy import Strategy

from secureagg._exceptions import ConfigError
from secureagg.fl import DistributedEncoder, UpdateEncoder
from secureagg.flower._records import run_config_digest, train_digest
from secureagg.flower._settings import Settings, update_encoder
from secureagg.protocol import RoundConfig, new_round_id, plan_round

__all__ = ["encode_setup", "encoding", "one_train_digest", "round_config"]


def one_train_digest(messages: Iterable[Message]) -> str:
    """The digest of the one train message every node gets (:func:`train_digest`).

    ConfigError if the wrapped strategy's train messages differ per node: a server that
    trains nodes from different models or configs (lr 0 for all but one) can read one
    node's update from the sum, so a node trains only from the content its config binds.
    """
    # What configure_train sends: each message's content, typed "train". Messages that carry
    # the same content object (FedAvg's: one RecordDict for every node) have the same digest,
    # so each distinct content is hashed once, not once per node (the model is most of it).
    # Each entry keeps its content alive, so no later object can take its id.
    by_content: dict[int, tuple[object, str]] = {}
    for m in messages:
        content = m.content
        if id(content) not in by_content:
            typed = Message(content, dst_node_id=0, message_type=MessageType.TRAIN)
            by_content[id(content)] = (content, train_digest(typed))
    digests = {digest for _, digest in by_content.values()}
    if len(digests) != 1:
        raise ConfigError(
            "the wrapped strategy's train messages differ per node (model or train config): "
            "secure aggregation needs one train message for every node"
        )
    return digests.pop()


def encode_setup(setup: Mapping[str, ConfigRecordValues], client: int) -> ConfigRecord:
    """The first message's record for ``client``: the round config and the encoding."""
    return ConfigRecord({**setup, "client-id": client})


def encoding(
    strategy: Strategy,
    run_config: Mapping[str, Any],
    encoder: UpdateEncoder | DistributedEncoder,
) -> dict[str, int | float | str | bool]:
    """What a node encodes its update with, bound into the round config (and its digest).

    A node reads these from the config alone, never from a per-node field.
    """
    return {
        **encoder.public_settings(),
        "weighted-by": str(getattr(strategy, "weighted_by_key", "num-examples")),
        "arrays-key": str(getattr(strategy, "arrayrecord_key", "arrays")),
        "run-config": run_config_digest(run_config),
    }


def round_config(
    server_round: int,
    n: int,
    d: int,
    keys: Mapping[int, bytes],
    train: str,
    *,
    settings: Callable[[UpdateEncoder], Mapping[str, int | float | str | bool]],
    of: Settings,
) -> tuple[UpdateEncoder, RoundConfig]:
    """The encoding and the round config for ``n`` nodes; ConfigError if they do not fit.

    ``of`` holds the strategy's settings (read now, each round); ``settings`` gives the
    encoding's settings bound into the config (:func:`encoding`); ``train`` is the digest of
    the round's one train message. A Harary graph's seed comes from the nodes' commit-reveal
    unless ``of.server_graph_seed`` (the opt-out).
    """
    encoder = update_encoder(of, d, n)
    if n > encoder.quant.max_clients:
        raise ConfigError(f"{n} nodes sampled, max_clients is {of.max_clients}")
    round_id = new_round_id(server_round)
    plan = plan_round(n, degree=of.degree, threshold=of.threshold)
    server_seed = of.server_graph_seed and not plan.complete
    cfg = RoundConfig(
        round_id=round_id,
        bits=encoder.bits,
        d=encoder.length,
        threshold=plan.threshold,
        graph=plan.graph(range(1, n + 1), round_id if server_seed else None),
        server_graph_seed=server_seed,
        signed=of.signed,
        identity_keys=dict(keys),
        encoding={**settings(encoder), "train-content": train},
    )
    return encoder, cfg
