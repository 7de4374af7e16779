"""PrivateTrainer on a GPU against raw Opacus and plain SGD, per local round.

Run: .venv/bin/python benchmarks/bench_gpu.py [--device cuda|cpu] [--repeats N] [--width W]

Without CUDA (and without ``--device cpu``) it says so and exits 0. The model is a
CIFAR-shaped (3x32x32, 10 classes) CNN with GroupNorm (554k parameters at width 1,
2.2M at width 2); data come from an ordinary CPU DataLoader, as most users load them, and
every variant moves each batch to the device. One round = one epoch of ``--steps`` batches
of ``--batch`` examples (Poisson sampling for the private variants):

* plain: non-private SGD, shuffled DataLoader, the same number of steps;
* opacus-hooks / opacus-ghost: raw ``PrivacyEngine.make_private`` in that mode, looping
  over its Poisson loader;
* trainer-hooks / trainer-ghost / trainer-auto: ``PrivateTrainer.train_round`` (loading
  the global weights, fresh noise generators and the flat update included; no budget is
  set); "auto" measures both modes on this model when the trainer is built.

Medians of ``--repeats`` interleaved rounds (ms), and the ratios trainer / raw Opacus in
the same mode (target <= 1.10) and private / plain; then the trainer's own work per round,
and what the per-round budget check adds when ``budget_epsilon`` is set. ``--device cpu``
runs the same comparison at a CPU size (width 0.25, batch 32 by default).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from _timing import interleaved, paired  # benchmarks/ is on sys.path (script or test)
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from secureagg.privacy import PrivateTrainer, parameters_of, train_local
from secureagg.privacy.accounting import (
    ACCOUNTANT_NAMES,
    HEADLINE,
    Step,
    _dpa_pld_reference,
    canonical,
)


def cnn(width: float) -> nn.Module:
    """CIFAR-shaped CNN with GroupNorm (Opacus-compatible); 554k parameters at width 1."""
    c1, c2, c3, h = (max(8, int(w * width)) for w in (64, 128, 256, 128))

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.ReLU()]

    return nn.Sequential(
        *block(3, c1),
        nn.MaxPool2d(2),
        *block(c1, c2),
        *block(c2, c2),
        nn.MaxPool2d(2),
        *block(c2, c3),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(c3, h),
        nn.ReLU(),
        nn.Linear(h, 10),
    )


def data(n: int) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,)))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _epoch(
    model: nn.Module, opt: Any, crit: Any, loader: Any, device: torch.device
) -> Callable[[], None]:
    """One pass over ``loader`` with ``opt`` (then a device sync), as a callable to time."""

    def run() -> None:
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            crit(model(x.to(device)), y.to(device)).backward()
            opt.step()
        sync(device)

    return run


def plain_round(
    make: Callable[[], nn.Module], ds: TensorDataset, batch: int, device: torch.device
) -> Callable[[], None]:
    model = make().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = DataLoader(ds, batch_size=batch, shuffle=True)
    return _epoch(model, opt, nn.CrossEntropyLoss(), loader, device)


def opacus_round(
    make: Callable[[], nn.Module], ds: TensorDataset, batch: int, device: torch.device, mode: str
) -> Callable[[], None]:
    from opacus import PrivacyEngine

    model = make().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    out: Any = PrivacyEngine().make_private(
        module=model,
        optimizer=opt,
        data_loader=DataLoader(ds, batch_size=batch),
        criterion=nn.CrossEntropyLoss(),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        grad_sample_mode=mode,
        wrap_model=False,
    )
    if mode == "ghost":
        _, dp_opt, crit, loader = out
    else:
        _, dp_opt, loader = out
        crit = nn.CrossEntropyLoss()
    return _epoch(model, dp_opt, crit, loader, device)


def trainer_round(
    make: Callable[[], nn.Module], ds: TensorDataset, batch: int, device: torch.device, mode: str
) -> tuple[Callable[[], None], PrivateTrainer]:
    model = make().to(device)
    trainer = PrivateTrainer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.05),
        DataLoader(ds, batch_size=batch),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        grad_sample_mode=mode,
    )
    state = {k: v.detach().cpu().clone() for k, v in parameters_of(model).items()}

    def run() -> None:
        trainer.train_round(state)  # returns a CPU vector: the device is synchronised

    return run, trainer


def bookkeeping_ms(trainer: PrivateTrainer, device: torch.device) -> float:
    """What train_round does besides the Opacus steps (can_train, free without a budget;
    fresh generators; loading the global weights, two flattens, the update), as the
    minimum of 20 runs."""
    state = {k: v.detach().cpu().clone() for k, v in parameters_of(trainer.model).items()}
    times = []
    for _ in range(21):
        t0 = CLOCK()
        trainer.can_train()
        trainer._reseed()
        train_local(
            trainer.model,
            trainer._optimizer,
            trainer._criterion,
            [],
            state,
            update_clip=None,
            num_examples=trainer.num_examples,
        )
        sync(device)
        times.append((CLOCK() - t0) * 1e3)
    return min(times[1:])


CLOCK: Callable[[], float] = time.perf_counter


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--width", type=float, help="channel multiplier (default: cuda 1, cpu 0.25)")
    p.add_argument("--batch", type=int, help="examples per step (default: cuda 256, cpu 32)")
    p.add_argument("--steps", type=int, default=8, help="expected steps per round")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: this process's CPU time (steadier on a shared CPU; not for CUDA)",
    )
    args = p.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "bench_gpu: CUDA is not available on this machine (torch "
            f"{torch.__version__}, cuda build {torch.version.cuda}); nothing measured. "
            "Run it on a machine with an NVIDIA GPU, or `--device cpu` for the CPU-sized "
            "comparison."
        )
        return 0
    warnings.filterwarnings("ignore")
    logging.getLogger("opacus").setLevel(logging.ERROR)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    width = args.width if args.width is not None else (1.0 if gpu else 0.25)
    batch = args.batch or (256 if gpu else 32)
    ds = data(batch * args.steps)

    def make() -> nn.Module:
        torch.manual_seed(0)
        return cnn(width)

    n_params = sum(p.numel() for p in make().parameters())
    name = torch.cuda.get_device_name(device) if gpu else "CPU"
    print(
        f"{name}, torch {torch.__version__}; CNN width {width} ({n_params:,} parameters), "
        f"batch {batch}, {args.steps} steps per round, CPU DataLoader; medians of "
        f"{args.repeats} interleaved rounds (ms, {args.clock} clock, "
        f"{torch.get_num_threads()} CPU threads)"
    )
    fns = {
        "plain": plain_round(make, ds, batch, device),
        "opacus-hooks": opacus_round(make, ds, batch, device, "hooks"),
        "opacus-ghost": opacus_round(make, ds, batch, device, "ghost"),
        "trainer-hooks": trainer_round(make, ds, batch, device, "hooks")[0],
        "trainer-ghost": trainer_round(make, ds, batch, device, "ghost")[0],
    }
    built = time.perf_counter()  # after the first trainers: imports are not counted
    fns["trainer-auto"], auto_trainer = trainer_round(make, ds, batch, device, "auto")
    probe_s = time.perf_counter() - built
    auto_mode = auto_trainer.grad_sample_mode
    t = interleaved(fns, args.repeats, CLOCK)
    for k, v in t.items():
        extra = (
            f"  (chose {auto_mode}; built, probe included, in {probe_s:.2f} s)"
            if k.endswith("auto")
            else ""
        )
        print(f"  {k:14} {statistics.median(v):9.1f}{extra}")
    print("ratios (median of per-repeat ratios):")
    for mode in ("hooks", "ghost"):
        ours = paired(t, f"trainer-{mode}", f"opacus-{mode}")
        raw = paired(t, f"opacus-{mode}", "plain")
        print(f"  trainer-{mode} / opacus-{mode}: {ours:.3f}   opacus-{mode} / plain: {raw:.2f}")
    best = min(("hooks", "ghost"), key=lambda m: statistics.median(t[f"opacus-{m}"]))
    print(
        f"  faster raw mode: {best}; auto chose {auto_mode}; trainer-auto / opacus-{best}: "
        f"{paired(t, 'trainer-auto', f'opacus-{best}'):.3f}"
    )
    own = bookkeeping_ms(auto_trainer, device)
    raw = statistics.median(t[f"opacus-{auto_mode}"])
    print(
        f"  the trainer's own work per round (min of 20): {own:.2f} ms = "
        f"{100 * own / raw:.2f}% of a raw opacus-{auto_mode} round"
    )
    # a trainer with a budget checks every round: the step's PLD is built in its first
    # check and reused after (auto_trainer.epsilon() stands for that first check); the
    # history changed in the timed rounds, so the check itself is a new figure
    auto_trainer.epsilon()
    t0 = time.perf_counter()
    auto_trainer.next_round_epsilon()
    check = (time.perf_counter() - t0) * 1e3
    step = Step(auto_trainer.noise_multiplier, auto_trainer.sample_rate, 1)
    later = canonical([*auto_trainer.history, step, step])  # a history not yet computed
    t0 = time.perf_counter()
    _dpa_pld_reference(later, auto_trainer.delta)  # the library's accountant, from scratch
    fresh = (time.perf_counter() - t0) * 1e3
    print(
        f"  with budget_epsilon set, the per-round budget check adds {check:.1f} ms "
        f"(wall clock; {ACCOUNTANT_NAMES[HEADLINE]} over the history) = "
        f"{100 * check / raw:.1f}% of a raw round; the library's PLDAccountant from "
        f"scratch: {fresh:.1f} ms ({fresh / check:.1f} x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
