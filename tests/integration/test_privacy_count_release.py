"""Example-count weighting through a DP release of the count ("examples-dp"): the count
leaves a client only with Gaussian noise, and the ledger charges that release."""

from __future__ import annotations

from pathlib import Path

import dp_accounting as dpa
import numpy as np
import pytest
from support import FL_SIZES as SIZES
from support import run_small_federated

from secureagg import ConfigError
from secureagg.fl import FederatedResult
from secureagg.privacy import PrivacyConfig, PrivacyLedger

pytestmark = pytest.mark.usefixtures("torch_one_thread")

Z, COUNT_NOISE, ROUNDS, DELTA = 2.0, 5.0, 2, 1e-5


def _run(privacy: PrivacyConfig, ledger: PrivacyLedger | None = None) -> FederatedResult:
    return run_small_federated(
        privacy, "examples-dp", ledger=ledger, rounds=ROUNDS, keep_vectors=True
    )


def test_the_noisy_count_is_what_leaves_and_the_ledger_charges_it(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    res = _run(
        PrivacyConfig(noise_multiplier=Z, count_noise=COUNT_NOISE, update_clip=1.0),
        PrivacyLedger(path),
    )
    sent = [u.num_examples for m in res.rounds for u in m.updates.values()]
    true = [SIZES[c] for m in res.rounds for c in m.updates]
    assert sent != true  # six releases, each with noise of sd 5: all equal is ~1e-4 likely
    ledger = PrivacyLedger.load(path)
    for cid in SIZES:
        recs = ledger.records(cid)
        assert all(r.count_noise == COUNT_NOISE for r in recs if r.steps)
        # independent figure: dp-accounting's PLD over 2 rounds of (1 full-batch step +
        # one Gaussian count release of sensitivity 1 and noise sd COUNT_NOISE)
        acc = dpa.pld.PLDAccountant()
        for r in recs:
            acc.compose(dpa.PoissonSampledDpEvent(1.0, dpa.GaussianDpEvent(Z)), r.steps)
            if r.count_noise is not None:
                acc.compose(dpa.GaussianDpEvent(r.count_noise))
        want = acc.get_epsilon(DELTA)
        got = ledger.latest_epsilon(cid)
        assert want <= got <= want + 0.01  # ours: coarser, pessimistic discretisation
        without = dpa.pld.PLDAccountant()
        without.compose(dpa.PoissonSampledDpEvent(1.0, dpa.GaussianDpEvent(Z)), len(recs))
        assert got > without.get_epsilon(DELTA) + 0.05  # the count is not free
        assert res.clients[cid].epsilon() == pytest.approx(got, rel=1e-9)
    for m in res.rounds:  # the server's decoded average is the noisy-count weighted one
        w = {c: min(max(u.num_examples, 1), max(SIZES.values())) for c, u in m.updates.items()}
        ref = sum(w[c] * m.updates[c].vector.astype(np.float64) for c in m.members)
        ref = ref / sum(w[c] for c in m.members)
        assert m.recovered is not None
        assert np.max(np.abs(m.recovered - ref)) <= m.error_bound
        assert m.max_abs_error <= m.error_bound  # run_federated's own reference clamps too


def test_example_weighting_without_a_noisy_count_is_refused() -> None:
    with pytest.raises(ConfigError, match="count_noise"):
        _run(PrivacyConfig(noise_multiplier=Z, update_clip=1.0))
