"""A classic federated PyTorch loop, made private (Opacus DP-SGD) and secure (masked sums).

All parties run in this one process; only bytes pass between each client's
``SecureAggClient`` and the ``SecureAggServer``, as they would over a network
(examples/http_transport runs them as separate processes over HTTP).

``federated_private_secure`` is the classic loop of ``federated_plain`` with the lines that
secureagg adds or changes marked ``# secureagg``, with the classic line a change replaces
noted as ``(was: ...)``. The task is sklearn's bundled digits (no download), split across a
few clients.

    python examples/plain_pytorch_loop.py --rounds 5
    python examples/plain_pytorch_loop.py --rounds 5 --plain   # the classic loop alone
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from secureagg import (  # secureagg
    PrivacyLedger,
    PrivateTrainer,
    SecureAggClient,
    SecureAggregator,
    SecureAggServer,
)
from secureagg.fl import Aggregate  # secureagg

UPDATE_CLIP = 10.0  # secureagg: bound on each client's update (L2), public


def load_clients(n_clients: int, seed: int) -> tuple[list[TensorDataset], TensorDataset]:
    """The digits split into ``n_clients`` client datasets and a held-out test set."""
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


def federated_plain(args: argparse.Namespace) -> None:
    """The classic loop: every client trains a copy, the server averages the updates."""
    datasets, test = load_clients(args.clients, args.seed)
    global_model = make_model()
    criterion = nn.CrossEntropyLoss()
    clients = []
    for dataset in datasets:
        model = make_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
        loader = DataLoader(dataset, batch_size=128, shuffle=True)
        clients.append((model, optimizer, loader))

    for rnd in range(1, args.rounds + 1):
        global_state = global_model.state_dict()
        updates, weights = [], []
        for model, optimizer, loader in clients:
            model.load_state_dict(global_model.state_dict())
            for x, y in loader:  # one local epoch
                optimizer.zero_grad()
                criterion(model(x), y).backward()
                optimizer.step()
            updates.append({k: v - global_state[k] for k, v in model.state_dict().items()})
            weights.append(len(loader.dataset))
        average = {
            k: sum(w * u[k] for w, u in zip(weights, updates, strict=True)) / sum(weights)
            for k in global_state
        }
        with torch.no_grad():
            for name, param in global_model.named_parameters():
                param += average[name]
        print(f"round {rnd}/{args.rounds}: accuracy {accuracy(global_model, test):.3f}")


def exchange(server: SecureAggServer, sessions: dict[int, SecureAggClient]) -> Aggregate:
    """secureagg: the protocol's bytes between clients and server, one exchange per stage.

    Your transport's job: here a function call, in examples/http_transport HTTP requests.
    The server object only ever receives bytes: keys, encrypted shares, masked updates.
    """
    to_server = {cid: s.join(server.config_bytes) for cid, s in sessions.items()}
    while server.stage is not None:
        for cid, data in to_server.items():
            server.receive(cid, data)
        replies = server.close_stage().items()  # at the stage's deadline
        to_server = {cid: sessions[cid].receive(msg) for cid, msg in replies}
    return server.result()  # the survivors' average: masks removed from the sum only


def federated_private_secure(args: argparse.Namespace) -> None:
    """The same loop: DP-SGD at every client; the server gets only masked updates and sums them."""
    datasets, test = load_clients(args.clients, args.seed)
    global_model = make_model()
    clients = []
    for dataset in datasets:
        model = make_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
        loader = DataLoader(dataset, batch_size=128, shuffle=True)
        trainer = PrivateTrainer(  # secureagg: wraps with Opacus once, for the client's lifetime
            model, optimizer, loader, noise_multiplier=args.noise, update_clip=UPDATE_CLIP
        )
        clients.append(trainer)  # secureagg  (was: clients.append((model, optimizer, loader)))

    # secureagg: the server fixes the encoding from public bounds; every client gets a copy
    max_examples = max(len(d) for d in datasets)  # secureagg
    aggregator = SecureAggregator(  # secureagg
        global_model, max_clients=len(clients), max_examples=max_examples, update_clip=UPDATE_CLIP
    )
    encoder = aggregator.client_encoder()  # secureagg
    ledger = PrivacyLedger(accountants=("opacus_rdp", "dpa_rdp"))  # secureagg

    for rnd in range(1, args.rounds + 1):
        global_state = global_model.state_dict()
        sessions = {  # secureagg: each client's side of this round; ids name ledger entries
            cid: SecureAggClient(encoder, cid) for cid in range(1, len(clients) + 1)
        }
        server = SecureAggServer(aggregator, sessions, round_counter=rnd)  # secureagg
        for cid, trainer in enumerate(clients, start=1):  # secureagg
            # client side
            update = trainer.train_round(global_state)  # secureagg: load, DP-SGD epoch, update
            sessions[cid].provide_update(update)  # secureagg  (was: updates.append(...))
            trainer.record_round(ledger, cid, rnd)  # secureagg: what this round cost in privacy
        # server side
        result = exchange(server, sessions)  # secureagg: masked updates in, their average out
        average = result.average  # secureagg  (was: the weighted average of updates)
        with torch.no_grad():
            for name, param in global_model.named_parameters():
                param += average[name]
        eps = max(ledger.latest_epsilon(c) for c in ledger.clients())  # secureagg
        print(
            f"round {rnd}/{args.rounds}: accuracy {accuracy(global_model, test):.3f}, "
            f"epsilon {eps:.2f}, error <= {result.error_bound:.1e}"  # secureagg
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--lr", type=float, default=3.0)
    p.add_argument("--noise", type=float, default=3.0, help="DP noise multiplier")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plain", action="store_true", help="run the classic loop instead")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    (federated_plain if args.plain else federated_private_secure)(args)


if __name__ == "__main__":
    main()
