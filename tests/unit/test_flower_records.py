"""secureagg.flower's record helpers and SecureAggregation's settings, on real Flower records."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, RecordDict
from flwr.serverapp.strategy import FedAvg, Krum

from secureagg import ConfigError, SecureAggError
from secureagg.flower import RECORD_KEY, SecureAggregation
from secureagg.flower import _round_config as round_config_module
from secureagg.flower._records import (
    DATA_KEY,
    INLINE_MAX,
    apply_update,
    flat_values,
    model_size,
    payload,
    record_of,
    reply,
    same_layout,
    train_digest,
    update_vector,
)
from secureagg.flower._round_config import one_train_digest
from secureagg.protocol import Stage

pytestmark = pytest.mark.usefixtures("flower_task_identity")


def _record(**arrays: np.ndarray) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def test_apply_update_adds_in_float64_and_keeps_names_shapes_and_dtypes() -> None:
    rng = np.random.default_rng(1)
    like = _record(
        w=rng.normal(size=(3, 4)).astype(np.float32),
        b=rng.normal(size=(4,)).astype(np.float64),
        h=rng.normal(size=(2, 1, 2)).astype(np.float16),
        s=np.array(0.5, dtype=np.float32),
    )
    assert model_size(like) == 12 + 4 + 4 + 1
    update = rng.normal(size=21)
    want = np.concatenate([like[k].numpy().astype(np.float64).ravel() for k in like]) + update
    out = apply_update(like, update.copy())
    assert list(out.keys()) == ["w", "b", "h", "s"]
    assert same_layout(like, out) is None
    start = 0
    for name in like:
        a, b = like[name].numpy(), out[name].numpy()
        assert a.dtype == b.dtype and a.shape == b.shape
        piece = want[start : start + a.size].reshape(a.shape)
        assert np.array_equal(b, piece.astype(a.dtype))  # the float64 sum, rounded once
        start += a.size
    zero = apply_update(like, np.zeros(21))
    assert all(np.array_equal(like[k].numpy(), zero[k].numpy()) for k in like)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_model_size_refuses_non_floating_arrays(dtype: Any) -> None:
    record = _record(w=np.zeros(3, np.float32), steps=np.ones(2, dtype=dtype))
    with pytest.raises(ConfigError, match=r"'steps'.*floating arrays only"):
        model_size(record)


def test_model_size_refuses_an_empty_record_and_an_unknown_dtype() -> None:
    with pytest.raises(ConfigError, match="empty"):
        model_size(ArrayRecord())
    odd = ArrayRecord({"x": Array(dtype="not-a-dtype", shape=(2,), stype="raw", data=b"ab")})
    with pytest.raises(ConfigError, match="floating arrays only"):
        model_size(odd)


@pytest.mark.parametrize("length", [6, 8])
def test_apply_update_refuses_a_vector_of_another_length(length: int) -> None:
    like = _record(w=np.zeros((2, 2), np.float32), b=np.zeros(3, np.float32))
    with pytest.raises(ConfigError, match=f"shape \\({length},\\), the arrays hold 7"):
        apply_update(like, np.zeros(length))


def test_apply_update_refuses_an_array_whose_data_is_not_its_shape() -> None:
    lying = ArrayRecord({"w": Array(np.zeros(4, np.float32))})
    lying["w"].shape = (5,)
    with pytest.raises(ConfigError, match="holds 4 values, its shape 5"):
        apply_update(lying, np.zeros(5))


def test_same_layout_names_the_difference() -> None:
    a = _record(w=np.zeros((2, 3), np.float32), b=np.zeros(3, np.float32))
    assert "other names" in str(same_layout(a, _record(w=np.zeros((2, 3), np.float32))))
    reshaped = _record(w=np.zeros((3, 2), np.float32), b=np.zeros(3, np.float32))
    assert same_layout(a, reshaped) == "array 'w' has shape (3, 2), expected (2, 3)"


def test_update_vector_refuses_an_array_whose_data_does_not_fill_its_shape() -> None:
    """Flower takes an Array's shape as given: one claiming 7 values over 6 of data is a
    typed error, not numpy's broadcast ValueError."""
    six = Array(np.zeros(6, np.float32))
    liar = Array(dtype=six.dtype, shape=(7,), stype=six.stype, data=six.data)
    honest = _record(w=np.ones(7, np.float32))
    assert update_vector(honest, _record(w=np.zeros(7, np.float32))).tolist() == [1.0] * 7
    for local, start in ((honest, ArrayRecord({"w": liar})), (ArrayRecord({"w": liar}), honest)):
        with pytest.raises(ConfigError, match="'w' holds 6 values, its shape 7"):
            update_vector(local, start)


