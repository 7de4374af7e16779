"""Integer noise samplers: empirical pmf against the exact pmf (chi-square), exact fallbacks."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from secureagg import ConfigError
from secureagg.hazmat import _dgauss_table, _noise, _prg
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


@pytest.fixture(params=["table", "cks"])
def sampler(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """discrete_gaussian's alias-table sampler, or (no table allowed) the CKS20 one."""
    if request.param == "cks":
        monkeypatch.setattr(_noise, "_MAX_TABLE_BITS", 0)
    return str(request.param)


@pytest.mark.parametrize("variance", [0.3, 1.0, 2.25, 17.0, 400.0, 12345.6])
def test_discrete_gaussian_matches_exact_pmf(variance: float, sampler: str) -> None:
    stream = NoiseStream(bytes([7]) * 32)
    x = discrete_gaussian(variance, 200_000, stream)
    p = _chi_square_p(x, lambda s: _dg_pmf(variance, s))
    assert p > ALPHA, (variance, sampler, p)


def test_chi_square_check_catches_a_rounded_continuous_gaussian() -> None:
    # The check has power: rounding a continuous Gaussian is close to, but not, N_Z(0, s).
    rng = np.random.default_rng(0)
    x = np.rint(rng.normal(0.0, math.sqrt(0.3), 200_000)).astype(np.int64)
    assert _chi_square_p(x, lambda s: _dg_pmf(0.3, s)) < 1e-6


def test_discrete_gaussian_variance_and_symmetry_large_sigma() -> None:
    # sigma 10^4 is the largest alias table's range (2^18 buckets); 10^8 is CKS20's
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
    # With no float margin at all, every CKS20 draw is settled by the exact decimal paths.
    monkeypatch.setattr(_noise, "_MAX_TABLE_BITS", 0)
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


# --- the alias-table sampler: its rare exact paths, its weights and its word decisions ---


def _coarse(monkeypatch: pytest.MonkeyPatch, shift: Fraction = Fraction(0)) -> dict[str, int]:
    """The coarsest table (units about 2^-(n + 8) of the word range) with T about 1.2 sigma,
    so that UNSURE and TAIL words are common, and every threshold settled in decimal (float
    bounds are left out), UNSURE's moved down by ``shift`` where c_x > 0 (there it is above
    1); counts the draws each path settles."""
    monkeypatch.setattr(_noise, "_TABLE_UNIT_BITS", 1)
    monkeypatch.setattr(_noise, "_TABLE_TAIL", 1)
    calls = {"unsure": 0, "tail": 0}
    table = _dgauss_table._Table
    unsure, tail, exp_bounds = table._unsure, table._tail, _dgauss_table._exp_bounds

    def counted_unsure(self: _dgauss_table._Table, word: int, s: NoiseStream) -> int | None:
        calls["unsure"] += 1
        return unsure(self, word, s)

    def counted_tail(self: _dgauss_table._Table, s: NoiseStream) -> int | None:
        calls["tail"] += 1
        return tail(self, s)

    def decimal_only(r: Fraction, q: Fraction, c: int) -> object:
        theta = exp_bounds(r, q, c)

        def bounds(prec: int) -> tuple[Fraction, Fraction]:
            if prec == 0:
                return Fraction(-(10**9)), Fraction(10**9)
            lo, hi = theta(prec)
            return (lo - shift, hi - shift) if c > 0 else (lo, hi)

        return bounds

    monkeypatch.setattr(_dgauss_table._Table, "_unsure", counted_unsure)
    monkeypatch.setattr(_dgauss_table._Table, "_tail", counted_tail)
    monkeypatch.setattr(_dgauss_table, "_exp_bounds", decimal_only)
    return calls


