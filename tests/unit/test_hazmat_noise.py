"""Integer noise samplers: empirical pmf against the exact pmf (chi-square), exact fallbacks."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from secureagg import ConfigError
from secureagg.hazmat import _noise
from secureagg.hazmat._noise import (
    NoiseStream,
    bernoulli_exp,
    discrete_gaussian,
    discrete_laplace,
    skellam,
)

ALPHA = 1e-4  # a correct sampler fails one of these checks with probability ~1e-4


def _dg_pmf(variance: float, support: np.ndarray) -> np.ndarray:
    """The discrete Gaussian pmf, normalised over a range wide enough to hold all mass."""
    wide = np.arange(-int(40 * math.sqrt(variance)) - 40, int(40 * math.sqrt(variance)) + 41)
    z = np.exp(-(wide.astype(np.float64) ** 2) / (2 * variance)).sum()
    out: np.ndarray = np.exp(-(support.astype(np.float64) ** 2) / (2 * variance)) / z
    return out


def _chi_square_p(samples: np.ndarray, pmf: callable, min_expected: float = 20.0) -> float:  # type: ignore[valid-type]
    """p-value of Pearson's chi-square test, tails pooled so every cell expects >= 20."""
    n = samples.size
    lo, hi = int(samples.min()), int(samples.max())
    support = np.arange(lo, hi + 1)
    expected = pmf(support) * n
    counts = np.bincount(samples - lo, minlength=support.size).astype(np.float64)
    # pool both tails (including mass outside [lo, hi]) until cells are large enough
    keep = expected >= min_expected
    first, last = np.flatnonzero(keep)[[0, -1]]
    left_e = 1.0 * n * float(pmf(np.arange(lo - 10_000, lo)).sum()) + expected[: first + 1].sum()
    right_e = n * float(pmf(np.arange(hi + 1, hi + 10_001)).sum()) + expected[last:].sum()
    obs = np.concatenate(
        [[counts[: first + 1].sum()], counts[first + 1 : last], [counts[last:].sum()]]
    )
    exp = np.concatenate([[left_e], expected[first + 1 : last], [right_e]])
    exp *= n / exp.sum()
    return float(stats.chisquare(obs, exp).pvalue)


@pytest.mark.parametrize("variance", [0.3, 1.0, 2.25, 17.0, 400.0, 12345.6])
def test_discrete_gaussian_matches_exact_pmf(variance: float) -> None:
    stream = NoiseStream(bytes([7]) * 32)
    x = discrete_gaussian(variance, 200_000, stream)
    p = _chi_square_p(x, lambda s: _dg_pmf(variance, s))
    assert p > ALPHA, (variance, p)


def test_chi_square_check_catches_a_rounded_continuous_gaussian() -> None:
    # The check has power: rounding a continuous Gaussian is close to, but not, N_Z(0, s).
    rng = np.random.default_rng(0)
    x = np.rint(rng.normal(0.0, math.sqrt(0.3), 200_000)).astype(np.int64)
    assert _chi_square_p(x, lambda s: _dg_pmf(0.3, s)) < 1e-6


def test_discrete_gaussian_variance_and_symmetry_large_sigma() -> None:
    x = discrete_gaussian(1e8, 400_000, NoiseStream(bytes([1]) * 32))
    # N_Z(0, s) has variance s (1 - 1e-1000...) for s this large
    assert abs(x.var() / 1e8 - 1) < 5 * math.sqrt(2 / x.size)
    assert abs(x.mean()) < 5 * 1e4 / math.sqrt(x.size)


def test_discrete_laplace_matches_pmf() -> None:
    t = 3
    x = discrete_laplace(t, 100_000, NoiseStream(bytes([2]) * 32))
    r = math.exp(-1 / t)

    def pmf(s: np.ndarray) -> np.ndarray:
        out: np.ndarray = (1 - r) / (1 + r) * r ** np.abs(s)
        return out

    assert _chi_square_p(x, pmf) > ALPHA


