"""The demo's default run against its non-private baseline and central DP-SGD, per run.

For each target epsilon, seed and run: ``run_demo(DemoConfig(seed=s, target_epsilon=e))``
(8 hospitals, 20 rounds of 3 full-batch local epochs, epsilon by the headline PLD
accountant, uniform weighting, one dropout a round) gives the federated private accuracy,
its non-private baseline and the largest client epsilon; central DP-SGD trains the same
model on the pooled training data of the same split with PrivateTrainer, full batch, 60
steps (as many as each client takes), calibrated to the same epsilon. The DP noise is fresh
from the OS in every run (the seed fixes the split and the initial model only), so
``--runs 10`` repeats each seed ten times. Prints one row per run and, per epsilon, the
median, range and how many runs reached 95%.

    python benchmarks/bench_privacy_utility.py --runs 10                  # the default demo
    python benchmarks/bench_privacy_utility.py --seeds 0 1 2 --epsilons 1 2 4 8 --runs 3
    python benchmarks/bench_privacy_utility.py --set update_clip=4.0     # any DemoConfig field
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from secureagg.demo import DemoConfig
from secureagg.demo._data import prepare
from secureagg.demo._models import accuracy_on, model_factory
from secureagg.demo._run import run_demo
from secureagg.privacy import PrivateTrainer, parameters_of
from secureagg.privacy.accounting import HEADLINE


def central(cfg: DemoConfig) -> tuple[float, float]:
    """Central DP-SGD on the pooled data of the demo's split: (accuracy, epsilon)."""
    data = prepare(
        cfg.dataset,
        cfg.clients,
        test_fraction=cfg.test_fraction,
        skew=cfg.skew,
        min_examples=cfg.min_examples,
        seed=cfg.seed,
    )
    x = np.concatenate([p.x for p in data.clients.values()])
    y = np.concatenate([p.y for p in data.clients.values()])
    torch.manual_seed(cfg.seed)
    model = model_factory(data.n_features, data.n_classes, cfg.hidden)()
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=len(y))
    trainer = PrivateTrainer(
        model,
        torch.optim.SGD(model.parameters(), lr=cfg.learning_rate),
        loader,
        target_epsilon=cfg.target_epsilon,
        planned_rounds=1,
        local_steps=cfg.rounds * cfg.local_epochs,
        max_grad_norm=cfg.max_grad_norm,
        delta=cfg.delta,
    )
    trainer.train_round({k: v.clone() for k, v in parameters_of(model).items()})
    model.eval()
    return accuracy_on(data.x_test, data.y_test)(model), trainer.epsilon()


def _setting(text: str) -> tuple[str, Any]:
    """``name=value`` for a DemoConfig field, the value parsed as JSON (else a string)."""
    name, sep, value = text.partition("=")
    if not sep or name not in {f.name for f in dataclasses.fields(DemoConfig)}:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE with a DemoConfig field: {text}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def _summary(label: str, values: list[float]) -> str:
    above = sum(v >= 0.95 for v in values)
    return (
        f"{label} median {statistics.median(values):.4f} "
        f"({min(values):.4f}-{max(values):.4f}, {above} of {len(values)} >= 0.95)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--runs", type=int, default=1, help="runs per seed (fresh noise each)")
    p.add_argument(
        "--epsilons", type=float, nargs="+", default=[DemoConfig.target_epsilon], help="targets"
    )
    p.add_argument("--set", type=_setting, action="append", default=[], metavar="FIELD=VALUE")
    args = p.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("absl").setLevel(logging.ERROR)
    print(f"settings: DemoConfig defaults with {dict(args.set) or 'nothing'} changed")
    print("eps  seed  run  federated  baseline  central  eps(PLD)  eps(RDP)  central eps  seconds")
    for target in args.epsilons:
        rows = []
        for s in args.seeds:
            for run in range(args.runs):
                cfg = DemoConfig(seed=s, target_epsilon=target, **dict(args.set))
                start = time.perf_counter()
                res = run_demo(cfg)
                secs = time.perf_counter() - start
                fed = res.private.rounds[-1].accuracy
                base = res.baseline.rounds[-1].accuracy
                led = res.ledger
                eps = max(led.latest_epsilon(c, HEADLINE) for c in led.clients())
                rdp = max(led.latest_epsilon(c, "opacus_rdp") for c in led.clients())
                cen, cen_eps = central(cfg)
                assert fed is not None and base is not None
                rows.append((fed, base, cen, eps, secs))
                print(
                    f"{target:3g}  {s:4d}  {run:3d}  {fed:9.4f}  {base:8.4f}  {cen:7.4f}  "
                    f"{eps:8.3f}  {rdp:8.3f}  {cen_eps:11.3f}  {secs:7.1f}",
                    flush=True,
                )
        fed_, base_, cen_, eps_, secs_ = (list(col) for col in zip(*rows, strict=True))
        print(
            f"epsilon {target:g} ({HEADLINE}, largest client: {max(eps_):.3f}), {len(rows)} runs: "
            + "; ".join(
                [
                    _summary("federated", fed_),
                    _summary("baseline", base_),
                    _summary("central DP-SGD", cen_),
                ]
            )
            + f"; demo seconds median {statistics.median(secs_):.1f}"
        )


if __name__ == "__main__":
    main()