@settings(max_examples=80, deadline=None)
@given(
    dtype=st.sampled_from(["<f2", ">f2", "<f4", ">f4", "<f8", ">f8", "<i4", "|u1"]),
    shape=st.lists(st.integers(0, 4), max_size=3).map(tuple),
    fortran=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_flat_values_reads_what_numpy_reads(
    dtype: str, shape: tuple[int, ...], fortran: bool, seed: int
) -> None:
    """The in-place read gives arr.numpy()'s values in C order with its dtype, for every
    byte order, shape (0-d and empty included) and memory order; a C-order array of a
    plain dtype is a view of the Array's bytes, not a copy."""
    x = np.random.default_rng(seed).normal(size=shape).astype(dtype)
    x = np.asfortranarray(x) if fortran else np.ascontiguousarray(x)
    arr = Array(x)
    got, want = flat_values(arr), arr.numpy().ravel()
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want, equal_nan=True)
    if not fortran or x.ndim < 2:
        assert got.base is arr.data  # read in place
        assert not got.flags.writeable


def _npy(header: str, body: bytes) -> bytes:
    head = header.encode() + b" " * (117 - len(header)) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(head).to_bytes(2, "little") + head + body


@pytest.mark.parametrize(
    ("header", "body"),
    [
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", bytes(8)),  # short
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", bytes(12)),
        ("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", bytes(8)),  # pickle
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (", bytes(4)),  # bad header
        ("{'descr': '<f4', 'shape': (1,), }", bytes(4)),  # no fortran_order
        # a subarray dtype: numpy's loader wants 3 elements of 2 floats; the data has 3 floats
        ("{'descr': ('<f4', (2,)), 'fortran_order': False, 'shape': (3,), }", bytes(12)),
        # more elements than an ssize_t can count
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }",
         bytes(0)),
    ],
)  # fmt: skip
def test_flat_values_refuses_what_numpy_refuses(header: str, body: bytes) -> None:
    """Data that numpy's loader refuses (these bytes come from a peer) raises a ConfigError
    carrying numpy's reason, so the node declines; it never reads a view."""
    arr = Array(dtype="float32", shape=(3,), stype="numpy.ndarray", data=_npy(header, body))
    with pytest.raises(Exception) as numpy_error:
        arr.numpy()
    with pytest.raises(ConfigError) as ours:
        flat_values(arr)
    assert str(numpy_error.value) in str(ours.value)
    with pytest.raises(ConfigError):
        update_vector(ArrayRecord({"w": Array(np.zeros(3, np.float32))}), ArrayRecord({"w": arr}))


def test_flat_values_refuses_a_zip_of_arrays() -> None:
    """np.load of an .npz gives an NpzFile, not an array: refused, not reshaped."""
    import io

    buf = io.BytesIO()
    np.savez(buf, w=np.zeros(3, np.float32))
    arr = Array(dtype="float32", shape=(3,), stype="numpy.ndarray", data=buf.getvalue())
    with pytest.raises(ConfigError, match=r"not a single \.npy array"):
        flat_values(arr)


def test_stage_labels_are_the_wire_tags() -> None:
    assert [s.label for s in Stage] == [
        "advertise",
        "reveal",
        "share-keys",
        "masked-input",
        "consistency",
        "unmask",
    ]


def test_record_of_reads_only_a_config_record_of_a_content_message() -> None:
    msg = Message(RecordDict({RECORD_KEY: ConfigRecord({"stage": "setup"})}), 5, "train")
    rec = record_of(msg)
    assert rec is not None and rec["stage"] == "setup"
    assert record_of(Message(RecordDict({}), 5, "train")) is None
    assert record_of(Message(RecordDict({RECORD_KEY: _record(w=np.zeros(2))}), 5, "train")) is None
    assert record_of(Message(Error(code=0, reason="boom"), reply_to=msg)) is None
    answer = reply(msg, {"stage": "advertise", "data": b"\x01"})
    assert list(answer.content.keys()) == [RECORD_KEY]
    assert answer.metadata.dst_node_id == msg.metadata.src_node_id