@pytest.mark.parametrize("variance", [0.3, 2.25, 400.0])
def test_table_rare_paths_give_the_right_pmf(
    variance: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _coarse(monkeypatch)
    x = discrete_gaussian(variance, 100_000, NoiseStream(bytes([8]) * 32))
    assert calls["unsure"] > 300 and calls["tail"] > 300, calls
    assert _chi_square_p(x, lambda s: _dg_pmf(variance, s)) > ALPHA, calls


def test_table_float_bounds_give_the_right_pmf(monkeypatch: pytest.MonkeyPatch) -> None:
    # the float64 first look at each threshold, on the same coarse table
    monkeypatch.setattr(_noise, "_TABLE_UNIT_BITS", 1)
    monkeypatch.setattr(_noise, "_TABLE_TAIL", 1)
    x = discrete_gaussian(2.25, 100_000, NoiseStream(bytes([9]) * 32))
    assert _chi_square_p(x, lambda s: _dg_pmf(2.25, s)) > ALPHA


def _layout(table: _dgauss_table._Table) -> tuple[list[int], list[int], int]:
    """Each bucket's units of its own outcome and its alias, read back from the uint64s."""
    unit, upb = 1 << table.lo_bits, table.cap >> table.lo_bits
    g = [int(v) for v in table.table]
    own = [(v - i * table.cap) >> table.lo_bits for i, v in enumerate(g)]
    alias = [(v & (unit - 1)) ^ i for i, v in enumerate(g)]
    return own, alias, upb


@pytest.mark.parametrize("variance", [0.3, 2.25, 400.0, 669_239.73])
def test_table_weights_are_exact(variance: float) -> None:
    # Each x in [-T, T] gets c_x units, with 0 < nu exp(-x^2 / (2 s)) - c_x < 3 (the rest
    # comes from UNSURE's three units), UNSURE all of 3 m at the start of its bucket, TAIL
    # c_tail >= 2 nu exp(-(T + 1)^2 / (2 s)) / r (its envelope), and all add up to 2^K.
    from decimal import Context, Decimal

    s = Fraction(variance)
    table = _dgauss_table._Table(s, _dgauss_table._TABLE_TAIL)
    own, alias, upb = _layout(table)
    units = [0] * len(own)
    for i, (h, a) in enumerate(zip(own, alias, strict=True)):
        units[i] += h
        units[a] += upb - h
    m, t = table.m, table.t
    assert sum(units) == len(own) * upb == 1 << (64 - table.lo_bits)
    assert units[:m] == [int(c) for c in table.c] and own[m] == units[m] == 3 * m
    assert units[m + 1] == table.c_tail and units[m + 3 :] == [0] * (len(units) - m - 3)
    ctx = Context(prec=50)
    nu = Decimal(table.nu.numerator) / Decimal(table.nu.denominator)
    for k in range(m):
        x = k - t
        excess = nu * ctx.exp(-Decimal(x * x) / (2 * Decimal(variance))) - int(table.c[k])
        assert 1e-9 < excess < 3 - 1e-9, (x, excess)
    r = Decimal(table.geo_r) / 2**table.geo_bits
    edge = nu * ctx.exp(-Decimal((t + 1) ** 2) / (2 * Decimal(variance)))
    assert table.c_tail * r >= 2 * edge
    assert 1 - r >= ctx.exp(-Decimal(t + 1) / Decimal(variance))  # the tail's ratio


class _Fed:
    """A stream that gives the listed words first, then a keyed stream's."""

    def __init__(self, first: list[int]) -> None:
        self.first, self.rest = np.array(first, dtype=np.uint64), NoiseStream(bytes(32))

    def _fill(self, out: np.ndarray) -> None:
        k = min(out.size, self.first.size)
        out[:k], self.first = self.first[:k], self.first[k:]
        out[k:] = self.rest.words(out.size - k)

    def words(self, n: int) -> np.ndarray:
        out = np.empty(n, dtype=np.uint64)
        self._fill(out)
        return out


@pytest.mark.parametrize("variance", [2.25, 669_239.73])
def test_table_lookup_is_the_alias_rule(variance: float) -> None:
    # One comparison per word gives bucket i's own outcome below h_i units and its alias
    # from there: at both sides of every split and every bucket edge, and random words.
    table = _dgauss_table._Table(Fraction(variance), _dgauss_table._TABLE_TAIL)
    own, alias, _ = _layout(table)
    unit, cap = 1 << table.lo_bits, table.cap
    words = [int(w) for w in np.random.default_rng(3).integers(0, 2**64, 20_000, np.uint64)]
    for i, h in enumerate(own):
        start, split = i * cap, i * cap + h * unit
        words += [start, start + cap - 1, split, split + unit - 1]
        if h:
            words += [split - 1, split - unit]
    expected = [i if w - i * cap < own[i] * unit else alias[i] for w in words for i in [w // cap]]
    # only words with an outcome in [-T, T]: the rare ones would read more of the words
    words = [w for w, e in zip(words, expected, strict=True) if e < table.m]
    got = discrete_gaussian(Fraction(variance), len(words), _Fed(words))  # type: ignore[arg-type]
    assert got.tolist() == [e - table.t for e in expected if e < table.m]


def _unsure_z_scores() -> list[float]:
    """For each x of a coarse table, how many standard errors the share of words in x's
    three UNSURE units that give x lies from (nu exp(-x^2 / (2 s)) - c_x) / 3."""
    s = Fraction(9, 4)
    table = _dgauss_table._Table(s, 1, 1)
    unit, stream, n = 1 << table.lo_bits, NoiseStream(bytes([12]) * 32), 3_000
    rng = np.random.default_rng(5)
    out = []
    for k in range(table.m):
        x = k - table.t
        base = table.m * table.cap + 3 * k * unit
        hits = sum(
            table._unsure(base + int(p), stream) == x
            for p in rng.integers(0, 3 * unit, n, dtype=np.uint64)
        )
        p = (float(table.nu) * math.exp(-(x * x) / 4.5) - int(table.c[k])) / 3
        out.append(abs(hits / n - p) / math.sqrt(p * (1 - p) / n))
    return out


def test_unsure_words_accept_with_the_exact_probability() -> None:
    assert max(_unsure_z_scores()) < 5


def test_a_threshold_a_quarter_unit_low_fails_that_check(monkeypatch: pytest.MonkeyPatch) -> None:
    # The check above has power: UNSURE's thresholds a quarter unit low fail it (a chi-square
    # of 100,000 draws on this table does not notice: p 0.19).
    exp_bounds = _dgauss_table._exp_bounds

    def lowered(r: Fraction, q: Fraction, c: int) -> object:
        theta = exp_bounds(r, q, c)
        return lambda prec: tuple(b - Fraction(1, 4) for b in theta(prec))

    monkeypatch.setattr(_dgauss_table, "_exp_bounds", lowered)
    assert max(_unsure_z_scores()) > 5


def test_tail_draws_have_the_exact_probabilities() -> None:
    # Given TAIL, x (|x| > T) comes out with probability nu exp(-x^2 / (2 s)) / c_tail.
    s = Fraction(9, 4)
    table = _dgauss_table._Table(s, 1, 1)
    stream, n = NoiseStream(bytes([13]) * 32), 20_000
    draws = [table._tail(stream) for _ in range(n)]
    nu, t = float(table.nu), table.t

    def p(x: int) -> float:
        return nu * math.exp(-(x * x) / 4.5) / table.c_tail

    cells = [(x,) for x in range(-t - 3, -t)] + [(x,) for x in range(t + 1, t + 4)]
    far = [x for x in range(-60, 61) if abs(x) > t + 3]
    obs = [sum(d in c for d in draws if d is not None) for c in cells]
    obs += [sum(d is not None and abs(d) > t + 3 for d in draws), draws.count(None)]
    exp = [n * sum(p(x) for x in c) for c in cells] + [n * sum(p(x) for x in far)]
    exp.append(n - sum(exp))
    assert stats.chisquare(obs, exp).pvalue > ALPHA


def test_no_draws_and_tiny_variances() -> None:
    assert discrete_gaussian(1.0, 0).shape == (0,)
    for variance in (1e-3, 1e-30):  # below 2^-20 CKS20 draws; either way all zeros here
        assert not discrete_gaussian(variance, 1000).any()


@pytest.mark.parametrize("gcm_bytes", [_prg._HEAD + _prg._GCM_MAX, 1 << 17])
def test_stream_is_aes256_ctr_from_zero(gcm_bytes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # The words are AES-256-CTR's keystream from counter 0, read in pieces of any size, also
    # across the switch from GCM's counter mode to CTR (moved to 128 KiB here).
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    monkeypatch.setattr(_prg, "_GCM_MAX", gcm_bytes - _prg._HEAD)
    key = bytes(range(1, 33))
    stream, rng, got = NoiseStream(key), np.random.default_rng(2), []
    for _ in range(40):
        got.append(stream.words(int(rng.integers(0, 2_000))))
    got.append(stream.words(20_000))
    words = np.concatenate(got)
    ctr = Cipher(algorithms.AES256(key), modes.CTR(bytes(16))).encryptor()
    want = np.frombuffer(ctr.update(bytes(8 * words.size)), dtype="<u8")
    assert words.nbytes > 1 << 17 and np.array_equal(words, want)
