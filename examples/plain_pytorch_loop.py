"""A classic federated PyTorch loop, made private (Opacus DP-SGD) and secure (masked sums).

Every line that secureagg adds or changes ends with ``# secureagg``; run with ``--plain`` to
run the same loop without them. The task is sklearn's bundled digits (no download), split
across a few clients.

    python examples/plain_pytorch_loop.py --rounds 5
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from secureagg.fl import SecureAggConfig, SecureAggregator  # secureagg
from secureagg.privacy import PrivacyLedger, PrivateTrainer, parameters_of  # secureagg


def load_clients(n_clients: int, seed: int) -> tuple[list[TensorDataset], TensorDataset]:
    x, y = load_digits(return_X_y=True)
    xt, yt = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    perm = torch.randperm(len(xt), generator=torch.Generator().manual_seed(seed))
    test, train = perm[:360], perm[360:]
    parts = np.array_split(train.numpy(), n_clients)
    return [TensorDataset(xt[p], yt[p]) for p in parts], TensorDataset(xt[test], yt[test])


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 10))


def accuracy(model: nn.Module, test: TensorDataset) -> float:
    x, y = test.tensors
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--lr", type=float, default=3.0)
    p.add_argument("--noise", type=float, default=3.0, help="DP noise multiplier")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plain", action="store_true", help="the loop without secureagg")
    args = p.parse_args(argv)
    logging.getLogger("absl").setLevel(logging.ERROR)  # quiet dp-accounting's log
    torch.manual_seed(args.seed)

    datasets, test = load_clients(args.clients, args.seed)
    global_model = make_model()
    criterion = nn.CrossEntropyLoss()
    clients = []
    for cid, dataset in enumerate(datasets, start=1):
        model = make_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
        loader = DataLoader(dataset, batch_size=128, shuffle=True)
        # fmt: off
        if not args.plain:  # secureagg
            trainer = PrivateTrainer(  # secureagg: wraps with Opacus once, for good
                model, optimizer, loader, noise_multiplier=args.noise,  # secureagg
                max_grad_norm=1.0, update_clip=10.0, seed=args.seed * 1000 + cid,  # secureagg
            )  # secureagg
            clients.append((cid, trainer, model, optimizer, loader))  # secureagg
            continue  # secureagg
        # fmt: on
        clients.append((cid, None, model, optimizer, loader))
    # fmt: off
    aggregator = SecureAggregator(  # secureagg
        global_model, SecureAggConfig(), max_clients=len(clients),  # secureagg
        max_examples=max(len(d) for d in datasets), update_clip=10.0,  # secureagg
    )  # secureagg
    # fmt: on
    ledger = PrivacyLedger(accountants=("opacus_rdp", "dpa_rdp"))  # secureagg
    rng = np.random.default_rng(args.seed)  # secureagg

    for rnd in range(args.rounds):
        global_state = parameters_of(global_model)
        updates, weights, encoded = [], [], {}
        for cid, trainer, model, optimizer, loader in clients:
            if trainer is not None:  # secureagg
                update = trainer.train_round(global_state)  # secureagg
                encoded[cid] = aggregator.encode(update, rng)  # secureagg
                trainer.record_round(ledger, cid, rnd)  # secureagg
                continue  # secureagg
            model.load_state_dict(global_model.state_dict())
            for x, y in loader:  # the classic local epoch
                optimizer.zero_grad()
                criterion(model(x), y).backward()
                optimizer.step()
            updates.append({k: v - global_state[k] for k, v in parameters_of(model).items()})
            weights.append(len(loader.dataset))
        if encoded:  # secureagg
            result = aggregator.aggregate(encoded)  # secureagg: the server sees only the sum
            average = result.average  # secureagg
        else:
            average = {
                k: sum(w * u[k] for w, u in zip(weights, updates, strict=True)) / sum(weights)
                for k in global_state
            }
        with torch.no_grad():
            for name, param in global_model.named_parameters():
                param += average[name]
        line = f"round {rnd + 1}/{args.rounds}: accuracy {accuracy(global_model, test):.3f}"
        if encoded:  # secureagg
            eps = max(ledger.latest_epsilon(c) for c in ledger.clients())  # secureagg
            line += f", epsilon {eps:.2f}, error <= {result.error_bound:.1e}"  # secureagg
        print(line, flush=True)


if __name__ == "__main__":
    main()
