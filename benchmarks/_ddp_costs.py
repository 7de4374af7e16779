"""bench_distributed_dp's cost section: bytes a client sends at d = 10^6 and b bits, and the
client's CPU for noise plus rotation against its masking (see bench_distributed_dp.py)."""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from typing import Any

import numpy as np

from secureagg.hazmat import MaskBuffer, NoiseStream, ddp_encode, discrete_gaussian
from secureagg.hazmat._ddp import _float_type, _rotate, _workspace
from secureagg.privacy.distributed import plan
from secureagg.protocol import choose_parameters, simulate_round


def bench_costs(args: argparse.Namespace) -> None:
    d = 10**6
    settings = plan(  # the EMNIST setting of the DDG paper
        "dgauss", epsilon=3.0, delta=1 / 3400, clip=1.0, bits=args.bits, n_min=100, d=d,
        rounds=1500, sample_rate=100 / 3400,
    )  # fmt: skip
    params = settings.params(d)
    x = np.random.default_rng(0).normal(size=d)
    x *= 0.9 / np.linalg.norm(x)
    # bytes on the wire: one real round of 8 clients at d = 10^6
    seed = os.urandom(16)
    encoded = {i: ddp_encode(x, params, seed) for i in range(1, 9)}
    res = simulate_round(encoded, bits=args.bits)
    sent = res.client_cost[1].bytes_sent
    ideal = args.bits / 8 * params.padded
    print(
        f"\nbytes sent per client at d = {d}, b = {args.bits}, 8 clients: {sent:,}"
        f" = {sent / d:.3f} B per coordinate; b/8 per padded coordinate = {ideal:,.0f}"
        f" (+{sent - ideal:,.0f} protocol bytes); float32 in the clear = {4 * d:,}"
        f" (ratio {sent / (4 * d):.3f})"
    )
    # client compute: noise + rotation vs masking, CPU time in this process, medians
    stream = NoiseStream()

    def rotation() -> None:  # clip, pad, signs and FWHT, as ddp_encode runs them
        _rotate(x, params, seed, *_workspace(params.padded, _float_type(params))[:2])

    def noise() -> None:
        discrete_gaussian(params.variance, params.padded, stream)

    def full_encode() -> None:
        ddp_encode(x, params, seed, stream)

    def timed(fn: Any, reps: int) -> float:
        times = []
        for _ in range(reps):
            start = time.process_time()
            fn()
            times.append(time.process_time() - start)
        return statistics.median(times)

    reps = args.repeat
    t_rot, t_noise, t_encode = (timed(f, reps) for f in (rotation, noise, full_encode))
    print(
        f"client encode at D = {params.padded:,} (sigma {math.sqrt(params.variance):.0f}), CPU "
        f"ms, medians of {reps}, load {os.getloadavg()[0]:.1f}: whole ddp_encode (clip, "
        f"signs, FWHT, conditional rounding, discrete Gaussian, mod 2^b) {1e3 * t_encode:.1f}; "
        f"rotation (clip, signs, FWHT) {1e3 * t_rot:.1f}, discrete Gaussian {1e3 * t_noise:.1f}"
    )
    buf = MaskBuffer(params.padded, args.bits)
    acc = np.zeros(params.padded, dtype=buf.dtype)
    print(
        "masking the same vector (k pairwise masks + the self mask); (rotation + noise) /"
        " masking, and the whole ddp_encode / masking:"
    )
    for k, why in neighbour_counts():
        seeds = [os.urandom(32) for _ in range(k + 1)]
        t_mask = timed(lambda s=seeds: buf.apply(acc, add=s), reps)
        print(
            f"  k = {k:3d} ({why}): masking {1e3 * t_mask:6.1f} ms; "
            f"(rotation + noise) / masking = {(t_rot + t_noise) / t_mask:.2f}, "
            f"encode / masking = {t_encode / t_mask:.2f}"
        )


def neighbour_counts() -> list[tuple[int, str]]:
    """Neighbour counts a distributed-DP round has: the complete graph of the DDG paper's
    100 clients per round, and the SecAgg+ degree choose_parameters picks (at most 2^-40
    security and 2^-20 correctness failure) for 100 and 10,000 clients."""
    out = [(99, "complete graph, 100 clients")]
    for n in (100, 10_000):
        for drop, bad in ((0.1, 0.1), (0.3, 0.1), (0.1, 0.33)):
            k = choose_parameters(n, dropout_rate=drop, corrupt_fraction=bad).degree
            out.append((k, f"SecAgg+ n={n:,}, {drop:.0%} dropouts, {bad:.0%} colluders"))
    return sorted(out)
