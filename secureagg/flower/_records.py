"""What secureagg puts in Flower messages, and the model arrays as one flat vector."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict

from secureagg._exceptions import ConfigError
from secureagg.protocol import Stage

__all__ = [
    "IDENTIFY",
    "PRIVACY_KEY",
    "RECORD_KEY",
    "SETUP",
    "STATE_KEY",
    "arrays_like",
    "flat_arrays",
    "stage_name",
]

RECORD_KEY = "secureagg"
"""The ConfigRecord, in a message's content, that carries secureagg's bytes."""
STATE_KEY = "secureagg-session"
"""The ConfigRecord, in a client's Context.state, that holds its saved protocol session."""
PRIVACY_KEY = "secureagg-privacy"
"""The ConfigRecord, in a client's Context.state, that holds its DP-SGD history."""
SETUP = "setup"
"""Stage tag of the first message of a round: the round's config (no model)."""
IDENTIFY = "identify"
"""Stage tag of a signed round's message before setup: the node answers with its identity key."""

_NAMES = {s: s.name.lower().replace("_", "-") for s in Stage}


def stage_name(stage: Stage) -> str:
    """The tag a protocol stage has in Flower messages: "share-keys", "unmask", ..."""
    return _NAMES[stage]


def record_of(msg: Message) -> ConfigRecord | None:
    """secureagg's record in ``msg``, or None (error reply, no content, no record)."""
    if msg.has_error() or not msg.has_content():
        return None
    rec = msg.content.config_records.get(RECORD_KEY)
    return rec if isinstance(rec, ConfigRecord) else None


def reply(msg: Message, fields: dict[str, Any]) -> Message:
    """A reply to ``msg`` that carries only secureagg's record."""
    return Message(RecordDict({RECORD_KEY: ConfigRecord(fields)}), reply_to=msg)


def flat_arrays(record: ArrayRecord) -> npt.NDArray[np.float64]:
    """Every array of ``record``, in order, as one float64 vector (floating arrays only)."""
    parts = []
    for name, arr in record.items():
        a = arr.numpy()
        if a.dtype.kind != "f":
            raise ConfigError(
                f"array {name!r} is {a.dtype}: secure aggregation sums floating arrays only"
            )
        parts.append(a.astype(np.float64, copy=False).ravel())
    if not parts:
        raise ConfigError("the ArrayRecord is empty: nothing to aggregate")
    return np.concatenate(parts)


def update_vector(local: ArrayRecord, start: ArrayRecord) -> npt.NDArray[np.float32]:
    """``local - start`` over every array, in order, as one float32 vector.

    Both records must have the same names and shapes (see :func:`same_layout`); float32
    arrays are subtracted in float32, others in float64, each written once into the result.
    """
    sizes = [int(np.prod(tuple(a.shape), dtype=np.int64)) for a in start.values()]
    out = np.empty(sum(sizes), dtype=np.float32)
    pos = 0
    for (name, a), b, size in zip(local.items(), start.values(), sizes, strict=True):
        x, g = a.numpy(), b.numpy()
        for arr in (x, g):
            if arr.dtype.kind != "f":
                raise ConfigError(
                    f"array {name!r} is {arr.dtype}: secure aggregation sums floating arrays only"
                )
            if arr.size != size:  # Flower does not check an Array's data against its shape
                raise ConfigError(f"array {name!r} holds {arr.size} values, its shape {size}")
        np.subtract(x.ravel(), g.ravel(), out=out[pos : pos + size], casting="same_kind")
        pos += size
    return out


def arrays_like(vec: npt.NDArray[np.floating], like: ArrayRecord) -> ArrayRecord:
    """``vec`` cut into arrays named, shaped and typed like ``like``."""
    out = ArrayRecord()
    held = sum(int(np.prod(tuple(arr.shape), dtype=np.int64)) for arr in like.values())
    if held != len(vec):
        raise ConfigError(f"vector has {len(vec)} elements, the arrays hold {held}")
    start = 0
    for name, arr in like.items():
        shape = tuple(int(s) for s in arr.shape)
        size = int(np.prod(shape, dtype=np.int64))
        piece = np.asarray(vec[start : start + size]).reshape(shape).astype(arr.dtype)
        out[name] = Array.from_numpy_ndarray(piece)
        start += size
    return out


def same_layout(a: ArrayRecord, b: ArrayRecord) -> str | None:
    """Why ``b`` does not have ``a``'s names and shapes, or None."""
    if list(a.keys()) != list(b.keys()):
        return "the returned arrays have other names than the global model's"
    for name in a:
        if tuple(a[name].shape) != tuple(b[name].shape):
            return (
                f"array {name!r} has shape {tuple(b[name].shape)}, expected {tuple(a[name].shape)}"
            )
    return None
