"""The mask PRG: AES-256-CTR keystream of a full 32-byte seed, read as words of Z_{2^b}."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secureagg._exceptions import ConfigError
from secureagg.hazmat._keys import check_key
from secureagg.hazmat._modarith import check_bits, check_length, element_dtype, reduce_into
from secureagg.hazmat._parallel import PARALLEL_MIN_D, run_parts

__all__ = ["SEED_SIZE", "MaskBuffer", "element_dtype", "expand_mask"]

SEED_SIZE = 32
_ZERO_IV = bytes(16)
_BIG_ENDIAN = sys.byteorder == "big"
_CHUNK_BYTES = 1 << 18  # keystream generated per pass, so later passes run in cache
_ZEROS = memoryview(bytes(_CHUNK_BYTES))  # shared read-only plaintext for the keystream


def _check_seed(seed: object) -> bytes:
    return check_key("seed", seed)


def _stream(seed: bytes, counter: bytes = _ZERO_IV) -> Any:
    """The AES-256-CTR keystream of ``seed`` from ``counter`` (the PRG's: zero), as an encryptor
    of zeros."""
    return Cipher(algorithms.AES256(seed), modes.CTR(counter)).encryptor()


_HEAD = 32  # keystream blocks 0 and 1
_GCM_MAX = (2**32 - 2) * 16  # bytes GCM encrypts under one 96-bit IV (32-bit counter from 2)
_GCM_MIN = 1 << 16  # shorter streams: CTR alone (setting up GCM costs about 13 us more)


class Keystream:
    """The AES-256-CTR keystream of a 32-byte key from counter 0, written into buffers.

    The same bytes as ``_stream(key)`` encrypting zeros. Blocks 0 and 1 come from CTR; for a
    stream of at most 2^36 bytes the rest comes from AES-256-GCM under the all-zero 96-bit
    IV, whose counter blocks are 0^96 || 2, 3, 4, ... (a 32-bit counter that cannot wrap
    within that length), so its ciphertext of zeros is the CTR keystream from block 2.
    OpenSSL runs GCM with its vector AES code, about 20% faster here than its CTR; the GCM
    tag is never computed. Longer streams, and those under 64 KiB (where setting up GCM
    costs more than it saves), use CTR throughout. A stream of no stated length (``None``:
    as long as it is read) takes GCM's 2^36 bytes, then CTR from block 2^32 on.

    Parameters:
        key: The 32-byte AES-256 key.
        length: The most bytes that will be read (picks GCM or CTR), or None.
    """

    __slots__ = ("_enc", "_gcm_left", "_head", "_key")

    def __init__(self, key: bytes, length: int | None) -> None:
        self._key = key
        self._gcm_left: int | None
        if length is None or _GCM_MIN <= length <= _HEAD + _GCM_MAX:
            ctr = _stream(key)
            self._head = memoryview(ctr.update(bytes(_HEAD)))
            self._enc = Cipher(algorithms.AES256(key), modes.GCM(bytes(12))).encryptor()
            self._gcm_left = _GCM_MAX
        else:
            self._head = memoryview(b"")
            self._enc = _stream(key)
            self._gcm_left = None

    def fill(self, out: memoryview) -> None:
        """Write the next ``len(out)`` keystream bytes into ``out`` (a writeable byte view)."""
        n, pos = len(out), 0
        if self._head:
            pos = min(len(self._head), n)
            out[:pos] = self._head[:pos]
            self._head = self._head[pos:]
        while pos < n:
            step = min(n - pos, _CHUNK_BYTES)
            if self._gcm_left is not None:
                if not self._gcm_left:  # GCM's counter is spent: CTR from the next block
                    start = ((_HEAD + _GCM_MAX) // 16).to_bytes(16, "big")
                    self._enc, self._gcm_left = _stream(self._key, start), None
                    continue
                step = min(step, self._gcm_left)
                self._gcm_left -= step
            self._enc.update_into(_ZEROS[:step], out[pos : pos + step])
            pos += step


def _chunks(d: int, itemsize: int) -> range:
    return range(0, d, _CHUNK_BYTES // itemsize)


def expand_mask(
    seed: bytes, d: int, bits: int, out: npt.NDArray[Any] | None = None
) -> npt.NDArray[Any]:
    """PRG(seed): d elements of Z_{2^b} from the AES-256-CTR keystream (zero IV).

    Word i is the little-endian element_dtype(bits) word at byte offset i*itemsize of
    the keystream, reduced mod 2^b.

    Parameters:
        seed: The 32-byte seed (the AES key).
        d: The vector length.
        bits: b.
        out: Written into when given (a contiguous, writeable array of shape (d,) and that
            dtype).

    Returns:
        The mask (``out`` when given).
    """
    seed = _check_seed(seed)
    d = check_length(d)
    dtype = element_dtype(bits)
    if out is None:
        out = np.empty(d, dtype=dtype)
    elif (
        not isinstance(out, np.ndarray)
        or out.dtype != dtype
        or out.shape != (d,)
        or not out.flags.c_contiguous
        or not out.flags.writeable
    ):
        raise ConfigError(f"out must be a writeable contiguous {dtype} array of shape ({d},)")
    enc = Keystream(seed, d * dtype.itemsize)
    step = _CHUNK_BYTES // dtype.itemsize
    for i in _chunks(d, dtype.itemsize):
        part = out[i : i + step]
        enc.fill(memoryview(part).cast("B"))  # type: ignore[arg-type]
        if _BIG_ENDIAN:
            part.byteswap(inplace=True)
        reduce_into(part, bits)
    return out


class MaskBuffer:
    """Reusable scratch for adding or removing masks of length d over Z_{2^b}.

    Masks are generated in cache-sized pieces and added as they come, so the scratch is
    at most 256 KiB whatever d is.

    Parameters:
        d: The vector length.
        bits: b.
    """

    def __init__(self, d: int, bits: int) -> None:
        self.d = check_length(d)
        self.bits = check_bits(bits)
        self.dtype = element_dtype(bits)
        self._step = _CHUNK_BYTES // self.dtype.itemsize
        self._scratch = np.empty(min(self.d, self._step), dtype=self.dtype)

    def apply(
        self,
        acc: npt.NDArray[Any],
        *,
        add: Sequence[bytes] = (),
        subtract: Sequence[bytes] = (),
    ) -> None:
        """acc += sum of PRG(s) for s in ``add``, minus those in ``subtract``, mod 2^b.

        In place, in one pass over ``acc``: each cache-sized piece of ``acc`` takes every mask's
        piece before the next is read, so ``acc`` crosses memory once, not once per mask. Every
        seed is checked before ``acc`` changes.

        Parameters:
            acc: The accumulator, d elements of element_dtype(b).
            add: Seeds whose masks are added.
            subtract: Seeds whose masks are subtracted.
        """
        plus = [_check_seed(seed) for seed in add]
        minus = [_check_seed(seed) for seed in subtract]
        if not isinstance(acc, np.ndarray) or acc.dtype != self.dtype or acc.shape != (self.d,):
            raise ConfigError(f"acc must be a {self.dtype} array of shape ({self.d},)")
        if not acc.flags.writeable:
            raise ConfigError("acc must be writeable")
        size = self.d * self.dtype.itemsize
        streams: list[tuple[Keystream, np.ufunc]] = [
            (Keystream(seed, size), np.add) for seed in plus
        ]
        streams += [(Keystream(seed, size), np.subtract) for seed in minus]
        if not streams:
            return
        for i in _chunks(self.d, self.dtype.itemsize):
            part = acc[i : i + self._step]
            mask = self._scratch[: part.size]
            view = memoryview(mask).cast("B")  # type: ignore[arg-type]
            for enc, op in streams:
                enc.fill(view)
                if _BIG_ENDIAN:
                    mask.byteswap(inplace=True)
                op(part, mask, out=part)  # wraps mod 2^w; 2^b divides 2^w
            reduce_into(part, self.bits)

    def add_mask(self, acc: npt.NDArray[Any], seed: bytes) -> None:
        """acc += PRG(seed) mod 2^b, in place.

        Parameters:
            acc: The accumulator.
            seed: The mask's seed.
        """
        self.apply(acc, add=(seed,))

    def subtract_mask(self, acc: npt.NDArray[Any], seed: bytes) -> None:
        """acc -= PRG(seed) mod 2^b, in place.

        Parameters:
            acc: The accumulator.
            seed: The mask's seed.
        """
        self.apply(acc, subtract=(seed,))


PARALLEL_MIN = 1 << 22  # mask elements below which apply_masks runs on one thread


def apply_masks(
    acc: npt.NDArray[Any],
    bits: int,
    *,
    add: Sequence[bytes] = (),
    subtract: Sequence[bytes] = (),
    workers: int = 1,
) -> None:
    """:meth:`MaskBuffer.apply` with the seeds split over ``workers`` threads.

    AES-CTR (cryptography) and numpy's adds release the GIL, so the threads run on
    separate cores. The seeds are cut into ``workers`` runs, taken in turn by the caller
    (into ``acc``) and by a process-wide pool's threads, each into a vector of d words this
    call took from a shared free list (zeroed first; returned after it is added into
    ``acc``, so concurrent calls never share one); a pool thread that has not started when
    the runs are taken is not waited for. Every thread has ended when the call returns,
    and the result is the same as one thread's. Threads start only for vectors of at least
    ``PARALLEL_MIN_D`` elements (2^22) and at least ``PARALLEL_MIN`` mask elements in all
    (2^22): at bench_vs_flower's d = 10^5 and 10^6, two threads made rounds slower
    whenever other processes kept the cores busy.

    Parameters:
        acc: The accumulator, d elements of element_dtype(bits).
        bits: b.
        add: Seeds whose masks are added.
        subtract: Seeds whose masks are subtracted.
        workers: At most this many threads; 1 is the single-core path (no threads, no
            extra vector).
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError(f"workers must be a positive int, got {workers!r}")
    buf = MaskBuffer(acc.shape[0] if isinstance(acc, np.ndarray) else 0, bits)
    seeds = [(seed, True) for seed in add] + [(seed, False) for seed in subtract]
    runs = min(workers, len(seeds))
    if runs <= 1 or buf.d < PARALLEL_MIN_D or buf.d * len(seeds) < PARALLEL_MIN:
        buf.apply(acc, add=add, subtract=subtract)
        return
    for seed, _ in seeds:  # every seed and acc checked before any work starts
        _check_seed(seed)
    buf.apply(acc)
    caller = threading.get_ident()
    extra: dict[int, npt.NDArray[Any]] = {}  # pool thread -> its vector in this call only

    def part(lo: int, hi: int) -> None:
        target = acc
        me = threading.get_ident()
        if me != caller:
            got = extra.get(me)  # a thread runs its parts of one call one after another
            if got is None:
                got = extra[me] = _take_vector(buf.d, buf.dtype)
                got.fill(0)
            target = got
        chosen = seeds[lo:hi]
        MaskBuffer(buf.d, buf.bits).apply(
            target,
            add=[s for s, plus in chosen if plus],
            subtract=[s for s, plus in chosen if not plus],
        )

    cuts = [len(seeds) * i // runs for i in range(runs + 1)]
    try:
        run_parts(part, list(pairwise(cuts)), workers)
        for vector in extra.values():
            np.add(acc, vector, out=acc)
    finally:
        for vector in extra.values():
            _give_back(vector)
    reduce_into(acc, buf.bits)


_FREE_LOCK = threading.Lock()
_FREE: list[npt.NDArray[Any]] = []  # apply_masks' spare vectors, all of one (d, dtype)
_FREE_MAX = 8  # spare vectors kept at most (a call holds at most workers - 1 of them)


def _forget_free() -> None:
    """In a forked child: a lock another parent thread held would stay held there."""
    global _FREE_LOCK
    _FREE_LOCK = threading.Lock()
    _FREE.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_free)


def _take_vector(d: int, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """A vector of d words of ``dtype`` that no other call holds (contents left over):
    a kept one, so its pages are not faulted in again, or a new one."""
    with _FREE_LOCK:
        for i, have in enumerate(_FREE):
            if have.shape == (d,) and have.dtype == dtype:
                return _FREE.pop(i)
    return np.empty(d, dtype)


def _give_back(vector: npt.NDArray[Any]) -> None:
    """Keep ``vector`` for a later call; spares of another shape are dropped."""
    with _FREE_LOCK:
        if _FREE and (_FREE[0].shape != vector.shape or _FREE[0].dtype != vector.dtype):
            _FREE.clear()
        if len(_FREE) < _FREE_MAX:
            _FREE.append(vector)
