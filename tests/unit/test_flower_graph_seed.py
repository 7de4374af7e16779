"""SecAgg+ over Flower (the real mod, the loopback grid): the graph seed comes from the nodes'
commit-reveal, and a node takes part in a server-seeded round only if its node config says so.
"""

from __future__ import annotations

import pytest

pytest.importorskip("flwr")

import test_flower_loopback as lb

from secureagg.flower._mod import SERVER_SEED_KEY
from secureagg.protocol import KeysBroadcast, RoundConfig, SeedCommitments, decode

pytestmark = pytest.mark.usefixtures("flower_task_identity")

N = 7  # degree 4 < n - 1: a Harary graph


def _protocol_bytes(grid: lb.LoopbackGrid, stage: str) -> list[bytes]:
    out = []
    for msg in grid.sent:
        rec = msg.content.config_records.get(lb.RECORD_KEY)
        if rec is not None and rec.get("stage") == stage:
            out.append(rec["data"] if stage != "setup" else rec["config"])
    return out


def test_a_secagg_plus_round_over_flower_reveals_the_seed_and_sums_exactly() -> None:
    events: list[tuple[int, str]] = []
    grid = lb.LoopbackGrid(lb._app(events=events), N)
    strategy = lb._strategy(degree=4)
    models = lb._run(grid, strategy, 1)
    report = strategy.reports[1]
    assert report.aborted is None and report.declined == {} and report.dropouts == {}
    assert [lb._partition(n) for n in report.survivors] == list(range(N))
    want = lb._fedavg(models[0], range(N), 1)
    assert lb._max_diff(models[1], want) <= report.error_bound + lb.F32_SLACK
    for p in range(N):  # one stage more than a complete graph's round: the reveal
        seen = [e for q, e in events if q == p]
        assert seen == ["setup", "reveal", "share-keys", "masked-input", "train", "unmask"]
    config = RoundConfig.from_bytes(_protocol_bytes(grid, "setup")[0])
    assert config.commit_reveal and not config.server_graph_seed
    lists = [decode(b) for b in _protocol_bytes(grid, "reveal")]
    assert all(isinstance(m, SeedCommitments) and len(m.commitments) == N for m in lists)
    keys = [decode(b) for b in _protocol_bytes(grid, "share-keys")]
    assert all(isinstance(m, KeysBroadcast) and len(m.reveals) == N for m in keys)


@pytest.mark.parametrize("allowed", [False, True])
def test_a_server_chosen_seed_is_declined_unless_the_node_config_allows_it(allowed: bool) -> None:
    grid = lb.LoopbackGrid(lb._app(), N)
    for context in grid.contexts.values():
        context.node_config[SERVER_SEED_KEY] = allowed
    strategy = lb._strategy(degree=4, server_graph_seed=True)
    lb._run(grid, strategy, 1)
    report = strategy.reports[1]
    config = RoundConfig.from_bytes(_protocol_bytes(grid, "setup")[0])
    assert config.server_graph_seed and not config.commit_reveal
    if allowed:
        assert report.aborted is None and len(report.survivors) == N
        assert _protocol_bytes(grid, "reveal") == []  # the opt-out has no reveal stage
    else:
        assert len(report.declined) == N and report.survivors == []
        assert all("allow_server_graph_seed" in why for why in report.declined.values())
