"""Signed mode over Flower, end to end in one process on the loopback grid of
test_flower_loopback.py (every message crosses Flower's wire form both ways).

Each node has an Ed25519 identity key file and a members file named in its node config. A
signed round adds an "identify" message before setup and a "consistency" message before
unmask; a server that names a key no member trusts, or gives a node another key than its
own, gets declines instead of keys.
"""

from __future__ import annotations

import copy
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flwr")

import test_flower_loopback as lb
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable
from flwr.serverapp import Grid

from secureagg import ConfigError
from secureagg.flower import (
    RECORD_KEY,
    STATE_KEY,
    SecureAggregation,
    generate_identity,
    load_identity,
    load_members,
)
from secureagg.flower._strategy import RoundReport
from secureagg.protocol import RoundConfig

SIGNED_STAGES = ("identify", "setup", "share-keys", "masked-input", "consistency", "unmask")


pytestmark = pytest.mark.usefixtures("flower_task_identity")


def _keys(tmp: Path, n: int) -> list[bytes]:
    return [generate_identity(tmp / f"node{p}.key") for p in range(n)]


def _members(tmp: Path, keys: Iterable[bytes], name: str = "members.txt") -> Path:
    path = tmp / name
    path.write_text("# the round's members\n" + "".join(f"{k.hex()}  # a node\n" for k in keys))
    return path


def _grid(
    tmp: Path,
    app: Any,
    n: int,
    *,
    members: Mapping[int, Path | None] | None = None,
    bare: Iterable[int] = (),
    lose: lb.Lose | None = None,
) -> tuple[lb.LoopbackGrid, list[bytes]]:
    """``n`` nodes, each with its key and (default) one members file of all ``n`` keys;
    ``members`` overrides a node's file (None: no members file); ``bare`` nodes have neither."""
    keys = _keys(tmp, n)
    shared = _members(tmp, keys)
    grid = lb.LoopbackGrid(app, n, lose=lose)
    for node, context in grid.contexts.items():
        p = lb._partition(node)
        if p in set(bare):
            continue
        context.node_config["secureagg-identity-key"] = str(tmp / f"node{p}.key")
        path = (members or {}).get(p, shared)
        if path is not None:
            context.node_config["secureagg-members"] = str(path)
    return grid, keys


def _signed(**kwargs: Any) -> SecureAggregation:
    return lb._strategy(signed=True, **kwargs)


def _declined(report: RoundReport) -> dict[int, str]:
    return {lb._partition(n): why for n, why in report.declined.items()}


def _dropped(report: RoundReport) -> dict[int, str]:
    return {lb._partition(n): stage for n, stage in report.dropouts.items()}


def _check_average(report: RoundReport, models: dict[int, Any], members: list[int]) -> None:
    assert report.aborted is None
    assert [lb._partition(n) for n in report.survivors] == members
    want = lb._fedavg(models[0], members, 1)
    assert 0.0 < report.error_bound < 1e-3
    assert lb._max_diff(models[1], want) <= report.error_bound + lb.F32_SLACK


# -- whole signed rounds ---------------------------------------------------------------------------


def test_a_signed_round_equals_fedavg_and_adds_identify_and_consistency(tmp_path: Path) -> None:
    events: list[tuple[int, str]] = []
    grid, keys = _grid(tmp_path, lb._app(events=events), 4)
    strategy = _signed()
    models = lb._run(grid, strategy, 2)
    for rnd in (1, 2):
        report = strategy.reports[rnd]
        assert report.aborted is None and report.dropouts == {} and report.declined == {}
        assert [lb._partition(n) for n in report.survivors] == [0, 1, 2, 3]
        want = lb._fedavg(models[rnd - 1], range(4), rnd)
        assert lb._max_diff(models[rnd], want) <= report.error_bound + lb.F32_SLACK
    for p in range(4):
        seen = [e for q, e in events if q == p]
        assert seen == [*SIGNED_STAGES[:4], "train", *SIGNED_STAGES[4:]] * 2
    # The setup config is signed and names each node's own key for its client id.
    setups = [m for m in grid.sent if lb._stage(m) == "setup"]
    for msg in setups[:4]:
        rec = msg.content[RECORD_KEY]
        cfg = RoundConfig.from_bytes(rec["config"])
        assert cfg.signed and cfg.consistency_quorum == 4
        assert (
            cfg.identity_keys[int(rec["client-id"])]
            == keys[lb._partition(msg.metadata.dst_node_id)]
        )
    # An identify reply is the public key alone: nothing secret leaves a node.
    identify = [r for r in grid.replies if r.content[RECORD_KEY]["stage"] == "identify"]
    assert sorted(bytes(r.content[RECORD_KEY]["data"]) for r in identify) == sorted(keys * 2)
    assert all(STATE_KEY not in c.state.config_records for c in grid.contexts.values())


