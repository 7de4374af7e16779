"""FileJournal: one instance serves a client over many messages and rounds, reads its file
again only when the file changed, and makes a new file's name durable once."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from secureagg import ProtocolError
from secureagg.protocol import FileJournal


def _count_reads(journal: FileJournal, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    reads = [0]
    real = journal._load

    def counting() -> None:
        reads[0] += 1
        real()

    monkeypatch.setattr(journal, "_load", counting)
    return reads


def test_a_journal_sees_what_another_instance_recorded(tmp_path: Path) -> None:
    """Two instances on one file (two processes of one node): each sees the other's records
    in lookup and refuses a key the other recorded."""
    path = tmp_path / "node.journal"
    one, two = FileJournal(path), FileJournal(path)
    one.record(b"k1", b"v1")
    two.record(b"k2", b"v2")
    assert one.lookup(b"k2") == b"v2"
    assert two.lookup(b"k1") == b"v1"
    with pytest.raises(ProtocolError):
        one.record(b"k2", b"other")
    with pytest.raises(ProtocolError):
        two.record(b"k1", b"other")
    assert FileJournal(path).lookup(b"k1") == b"v1"


def test_an_unchanged_file_is_not_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records and lookups of one instance read the file only after someone else wrote it."""
    path = tmp_path / "node.journal"
    journal = FileJournal(path)
    journal.record(b"k1", b"v1")
    reads = _count_reads(journal, monkeypatch)
    journal.record(b"k2", b"v2")
    journal.record(b"k3", b"v3")
    assert journal.lookup(b"k1") == b"v1"
    assert reads[0] == 0
    FileJournal(path).record(b"k4", b"v4")  # another writer: the file is longer
    assert journal.lookup(b"k4") == b"v4"
    assert reads[0] == 1
    journal.record(b"k5", b"v5")
    assert reads[0] == 1


def test_a_deleted_torn_or_replaced_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "node.journal"
    journal = FileJournal(path)
    journal.record(b"k1", b"v1")
    journal.record(b"k2", b"v" * 100)
    whole = path.read_bytes()
    path.write_bytes(whole + whole[4:20])  # a record torn while being written
    assert journal.lookup(b"k2") == b"v" * 100
    journal.record(b"k3", b"v3")  # the torn tail is cut off first
    assert path.read_bytes().startswith(whole)
    assert FileJournal(path).lookup(b"k3") == b"v3"
    os.remove(path)  # a lost journal: the instance does not pretend otherwise
    assert journal.lookup(b"k1") is None
    journal.record(b"k1", b"again")
    assert FileJournal(path).lookup(b"k1") == b"again"
    other = tmp_path / "other.journal"
    FileJournal(other).record(b"k9", b"v9")
    os.replace(other, path)  # another file (another inode) under the name
    assert journal.lookup(b"k1") is None and journal.lookup(b"k9") == b"v9"


def test_the_first_record_syncs_the_folder_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record that creates the file also fsyncs its folder (else a crash can lose the
    file's name with its synced contents); later records and instances do not."""
    folders: list[int] = []
    real = os.fsync

    def spy(fd: Any) -> None:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            folders.append(info.st_ino)
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    path = tmp_path / "node.journal"
    journal = FileJournal(path)
    for i in range(3):
        journal.record(b"k%d" % i, b"v")
    FileJournal(path).record(b"k9", b"v")
    assert folders == [os.stat(tmp_path).st_ino]
