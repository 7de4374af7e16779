"""Signed mode's files on a SuperNode: its Ed25519 identity key and the trusted members list."""

from __future__ import annotations

import logging
import os
import string
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secureagg._exceptions import ConfigError

__all__ = ["claim_round", "generate_identity", "load_identity", "load_members", "public_bytes"]

log = logging.getLogger("secureagg.flower")

_KEY_SIZE = 32
_MAX_FILE = 1 << 24  # a members file of 16 MiB holds about 250,000 keys
_HEX = frozenset(string.hexdigits)


def generate_identity(path: str | os.PathLike[str]) -> bytes:
    """Write a fresh Ed25519 identity key to ``path`` (hex, mode 0o600).

    The file appears whole or not at all, and an existing file is never overwritten.
    Share the returned 32 bytes (``.hex()``) with the round's other members.

    Parameters:
        path: The new key file.

    Returns:
        The key's raw 32-byte public key.

    Raises:
        ConfigError: The file exists, or ``path`` names no file.
    """
    target = Path(path)
    if not target.name:
        raise ConfigError(f"{str(path)!r} does not name a file for the identity key")
    key = Ed25519PrivateKey.generate()
    secret = key.private_bytes_raw().hex().encode() + b"\n"
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write an identity key next to {str(target)!r}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secret)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, target)  # atomic, and fails if the target exists
    except FileExistsError as exc:
        raise ConfigError(f"{str(target)!r} exists: an identity key is never overwritten") from exc
    except OSError as exc:
        raise ConfigError(f"cannot write the identity key {str(target)!r}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return public_bytes(key)


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key of an identity key."""
    return key.public_key().public_bytes_raw()


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {str(path)!r}: {exc}") from exc
    if len(data) > _MAX_FILE:
        raise ConfigError(f"the {what} {str(path)!r} is larger than {_MAX_FILE} bytes")
    return data


def _hex_key(text: str, where: str) -> bytes:
    if len(text) != 2 * _KEY_SIZE or not set(text) <= _HEX:
        raise ConfigError(f"{where}: not a {_KEY_SIZE}-byte key in hex ({2 * _KEY_SIZE} digits)")
    return bytes.fromhex(text)


def load_identity(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """The Ed25519 identity key in ``path``: 32 raw bytes, or them in hex.

    Parameters:
        path: The key file.

    Returns:
        The private key.

    Raises:
        ConfigError: The file is unreadable or holds no key.
    """
    data = _read(path, "identity key")
    if len(data) == _KEY_SIZE:
        raw = data
    else:
        try:
            text = data.decode("ascii").strip()
        except UnicodeDecodeError:
            text = ""
        raw = _hex_key(text, f"the identity key {str(path)!r}")
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = 0
    if mode & 0o077:
        log.warning("secureagg: the identity key %s can be read by other users", path)
    return Ed25519PrivateKey.from_private_bytes(raw)


def load_members(path: str | os.PathLike[str]) -> frozenset[bytes]:
    """The trusted identity public keys in ``path``: hex, one per line, ``#`` starts a comment.

    Parameters:
        path: The members file.

    Returns:
        The raw 32-byte public keys.

    Raises:
        ConfigError: An unreadable file, a line that is not a 32-byte key in hex, a key that
            is not an Ed25519 public key, or a file with no key.
    """
    data = _read(path, "members file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the members file {str(path)!r} is not UTF-8 text") from exc
    keys = set()
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        key = _hex_key(entry, f"{str(path)!r} line {number}")
        try:
            Ed25519PublicKey.from_public_bytes(key)
        except ValueError as exc:
            raise ConfigError(f"{str(path)!r} line {number}: not an Ed25519 public key") from exc
        keys.add(key)
    if not keys:
        raise ConfigError(f"the members file {str(path)!r} lists no key")
    return frozenset(keys)


_MAX_ROUND_LOG = 1 << 26  # 64 MiB: more than a million rounds


def claim_round(key_path: str | os.PathLike[str], round_id: bytes) -> None:
    """Record that this node takes part in signed round ``round_id``; ConfigError if it
    already has, in any run.

    Signatures bind the round id and config, so a round id used twice would let a server
    count a node's old consistency signature in a new round with the same config. The log
    is ``<key file>.rounds`` (hex, one round id a line, appended and synced before the node
    advertises its keys).
    """
    log_path = Path(f"{os.fspath(key_path)}.rounds")
    entry = round_id.hex()
    try:
        if log_path.exists():
            if log_path.stat().st_size > _MAX_ROUND_LOG:
                raise ConfigError(f"the round log {str(log_path)!r} is too large; rotate it")
            seen = log_path.read_text(encoding="ascii").split()
            if entry in seen:
                raise ConfigError(f"round id {entry[:16]}... was used before: a replayed round")
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, entry.encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot use the round log {str(log_path)!r}: {exc}") from exc
