"""Check an output folder before any work: created if missing, and a file can be written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from secureagg._exceptions import ConfigError

__all__ = ["usable_folder"]


def usable_folder(path: Path, flag: str = "--out") -> Path:
    """Create ``path`` (and its parents) and write and remove a probe file in it.

    Parameters:
        path: The output folder.
        flag: The option that named it, for the message.

    Returns:
        ``path``, now an existing folder this process can write in.

    Raises:
        ConfigError: one line naming the folder and why it cannot be used.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".secureagg-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ConfigError(f"{flag} {str(path)!r} cannot be used as a folder: {why}") from None
    return path
