"""Client-level distributed DP: accuracy against central DP-FedAvg and local DP-SGD, bytes on
the wire, and the client's cost of noise plus rotation against its masking.

    .venv/bin/python benchmarks/bench_distributed_dp.py [--seeds 3] [--rounds 40]
        [--clients 300] [--rate 0.15] [--epsilon 4] [--bits 16] [--threshold 0.75]
        [--independent-noise] [--skip-small-everywhere] [--skip-accuracy]

Accuracy (scikit-learn's digits, 1,437 training images over ``--clients`` clients, 4-5
each; a 64-10 softmax model; 5 local epochs of SGD; test set of 360): each round every
client joins with probability ``--rate``; the participation coins come from a seeded
generator so that the arms below see the same clients (the library's own run_federated
draws them from the OS). All arms reach the same (epsilon, delta = 1e-4) after ``--rounds``
rounds, clip 0.5:

* ``distributed``: SecureAggregator(distributed=...): updates clipped, rotated, rounded and
  noised with the distributed discrete Gaussian inside the real secure-aggregation round at
  ``--bits`` bits, noise calibrated for n_min = threshold honest clients (threshold
  ``--threshold`` x the expected participants, default 0.75: 33 of 45, about two standard
  deviations below the mean; rounds of threshold or fewer clients abort), sampling by the
  zero-out joint-convexity bound (before 2026-12-05 03:30: Zhu-Wang's, which is proved for
  the add/remove pair only; the accuracy tables up to then were planned with it);
* ``central``: the server adds N(0, (z c)^2) to the clear sum of clipped updates, z from
  dp-accounting's exact sampled-Gaussian RDP (the usual DP-FedAvg accounting); it runs
  every round of the schedule, the small ones the distributed arm aborts included (before
  2026-12-05 02:20 it skipped them too; ``--skip-small-everywhere`` does that again);
* ``central-zw``: the same with z from the Zhu-Wang bound (the distributed arm's before
  2026-12-05 03:30);
* ``local-dpsgd``: example-level DP-SGD (Opacus, PrivateTrainer) at each client with the
  same epsilon over its expected participations, clear averaging;
* ``central-matched`` (a diagnostic, not a DP arm of its own): continuous Gaussian noise of
  exactly the std the distributed arm's shares add up to (sqrt(members) x local std) on the
  clear sum of clipped updates: the distributed arm minus this one is the integer pipeline
  alone (rotation, rounding, modular clipping); this one minus central-zw is the honest
  floor and the discretisation's accounting cost.

``--arms`` picks arms (default: all four DP arms); ``--first-seed`` starts the seeds
elsewhere, so that runs add up. The summary gives the per-seed paired differences of
central and distributed, their mean and a 95% t-interval.

Common random numbers (default when ``distributed`` is the first arm): in each round the
distributed arm's noise, read off as its decoded average minus the clear average of the
clipped updates and divided by the planned std, is a draw of N(0, I) up to the rounding
(under 1e-5 of its variance at these settings; the benchmark prints the measured std over
the planned one); the central arms scale that same draw to their own
std instead of drawing their own (rounds the distributed arm aborted: their own draw). Each
arm's noise keeps its distribution, so each arm's expected accuracy is unchanged, and the
paired difference loses the part that came from different noise draws.
``--independent-noise`` gives every arm its own draws (the figures before 2026-12-05).
With the same draws, central-matched minus distributed is the integer pipeline alone.

Costs (d = 10^6, b = 16): bytes each client sends in a real round (``client_cost``) against
b/8 bytes per padded coordinate and float32 in the clear; and the median CPU time of the
client's whole encode (``ddp_encode``: clip, rotation, conditional rounding, discrete
Gaussian), with its rotation and noise alone, against the median CPU time of masking the
same vector with ``k`` pairwise masks plus its self mask (MaskBuffer.apply), for the
neighbour counts a distributed-DP round has (``neighbour_counts``).
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import time
import warnings
from typing import Any

import dp_accounting
import numpy as np
import torch
from _ddp_costs import bench_costs
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from secureagg.fl import DistributedDP, PlainTrainer, SecureAggConfig, SecureAggregator
from secureagg.privacy import LocalUpdate, PrivateTrainer, parameters_of, unflatten
from secureagg.privacy.distributed import ORDERS, plan, subsampled_rdp

CLIP, DELTA, LOCAL_LR, LOCAL_EPOCHS = 0.5, 1e-4, 0.5, 5


def split(clients: int) -> tuple[list[TensorDataset], torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    order = np.random.default_rng(0).permutation(len(xtr))
    parts = [
        TensorDataset(
            torch.tensor(xtr[p], dtype=torch.float32), torch.tensor(ytr[p], dtype=torch.long)
        )
        for p in np.array_split(order, clients)
    ]
    return parts, torch.tensor(xte, dtype=torch.float32), torch.tensor(yte)


def model_fn() -> nn.Module:
    return nn.Linear(64, 10)


def accuracy(state: dict[str, torch.Tensor], xte: torch.Tensor, yte: torch.Tensor) -> float:
    logits = xte @ state["weight"].T + state["bias"]
    return float((logits.argmax(1) == yte).float().mean())


def gaussian_z(eps: float, q: float, rounds: int, zhu_wang: bool) -> float:
    """Noise multiplier of the sampled Gaussian reaching eps (bisection)."""

    def eps_of(z: float) -> float:
        if zhu_wang:

            def gauss(a: np.ndarray) -> np.ndarray:
                out: np.ndarray = a / (2 * z * z)
                return out

            rdp = subsampled_rdp(gauss, q) * rounds
            a = np.asarray(ORDERS, dtype=np.float64)
            return float(np.min(rdp + np.log1p(-1 / a) - np.log(DELTA * a) / (a - 1)))
        acc = dp_accounting.rdp.RdpAccountant(list(ORDERS))
        acc.compose(
            dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), rounds
        )
        return float(acc.get_epsilon(DELTA))

    lo, hi = 0.1, 100.0
    while hi - lo > 1e-4:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if eps_of(mid) > eps else (lo, mid)
    return hi


def plain_trainers(parts: list[TensorDataset]) -> list[PlainTrainer]:
    out = []
    for ds in parts:
        m = model_fn()
        out.append(
            PlainTrainer(
                m,
                torch.optim.SGD(m.parameters(), lr=LOCAL_LR),
                DataLoader(ds, batch_size=len(ds)),
                local_epochs=LOCAL_EPOCHS,
            )
        )
    return out


def clipped(u: LocalUpdate) -> np.ndarray:
    v = u.vector.astype(np.float64)
    n = float(np.linalg.norm(v))
    return v * (CLIP / n) if n > CLIP else v


def threshold_of(args: argparse.Namespace) -> int:
    """The secure-aggregation threshold: ``--threshold`` of the expected participants."""
    return max(2, int(args.threshold * args.rate * args.clients))


def run_arm(
    arm: str,
    schedule: list[list[int]],
    parts: list[TensorDataset],
    test: tuple[torch.Tensor, torch.Tensor],
    args: argparse.Namespace,
    zs: dict[str, float],
    seed: int,
    draws: dict[int, np.ndarray],
    pipeline: list[float],
) -> tuple[float, int]:
    """One arm's final accuracy and its count of skipped rounds.

    The distributed arm stores each round's noise, normalised to N(0, I), in ``draws``
    (the decoded average minus the clear average of the clipped updates, times members
    over the planned std of the sum) and the ratio of its std to 1 in ``pipeline``; with
    paired noise the central arms use those draws instead of their own (common
    random numbers: each arm's noise keeps its distribution, the paired difference loses
    the part that comes from different noise draws).
    """
    torch.manual_seed(seed)
    state = {k: v.clone() for k, v in parameters_of(model_fn()).items()}
    rng = np.random.default_rng(seed + 1000)  # the central arms' noise (simulation only)
    threshold = threshold_of(args)
    agg = None
    local_std = zs.get("local-std", 0.0)
    if arm == "distributed":
        settings = DistributedDP(
            epsilon=args.epsilon, delta=DELTA, update_clip=CLIP, rounds=args.rounds, bits=args.bits,
            sample_rate=args.rate,
        )  # fmt: skip
        agg = SecureAggregator(
            state, SecureAggConfig(threshold=threshold), max_clients=args.clients,
            max_examples=10, distributed=settings,
        )  # fmt: skip
    trainers: Any = {} if arm == "local-dpsgd" else plain_trainers(parts)
    aborted = 0
    # central DP-FedAvg needs no floor: it runs every round; the distributed arm (and
    # central-matched, its diagnostic twin) skip the rounds too small to start
    skips = arm in ("distributed", "central-matched") or args.skip_small_everywhere
    for t, members in enumerate(schedule):
        if len(members) <= threshold and skips:
            aborted += 1  # too few to start a round under distributed DP
            continue
        updates = {}
        for c in members:
            if arm == "local-dpsgd":
                if c not in trainers:
                    m = model_fn()
                    planned = math.ceil(
                        args.rate * args.rounds + 3 * math.sqrt(args.rate * args.rounds)
                    )
                    trainers[c] = PrivateTrainer(
                        m, torch.optim.SGD(m.parameters(), lr=LOCAL_LR),
                        DataLoader(parts[c], batch_size=len(parts[c])),
                        target_epsilon=args.epsilon, planned_rounds=planned, delta=DELTA,
                        max_grad_norm=1.0, local_epochs=LOCAL_EPOCHS, update_clip=CLIP,
                    )  # fmt: skip
                if not trainers[c].can_train():
                    continue
            updates[c] = trainers[c].train_round(state)
        if not updates:
            continue
        if agg is not None:
            encoded = {i + 1: agg.encode(updates[c]) for i, c in enumerate(sorted(updates))}
            avg = agg.simulate(encoded).vector
            m = len(updates)
            clear = np.sum([clipped(u) for u in updates.values()], axis=0)
            draws[t] = (avg * m - clear) / (math.sqrt(m) * local_std)  # ~ N(0, I)
            pipeline.append(float(np.std(draws[t])))
        elif arm == "local-dpsgd":
            avg = np.mean([u.vector.astype(np.float64) for u in updates.values()], axis=0)
        else:
            total = np.sum([clipped(u) for u in updates.values()], axis=0)
            std = (
                math.sqrt(len(updates)) * local_std if arm == "central-matched" else zs[arm] * CLIP
            )
            if args.paired_noise and t in draws:
                total += std * draws[t]
            else:
                total += rng.normal(0.0, std, total.shape)
            avg = total / len(updates)
        delta = unflatten(avg, state)
        state = {k: state[k] + delta[k].to(state[k].dtype) for k in state}
    return accuracy(state, *test), aborted


def bench_accuracy(args: argparse.Namespace) -> None:
    parts, xte, yte = split(args.clients)
    zs = {
        "central": gaussian_z(args.epsilon, args.rate, args.rounds, zhu_wang=False),
        "central-zw": gaussian_z(args.epsilon, args.rate, args.rounds, zhu_wang=True),
    }
    threshold = threshold_of(args)
    d = sum(int(t.numel()) for t in parameters_of(model_fn()).values())
    p = plan(
        "dgauss", epsilon=args.epsilon, delta=DELTA, clip=CLIP, bits=args.bits,
        n_min=threshold, d=d, rounds=args.rounds, sample_rate=args.rate,
        n_sum=max(args.clients, threshold),  # as SecureAggregator(max_clients=...) plans it
    )  # fmt: skip
    print(
        f"epsilon {args.epsilon}, delta {DELTA}, {args.rounds} rounds, rate {args.rate},"
        f" {args.clients} clients, clip {CLIP}, d {d} (padded {p.dim})"
    )
    zs["local-std"] = p.local_std
    zw = plan(  # the same plan by the published (Zhu-Wang, add/remove pair) bound
        "dgauss", epsilon=args.epsilon, delta=DELTA, clip=CLIP, bits=args.bits,
        n_min=threshold, d=d, rounds=args.rounds, sample_rate=args.rate,
        n_sum=max(args.clients, threshold), amplification="zhu-wang",
    )  # fmt: skip
    print(
        f"distributed noise multiplier by sampling bound: zero-out joint convexity (planned,"
        f" proved) {p.noise_multiplier:.3f}; Zhu-Wang (published accounting, add/remove pair,"
        f" not proved here) {zw.noise_multiplier:.3f}"
    )
    present = p.noise_multiplier * math.sqrt(args.rate * args.clients / threshold)
    print(
        f"noise multipliers: central {zs['central']:.3f}, central-zw {zs['central-zw']:.3f},"
        f" distributed {p.noise_multiplier:.3f} for n_min = {threshold} at {args.bits} bits"
        f" (gamma {p.gamma:.3g}); with ~{args.rate * args.clients:.0f} clients present the"
        f" distributed noise std is {present:.3f} clips"
    )  # fmt: skip
    arms = args.arms.split(",")
    args.paired_noise = not args.independent_noise and arms[0] == "distributed"
    print(
        f"threshold {threshold} ({args.threshold:.0%} of the expected participants);"
        f" central arms skip small rounds: {args.skip_small_everywhere};"
        f" paired noise: {args.paired_noise}"
    )
    results: dict[str, list[float]] = {a: [] for a in arms}
    pipeline: list[float] = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        coins = np.random.default_rng(seed)
        schedule = [
            [c for c in range(args.clients) if coins.random() < args.rate]
            for _ in range(args.rounds)
        ]
        draws: dict[int, np.ndarray] = {}
        for arm in arms:
            start = time.perf_counter()
            acc, aborted = run_arm(
                arm, schedule, parts, (xte, yte), args, zs, seed, draws, pipeline
            )
            results[arm].append(acc)
            print(
                f"seed {seed} {arm:12s} accuracy {acc:.4f}  ({aborted} rounds too small,"
                f" {time.perf_counter() - start:.1f} s)"
            )
    if pipeline:
        print(
            f"\ndistributed arm's noise (decoded minus clear average, over the planned std):"
            f" std {statistics.mean(pipeline):.4f} on average over {len(pipeline)} rounds"
            f" (min {min(pipeline):.4f}, max {max(pipeline):.4f}; 1 = exactly the planned noise)"
        )
    print("\narm              mean acc  per seed")
    for arm in arms:
        accs = results[arm]
        print(f"{arm:15s}  {statistics.mean(accs):.4f}    {' '.join(f'{a:.4f}' for a in accs)}")
    for a, b in (
        ("central", "distributed"),
        ("central-zw", "distributed"),
        ("central", "central-zw"),
        ("central-zw", "central-matched"),
        ("central-matched", "distributed"),
        ("distributed", "local-dpsgd"),
    ):
        if a in results and b in results:
            paired(a, b, results[a], results[b])


def paired(a: str, b: str, xs: list[float], ys: list[float]) -> None:
    """Print the per-seed differences a - b (points), their mean and a 95% t-interval."""
    from scipy import stats

    diff = [100 * (x - y) for x, y in zip(xs, ys, strict=True)]
    mean = statistics.mean(diff)
    if len(diff) > 1:
        half = stats.t.ppf(0.975, len(diff) - 1) * statistics.stdev(diff) / math.sqrt(len(diff))
        ci = f"95% CI [{mean - half:.2f}, {mean + half:.2f}]"
    else:
        ci = "one seed: no interval"
    print(
        f"{a} - {b}: mean {mean:.2f} points, {ci}, {len(diff)} seeds"
        f" (per seed {' '.join(f'{d:.1f}' for d in diff)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--arms", default="distributed,central,central-zw,local-dpsgd")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--clients", type=int, default=300)
    ap.add_argument("--rate", type=float, default=0.15)
    ap.add_argument("--epsilon", type=float, default=4.0)
    ap.add_argument("--bits", type=int, default=16)
    ap.add_argument("--threshold", type=float, default=0.75)
    ap.add_argument("--independent-noise", action="store_true")
    ap.add_argument("--skip-small-everywhere", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-costs", action="store_true")
    args = ap.parse_args()
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    if not args.skip_accuracy:
        bench_accuracy(args)
    if not args.skip_costs:
        bench_costs(args)


if __name__ == "__main__":
    main()
