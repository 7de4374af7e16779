"""The model, the data (sklearn's bundled digits, no download) and the training helpers."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

TEST_SIZE = 297  # held out for the ServerApp; the other 1500 digits are split across nodes


class Net(nn.Module):
    """A small MLP on 8x8 digit images: 64 -> 32 (ReLU) -> 10, 2,410 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(y))  # the same split on every node
    return torch.tensor(x[perm] / 16.0, dtype=torch.float32), torch.tensor(y[perm])


def load_data(
    partition_id: int, num_partitions: int, batch_size: int
) -> tuple[DataLoader, DataLoader]:
    """This node's partition of the digits: 80% to train on, 20% to evaluate on."""
    x, y = _digits()
    part = np.array_split(np.arange(TEST_SIZE, len(y)), num_partitions)[partition_id]
    cut = int(0.8 * len(part))
    train = TensorDataset(x[part[:cut]], y[part[:cut]])
    val = TensorDataset(x[part[cut:]], y[part[cut:]])
    return DataLoader(train, batch_size=batch_size, shuffle=True), DataLoader(val, batch_size=256)


def load_test_data() -> DataLoader:
    """The digits no node holds, for the ServerApp's evaluation."""
    x, y = _digits()
    return DataLoader(TensorDataset(x[:TEST_SIZE], y[:TEST_SIZE]), batch_size=256)


def test(model: nn.Module, loader: DataLoader) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``loader``."""
    criterion = nn.CrossEntropyLoss(reduction="sum")
    model.eval()
    loss, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            out = model(x)
            loss += float(criterion(out, y))
            correct += int((out.argmax(1) == y).sum())
            n += len(y)
    return loss / n, correct / n
