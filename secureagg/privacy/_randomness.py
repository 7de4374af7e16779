"""Generators for DP noise and Poisson sampling, seeded from the OS CSPRNG, never from users.

:func:`fresh_generator` fills a new torch generator's whole seed state from ``os.urandom``:
on the CPU the 624 words (19,968 bits) of its Mersenne Twister, on CUDA the 64-bit Philox
key and 64-bit counter offset (126 free bits: the offset steps by 4). A user's seed never
reaches it. :func:`reproducible_generator` is the one way to get repeatable noise, for
tests; a trainer that uses it is marked not private (see ``PrivateTrainer``).
"""

from __future__ import annotations

import os

import numpy as np
import torch

__all__ = ["MT_WORDS", "fresh_generator", "reproducible_generator"]

MT_WORDS = 624
"""Words of 32 bits in the CPU generator's Mersenne Twister state."""

_MT_OFFSET = 24
"""Byte offset of the state words in ``torch.Generator().get_state()`` (u64 slots)."""


def _device(device: torch.device | str | None) -> torch.device:
    return torch.device("cpu") if device is None else torch.device(device)


def fresh_generator(device: torch.device | str | None = None) -> torch.Generator:
    """A generator on ``device`` with its whole state drawn from ``os.urandom``."""
    dev = _device(device)
    gen = torch.Generator(device=dev)
    if dev.type == "cpu":
        gen.manual_seed(0)  # a valid state with the twist pending (left=1, next=0)
        state = gen.get_state().clone()
        words = np.frombuffer(os.urandom(4 * MT_WORDS), dtype="<u4").astype("<u8")
        if not words.any():  # all-zero MT state is degenerate; probability 2^-19968
            words[0] = 1
        raw = words.tobytes()
        state[_MT_OFFSET : _MT_OFFSET + len(raw)] = torch.frombuffer(
            bytearray(raw), dtype=torch.uint8
        )
        gen.set_state(state)
        return gen
    # Philox (CUDA and others): state is (64-bit key, 64-bit offset, a multiple of 4)
    key = int.from_bytes(os.urandom(8), "little")
    offset = int.from_bytes(os.urandom(8), "little") & ~3 & (2**63 - 1)
    state = torch.tensor(
        np.frombuffer(np.array([key, offset], dtype="<u8").tobytes(), dtype=np.uint8).copy()
    )
    gen.set_state(state)
    return gen


def reproducible_generator(seed: int, device: torch.device | str | None = None) -> torch.Generator:
    """A generator seeded with ``seed``: repeatable noise, for tests only (NOT private)."""
    return torch.Generator(device=_device(device)).manual_seed(seed)