@pytest.mark.parametrize("size", [0, 1, INLINE_MAX, INLINE_MAX + 1, 300_000])
def test_reply_inlines_up_to_inline_max_and_payload_reads_either_form(size: int) -> None:
    msg = Message(RecordDict({RECORD_KEY: ConfigRecord({"stage": "setup"})}), 5, "train")
    data = os.urandom(size)
    answer = reply(msg, {"stage": "masked-input", "data": data})
    rec = record_of(answer)
    assert rec is not None and rec["stage"] == "masked-input"
    if size <= INLINE_MAX:
        assert list(answer.content.keys()) == [RECORD_KEY] and rec["data"] == data
    else:
        assert list(answer.content.keys()) == [RECORD_KEY, DATA_KEY] and "data" not in rec
        (arr,) = answer.content.array_records[DATA_KEY].values()
        assert (arr.dtype, tuple(arr.shape), arr.stype) == ("uint8", (size,), "secureagg.bytes")
    assert payload(answer, rec) == data


def test_payload_refuses_an_array_of_another_stype() -> None:
    msg = Message(RecordDict({RECORD_KEY: ConfigRecord({"stage": "setup"})}), 5, "train")
    data = os.urandom(INLINE_MAX + 1)
    for stype in ("raw", "secureagg.Bytes", "numpy.ndarray"):
        odd = Array(dtype="uint8", shape=(len(data),), stype=stype, data=data)
        content = RecordDict(
            {
                RECORD_KEY: ConfigRecord({"stage": "masked-input"}),
                DATA_KEY: ArrayRecord({"data": odd}),
            }
        )
        answer = Message(content, reply_to=msg)
        rec = record_of(answer)
        assert rec is not None and payload(answer, rec) is None, stype


# -- SecureAggregation settings --------------------------------------------------------------


def test_from_config_reads_every_setting_and_zero_means_default() -> None:
    s = SecureAggregation.from_config(
        FedAvg(),
        {
            "secureagg-max-examples": 64,
            "secureagg-threshold": 4,
            "secureagg-degree": 0,
            "secureagg-bits": 0,
            "secureagg-max-clients": 20,
            "secureagg-frac-bits": 12,
            "secureagg-clip": 2,  # an int where a float is expected is fine
            "secureagg-timeout": 30,
            "other-app-setting": "ignored",
        },
    )
    assert (s.max_examples, s.threshold, s.degree, s.bits) == (64, 4, None, None)
    assert (s.max_clients, s.frac_bits, s.clip, s.timeout) == (20, 12, 2.0, 30.0)
    assert isinstance(s.clip, float) and isinstance(s.timeout, float)
    assert SecureAggregation.from_config(FedAvg(), {"secureagg-max-examples": 1}).timeout == 120.0


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({}, "needs secureagg-max-examples"),
        ({"secureagg-max-examples": "64"}, "secureagg-max-examples must be int, got '64'"),
        ({"secureagg-max-examples": 64.0}, "secureagg-max-examples must be int"),
        ({"secureagg-max-examples": True}, "secureagg-max-examples must be int, got True"),
        ({"secureagg-max-examples": 0}, "max_examples must be a positive int"),
        ({"secureagg-max-examples": 9, "secureagg-threshold": 2.5}, "secureagg-threshold"),
        ({"secureagg-max-examples": 9, "secureagg-degree": "4"}, "secureagg-degree"),
        ({"secureagg-max-examples": 9, "secureagg-bits": False}, "secureagg-bits"),
        ({"secureagg-max-examples": 9, "secureagg-clip": "1.0"}, "secureagg-clip must be float"),
        ({"secureagg-max-examples": 9, "secureagg-clip": True}, "secureagg-clip"),
        ({"secureagg-max-examples": 9, "secureagg-timeout": "9"}, "secureagg-timeout"),
        ({"secureagg-max-examples": 9, "secureagg-timeout": 0}, "timeout must be positive"),
        ({"secureagg-max-examples": 9, "secureagg-frac-bits": 1.5}, "secureagg-frac-bits"),
    ],
)
def test_from_config_refuses_wrong_types_with_a_typed_error(
    config: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        SecureAggregation.from_config(FedAvg(), config)


def test_constructor_refuses_bad_settings_before_any_round() -> None:
    with pytest.raises(ConfigError, match="must be a Flower Strategy"):
        SecureAggregation(object(), max_examples=10)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="threshold must be an int"):
        SecureAggregation(FedAvg(), max_examples=10, threshold=True)
    with pytest.raises(ConfigError, match="threshold must be at least 2"):
        SecureAggregation(FedAvg(), max_examples=10, threshold=1)
    for most in (1, 2, True, 4.0):
        with pytest.raises(ConfigError, match="max_clients must be an int >= 3"):
            SecureAggregation(FedAvg(), max_examples=10, max_clients=most)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="below the threshold 5"):
        SecureAggregation(FedAvg(), max_examples=10, max_clients=4, threshold=5)
    SecureAggregation(FedAvg(), max_examples=10, max_clients=5, threshold=5)
    with pytest.raises(ConfigError, match="degree must be an even int"):
        SecureAggregation(FedAvg(), max_examples=10, degree=2.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="degree must be an even int"):
        SecureAggregation(FedAvg(), max_examples=10, degree=3)
    with pytest.raises(ConfigError, match="timeout must be positive"):
        SecureAggregation(FedAvg(), max_examples=10, timeout=-1.0)
    with pytest.raises(ConfigError, match="Krum needs each client's update"):
        SecureAggregation(Krum(), max_examples=10)
    with pytest.raises(SecureAggError):  # a sum that cannot fit 64 bits
        SecureAggregation(FedAvg(), max_examples=10, frac_bits=60, clip=1e6)
    with pytest.raises(ConfigError, match=r"clip 1e\+308 is out of range"):
        SecureAggregation(FedAvg(), max_examples=10, clip=1e308)
    with pytest.raises(ConfigError, match=r"clip 1e\+308 is out of range"):
        SecureAggregation.from_config(
            FedAvg(), {"secureagg-max-examples": 10, "secureagg-clip": 1e308}
        )


