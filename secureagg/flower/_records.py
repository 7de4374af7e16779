"""What secureagg puts in Flower messages, and the model arrays as one flat vector."""

from __future__ import annotations

import hashlib
import io
import math
from typing import Any

import numpy as np
import numpy.typing as npt
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.constant import SType
from numpy.lib import format as npy

from secureagg._exceptions import ConfigError

__all__ = [
    "DATA_KEY",
    "IDENTIFY",
    "PRIVACY_KEY",
    "RECORD_KEY",
    "SETUP",
    "STATE_KEY",
    "apply_update",
    "model_size",
    "payload",
    "run_config_digest",
    "train_digest",
]

RECORD_KEY = "secureagg"
"""The ConfigRecord, in a message's content, that carries secureagg's bytes."""
DATA_KEY = "secureagg-data"
"""The ArrayRecord, in a node's reply, that carries a payload over :data:`INLINE_MAX` bytes."""
STATE_KEY = "secureagg-session"
"""The ConfigRecord, in a client's Context.state, that holds its saved protocol session."""
PRIVACY_KEY = "secureagg-privacy"
"""The ConfigRecord, in a client's Context.state, that holds its DP-SGD history."""
SETUP = "setup"
"""Stage tag of the first message of a round: the round's config (no model)."""
IDENTIFY = "identify"
"""Stage tag of a signed round's message before setup: the node answers with its identity key."""


def record_of(msg: Message) -> ConfigRecord | None:
    """secureagg's record in ``msg``, or None (error reply, no content, no record)."""
    if msg.has_error() or not msg.has_content():
        return None
    rec = msg.content.get(RECORD_KEY)  # not config_records: it builds a view on each access
    return rec if isinstance(rec, ConfigRecord) else None


INLINE_MAX = 4096
"""Payloads up to this many bytes travel inside the ConfigRecord; larger ones as raw bytes
in an Array, which Flower serialises about 3x faster (one deflate and one hash pass, where a
ConfigRecord value is deflated and hashed several times)."""
_DATA_NAME = "data"
_DATA_STYPE = "secureagg.bytes"


def reply(msg: Message, fields: dict[str, Any]) -> Message:
    """A reply to ``msg`` that carries only secureagg's record (and a large payload's bytes)."""
    data = fields.get("data")
    if not isinstance(data, bytes) or len(data) <= INLINE_MAX:
        return Message(RecordDict({RECORD_KEY: ConfigRecord(fields)}), reply_to=msg)
    raw = Array(dtype="uint8", shape=(len(data),), stype=_DATA_STYPE, data=data)
    rest = {k: v for k, v in fields.items() if k != "data"}
    content = RecordDict({RECORD_KEY: ConfigRecord(rest), DATA_KEY: ArrayRecord({_DATA_NAME: raw})})
    return Message(content, reply_to=msg)


def payload(msg: Message, rec: ConfigRecord) -> bytes | None:
    """The protocol bytes of a node's reply, inline in ``rec`` or in :data:`DATA_KEY`.

    None if there are none, if both places hold some, or if the ArrayRecord is not exactly
    one raw-bytes Array; its bytes are never read as a numpy array (no ``np.load``).
    """
    inline = rec.get("data")
    carried = msg.content.array_records.get(DATA_KEY)
    if carried is None:
        return inline if isinstance(inline, bytes) else None
    if inline is not None or list(carried.keys()) != [_DATA_NAME]:
        return None
    arr = carried[_DATA_NAME]
    if arr.stype != _DATA_STYPE or not isinstance(arr.data, bytes):
        return None
    return arr.data


def model_size(record: ArrayRecord) -> int:
    """How many values the arrays of ``record`` hold, read from their shapes.

    ConfigError if the record is empty or an array is not floating point.
    """
    if not record:
        raise ConfigError("the ArrayRecord is empty: nothing to aggregate")
    total = 0
    for name, arr in record.items():
        try:
            floating = np.dtype(arr.dtype).kind == "f"
        except TypeError:
            floating = False
        if not floating:
            raise ConfigError(
                f"array {name!r} is {arr.dtype}: secure aggregation sums floating arrays only"
            )
        total += _size(arr)
    return total


