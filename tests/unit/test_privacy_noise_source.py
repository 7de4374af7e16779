"""DP noise and Poisson sampling come from the OS CSPRNG: no user seed reproduces them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from secureagg.fl import run_federated
from secureagg.privacy import PrivacyConfig, PrivacyLedger, PrivateTrainer, parameters_of
from secureagg.privacy._randomness import MT_WORDS, fresh_generator

pytestmark = pytest.mark.usefixtures("torch_one_thread")

N, Z = 40, 2.0


def data(seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, 5, generator=g)
    return TensorDataset(x, (x[:, 0] > 0).long())


def full_batch() -> DataLoader:
    return DataLoader(data(), batch_size=N)  # sample rate 1: every step sees every example


def one_step(z: float, seed: int, **kw: object) -> tuple[np.ndarray, PrivateTrainer]:
    """The example's pattern: torch.manual_seed(seed), build the model, train one round."""
    torch.manual_seed(seed)
    model = nn.Linear(5, 2)
    start = {k: v.clone() for k, v in parameters_of(model).items()}
    t = PrivateTrainer(
        model,
        torch.optim.SGD(model.parameters(), lr=1.0),
        full_batch(),
        noise_multiplier=z,
        max_grad_norm=1.0,
        local_steps=1,
        grad_sample_mode="hooks",
        **kw,  # type: ignore[arg-type]
    )
    return t.train_round(start).vector.astype(np.float64), t


def test_same_seed_twice_gives_different_noise() -> None:
    a, b = one_step(Z, 0)[0], one_step(Z, 0)[0]
    clean = one_step(0.0, 0)[0]
    np.testing.assert_allclose(clean, one_step(0.0, 0)[0], atol=1e-6)  # all else repeats
    assert np.linalg.norm(a - b) * N > Z  # the noise alone differs, by about its own scale


def _client_1_update(parts: dict[int, DataLoader], seed: int) -> np.ndarray:
    """Client 1's update after one private round of run_federated with ``seed``."""
    res = run_federated(
        lambda: nn.Linear(5, 2),
        parts,
        rounds=1,
        optimizer_fn=lambda p: torch.optim.SGD(p, lr=1.0),
        privacy=PrivacyConfig(noise_multiplier=Z),
        secure=None,
        seed=seed,
        keep_vectors=True,
    )
    return res.rounds[0].updates[1].vector.astype(np.float64)


def test_a_known_seed_does_not_let_a_replay_reproduce_the_noise() -> None:
    """The server knows the seed, the code and both candidate datasets; it replays each.

    With seeded noise (the old code) the replay of the true dataset matched the client's
    update to float rounding; with OS noise both replays miss by the noise's own scale.
    """
    loaders = {c: DataLoader(data(c), batch_size=N) for c in (1, 2)}
    smaller = {1: DataLoader(TensorDataset(*data(1)[1:]), batch_size=N - 1), 2: loaders[2]}

    seen = _client_1_update(loaders, 0)  # the client trained on the larger dataset
    for guess in (loaders, smaller):
        residual = np.linalg.norm(seen - _client_1_update(guess, 0)) / np.linalg.norm(seen)
        assert residual > 0.05, "a replay with the known seed reproduces the DP noise"


def test_run_federated_with_one_seed_gives_different_noise_each_run() -> None:
    loaders = {c: DataLoader(data(c), batch_size=N) for c in (1, 2)}

    first, second = _client_1_update(loaders, 7), _client_1_update(loaders, 7)
    assert np.linalg.norm(first - second) * N > Z


def test_insecure_seed_repeats_the_noise_and_marks_the_ledger() -> None:
    a, t = one_step(Z, 0, insecure_noise_seed=5)
    b, _ = one_step(Z, 0, insecure_noise_seed=5)
    np.testing.assert_allclose(a, b, atol=1e-7)
    assert not t.private
    ledger = PrivacyLedger(accountants=("opacus_rdp",))
    t.record_round(ledger, 3, 0)
    assert "insecure_noise_seed" in ledger.not_private()[3]
    assert "not_private" in ledger.to_json()
    assert one_step(Z, 0)[1].private


def test_fresh_generators_fill_the_whole_state_from_the_os() -> None:
    g = fresh_generator()
    words = np.frombuffer(g.get_state().numpy().tobytes()[24 : 24 + 8 * MT_WORDS], "<u8")
    assert words.max() < 2**32 and np.unique(words).size > MT_WORDS - 5  # 624 random words
    draws = [torch.randn(4, generator=fresh_generator()) for _ in range(3)]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])


def test_the_audit_says_not_private_for_repeatable_noise(tmp_path: Path) -> None:
    from secureagg.privacy.audit import audit_ledger, client_statement

    _, t = one_step(Z, 0, insecure_noise_seed=5)
    ledger = PrivacyLedger(tmp_path / "l.json", accountants=("opacus_rdp",))
    t.record_round(ledger, 3, 0)
    ledger.save()
    again = PrivacyLedger.load(tmp_path / "l.json")
    assert 3 in again.not_private()
    audit = audit_ledger(again, accountants=("opacus_rdp",), reference="opacus_rdp")
    (client,) = audit.clients
    assert client.status == "NOT PRIVATE"
    assert "NOT PRIVATE" in client_statement(audit, client)
