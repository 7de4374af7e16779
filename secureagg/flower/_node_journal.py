"""Where a node's journal lives: the file its node config names, else a file in Flower's home.

The journal records every reply that commits the node before the reply leaves; it must
outlive the ClientApp process, because Flower saves the node's Context only after the
reply is sent (docs/flower.md, "The journal"). So the default is a file, never memory.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flwr.app import Context

from secureagg._exceptions import ConfigError
from secureagg.protocol import FileJournal, Journal, MemoryJournal

__all__ = ["JOURNAL_KEY", "MEMORY_JOURNAL", "default_journal_path", "node_journal"]

log = logging.getLogger("secureagg.flower")

JOURNAL_KEY = "secureagg-journal"
"""Node config key: the path of the node's journal file. Default: the identity key's path
+ ``.journal`` in signed mode, else ``secureagg/node-<node id>.journal`` in Flower's home
(``FLWR_HOME``, else ``~/.flwr``); :data:`MEMORY_JOURNAL` is the named opt-out."""
MEMORY_JOURNAL = ":memory:"
"""The value of ``secureagg-journal`` that keeps the journal in the process's memory: it
does not survive the ClientApp process, so a rolled-back node is no longer protected."""

_MEMORY_JOURNALS: dict[tuple[int, int], MemoryJournal] = {}
"""In-memory journals (the opt-out), by (run id, node id): they last as long as the process."""
_FILE_JOURNALS: dict[str, FileJournal] = {}
"""Journal files by path: a process that handles many messages (the simulation engine's
workers) reads each file once, not per message."""


def default_journal_path(node_id: int, identity_key: str | None) -> Path:
    """The journal file of a node whose node config names none.

    Parameters:
        node_id: The node's Flower node id.
        identity_key: The path of its identity key (signed mode), if it has one.

    Returns:
        ``<identity key>.journal``, else ``<Flower home>/secureagg/node-<node id>.journal``.
    """
    if identity_key is not None:
        return Path(f"{identity_key}.journal")
    home = os.environ.get("FLWR_HOME") or str(Path.home() / ".flwr")
    return Path(home) / "secureagg" / f"node-{node_id}.journal"


def node_journal(context: Context, path: str | None, identity_key: str | None) -> Journal:
    """The node's journal: ``path`` (its node config's value), else the default file.

    Parameters:
        context: The node's Flower context.
        path: The node config's ``secureagg-journal``, or None.
        identity_key: The node config's identity key path, or None.

    Returns:
        The journal.

    Raises:
        ConfigError: The default file's folder cannot be made (the message names the key).
    """
    if path == MEMORY_JOURNAL:
        where = (context.run_id, context.node_id)
        if where not in _MEMORY_JOURNALS:
            log.warning(
                "secureagg: %s=%s: this node's journal lives in memory and does not survive "
                "the ClientApp process (see docs/flower.md)",
                JOURNAL_KEY,
                MEMORY_JOURNAL,
            )
        return _MEMORY_JOURNALS.setdefault(where, MemoryJournal())
    if path is None:
        default = default_journal_path(context.node_id, identity_key)
        try:
            default.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"name a writable journal file in the node config's {JOURNAL_KEY!r}: the "
                f"default {str(default)!r} cannot be made ({exc.strerror})"
            ) from exc
        path = str(default)
    path = os.path.abspath(path)
    journal = _FILE_JOURNALS.get(path)
    if journal is None:  # read once per process; it re-reads the file only if it changed
        journal = _FILE_JOURNALS.setdefault(path, FileJournal(path))
    return journal
