"""The one-run empirical audit runs secureagg's PrivateTrainer (ghost and hooks), is sound
with DP on, has power with the noise off, and catches a trainer whose noise is missing."""

from __future__ import annotations

import dataclasses

import pytest

from secureagg.privacy import PrivateTrainer
from secureagg.privacy.audit import EmpiricalConfig, run_empirical_audit

# small enough for the test budget: 200 canaries, 10 epochs (200 DP-SGD steps)
SMALL = EmpiricalConfig(canaries=200, epochs=10, noise_multiplier=1.0, seed=0)
# noise 4: the accountants allow epsilon < 1, far below what a noiseless run proves (~3)
STRICT = dataclasses.replace(SMALL, noise_multiplier=4.0)


@pytest.fixture(scope="module")
def runs() -> tuple[object, object]:
    dp = run_empirical_audit(dataclasses.replace(SMALL, grad_sample_mode="ghost"))
    off = run_empirical_audit(dataclasses.replace(SMALL, noise_multiplier=0.0))  # auto: hooks
    return dp, off


def test_lower_bound_stays_below_the_upper_bound_with_dp(runs: tuple) -> None:
    dp, _ = runs
    assert dp.steps > 150 and 0.04 < dp.sample_rate < 0.06
    assert 0 <= dp.lower_bound < dp.upper_bound and not dp.violated
    assert dp.upper_bound == min(dp.upper_bounds.values()) < 6  # PRV/PLD about 4.8
    assert dp.test_accuracy > 0.8  # the model did learn the task
    assert dp.grad_sample_mode == "ghost"


def test_without_noise_the_same_setup_proves_much_more(runs: tuple) -> None:
    dp, off = runs
    assert off.upper_bound == float("inf")
    assert off.lower_bound > 2.5  # nearly every guess right: about 3.1 with 200 canaries
    assert off.lower_bound > dp.lower_bound + 2.0
    assert off.best.v >= 0.97 * off.best.r
    # same coins for the canaries in both runs
    assert off.included == dp.included
    assert off.grad_sample_mode in ("ghost", "hooks")  # the trainer's own choice (auto)


class _ForgetsNoise(PrivateTrainer):
    """A trainer with the bug the audit must catch: accounted at z, trained without noise."""

    def _reseed(self) -> None:
        super()._reseed()
        self._optimizer.noise_multiplier = 0.0


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_a_trainer_whose_noise_is_off_is_caught(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import secureagg.privacy._trainer as trainer_module

    monkeypatch.setattr(trainer_module, "PrivateTrainer", _ForgetsNoise)
    audit = run_empirical_audit(dataclasses.replace(STRICT, grad_sample_mode=mode))
    assert audit.grad_sample_mode == mode
    assert audit.upper_bound < 1.0  # what the accountants believe
    assert audit.violated and audit.lower_bound > 2.0  # what the run proves
