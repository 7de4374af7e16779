"""apply_update (the server's new global model) reads the old one in place and gives the
bytes the arr.numpy() path gave."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord

from secureagg.flower._records import apply_update, model_size, values

pytestmark = pytest.mark.usefixtures("flower_task_identity")


def _apply_update_through_numpy(like: ArrayRecord, update: np.ndarray) -> ArrayRecord:
    """apply_update as it was before it read ``like`` in place: through arr.numpy()."""
    out, start = ArrayRecord(), 0
    for name, arr in like.items():
        base = arr.numpy()
        piece = update[start : start + base.size]
        piece += base.ravel()
        out[name] = Array.from_numpy_ndarray(piece.reshape(base.shape).astype(base.dtype))
        start += base.size
    return out


@settings(max_examples=60, deadline=None)
@given(
    arrays=st.lists(
        st.tuples(
            st.sampled_from(["<f2", ">f2", "<f4", ">f4", "<f8", ">f8"]),
            st.lists(st.integers(0, 4), max_size=3).map(tuple),
            st.booleans(),
        ),
        min_size=1,
        max_size=4,
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_apply_update_in_place_gives_the_bytes_of_the_numpy_path(
    arrays: list[tuple[str, tuple[int, ...], bool]], seed: int
) -> None:
    """apply_update reads the global model in place (:func:`values`) and gives, byte for
    byte, the record the arr.numpy() path gave: names, dtypes (either byte order), shapes
    (0-d, empty, Fortran order) and data. A C-order array is never copied by arr.numpy()."""
    rng = np.random.default_rng(seed)
    like = ArrayRecord()
    for i, (dtype, shape, fortran) in enumerate(arrays):
        x = (100 * rng.normal(size=shape)).astype(dtype)
        like[f"a{i}"] = Array(np.asfortranarray(x) if fortran else np.ascontiguousarray(x))
    update = 1e3 * rng.normal(size=model_size(like))
    want = _apply_update_through_numpy(like, update.copy())
    got = apply_update(like, update.copy())
    assert list(got.keys()) == list(want.keys())
    for name in want:
        a, b = got[name], want[name]
        assert (a.dtype, a.shape, a.stype, a.data) == (b.dtype, b.shape, b.stype, b.data)
    for arr in like.values():
        v = values(arr)
        assert v.shape == arr.numpy().shape and v.dtype == arr.numpy().dtype


def test_apply_update_does_not_copy_a_c_order_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The global model's C-order arrays are read as views of their bytes: arr.numpy()
    (a model-sized copy) is never called for them (it was before)."""
    like = ArrayRecord(
        {"w": Array(np.ones((2, 3), np.float32)), "b": Array(np.zeros(3, np.float64))}
    )

    def refuse(self: Array) -> np.ndarray:
        raise AssertionError("arr.numpy() called")

    monkeypatch.setattr(Array, "numpy", refuse)
    out = apply_update(like, np.arange(9, dtype=np.float64))
    assert values(out["w"]).tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
