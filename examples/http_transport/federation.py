"""What every party of the example agrees on in public, and each client's local training.

The settings fix the encoding (``UpdateEncoder``): the server's ``SecureAggregator`` and
every client build the same one from them. ``local_update`` is a client's own training
loop: a few steps of least squares on data only that client has (numpy here, to keep the
client processes light; a PyTorch client returns ``PrivateTrainer.train_round(...)``).
"""

from __future__ import annotations

import numpy as np

from secureagg.fl import UpdateEncoder
from secureagg.privacy import LocalUpdate

D = 32  # model size: a linear model's weights
MAX_CLIENTS = 8
MAX_EXAMPLES = 64  # public bound on a client's example count
CLIP = 1.0  # public bound on each weighted coordinate
FRAC_BITS = 16


def encoder() -> UpdateEncoder:
    """The federation's encoding (public settings only, no secret)."""
    return UpdateEncoder(
        D, max_clients=MAX_CLIENTS, max_examples=MAX_EXAMPLES, clip=CLIP, frac_bits=FRAC_BITS
    )


def local_update(client_id: int, weights: np.ndarray, steps: int = 5) -> LocalUpdate:
    """Client ``client_id`` trains from the global ``weights`` on its own data."""
    rng = np.random.default_rng(client_id)
    n = 8 * client_id  # a different example count per client (at most MAX_EXAMPLES)
    x = rng.normal(size=(n, D))
    y = x @ np.linspace(-1, 1, D) + 0.1 * rng.normal(size=n)
    w = weights.astype(np.float64).copy()
    for _ in range(steps):
        w -= 0.05 * x.T @ (x @ w - y) / n
    return LocalUpdate((w - weights).astype(np.float32), num_examples=n, steps=steps)
