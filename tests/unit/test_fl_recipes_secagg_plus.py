"""The transport recipes on a SecAgg+ (Harary) graph: the clients fix its seed by
commit-reveal, one call per stage; the server-seed opt-out only with both sides' consent."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_fl_recipes import _expected_total, _update

from secureagg import RoundAborted
from secureagg.fl import SecureAggClient, SecureAggConfig, SecureAggregator, SecureAggServer
from secureagg.protocol import Stage

D = 6


@pytest.mark.parametrize("server_seed", [False, True])
def test_a_secagg_plus_round_fixes_its_graph_by_the_clients_commit_reveal(
    server_seed: bool,
) -> None:
    ids = list(range(1, 9))
    cfg = SecureAggConfig(
        degree=4, threshold=3, allow_minority_threshold=True, server_graph_seed=server_seed
    )
    agg = SecureAggregator({"w": torch.zeros(D)}, cfg, max_clients=8, max_examples=100)
    server = SecureAggServer(agg, ids)
    assert server.config.commit_reveal is not server_seed
    if server_seed:  # the opt-out: a client joins only when it allows it too
        with pytest.raises(RoundAborted, match="allow_server_graph_seed"):
            SecureAggClient(agg.client_encoder(), 1, allow_minority_threshold=True).join(
                server.config_bytes
            )
    clients = {
        u: SecureAggClient(
            agg.client_encoder(),
            u,
            allow_minority_threshold=True,
            allow_server_graph_seed=server_seed,
        )
        for u in ids
    }
    stages = []
    for u, client in clients.items():
        server.receive(u, client.join(server.config_bytes))
    out = server.close_stage()
    while server.stage is not None:
        stages.append(server.stage)
        for u, msg in out.items():
            if clients[u].needs_update:
                clients[u].provide_update(_update(u), np.random.default_rng(u))
            server.receive(u, clients[u].receive(msg))  # one call per stage
        out = server.close_stage()
    assert (Stage.REVEAL in stages) is not server_seed
    res = server.result()
    assert res.protocol is not None
    np.testing.assert_array_equal(res.protocol.total.astype(np.uint64), _expected_total(agg, ids))
