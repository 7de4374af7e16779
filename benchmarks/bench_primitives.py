"""Benchmark of the hazmat primitives, each against a baseline run in the same process.

Run: .venv/bin/python benchmarks/bench_primitives.py [--repeats N]
Prints medians of N (default 15, at least 7) timed runs per figure.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import time
from collections.abc import Callable

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secureagg.hazmat import (
    PRIME,
    MaskBuffer,
    apply_masks,
    combine,
    expand_mask,
    make_config,
    pack_bits,
    quantize,
    split,
    unpack_bits,
    zeros,
)
from secureagg.hazmat._pack import _pack

D = 1_000_000


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (first-touch of buffers, imports)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def paired_ms(
    fn: Callable[[], object], base: Callable[[], object], repeats: int
) -> tuple[float, float, float]:
    """Medians of ``fn`` and ``base`` timed alternately (fn, base, fn, base, ...) in this
    process's CPU time, and the median of the per-pair ratios: on a shared machine, load
    changes between two separate series but hardly within one pair, and CPU time leaves out
    the time other processes hold the cores (both are single-threaded)."""
    fn()
    base()
    a, b, r = [], [], []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        t1 = time.process_time()
        base()
        t2 = time.process_time()
        a.append(t1 - t0)
        b.append(t2 - t1)
        r.append((t1 - t0) / (t2 - t1))
    return statistics.median(a) * 1e3, statistics.median(b) * 1e3, statistics.median(r)


def raw_keystream(seed: bytes, src: bytes, out: bytearray) -> None:
    """Baseline: AES-256-CTR keystream of len(out) bytes into a preallocated buffer."""
    Cipher(algorithms.AES256(seed), modes.CTR(bytes(16))).encryptor().update_into(src, out)


def naive_quantize(
    x: np.ndarray, clip: float, frac_bits: int, rng: np.random.Generator
) -> np.ndarray:  # type: ignore[type-arg]
    """Baseline: the textbook float64 version (clip, scale, floor(v + U[0,1)), cast)."""
    v = np.clip(x.astype(np.float64), -clip, clip) * 2.0**frac_bits
    return np.floor(v + rng.random(v.shape)).astype(np.int64).astype(np.uint32)


def naive_split(secret: bytes, t: int, xs: list[int]) -> dict[int, bytes]:
    """Baseline: evaluate each term a_i * x^i with its own modular power."""
    coeffs = [int.from_bytes(secret, "big")] + [secrets.randbelow(PRIME) for _ in range(t - 1)]
    return {
        x: (sum(a * pow(x, i, PRIME) for i, a in enumerate(coeffs)) % PRIME).to_bytes(66, "big")
        for x in xs
    }


def naive_combine(shares: dict[int, bytes]) -> bytes:
    """Baseline: Lagrange at 0 with one modular inverse per share."""
    total = 0
    xs = list(shares)
    for xi in xs:
        num, den = 1, 1
        for xj in xs:
            if xj != xi:
                num = num * xj % PRIME
                den = den * (xj - xi) % PRIME
        total += int.from_bytes(shares[xi], "big") * num * pow(den, -1, PRIME)
    return (total % PRIME).to_bytes(66, "big")[-32:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=15)
    repeats = max(7, ap.parse_args().repeats)
    seed = os.urandom(32)
    rows: list[tuple[str, float, str, float, str]] = []

    # Mask expansion, b = 32 and b = 20 (needs a reduction pass), against the raw keystream.
    src, ks = bytes(4 * D), bytearray(4 * D)
    base = median_ms(lambda: raw_keystream(seed, src, ks), repeats)
    out32 = np.empty(D, np.uint32)
    t = median_ms(lambda: expand_mask(seed, D, 32, out=out32), repeats)
    rows.append(("expand_mask d=1e6 b=32", t, "raw AES-256-CTR 4 MB", base, "ratio <= 1.3"))
    t = median_ms(lambda: expand_mask(seed, D, 20, out=out32), repeats)
    rows.append(("expand_mask d=1e6 b=20", t, "raw AES-256-CTR 4 MB", base, ""))
    buf, acc = MaskBuffer(D, 32), zeros(D, 32)
    t = median_ms(lambda: buf.add_mask(acc, seed), repeats)
    rows.append(("MaskBuffer.add_mask d=1e6 b=32", t, "raw AES-256-CTR 4 MB", base, ""))

    # Ten masks into one accumulator (a client with nine neighbours; a server removing ten
    # self-masks), b = 21: one at a time, and MaskBuffer.apply's one pass over acc.
    seeds = [os.urandom(32) for _ in range(10)]
    base10 = median_ms(lambda: [raw_keystream(s, src, ks) for s in seeds], repeats)
    buf21, acc21 = MaskBuffer(D, 21), zeros(D, 21)

    def one_at_a_time() -> None:
        for i, s in enumerate(seeds):
            (buf21.add_mask if i % 2 else buf21.subtract_mask)(acc21, s)

    t = median_ms(one_at_a_time, repeats)
    rows.append(("10 x add/subtract_mask b=21", t, "raw AES-256-CTR 10 x 4 MB", base10, ""))
    t = median_ms(lambda: buf21.apply(acc21, add=seeds[1::2], subtract=seeds[::2]), repeats)
    rows.append(("MaskBuffer.apply 10 masks b=21", t, "raw AES-256-CTR 10 x 4 MB", base10, ""))

    # A client's whole masking: ten masks into its input, then its b-bit wire bytes
    # (pack_bits), against the raw keystream of the same mask bytes (4 B per element at
    # b = 21, 8 B at b = 34). And packing alone, against one 4 MB keystream.
    def masked_wire(buf: MaskBuffer, acc: np.ndarray, bits: int) -> bytes | bytearray:
        buf.apply(acc, add=seeds[1::2], subtract=seeds[::2])
        return _pack(acc, bits)  # what the codec puts on the wire (pack_bits without a copy)

    src8, ks8 = bytes(8 * D), bytearray(8 * D)
    buf34, acc34 = MaskBuffer(D, 34), zeros(D, 34)
    paired: list[tuple[str, float, str, float, float]] = []
    for bits, buf, acc, raw_src, raw_out, label in (
        (21, buf21, acc21, src, ks, "raw AES-256-CTR 10 x 4 MB"),
        (34, buf34, acc34, src8, ks8, "raw AES-256-CTR 10 x 8 MB"),
    ):
        t, bms, ratio = paired_ms(
            lambda buf=buf, acc=acc, bits=bits: masked_wire(buf, acc, bits),
            lambda raw_src=raw_src, raw_out=raw_out: [
                raw_keystream(s, raw_src, raw_out) for s in seeds
            ],
            repeats,
        )
        paired.append((f"mask 10 + pack_bits b={bits}", t, label, bms, ratio))
    for bits, acc in ((21, acc21), (34, acc34)):
        packed = pack_bits(acc, bits)
        assert len(packed) == bits * D // 8
        assert np.array_equal(unpack_bits(packed, D, bits), acc)
        t = median_ms(lambda acc=acc, bits=bits: pack_bits(acc, bits), repeats)
        rows.append((f"pack_bits d=1e6 b={bits}", t, "raw AES-256-CTR 4 MB", base, ""))
        t = median_ms(lambda packed=packed, bits=bits: unpack_bits(packed, D, bits), repeats)
        rows.append((f"unpack_bits d=1e6 b={bits}", t, "raw AES-256-CTR 4 MB", base, ""))

    # The server's mask removal on two threads against one (wall time: what threads save).
    many = [os.urandom(32) for _ in range(2000)]
    acc5 = zeros(100_000, 32)
    two = median_ms(
        lambda: apply_masks(acc5, 32, add=many[::2], subtract=many[1::2], workers=2), repeats
    )
    one = median_ms(
        lambda: apply_masks(acc5, 32, add=many[::2], subtract=many[1::2], workers=1), repeats
    )
    rows.append(("apply_masks 2000 x d=1e5 2 thr", two, "the same, workers=1", one, ""))

    # Quantisation of 1e6 float32 values.
    rng = np.random.default_rng(0)
    x = rng.standard_normal(D).astype(np.float32)
    cfg = make_config(100, 1.0, 16)
    base = median_ms(lambda: naive_quantize(x, 1.0, 16, rng), repeats)
    t = median_ms(lambda: quantize(x, cfg, rng), repeats)
    rows.append(("quantize 1e6 float32", t, "naive float64 numpy", base, "<= 10 ms"))

    # Shamir, m = 100, t = 51.
    secret = secrets.token_bytes(32)
    xs = list(range(1, 101))
    base_split = median_ms(lambda: naive_split(secret, 51, xs), repeats)
    t_split = median_ms(lambda: split(secret, 51, xs), repeats)
    shares = split(secret, 51, xs)
    pick = dict(list(shares.items())[49:])  # the last 51 of the 100 shares
    assert combine(pick, 51) == secret == naive_combine(pick)
    assert combine(dict(list(naive_split(secret, 51, xs).items())[:51]), 51) == secret
    base = median_ms(lambda: naive_combine(pick), repeats)
    t = median_ms(lambda: combine(pick, 51), repeats)
    rows.append(("shamir split m=100 t=51", t_split, "one power per term", base_split, "<= 20 ms"))
    rows.append(("shamir combine t=51", t, "one inverse per share", base, "<= 20 ms"))

    print(f"hazmat primitives: medians of {repeats} runs, {os.cpu_count()} CPUs")
    print(
        f"{'operation':<32} {'median ms':>10}  {'baseline':<24} {'base ms':>8} {'ratio':>6}  target"
    )
    for name, ms, bname, bms, target in rows:
        ratio = ms / bms
        print(f"{name:<32} {ms:>10.3f}  {bname:<24} {bms:>8.3f} {ratio:>6.2f}  {target}")
    print("\nCPU time, alternately with the baseline; ratio = median of the per-pair ratios:")
    for name, ms, bname, bms, ratio in paired:
        print(f"{name:<32} {ms:>10.3f}  {bname:<24} {bms:>8.3f} {ratio:>6.2f}  <= 1.5")


if __name__ == "__main__":
    main()