@pytest.mark.parametrize("stage", ["consistency", "unmask"])
def test_a_dropout_at_consistency_or_unmask_stays_in_the_sum(tmp_path: Path, stage: str) -> None:
    def lose(p: int, msg: Message) -> bool:
        return p == 2 and lb._stage(msg) == stage

    grid, _ = _grid(tmp_path, lb._app(), 5, lose=lose)  # t = 3, quorum 4
    strategy = _signed()
    models = lb._run(grid, strategy, 1)
    report = strategy.reports[1]
    _check_average(report, models, [0, 1, 2, 3, 4])  # its masked input was in U3
    assert _dropped(report) == {2: stage}


def test_fewer_signatures_than_the_quorum_abort_before_any_share_is_revealed(
    tmp_path: Path,
) -> None:
    def lose(p: int, msg: Message) -> bool:
        return p in (1, 3) and lb._stage(msg) == "consistency"

    events: list[tuple[int, str]] = []
    grid, _ = _grid(tmp_path, lb._app(events=events), 5, lose=lose)
    strategy = _signed()
    models = lb._run(grid, strategy, 1)
    report = strategy.reports[1]
    assert report.aborted is not None and "consistency" in report.aborted.lower()
    assert lb._max_diff(models[1], {k: v.astype(float) for k, v in models[0].items()}) == 0.0
    assert not [e for e in events if e[1] == "unmask"]  # 3 signatures < quorum 4


# -- nodes the round leaves out, or that decline -------------------------------------------------


def test_nodes_without_a_key_or_members_list_are_left_out(tmp_path: Path) -> None:
    calls: list[int] = []
    # 0: no key, no members (cannot identify); 1: a key but no members list (declines setup)
    grid, _ = _grid(tmp_path, lb._app(calls=calls), 6, bare=[0], members={1: None})
    strategy = _signed()
    models = lb._run(grid, strategy, 1)
    report = strategy.reports[1]
    _check_average(report, models, [2, 3, 4, 5])
    declined = _declined(report)
    assert "no identity key" in declined[0] and "no members list" in declined[1]
    assert _dropped(report) == {0: "identify", 1: "advertise"}
    assert sorted(calls) == [2, 3, 4, 5]


def test_a_key_outside_the_members_list_makes_the_members_decline(tmp_path: Path) -> None:
    """Node 3 stands for a node the server operator runs: a valid key, not a member's."""
    calls: list[int] = []
    grid, keys = _grid(tmp_path, lb._app(calls=calls), 4)
    trusted = _members(tmp_path, keys[:3], "trusted.txt")
    for p in range(4):
        grid.contexts[lb.FIRST_NODE + p].node_config["secureagg-members"] = str(trusted)
    strategy = _signed()
    lb._run(grid, strategy, 1)
    report = strategy.reports[1]
    assert report.aborted is not None and calls == []
    declined = _declined(report)
    assert set(declined) == {0, 1, 2, 3}
    assert all("not in the members list" in why for why in declined.values())


@pytest.mark.parametrize("has_members", [True, False])
def test_a_member_declines_an_unsigned_round(tmp_path: Path, has_members: bool) -> None:
    """So does a node with an identity key and no members file: it meant to run signed."""
    calls: list[int] = []
    no_file: dict[int, Path | None] = {p: None for p in range(4)}
    grid, _ = _grid(tmp_path, lb._app(calls=calls), 4, members=None if has_members else no_file)
    strategy = lb._strategy()  # unsigned
    lb._run(grid, strategy, 1)
    report = strategy.reports[1]
    assert report.aborted is not None and calls == []
    assert all("only in signed rounds" in w for w in _declined(report).values())
    assert len(report.declined) == 4


