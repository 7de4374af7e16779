"""The lines that lean on Opacus internals equal Opacus' public behaviour, on the pinned range.

``privacy/accounting.py`` calls ``PRVAccountant._get_domain`` and overrides it in a subclass
(a wider, FFT-friendly domain); ``privacy/audit/_series.py`` composes with Opacus'
``_compose_convolution_tree`` and its own copy of ``_compose_fourier`` (``_from_spectrum``,
which reuses spectrum powers across histories). Each is checked here against what Opacus
gives through its public API: ``PRVAccountant.get_epsilon`` and ``compose_heterogeneous``.
pyproject.toml bounds opacus below the next minor version, where these internals may move.
"""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from opacus.accountants import PRVAccountant
from opacus.accountants.analysis.prv import (
    DiscretePRV,
    PoissonSubsampledGaussianPRV,
    TruncatedPrivacyRandomVariable,
    compose_heterogeneous,
    discretize,
)
from opacus.accountants.analysis.prv.compose import _compose_convolution_tree
from packaging.requirements import Requirement
from scipy.fft import irfft, rfft

from secureagg.privacy import accounting
from secureagg.privacy.accounting import PRV_EPS_ERROR
from secureagg.privacy.audit import _series

ROOT = Path(__file__).resolve().parents[2]
DELTA = 1e-5
HISTORIES = [
    ((1.1, 0.05, 30),),
    ((1.1, 0.05, 30), (2.0, 0.1, 5)),
    ((0.8, 0.01, 400), (3.0, 1 / 3, 45)),
]


def test_opacus_is_bounded_to_the_tested_minor_version() -> None:
    (line,) = re.findall(r'^\s*"(opacus[^"]*)"', (ROOT / "pyproject.toml").read_text(), re.M)
    opacus = Requirement(line)
    assert any(s.operator == "<" for s in opacus.specifier), "opacus needs an upper bound"
    assert opacus.specifier.contains(version("opacus"))
    assert not opacus.specifier.contains("1.7.0")


def test_the_internals_used_have_the_shape_relied_on() -> None:
    params = inspect.signature(PRVAccountant._get_domain).parameters
    assert {"prvs", "num_self_compositions", "eps_error", "delta_error"} <= set(params)
    calls = []

    class Counting(PRVAccountant):  # type: ignore[misc]
        def _get_domain(self, **kwargs: object) -> object:
            calls.append(kwargs)
            return super()._get_domain(**kwargs)

    acc = Counting()
    acc.history = [(1.1, 0.05, 10)]
    acc.get_epsilon(DELTA, eps_error=PRV_EPS_ERROR)
    assert len(calls) == 1  # get_epsilon reaches the domain through the override


@pytest.mark.parametrize("history", HISTORIES)
def test_padded_prv_accountant_equals_opacus_get_epsilon(
    history: tuple[tuple[float, float, int], ...],
) -> None:
    plain = PRVAccountant()
    plain.history = list(history)
    want = plain.get_epsilon(DELTA, eps_error=PRV_EPS_ERROR)
    got = accounting._opacus_prv(history, DELTA)
    assert got == pytest.approx(want, abs=1e-6)


def test_from_spectrum_equals_opacus_compose_heterogeneous() -> None:
    """The audit's Fourier self-composition is Opacus' own, pmf and domain."""
    prvs = [PoissonSubsampledGaussianPRV(0.05, 1.1), PoissonSubsampledGaussianPRV(0.1, 2.0)]
    counts = [37, 6]
    domain = accounting.prv_domain(prvs, counts, PRV_EPS_ERROR, DELTA / 1000)
    dprvs = [
        discretize(TruncatedPrivacyRandomVariable(p, domain.t_min, domain.t_max), domain)
        for p in prvs
    ]
    ours = [
        _series._from_spectrum(DiscretePRV, d, rfft(d.pmf) ** n, n, domain.size, irfft)
        for d, n in zip(dprvs, counts, strict=True)
    ]
    want = compose_heterogeneous(dprvs, counts)
    got = _compose_convolution_tree(ours)  # as _series._prv_bucket composes them
    np.testing.assert_allclose(got.pmf, want.pmf, rtol=0, atol=1e-12)
    assert got.domain == want.domain


def test_prv_bucket_equals_opacus_per_history() -> None:
    """A bucket of growing histories (shared discretisation, reused spectrum powers) gives
    each history's epsilon as Opacus' public composition on the same domain does."""
    bucket = [((1.1, 0.05, n), (2.0, 0.1, m)) for n, m in ((10, 3), (25, 3), (60, 7))]
    got = _series._prv_bucket(bucket, DELTA)
    prvs = [PoissonSubsampledGaussianPRV(0.05, 1.1), PoissonSubsampledGaussianPRV(0.1, 2.0)]
    domain = accounting.prv_domain(prvs, [60, 7], PRV_EPS_ERROR, DELTA / 1000)
    dprvs = [
        discretize(TruncatedPrivacyRandomVariable(p, domain.t_min, domain.t_max), domain)
        for p in prvs
    ]
    for h in bucket:
        composed = compose_heterogeneous(dprvs, [n for _, _, n in h])
        _, _, want = composed.compute_epsilon(DELTA, DELTA / 1000, PRV_EPS_ERROR)
        assert got[h] == pytest.approx(float(want), rel=1e-9)
