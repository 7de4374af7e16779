"""PrivateTrainer: wrapped once, accountant never reset, mode choice, misuse gets clear errors."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from secureagg import BudgetExhaustedError, ConfigError
from secureagg.privacy import PrivateTrainer, Step, choose_mode, parameters_of
from secureagg.privacy.accounting import epsilon

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8 * 2 * 2, 3)
    )


def loader(n: int = 60, batch: int = 10, shape: tuple[int, ...] = (6,)) -> DataLoader:
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, *shape, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch)


def trainer(model: nn.Module | None = None, **kw: object) -> PrivateTrainer:
    model = model or mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    kw.setdefault("noise_multiplier", 1.0)
    return PrivateTrainer(model, opt, loader(), **kw)  # type: ignore[arg-type]


def global_of(t: PrivateTrainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in parameters_of(t.model).items()}


def test_accountant_is_never_reset_across_rounds() -> None:
    t = trainer()
    g = global_of(t)
    eps = []
    for _ in range(3):
        u = t.train_round(g)
        assert u.steps == t.steps_per_round == 6  # 60 examples, batch 10: sample rate 1/6
        eps.append(t.epsilon())
    assert eps[0] < eps[1] < eps[2]
    assert t.history == [Step(1.0, 1 / 6, 18)]
    assert len(t._loader) == 6 and t._loader.sample_rate == t.sample_rate
    fresh = RDPAccountant()
    fresh.history = [(1.0, 1 / 6, 18)]
    assert t.accountant.get_epsilon(1e-5) == pytest.approx(fresh.get_epsilon(1e-5), rel=1e-12)
    assert t.epsilon(accountant="opacus_rdp") == pytest.approx(fresh.get_epsilon(1e-5), rel=1e-9)


def test_update_is_local_minus_global_and_state_keys_are_unprefixed() -> None:
    t = trainer()
    assert all(not k.startswith("_module.") for k in t.model.state_dict())
    g = global_of(t)
    u = t.train_round(g)
    after = torch.cat([p.detach().reshape(-1) for p in t.model.parameters()]).numpy()
    before = torch.cat([v.reshape(-1) for v in g.values()]).numpy()
    np.testing.assert_allclose(u.vector, after - before, atol=1e-6)
    assert u.num_examples == 60
    assert u.vector.dtype == np.float32


def test_each_round_starts_from_the_global_weights_even_with_prefixed_keys() -> None:
    t = trainer()
    g = global_of(t)
    t.train_round(g)
    prefixed = {f"_module.{k}": v + 1.0 for k, v in g.items()}
    u = t.train_round(prefixed)
    start = torch.cat([(v + 1.0).reshape(-1) for v in g.values()]).numpy()
    now = torch.cat([p.detach().reshape(-1) for p in t.model.parameters()]).numpy()
    np.testing.assert_allclose(u.vector, now - start, atol=1e-5)


def test_second_wrap_of_the_same_model_is_an_error() -> None:
    t = trainer()
    with pytest.raises(ConfigError, match="once"):
        PrivateTrainer(
            t.model, torch.optim.SGD(t.model.parameters(), lr=0.1), loader(), noise_multiplier=1.0
        )
    with pytest.raises(ConfigError, match="DPOptimizer"):
        PrivateTrainer(mlp(), t._optimizer, loader(), noise_multiplier=1.0)


def test_model_opacus_cannot_handle_suggests_modulevalidator_fix() -> None:
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    with pytest.raises(ConfigError, match=r"ModuleValidator\.fix"):
        trainer(model)


def test_optimizer_built_before_fix_is_detected() -> None:
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    fixed = ModuleValidator.fix(model)
    with pytest.raises(ConfigError, match="not the model's"):
        PrivateTrainer(fixed, opt, loader(), noise_multiplier=1.0)
    PrivateTrainer(fixed, torch.optim.SGD(fixed.parameters(), lr=0.1), loader(), noise_multiplier=1)


class _Stream(IterableDataset):  # type: ignore[type-arg]
    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield torch.zeros(6), torch.tensor(0)


def test_loader_without_length_is_an_error() -> None:
    model = mlp()
    with pytest.raises(ConfigError, match="no length"):
        PrivateTrainer(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            DataLoader(_Stream(), batch_size=2),
            noise_multiplier=1.0,
        )


def test_summing_criterion_is_an_error() -> None:
    with pytest.raises(ConfigError, match="reduction"):
        trainer(criterion=nn.CrossEntropyLoss(reduction="sum"))


def test_mismatched_server_state_is_an_error() -> None:
    t = trainer()
    g = global_of(t)
    bad = dict(g)
    bad["0.weight"] = torch.zeros(9, 6)
    with pytest.raises(ConfigError, match="mismatched shapes"):
        t.train_round(bad)
    with pytest.raises(ConfigError, match="does not have"):
        t.train_round({**g, "extra.weight": torch.zeros(1)})
    with pytest.raises(ConfigError, match="lacks"):
        t.train_round({"0.weight": g["0.weight"]})
    assert t.history == []  # nothing was trained or charged


def test_auto_mode_ghost_for_linear_models_hooks_for_conv_models() -> None:
    assert choose_mode(mlp()) == "ghost"
    assert choose_mode(cnn()) == "hooks"
    tied = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    tied[1].weight = tied[0].weight
    assert choose_mode(tied) == "hooks"
    assert choose_mode(mlp(), "functorch") == "functorch"
    with pytest.raises(ConfigError, match="grad_sample_mode"):
        choose_mode(mlp(), "fastest")
    assert trainer().grad_sample_mode in ("ghost", "hooks")  # measured: test_privacy_probe.py
    assert trainer(grad_sample_mode="hooks").grad_sample_mode == "hooks"


@pytest.mark.parametrize("mode", ["hooks", "functorch"])
def test_ghost_mode_computes_the_same_clipped_update_as_per_sample_modes(mode: str) -> None:
    torch.manual_seed(0)
    base = mlp()
    a, b = mlp(), mlp()
    ups = []
    for model, m in ((a, "ghost"), (b, mode)):
        model.load_state_dict(base.state_dict())
        t = PrivateTrainer(
            model,
            torch.optim.SGD(model.parameters(), lr=0.5),
            loader(),
            noise_multiplier=0.0,
            max_grad_norm=0.05,  # small: clipping is active for every example
            grad_sample_mode=m,
            insecure_noise_seed=11,  # both modes must draw the same batches
        )
        ups.append(t.train_round(parameters_of(base)).vector)
    assert np.linalg.norm(ups[0]) > 0
    np.testing.assert_allclose(ups[0], ups[1], atol=2e-6)


def test_conv_model_trains_in_its_auto_mode() -> None:
    model = cnn()
    t = PrivateTrainer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        loader(shape=(1, 6, 6)),
        noise_multiplier=1.0,
        local_steps=4,
    )
    assert t.grad_sample_mode == "hooks"
    u = t.train_round(global_of(t))
    assert u.steps == 4 and np.isfinite(u.vector).all()


def test_update_clip_bounds_the_update_norm() -> None:
    t = trainer(noise_multiplier=0.5, update_clip=1e-3)
    u = t.train_round(global_of(t))
    assert u.clipped and u.norm > 1e-3
    assert np.linalg.norm(u.vector) == pytest.approx(1e-3, rel=1e-5)


def test_budget_declines_the_round_that_would_exceed_it() -> None:
    one = epsilon([Step(1.0, 1 / 6, 6)], 1e-5)
    two = epsilon([Step(1.0, 1 / 6, 12)], 1e-5)
    t = trainer(budget_epsilon=(one + two) / 2)
    g = global_of(t)
    t.train_round(g)
    assert not t.can_train()
    with pytest.raises(BudgetExhaustedError, match="budget"):
        t.train_round(g)
    assert t.history == [Step(1.0, 1 / 6, 6)]


def test_target_epsilon_is_reached_after_the_planned_rounds() -> None:
    t = trainer(noise_multiplier=None, target_epsilon=3.0, planned_rounds=2)
    g = global_of(t)
    for _ in range(2):
        t.train_round(g)
    assert 2.9 <= t.epsilon() <= 3.0
    model = mlp()
    with pytest.raises(ConfigError, match="planned_rounds"):
        trainer(model, noise_multiplier=None, target_epsilon=3.0)
    trainer(model, noise_multiplier=None, target_epsilon=3.0, planned_rounds=1)  # not marked
    with pytest.raises(ConfigError, match="exactly one"):
        trainer(noise_multiplier=1.0, target_epsilon=3.0)


def test_history_from_an_earlier_process_counts() -> None:
    prior = [Step(1.0, 1 / 6, 12)]
    t = trainer(history=prior)
    assert t.epsilon() == pytest.approx(epsilon(prior, 1e-5))
    t.train_round(global_of(t))
    assert t.epsilon() == pytest.approx(epsilon([Step(1.0, 1 / 6, 18)], 1e-5))