class _Tampering(SecureAggregation):
    """A server that changes the identity keys the nodes gave before it builds the config."""

    def __init__(self, change: Any) -> None:
        fedavg = lb.FedAvg(fraction_evaluate=0.0, min_available_nodes=2, min_train_nodes=2)
        super().__init__(fedavg, max_examples=lb.MAX_EXAMPLES, signed=True)
        self.change = change

    def _identify(
        self, grid: Grid, nodes: list[int], server_round: int, report: RoundReport
    ) -> dict[int, bytes]:
        given = super()._identify(grid, nodes, server_round, report)
        return dict(self.change(given))


def test_a_server_that_gives_a_node_another_members_key_is_declined(tmp_path: Path) -> None:
    """The members list has a sixth member, E, who is not in the round. Giving node 0 E's
    key makes node 0 decline (E cannot sign for it); the others still see only trusted keys."""
    calls: list[int] = []
    grid, keys = _grid(tmp_path, lb._app(calls=calls), 5)
    extra = generate_identity(tmp_path / "extra.key")
    everyone = _members(tmp_path, [*keys, extra], "everyone.txt")
    for context in grid.contexts.values():
        context.node_config["secureagg-members"] = str(everyone)
    first = lb.FIRST_NODE

    def substitute(given: dict[int, bytes]) -> dict[int, bytes]:
        return {**given, first: extra}

    strategy = _Tampering(substitute)
    models = lb._run(grid, strategy, 1)
    report = strategy.reports[1]
    _check_average(report, models, [1, 2, 3, 4])
    assert "another identity key" in _declined(report)[0]
    assert 0 not in calls


def test_a_server_that_gives_two_nodes_one_key_is_declined_by_all(tmp_path: Path) -> None:
    calls: list[int] = []
    grid, _ = _grid(tmp_path, lb._app(calls=calls), 4)
    first = lb.FIRST_NODE

    def duplicate(given: dict[int, bytes]) -> dict[int, bytes]:
        return {**given, first + 1: given[first]}

    strategy = _Tampering(duplicate)
    lb._run(grid, strategy, 1)
    report = strategy.reports[1]
    assert report.aborted is not None and calls == []
    declined = _declined(report)
    assert "another identity key" in declined[1]
    assert all("same identity key" in declined[p] for p in (0, 2, 3))


