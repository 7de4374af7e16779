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

    A record is appended under an exclusive ``flock`` of the file, after re-reading it, so
    two processes (or threads) of one client never both record a reply under one key.

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
        self._load()

    def _load(self) -> None:
        try:
            with open(self.path, "rb") as f:
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

    def lookup(self, key: bytes) -> bytes | None:
        """The value recorded under ``key``, or None.

        Parameters:
            key: The record's key.

        Returns:
            The value, or None.
        """
        return self._entries.get(key)

    def record(self, key: bytes, value: bytes) -> None:
        """Append ``(key, value)`` and fsync.

        Parameters:
            key: The record's key.
            value: The value.

        Raises:
            ProtocolError: ``key`` is already there.
        """
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
                if self._good == 0:
                    os.ftruncate(fd, 0)
                    rec = _MAGIC + rec
                else:
                    os.ftruncate(fd, self._good)  # drop a torn tail
                os.lseek(fd, 0, os.SEEK_END)
                view = memoryview(rec)
                while view:
                    view = view[os.write(fd, view) :]
                _sync(fd)
            except OSError as exc:
                raise ConfigError(f"cannot write the journal {str(self.path)!r}: {exc}") from exc
        finally:
            os.close(fd)  # releases the lock
        self._entries[key] = bytes(value)
        self._good += len(rec)

    def _load_fresh(self) -> None:
        """Re-read the file: another session of this client may have written to it."""
        self._entries = {}
        self._good = 0
        self._load()
