"""The demo's default run against its non-private baseline and central DP-SGD, per seed.

For each seed: ``run_demo(DemoConfig(seed=s))`` (8 hospitals, 20 rounds of 3 full-batch
local epochs, target epsilon 4 by the headline PLD accountant, uniform weighting, one
dropout a round) gives the federated private accuracy, its non-private baseline and the
largest client epsilon; central DP-SGD trains the same model on the pooled training data of
the same split with PrivateTrainer, full batch, 60 steps (as many as each client takes),
calibrated to the same epsilon. Prints one row per seed and the medians.

    python benchmarks/bench_privacy_utility.py --seeds 0 1 2 [--lr 2.0]
"""

from __future__ import annotations

import argparse
import statistics
import time

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--lr", type=float, default=DemoConfig.learning_rate, help="learning rate")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    print("seed  federated  baseline  central  eps(PLD)  eps(RDP)  central eps  seconds")
    for s in args.seeds:
        cfg = DemoConfig(seed=s, learning_rate=args.lr)
        start = time.perf_counter()
        res = run_demo(cfg)
        fed = res.private.rounds[-1].accuracy
        base = res.baseline.rounds[-1].accuracy
        led = res.ledger
        eps = max(led.latest_epsilon(c, HEADLINE) for c in led.clients())
        rdp = max(led.latest_epsilon(c, "opacus_rdp") for c in led.clients())
        cen, cen_eps = central(cfg)
        secs = time.perf_counter() - start
        assert fed is not None and base is not None
        rows.append((fed, base, cen, eps))
        print(
            f"{s:4d}  {fed:9.4f}  {base:8.4f}  {cen:7.4f}  {eps:8.3f}  {rdp:8.3f}  "
            f"{cen_eps:11.3f}  {secs:7.1f}"
        )
    med = [statistics.median(col) for col in zip(*rows, strict=True)]
    print(
        f"median federated {med[0]:.4f}, baseline {med[1]:.4f} (gap {med[1] - med[0]:+.4f}), "
        f"central DP-SGD {med[2]:.4f} (gap {med[2] - med[0]:+.4f}), epsilon {med[3]:.3f} "
        f"({HEADLINE})"
    )


if __name__ == "__main__":
    main()
