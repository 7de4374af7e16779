"""A node that names no journal keeps it in a file in Flower's home, not in memory: a node
whose ClientApp process dies after a reply (Flower saves the Context after the reply leaves)
and that is then rolled back still never masks twice."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

pytest.importorskip("flwr")

import test_flower_hostile_server as hs
import test_flower_loopback as lb
from flwr.app import ConfigRecord, RecordDict

import secureagg.flower._node_journal as node_journal
from secureagg.flower._node_journal import JOURNAL_KEY, MEMORY_JOURNAL, default_journal_path
from secureagg.protocol import FileJournal

pytestmark = pytest.mark.usefixtures("flower_task_identity")


def _grid_without_journal_key(app: object, n: int) -> lb.LoopbackGrid:
    grid = lb.LoopbackGrid(app, n)  # type: ignore[arg-type]
    for context in grid.contexts.values():
        del context.node_config[JOURNAL_KEY]
    return grid


def _process_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a new ClientApp process starts with: no journal object in memory."""
    monkeypatch.setattr(node_journal, "_FILE_JOURNALS", {})
    monkeypatch.setattr(node_journal, "_MEMORY_JOURNALS", {})


def test_without_a_journal_key_the_journal_is_a_file_in_flowers_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr"))
    grid = _grid_without_journal_key(lb._app(), 3)
    strategy = lb._strategy()
    lb._run(grid, strategy, 1)
    assert strategy.reports[1].aborted is None and len(strategy.reports[1].survivors) == 3
    for node in grid.contexts:
        path = tmp_path / "flwr" / "secureagg" / f"node-{node}.journal"
        assert path == default_journal_path(node, None)
        assert path.stat().st_mode & 0o777 == 0o600
        assert len(FileJournal(path)._entries) == 2  # masked input, unmask answer


def test_a_rolled_back_node_in_a_new_process_still_never_masks_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack of issue 12 (rollback before the masked input, the model sent again with
    another train config) after the node's ClientApp process died: with the journal in
    memory (the old default) the new process masked a second update with the same masks."""
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr"))
    snapshots: dict[int, RecordDict] = {}
    calls: list[int] = []
    grid = _grid_without_journal_key(
        lb._app(hs._snapshots("masked-input", snapshots), calls=calls), 4
    )
    strategy = lb._strategy()
    lb._run(grid, strategy, 1)
    assert strategy.reports[1].aborted is None and sorted(calls) == [0, 1, 2, 3]
    node = lb.FIRST_NODE + hs.TARGET
    again = lb._with(hs._sent_to(grid, "masked-input", hs.TARGET))
    train_config = dict(again.content["config"].items())
    again.content["config"] = ConfigRecord({**train_config, "lr": 0.0})
    _process_restart(monkeypatch)
    grid.contexts[node].state = copy.deepcopy(snapshots[hs.TARGET])  # the rollback
    why = lb._declined(lb._ask(grid, again), "masked-input")
    assert "already sent its masked input" in why
    assert sorted(calls) == [0, 1, 2, 3]  # declined before training


def test_the_in_memory_journal_is_only_the_named_opt_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr"))
    grid = lb.LoopbackGrid(lb._app(), 3)
    for context in grid.contexts.values():
        context.node_config[JOURNAL_KEY] = MEMORY_JOURNAL
    strategy = lb._strategy()
    lb._run(grid, strategy, 1)
    assert strategy.reports[1].aborted is None
    assert not (tmp_path / "flwr").exists()  # nothing written: the user asked for memory
    assert not any(Path(p).exists() for p in (MEMORY_JOURNAL, Path.cwd() / MEMORY_JOURNAL))


def test_a_default_folder_that_cannot_be_made_declines_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("FLWR_HOME", str(blocker))  # a file: secureagg/ cannot be made in it
    grid = _grid_without_journal_key(lb._app(), 3)
    strategy = lb._strategy()
    lb._run(grid, strategy, 1)
    report = strategy.reports[1]
    assert len(report.declined) == 3
    assert all(JOURNAL_KEY in why for why in report.declined.values()), report.declined