def _size(arr: Array) -> int:
    return int(np.prod(tuple(int(s) for s in arr.shape), dtype=np.int64))


_HEADERS = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}


def flat_values(arr: Array) -> npt.NDArray[Any]:
    """The values ``arr.numpy()`` gives, flat, read in place from ``arr.data``.

    A C-order ``.npy`` of a plain scalar dtype (what ``Array(ndarray)`` holds) is read as a
    read-only view of its bytes: no copy of a model-sized array. Anything else (another
    stype or header version, Fortran order, a structured, subarray or object dtype, a
    negative or overflowing dimension, data shorter than its header says) goes through
    ``arr.numpy()``. The header is parsed by numpy's own reader (``max_header_size``, no
    pickle).

    Raises:
        ConfigError: The bytes are not a readable ``.npy`` array (they come from a peer).
    """
    read = _in_place(arr)
    return read[0] if read is not None else _through_numpy(arr).reshape(-1)


def values(arr: Array) -> npt.NDArray[Any]:
    """The array ``arr.numpy()`` gives (values and shape), read in place from ``arr.data``
    as :func:`flat_values` reads it.

    Raises:
        ConfigError: The bytes are not a readable ``.npy`` array.
    """
    read = _in_place(arr)
    return read[0].reshape(read[1]) if read is not None else _through_numpy(arr)


def _in_place(arr: Array) -> tuple[npt.NDArray[Any], tuple[int, ...]] | None:
    """(flat read-only view of the values, shape) of a C-order ``.npy`` of a plain scalar
    dtype, else None."""
    data = arr.data
    if arr.stype == SType.NUMPY and isinstance(data, bytes):
        stream = io.BytesIO(data)  # shares ``data``: nothing is copied
        try:
            read = _HEADERS.get(npy.read_magic(stream))
            if read is not None:
                shape, fortran, dtype = read(stream)
                plain = dtype.shape == () and dtype.fields is None and not dtype.hasobject
                if plain and not fortran and min(shape, default=0) >= 0:
                    count = math.prod(shape)
                    flat = np.frombuffer(data, dtype=dtype, count=count, offset=stream.tell())
                    return flat, tuple(shape)
        except Exception:  # peer bytes: arr.numpy() says what is wrong
            pass
    return None


def _through_numpy(arr: Array) -> npt.NDArray[Any]:
    try:
        got = arr.numpy()
    except Exception as exc:  # numpy raises many types for bad bytes
        raise ConfigError(f"an array's bytes are not a readable .npy array: {exc}") from exc
    if not isinstance(got, np.ndarray):  # np.load of a zip gives an NpzFile
        raise ConfigError("an array's bytes are not a single .npy array")
    return got


def update_vector(
    local: ArrayRecord, start: ArrayRecord, out: npt.NDArray[np.float32] | None = None
) -> npt.NDArray[np.float32]:
    """``local - start`` over every array, in order, as one float32 vector (``out`` if given:
    a writeable float32 vector of that length).

    Both records must have the same names and shapes (see :func:`same_layout`); float32
    arrays are subtracted in float32, others in float64, each written once into the result.
    Arrays are read in place from their bytes (:func:`flat_values`).
    """
    sizes = [int(np.prod(tuple(a.shape), dtype=np.int64)) for a in start.values()]
    if out is None:
        out = np.empty(sum(sizes), dtype=np.float32)
    elif out.shape != (sum(sizes),) or out.dtype != np.float32 or not out.flags.writeable:
        raise ConfigError(f"out must be a writeable float32 vector of {sum(sizes)} values")
    pos = 0
    for (name, a), b, size in zip(local.items(), start.values(), sizes, strict=True):
        x, g = flat_values(a), flat_values(b)
        for arr in (x, g):
            if arr.dtype.kind != "f":
                raise ConfigError(
                    f"array {name!r} is {arr.dtype}: secure aggregation sums floating arrays only"
                )
            if arr.size != size:  # Flower does not check an Array's data against its shape
                raise ConfigError(f"array {name!r} holds {arr.size} values, its shape {size}")
        np.subtract(x, g, out=out[pos : pos + size], casting="same_kind")
        pos += size
    return out