def test_exact_fallbacks_alone_give_the_right_pmf(monkeypatch: pytest.MonkeyPatch) -> None:
    # With no float margin at all, every draw is settled by the exact decimal paths.
    monkeypatch.setattr(_noise, "_GUARD", 0.49)
    calls = {"bern": 0, "lap": 0}
    bern, lap = _noise._exact_bern_exp, _noise._exact_laplace_magnitude

    def counted_bern(w: int, bits: int, x: Fraction, s: NoiseStream) -> bool:
        calls["bern"] += 1
        return bern(w, bits, x, s)

    def counted_lap(w: int, t: int, s: NoiseStream) -> int:
        calls["lap"] += 1
        return lap(w, t, s)

    monkeypatch.setattr(_noise, "_exact_bern_exp", counted_bern)
    monkeypatch.setattr(_noise, "_exact_laplace_magnitude", counted_lap)
    x = discrete_gaussian(2.25, 6_000, NoiseStream(bytes([3]) * 32))
    assert calls["bern"] > 1_000 and calls["lap"] > 1_000
    assert _chi_square_p(x, lambda s: _dg_pmf(2.25, s), min_expected=10) > ALPHA


def test_bernoulli_exp_probability() -> None:
    stream = NoiseStream(bytes([4]) * 32)
    for xv in (0.0, 0.1, 1.0, 5.0, 800.0):
        n = 200_000
        hits = bernoulli_exp(np.full(n, xv), 2.0**-40, lambda i, xv=xv: Fraction(xv), stream)
        p = math.exp(-xv)
        assert abs(hits.mean() - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-12, xv


@pytest.mark.parametrize("mu", [0.5, 3.0, 50.0, 2000.0])
def test_skellam_matches_pmf(mu: float) -> None:
    x = skellam(mu, 200_000, key=bytes([5]) * 32)
    assert _chi_square_p(x, lambda s: stats.skellam.pmf(s, mu, mu)) > ALPHA


def test_fresh_streams_differ_and_keys_reproduce() -> None:
    assert not np.array_equal(discrete_gaussian(100.0, 64), discrete_gaussian(100.0, 64))
    k = bytes(range(32))
    assert np.array_equal(
        discrete_gaussian(100.0, 64, NoiseStream(k)), discrete_gaussian(100.0, 64, NoiseStream(k))
    )


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "1", True])
def test_bad_variance_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError):
        discrete_gaussian(bad, 3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        skellam(bad, 3)  # type: ignore[arg-type]


def test_bad_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        NoiseStream(b"short")


class _Words:
    """A stand-in stream: the given words first, then zeros."""

    def __init__(self, words: list[int]) -> None:
        self.queue = list(words)

    def words(self, n: int) -> np.ndarray:
        take, self.queue = self.queue[:n], self.queue[n:]
        return np.array(take + [0] * (n - len(take)), dtype=np.uint64)


def test_laplace_magnitude_stays_inside_its_word_interval() -> None:
    # For U = u / 2^64 in [u, u + 1) / 2^64 the magnitude floor(-t ln U) must lie between
    # floor(-t ln((u + 1) / 2^64)) and -t ln(u / 2^64), for words of every size: small words
    # are where a float64 shortcut on 1 - U loses all precision.
    from decimal import Context, Decimal

    rng = np.random.default_rng(11)
    ctx = Context(prec=80)
    randoms = [int(w) for w in np.unique(np.exp2(rng.uniform(1, 64, 400)).astype(np.uint64))]
    for t in (1, 7, 1000, 123_457):
        # and the words next to each integer boundary k = -t ln(u / 2^64), down to small u
        edges = []
        for k in np.unique(np.geomspace(1, 43 * t, 120).astype(np.int64)):
            u = int(ctx.exp(Decimal(-int(k)) / t) * Decimal(2**64))
            edges += [u - 1, u, u + 1]
        words = [w for w in randoms + edges if 0 < w < 2**64]
        mags = discrete_laplace(t, len(words), _Words(words))  # type: ignore[arg-type]
        for w, m in zip(words, mags, strict=True):
            lo = -t * ctx.ln(Decimal(w + 1) / Decimal(2**64))
            hi = -t * ctx.ln(Decimal(w) / Decimal(2**64))
            assert math.floor(lo) <= m <= hi, (t, w, m)
