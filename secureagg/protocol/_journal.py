"""The client's journal: what each committing reply was, recorded before the reply leaves.

A client's saved session can be older than what it sent (Flower pushes a reply before it
saves the node's Context; a backup can be restored). A session that meets its journal
never commits twice in one round: it re-sends the byte-identical reply to the identical
request, or refuses. The caller provides the storage (:class:`Journal`);
:class:`FileJournal` keeps it in an append-only file, synced before :meth:`record`
returns; :class:`MemoryJournal` lasts as long as the process.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

from secureagg._exceptions import ConfigError, ProtocolError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["FileJournal", "Journal", "MemoryJournal"]


@runtime_checkable
class Journal(Protocol):
    """Durable, append-only storage of (key, value) records; a key is written once."""

    def lookup(self, key: bytes) -> bytes | None:
        """The value recorded under ``key``, or None.

        Parameters:
            key: The record's key.

        Returns:
            The value, or None.
        """

    def record(self, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key`` durably before returning.

        Parameters:
            key: The record's key.
            value: The value.

        Raises:
            ProtocolError: ``key`` already holds a value.
        """


class MemoryJournal:
    """A journal in this process's memory: it protects a session restored in the same
    process, not one restored after a crash (use :class:`FileJournal` for that)."""

    def __init__(self) -> None:
        self._entries: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    def lookup(self, key: bytes) -> bytes | None:
        """The value recorded under ``key``, or None.

        Parameters:
            key: The record's key.

        Returns:
            The value, or None.
        """
        return self._entries.get(key)

    def record(self, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key`` (once).

        Parameters:
            key: The record's key.
            value: The value.

        Raises:
            ProtocolError: ``key`` already holds a value.
        """
        with self._lock:  # check and store as one step: two threads never both record
            if key in self._entries:
                raise ProtocolError("the journal already holds this reply")
            self._entries[key] = bytes(value)


_sync = getattr(os, "fdatasync", os.fsync)
"""fdatasync where there is one: it flushes the data and the size an append changed."""

_MAGIC = b"SAJ1"
_HEAD = struct.Struct(">II")
_CHECK = 8
_MAX_FIELD = 1 << 26


class FileJournal:
    """A journal in an append-only file (mode 0o600), synced (fdatasync) after every record.

    A record is appended under an exclusive ``flock`` of the file, after re-reading it if
    it changed since this journal last read or wrote it (its device, inode and size tell),
    so two processes (or threads) of one client never both record a reply under one key.
    :meth:`lookup` re-reads a changed file too, so one instance can serve a client for
    many rounds without reading the whole file per message.

    Each record is u32 key length, u32 value length, key, value and the first 8 bytes of
    their SHA-256. A torn last record (the process died while writing it, so its reply
    never left) is ignored and cut off before the next write; damage anywhere else is a
    ConfigError: the client then takes part in no round until someone looks at the file.

    Parameters:
        path: The journal file (created if missing).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._entries: dict[bytes, bytes] = {}
        self._good = 0  # bytes of whole records
        self._seen: tuple[int, int, int] | None = None  # see _unchanged
        self._lock = threading.RLock()  # one instance may serve several threads
        self._load()

    def _load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                file = os.fstat(f.fileno())
                data = f.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ConfigError(f"cannot read the journal {str(self.path)!r}: {exc}") from exc
        if _MAGIC.startswith(data):
            return  # empty, or torn inside the magic: nothing was ever recorded
        if data[: len(_MAGIC)] != _MAGIC:
            raise ConfigError(f"{str(self.path)!r} is not a secureagg journal")
        pos = len(_MAGIC)
        while pos < len(data):
            if pos + _HEAD.size > len(data):
                break  # torn
            k, v = _HEAD.unpack_from(data, pos)
            end = pos + _HEAD.size + k + v + _CHECK
            if k > _MAX_FIELD or v > _MAX_FIELD:
                raise ConfigError(f"the journal {str(self.path)!r} is damaged at byte {pos}")
            if end > len(data):
                break  # torn
            key = data[pos + _HEAD.size : pos + _HEAD.size + k]
            value = data[pos + _HEAD.size + k : end - _CHECK]
            if hashlib.sha256(key + value).digest()[:_CHECK] != data[end - _CHECK : end]:
                if end == len(data):
                    break  # torn in its last bytes
                raise ConfigError(f"the journal {str(self.path)!r} is damaged at byte {pos}")
            self._entries.setdefault(key, value)
            pos = end
        self._good = pos
        if pos == len(data):  # whole records only: any later write makes the file longer
            self._seen = (file.st_dev, file.st_ino, pos)

    def _unchanged(self) -> bool:
        """Whether the file is still the one of whole records last read or written here.

        Every writer appends under the lock after cutting the file to its whole records,
        so a file that held whole records and was written to since is longer; the same
        device, inode and size mean the same contents (replacing the file by an older copy
        of the same size is a lost journal: see docs/protocol.md).
        """
        if self._seen is None:
            return False
        try:
            file = os.stat(self.path)
        except OSError:
            return False
        return (file.st_dev, file.st_ino, file.st_size) == self._seen

    def _refresh(self) -> None:
        """Re-read the file unless it is unchanged since this journal last read or wrote it."""
        if not self._unchanged():
            self._entries = {}
            self._good = 0
            self._seen = None
            self._load()

    def lookup(self, key: bytes) -> bytes | None:
        """The value recorded under ``key``, or None.

        Parameters:
            key: The record's key.

        Returns:
            The value, or None.
        """
        with self._lock:
            self._refresh()  # another process of this client may have recorded since
            return self._entries.get(key)

    def record(self, key: bytes, value: bytes) -> None:
        """Append ``(key, value)`` and fsync.

        Parameters:
            key: The record's key.
            value: The value.

        Raises:
            ProtocolError: ``key`` is already there.
        """
        with self._lock:
            self._record(key, value)

    def _record(self, key: bytes, value: bytes) -> None:
        body = key + value
        rec = _HEAD.pack(len(key), len(value)) + body + hashlib.sha256(body).digest()[:_CHECK]
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot write the journal {str(self.path)!r}: {exc}") from exc
        try:
            # One writer at a time (two processes of one node handling one message twice):
            # re-read, check and append under an exclusive lock, or both could record.
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except OSError as exc:
                    raise ConfigError(f"cannot lock the journal {str(self.path)!r}: {exc}") from exc
            self._load_fresh()
            if key in self._entries:
                raise ProtocolError("the journal already holds this reply")
            try:
                first = self._good == 0
                if first:
                    os.ftruncate(fd, 0)
                    rec = _MAGIC + rec
                else:
                    os.ftruncate(fd, self._good)  # drop a torn tail
                os.lseek(fd, 0, os.SEEK_END)
                view = memoryview(rec)
                while view:
                    view = view[os.write(fd, view) :]
                _sync(fd)
                if first:
                    self._sync_folder()  # the file's name, once: else a crash can lose the file
                file = os.fstat(fd)
            except OSError as exc:
                raise ConfigError(f"cannot write the journal {str(self.path)!r}: {exc}") from exc
        finally:
            os.close(fd)  # releases the lock
        self._entries[key] = bytes(value)
        self._good += len(rec)
        self._seen = (file.st_dev, file.st_ino, self._good)

    def _sync_folder(self) -> None:
        """fsync the folder that holds the file (POSIX), so its entry survives a crash."""
        if os.name != "posix":  # pragma: no cover - a folder cannot be opened for fsync
            return
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _load_fresh(self) -> None:
        """Bring the records up to date with the file (under the lock): another session of
        this client may have written to it. Reads it only if it changed (:meth:`_unchanged`)."""
        self._refresh()
