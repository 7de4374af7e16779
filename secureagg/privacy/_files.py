"""Atomic, durable file writes for the ledgers."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from secureagg._exceptions import ConfigError


def save_json(path: str | os.PathLike[str] | None, bound: Path | None, doc: dict[str, Any]) -> Path:
    """Write a ledger's ``doc`` atomically to ``path``, or to ``bound`` (its own) when None.

    Returns the path written; ConfigError when there is neither (an in-memory ledger).
    """
    target = Path(path) if path is not None else bound
    if target is None:
        raise ConfigError("this ledger is in memory only: pass a path to save()")
    write_atomically(target, json.dumps(doc, indent=1, allow_nan=False).encode("utf-8"))
    return target


def write_atomically(target: Path, data: bytes) -> None:
    """Replace ``target`` with ``data``: a temp file beside it, fsync, ``os.replace``, fsync dir.

    A reader sees the old file or the new one, never a half-written one; the temp file is
    removed if anything fails (an interrupt included).
    """
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not supported here (e.g. Windows): the replace itself is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
