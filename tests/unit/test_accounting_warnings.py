"""Only the known, handled warnings of Opacus and the accountants are silenced; others show."""

from __future__ import annotations

import warnings

import pytest

from secureagg.privacy import accounting
from secureagg.privacy.accounting import quiet_accountant_warnings


def _shown(*emit: tuple[str, type[Warning], str]) -> list[str]:
    """The messages that get past quiet_accountant_warnings, each warned from ``module``."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_accountant_warnings()
        for message, category, module in emit:
            warnings.warn_explicit(message, category, f"{module}.py", 1, module=module)
    return [str(w.message) for w in seen]


def test_the_known_accountant_warnings_are_silenced() -> None:
    assert not _shown(
        (
            "Optimal order is the largest alpha. Please consider expanding the range",
            UserWarning,
            "opacus.accountants.analysis.rdp",
        ),
        ("Optimal order is the smallest alpha.", UserWarning, "opacus.accountants.analysis.rdp"),
        ("overflow encountered in exp", RuntimeWarning, "opacus.accountants.analysis.prv.prvs"),
        ("divide by zero encountered in log", RuntimeWarning, "dp_accounting.pld.pld_pmf"),
    )


def test_other_warnings_still_show() -> None:
    shown = _shown(
        ("Secure RNG turned off", UserWarning, "opacus.privacy_engine"),
        ("something new in opacus", DeprecationWarning, "opacus.accountants"),
        ("overflow encountered in exp", RuntimeWarning, "secureagg.privacy.accounting"),
        ("a user's own warning", UserWarning, "__main__"),
    )
    assert len(shown) == 4


def test_epsilon_at_the_end_of_the_order_grid_does_not_warn_the_caller() -> None:
    """A large noise multiplier puts Opacus' best RDP order at the end of its grid."""
    history = ((50.0, 0.001, 1),)
    with warnings.catch_warnings(record=True) as raw:  # Opacus itself warns here
        warnings.simplefilter("always")
        accounting._opacus_rdp(history, 1e-5)
    assert any("Optimal order" in str(w.message) for w in raw)
    accounting.clear_cache()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        eps = accounting.epsilon([accounting.Step(*history[0])], 1e-5, "opacus_rdp")
    assert 0 < eps < 1
    assert [str(w.message) for w in seen] == []


def test_a_private_trainer_starts_without_warnings() -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    from secureagg.privacy import PrivateTrainer

    data = TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,)))
    model = torch.nn.Linear(4, 2)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        trainer = PrivateTrainer(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            DataLoader(data, batch_size=8),
            noise_multiplier=1.0,
        )
        trainer.train_round({k: v.detach().clone() for k, v in model.state_dict().items()})
    assert [str(w.message) for w in seen] == []