def _bad_identify(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Partitions 4..7 answer identify with garbage, an error, node 0's key, or a str."""
    p = int(context.node_config["partition-id"])
    if lb._stage(msg) != "identify" or p < 4:
        return call_next(msg, context)
    if p == 5:
        raise RuntimeError("node 5 crashes")
    data: Any = {4: b"\x01" * 31, 6: None, 7: "a key"}[p]
    if p == 6:
        path = str(context.node_config["secureagg-identity-key"]).replace("node6", "node0")
        data = load_identity(path).public_key().public_bytes_raw()
    return Message(
        RecordDict({RECORD_KEY: ConfigRecord({"stage": "identify", "data": data})}), reply_to=msg
    )


def test_garbage_error_and_duplicate_identify_replies_are_left_out(tmp_path: Path) -> None:
    grid, _ = _grid(tmp_path, lb._app(_bad_identify), 8)
    strategy = _signed()
    models = lb._run(grid, strategy, 1)
    report = strategy.reports[1]
    _check_average(report, models, [1, 2, 3])
    declined = _declined(report)
    assert set(declined) == {0, 4, 5, 6, 7}
    assert "32-byte key" in declined[4] and "32-byte key" in declined[7]
    assert "error reply" in declined[5] and "node 5 crashes" in declined[5]
    assert "another node's too" in declined[0] and "another node's too" in declined[6]
    assert set(_dropped(report).values()) == {"identify"}


# -- the key files and the settings ---------------------------------------------------------------


def test_identity_and_members_files(tmp_path: Path) -> None:
    path = tmp_path / "id.key"
    public = generate_identity(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_identity(path).public_key().public_bytes_raw() == public
    assert os.listdir(tmp_path) == ["id.key"]  # no temporary file left
    with pytest.raises(ConfigError, match="never overwritten"):
        generate_identity(path)
    for nameless in ("", "/"):
        with pytest.raises(ConfigError, match="does not name a file"):
            generate_identity(nameless)
    raw = Ed25519PrivateKey.generate()
    (tmp_path / "raw.key").write_bytes(raw.private_bytes_raw())
    loaded = load_identity(tmp_path / "raw.key").public_key().public_bytes_raw()
    assert loaded == raw.public_key().public_bytes_raw()
    for bad in (b"", b"zz" * 32, b"ab" * 31):
        (tmp_path / "bad.key").write_bytes(bad)
        with pytest.raises(ConfigError):
            load_identity(tmp_path / "bad.key")
    with pytest.raises(ConfigError, match="cannot read"):
        load_identity(tmp_path / "missing.key")
    members = _members(tmp_path, [public])
    assert load_members(members) == {public}
    for text in ("# only a comment\n", f"{public.hex()[:-2]}\n", "not hex at all\n"):
        members.write_text(text)
        with pytest.raises(ConfigError):
            load_members(members)


def test_signed_is_a_bool_setting() -> None:
    fedavg = lb.FedAvg()
    base = {"secureagg-max-examples": 10}
    assert not SecureAggregation.from_config(fedavg, base).signed
    assert SecureAggregation.from_config(fedavg, {**base, "secureagg-signed": True}).signed
    with pytest.raises(ConfigError, match="secureagg-signed"):
        SecureAggregation.from_config(fedavg, {**base, "secureagg-signed": 1})
    with pytest.raises(ConfigError, match="signed"):
        SecureAggregation(fedavg, max_examples=10, signed="yes")  # type: ignore[arg-type]


class _ReusesRoundIds(SecureAggregation):
    """A server that gives every round the same round id."""

    def configure_train(self, server_round: int, *args: Any, **kwargs: Any) -> Any:
        import secureagg.flower._round_config as config_module

        real = config_module.new_round_id
        config_module.new_round_id = lambda counter=0: bytes(16) + bytes(8)  # type: ignore[assignment]
        try:
            return super().configure_train(server_round, *args, **kwargs)
        finally:
            config_module.new_round_id = real  # type: ignore[assignment]


def test_a_replayed_round_id_is_declined_by_every_member(tmp_path: Path) -> None:
    """Signatures bind the round id and the config; a round id a node signed for once is
    refused ever after (the node's round log sits next to its key), so old consistency
    signatures can never count in a new round."""
    grid, _ = _grid(tmp_path, lb._app(), 4)
    strategy = _ReusesRoundIds(
        lb.FedAvg(fraction_evaluate=0.0, min_available_nodes=2, min_train_nodes=2),
        max_examples=lb.MAX_EXAMPLES,
        signed=True,
    )
    lb._run(grid, strategy, 2)
    assert strategy.reports[1].aborted is None
    second = strategy.reports[2]
    assert second.aborted is not None
    assert len(_declined(second)) == 4
    assert all("used before" in why for why in _declined(second).values())
    rid = bytes(24)
    assert (tmp_path / "node0.key.rounds").read_text().split() == [rid.hex()]


def test_a_session_rolled_back_to_before_unmask_answers_only_the_same_bytes(
    tmp_path: Path,
) -> None:
    """Flower saves a ClientApp's Context after its reply leaves; a node that dies in between
    restores the session from before unmask. Asked the same again, it re-sends the bytes
    its journal holds; asked anything else (another dropout list, say), it declines."""
    snapshots: dict[int, RecordDict] = {}

    def keep_state(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if lb._stage(msg) == "unmask":
            snapshots[lb._partition(context.node_id)] = copy.deepcopy(context.state)
        return call_next(msg, context)

    grid, _ = _grid(tmp_path, lb._app(keep_state), 4)
    strategy = _signed()
    lb._run(grid, strategy, 1)
    assert strategy.reports[1].aborted is None
    (unmask,) = [
        m
        for m in grid.sent
        if lb._stage(m) == "unmask" and lb._partition(m.metadata.dst_node_id) == 0
    ]
    node = next(n for n in grid.contexts if lb._partition(n) == 0)
    (first,) = [
        r
        for r in grid.replies
        if lb._stage(r) == "unmask" and lb._partition(r.metadata.src_node_id) == 0
    ]
    grid.contexts[node].state = copy.deepcopy(snapshots[0])  # the rollback
    answer = lb._ask(grid, copy.deepcopy(unmask))
    assert answer.content[RECORD_KEY]["data"] == first.content[RECORD_KEY]["data"]