def _train_message(content: RecordDict, node: int) -> Message:
    return Message(content=content, dst_node_id=node, message_type="train")


def _train_content(model: np.ndarray, lr: float) -> RecordDict:
    return RecordDict(
        {"arrays": ArrayRecord([model]), "config": ConfigRecord({"lr": lr, "server-round": 1})}
    )


def test_one_train_digest_hashes_shared_content_once_and_equals_train_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FedAvg sends one RecordDict to every node: it is hashed once, and the digest is the
    one a node computes from its own message (train_digest)."""
    model = np.arange(12, dtype=np.float32)
    shared = _train_content(model, 0.1)
    messages = [_train_message(shared, node) for node in range(1, 6)]
    hashed: list[int] = []

    def counting(msg: Message) -> str:
        hashed.append(1)
        return train_digest(msg)

    monkeypatch.setattr(round_config_module, "train_digest", counting)
    digest = one_train_digest(messages)
    assert len(hashed) == 1
    assert digest == train_digest(_train_message(_train_content(model.copy(), 0.1), 9))


def test_one_train_digest_refuses_one_different_content_among_shared_ones() -> None:
    """Content objects are hashed once each: one node's own RecordDict with lr 0 among
    nodes sharing another is still seen, whichever position it has."""
    model = np.arange(12, dtype=np.float32)
    shared = _train_content(model, 0.1)
    for position in range(4):
        messages = [_train_message(shared, node) for node in range(1, 4)]
        messages.insert(position, _train_message(_train_content(model, 0.0), 9))
        with pytest.raises(ConfigError, match="differ per node"):
            one_train_digest(messages)
    # distinct but equal content objects: one digest
    equal = [_train_message(_train_content(model.copy(), 0.1), node) for node in range(1, 4)]
    assert one_train_digest(equal) == one_train_digest([equal[0]])


def test_one_train_digest_is_not_fooled_by_reused_ids_of_freed_contents() -> None:
    """A strategy may build each node's message on the fly (a generator): a content object
    freed after hashing can leave its id to a later one, which must still be hashed."""
    model = ArrayRecord([np.arange(12, dtype=np.float32)])

    def fresh(odd: int) -> Any:
        for node in range(1, 41):
            lr = 0.0 if node == odd else 0.1
            yield _train_message(
                RecordDict({"arrays": model, "config": ConfigRecord({"lr": lr})}), node
            )

    for odd in range(2, 41):
        with pytest.raises(ConfigError, match="differ per node"):
            one_train_digest(fresh(odd))