def apply_update(like: ArrayRecord, update: npt.NDArray[np.float64]) -> ArrayRecord:
    """``like + update``: arrays named, shaped and typed like ``like``.

    ``update`` is one float64 vector over every array, in order; it is overwritten (the sum
    is taken in it, in float64, and rounded once to each array's dtype). ``like``'s arrays
    are read in place from their bytes (:func:`values`).
    """
    held = sum(_size(arr) for arr in like.values())
    if update.shape != (held,) or update.dtype != np.float64:
        raise ConfigError(f"update has shape {update.shape}, the arrays hold {held} values")
    out = ArrayRecord()
    start = 0
    for name, arr in like.items():
        size = _size(arr)
        base = values(arr)  # read in place: no model-sized copy
        if base.size != size:  # Flower does not check an Array's data against its shape
            raise ConfigError(f"array {name!r} holds {base.size} values, its shape {size}")
        piece = update[start : start + size]
        piece += base.ravel()
        out[name] = _npy_array(piece, base.shape, base.dtype)
        start += size
    return out


def _npy_array(flat: npt.NDArray[Any], shape: tuple[int, ...], dtype: np.dtype[Any]) -> Array:
    """``Array.from_numpy_ndarray(flat.reshape(shape).astype(dtype))``: the same bytes, built
    with one model-sized buffer, not four (np.save makes a rounded copy, the copy's bytes,
    a BytesIO buffer and its value): its .npy header, then the values rounded into it."""
    head = io.BytesIO()
    try:
        npy.write_array_header_1_0(head, npy.header_data_from_array_1_0(_shaped(shape, dtype)))
    except ValueError:  # a header over 64 KiB: np.save writes format 2.0
        return Array.from_numpy_ndarray(flat.reshape(shape).astype(dtype))
    header = head.getvalue()
    buf = np.empty(len(header) + flat.size * dtype.itemsize, dtype=np.uint8)
    buf[: len(header)] = np.frombuffer(header, dtype=np.uint8)
    np.copyto(buf[len(header) :].view(dtype), flat, casting="unsafe")
    return Array(dtype=str(dtype), shape=tuple(shape), stype=SType.NUMPY, data=buf.tobytes())


def _shaped(shape: tuple[int, ...], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """An array of that shape and dtype with no memory of its own (all strides 0): what
    the .npy header is written from (C order, as np.save writes a C-contiguous array)."""
    return np.lib.stride_tricks.as_strided(np.zeros((), dtype), shape, (0,) * len(shape))


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


def train_digest(msg: Message) -> str:
    """SHA-256 (hex) of a train message: its type (``train`` is ``train.default``: the
    action picks the app's train function) and its content without secureagg's record,
    every array (name, dtype, shape, stype, bytes, in order) and every config or metric
    value (sorted by key, with its type). The round config binds it, so every node of a
    round trains with the same function from the same global model and train config."""
    h = hashlib.sha256(b"secureagg train message v1")

    def put(data: bytes) -> None:
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)

    kind = msg.metadata.message_type
    put((kind if "." in kind else f"{kind}.default").encode())
    content = msg.content

    for name in sorted(content.keys()):
        if name == RECORD_KEY:
            continue
        record = content[name]
        put(name.encode())
        if isinstance(record, ArrayRecord):
            put(b"arrays")
            for key, arr in record.items():
                put(key.encode())
                put(f"{arr.dtype}|{tuple(int(s) for s in arr.shape)}|{arr.stype}".encode())
                put(bytes(arr.data))
        elif isinstance(record, (ConfigRecord, MetricRecord)):
            put(b"config" if isinstance(record, ConfigRecord) else b"metrics")
            for key in sorted(record.keys()):
                value = record[key]
                put(key.encode())
                put(f"{type(value).__name__}|{value!r}".encode())
        else:
            raise ConfigError(f"record {name!r} is a {type(record).__name__}")
    return h.hexdigest()


def run_config_digest(config: Any) -> str:
    """SHA-256 (hex) of a run config (``Context.run_config``): every key, sorted, with its
    value's type and repr. A node's run config comes from the SuperLink, so the round
    config binds it like the train message."""
    h = hashlib.sha256(b"secureagg run config v1")
    for key in sorted(config):
        value = config[key]
        for part in (str(key).encode(), f"{type(value).__name__}|{value!r}".encode()):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
    return h.hexdigest()
