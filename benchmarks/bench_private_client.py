"""One client's local round: secureagg's PrivateTrainer against raw Opacus and plain training.

Run: .venv/bin/python benchmarks/bench_private_client.py [--repeats N] [--threads T]

For a 784-256-10 MLP and a small CNN (synthetic 28x28 data, 1024 examples, batch 64,
one epoch = 16 steps) it prints the median time of one local round for:

* non-private: the plain loop (shuffled DataLoader, same number of steps);
* raw Opacus, defaults: ``PrivacyEngine().make_private(...)`` as documented (mode "hooks",
  wrapped model), looping over its Poisson loader;
* raw Opacus in the mode secureagg picks (same loop);
* secureagg: ``PrivateTrainer.train_round`` (auto mode; includes loading the global
  weights, the budget check and producing the flat update vector).

Ratios: secureagg over raw Opacus in the same mode (target < 1.10) and secureagg over
non-private (target for the MLP <= 5). All runs share this process and the same data.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from _timing import interleaved, paired  # benchmarks/ is on sys.path (script or test)
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from secureagg.privacy import PrivateTrainer, choose_mode, parameters_of, train_local

N, BATCH = 1024, 64
CLOCK: Callable[[], float] = time.perf_counter


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, 2),
        nn.ReLU(),
        nn.Conv2d(16, 32, 5, 2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


def data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(N, 1, 28, 28, generator=g), torch.randint(0, 10, (N,)))


def _epoch(fwd: Any, opt: Any, crit: Any, loader: Any) -> Callable[[], object]:
    """One pass over ``loader``, stepping ``opt``, as a callable to time."""

    def run() -> None:
        for x, y in loader:
            opt.zero_grad()
            crit(fwd(x), y).backward()
            opt.step()

    return run


def plain_round(make: Callable[[], nn.Module], ds: TensorDataset) -> Callable[[], object]:
    model = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = DataLoader(ds, batch_size=BATCH, shuffle=True)
    return _epoch(model, opt, nn.CrossEntropyLoss(), loader)


def opacus_round(
    make: Callable[[], nn.Module], ds: TensorDataset, mode: str | None
) -> Callable[[], object]:
    """Raw Opacus: ``mode`` None means every default (hooks, wrapped model)."""
    from opacus import PrivacyEngine

    model = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = DataLoader(ds, batch_size=BATCH)
    crit = nn.CrossEntropyLoss()
    engine = PrivacyEngine()
    kwargs = {} if mode is None else {"grad_sample_mode": mode, "wrap_model": False}
    out = engine.make_private(
        module=model,
        optimizer=opt,
        data_loader=loader,
        criterion=crit,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        **kwargs,
    )
    if mode == "ghost":
        module, opt, crit, loader = out
    else:
        module, opt, loader = out
    return _epoch(model if mode is not None else module, opt, crit, loader)


def secureagg_round(
    make: Callable[[], nn.Module], ds: TensorDataset, mode: str = "auto"
) -> Callable[[], object]:
    model = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    trainer = PrivateTrainer(
        model,
        opt,
        DataLoader(ds, batch_size=BATCH),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        grad_sample_mode=mode,
    )
    state = {k: v.clone() for k, v in parameters_of(model).items()}
    return lambda: trainer.train_round(state)


def bookkeeping_ms(make: Callable[[], nn.Module]) -> float:
    """What train_round adds around the training loop (load weights, two flattens, the
    update vector): the real train_local over no batches, as the minimum of 50 wall-clock
    runs: the part of the overhead that is ours."""
    model = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    state = {k: v.clone() for k, v in parameters_of(model).items()}
    times = []
    for _ in range(51):
        t0 = time.perf_counter()
        train_local(model, opt, nn.CrossEntropyLoss(), [], state, update_clip=None, num_examples=N)
        times.append((time.perf_counter() - t0) * 1e3)
    return min(times[1:])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--quick", action="store_true", help="skip raw Opacus defaults on the MLP")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: this process's CPU time, steadier than wall time on a loaded machine",
    )
    args = p.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("absl").setLevel(logging.ERROR)
    ds = data()
    print(
        f"one local round = 1 epoch, {N // BATCH} expected steps of batch {BATCH}; torch threads"
        f" {torch.get_num_threads()}; {args.clock} clock; medians of {args.repeats} interleaved"
        " runs (ms)"
    )
    print(
        f"{'model':6} {'mode':6} {'non-priv':>9} {'opacus-def':>11} {'opacus-mode':>12}"
        f" {'secureagg':>10} {'sa/opacus-mode':>15} {'sa/non-priv':>12} {'opacus-def/np':>14}"
    )
    for name, make in (("mlp", mlp), ("cnn", cnn)):
        mode = choose_mode(make())
        fns = {
            "plain": plain_round(make, ds),
            "same": opacus_round(make, ds, mode),
            "ours": secureagg_round(make, ds),
        }
        if not (args.quick and name == "mlp"):
            fns["default"] = opacus_round(make, ds, None)
        t = interleaved(fns, args.repeats, CLOCK)
        med = {k: statistics.median(v) for k, v in t.items()}
        default = med.get("default", float("nan"))
        print(
            f"{name:6} {mode:6} {med['plain']:9.1f} {default:11.1f} {med['same']:12.1f}"
            f" {med['ours']:10.1f} {paired(t, 'ours', 'same'):15.3f}"
            f" {paired(t, 'ours', 'plain'):12.2f}"
            f" {paired(t, 'default', 'plain') if 'default' in t else float('nan'):14.1f}"
        )
    print(
        "secureagg bookkeeping per round (min of 50, ms): "
        + ", ".join(f"{n} {bookkeeping_ms(m):.3f}" for n, m in (("mlp", mlp), ("cnn", cnn)))
    )
    print("mode sweep, secureagg round, medians (ms):")
    for name, make in (("mlp", mlp), ("cnn", cnn)):
        modes = ("ghost", "hooks", "functorch")
        t = interleaved(
            {m: secureagg_round(make, ds, m) for m in modes}, max(3, args.repeats // 2), CLOCK
        )
        print(f"  {name}: " + ", ".join(f"{m} {statistics.median(t[m]):.1f}" for m in modes))


if __name__ == "__main__":
    main()
