"""The neighbour graph and the (k, t) parameter helper."""

from __future__ import annotations

import hashlib
import itertools
import math

import pytest
from scipy.stats import hypergeom

from secureagg import ConfigError
from secureagg.protocol import Graph, _graph, choose_parameters, default_threshold
from secureagg.protocol._params import log2_disconnection_bound

SEED = b"s" * 16


def test_complete_graph() -> None:
    g = Graph.complete([5, 1, 3])
    assert g.is_complete and g.degree == 2 and g.ids == (1, 3, 5)
    assert g.neighbours(3) == {1, 5}
    with pytest.raises(ConfigError):
        g.neighbours(2)
    for bad in ([1], [1, 1, 2], [0, 1], [1, 2**32], None, "12", 5):
        with pytest.raises(ConfigError):
            Graph.complete(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("n", "k"), [(5, 2), (12, 4), (40, 10), (101, 36)])
def test_harary_graph_is_regular_symmetric_and_seeded(n: int, k: int) -> None:
    ids = list(range(1, n + 1))
    g = Graph.harary(ids, k, SEED)
    for u in ids:
        nb = g.neighbours(u)
        assert len(nb) == k and u not in nb
        assert all(u in g.neighbours(v) for v in nb)
    assert Graph.harary(ids, k, SEED) == g
    other = Graph.harary(ids, k, b"t" * 16)
    assert any(other.neighbours(u) != g.neighbours(u) for u in ids)  # a different permutation


@pytest.mark.parametrize(("n", "k"), [(5, 2), (12, 4), (40, 10), (101, 36)])
def test_ring_order_walks_the_ring(n: int, k: int) -> None:
    """in_ring_order(all ids) visits the ring: each client's successor (cyclically) is its
    neighbour at distance 1, so k/2 steps either way are exactly its neighbours; a subset
    keeps the full order; the complete graph gives sorted ids."""
    ids = list(range(3, 3 + n))
    g = Graph.harary(ids, k, bytes(range(16)))
    order = g.in_ring_order(reversed(ids))
    assert sorted(order) == ids
    for pos, u in enumerate(order):
        window = {order[(pos + s) % n] for s in range(-(k // 2), k // 2 + 1) if s}
        assert g.neighbours(u) == window
    subset = ids[::3]
    assert g.in_ring_order(subset) == [u for u in order if u in set(subset)]
    assert Graph.complete(ids).in_ring_order(reversed(ids)) == ids


def test_harary_degree_checks() -> None:
    with pytest.raises(ConfigError):
        Graph.harary(range(1, 10), 3, SEED)
    with pytest.raises(ConfigError):
        Graph.harary(range(1, 10), 4, b"short")
    assert Graph.harary(range(1, 6), 4, SEED).is_complete


def test_default_threshold_is_a_majority_of_the_neighbourhood() -> None:
    assert default_threshold(49) == 26  # n = 50, complete
    assert default_threshold(10) == 6
    for bad in (0, "5", 2.0, True):
        with pytest.raises(ConfigError):
            default_threshold(bad)  # type: ignore[arg-type]


# (n, corrupt fraction, dropout rate) -> (degree, threshold), published in the tests of
# Google's federated-compute graph parameter finder (semi-honest server).
PUBLISHED = [
    (1000, 0.05, 0.33, 72, 24),
    (100, 0.05, 0.33, 28, 6),
    (10000, 0.05, 0.33, 86, 29),
    (100, 0.33, 0.33, 68, 34),
    (1000, 0.33, 0.33, 286, 150),
    (10, 0.33, 0.33, 8, 4),
    (100, 0.45, 0.45, 92, 46),
    (1000, 0.45, 0.45, 822, 417),
    (10, 0.33, 0.05, 4, 4),
    (100, 0.33, 0.05, 34, 29),
    (1000, 0.33, 0.05, 78, 60),
]


@pytest.mark.parametrize(("n", "adv", "drop", "k", "t"), PUBLISHED)
def test_reproduces_published_pairs(n: int, adv: float, drop: float, k: int, t: int) -> None:
    p = choose_parameters(n, dropout_rate=drop, corrupt_fraction=adv)
    assert (p.degree, p.threshold) == (k, t)


def test_small_n_is_stricter_than_the_reference() -> None:
    # The reference returns (4, 2) for n=10, 5%, 33%: it checks correctness before raising
    # t to 2. With k=4 and 7 survivors of 10, P[fewer than 2 surviving neighbours] = 1/30.
    p = choose_parameters(10, dropout_rate=0.33, corrupt_fraction=0.05)
    assert hypergeom(10, 7, 4).cdf(1) == pytest.approx(1 / 30)
    assert (p.degree, p.threshold) == (6, 2)


@pytest.mark.parametrize(
    ("n", "adv", "drop"), [(1000, 0.05, 0.1), (300, 0.1, 0.2), (2000, 0.2, 0.3), (50, 0.05, 0.1)]
)
def test_promised_failure_probabilities_hold(n: int, adv: float, drop: float) -> None:
    """Recompute both bounds with scipy's hypergeometric distribution."""
    p = choose_parameters(n, dropout_rate=drop, corrupt_fraction=adv)
    k, t = p.degree, p.threshold
    corrupt, survivors = math.floor(adv * n + 1e-9), math.ceil((1 - drop) * n - 1e-9)
    # security: some client has >= t corrupt neighbours (union over n clients), or the
    # honest survivors' graph comes apart
    p_corrupt = n * hypergeom(n, corrupt, k).sf(t - 1)
    p_cut = 2.0 ** log2_disconnection_bound(n, k, corrupt + n - survivors)
    assert p_corrupt + p_cut < 2.0**-40
    # correctness: some client keeps fewer than t surviving neighbours
    assert n * hypergeom(n, survivors, k).cdf(t - 1) < 2.0**-20
    assert p.log2_security_failure < -40 and p.log2_correctness_failure < -20
    # and it is the smallest such degree: k - 2 fails one of the bounds for every threshold
    if k > 2:
        km = k - 2
        cut_ok = log2_disconnection_bound(n, km, corrupt + n - survivors) < -41
        ok = [
            tt
            for tt in range(2, km + 1)
            if n * hypergeom(n, corrupt, km).sf(tt - 1) < 2.0**-41
            and n * hypergeom(n, survivors, km).cdf(tt - 1) < 2.0**-20
        ]
        assert not (cut_ok and ok)


def test_helper_refuses_infeasible_inputs() -> None:
    for kwargs in (
        {"dropout_rate": 0.5, "corrupt_fraction": 0.5},
        {"dropout_rate": 1.0, "corrupt_fraction": 0.0},
        {"dropout_rate": -0.1, "corrupt_fraction": 0.0},
    ):
        with pytest.raises(ConfigError):
            choose_parameters(100, **kwargs)
    with pytest.raises(ConfigError):
        choose_parameters(2, dropout_rate=0.1, corrupt_fraction=0.0)


def _connected(g: Graph, alive: set[int]) -> bool:
    start = next(iter(alive))
    seen, todo = {start}, [start]
    while todo:
        for v in g.neighbours(todo.pop()) & alive:
            if v not in seen:
                seen.add(v)
                todo.append(v)
    return seen == alive


@pytest.mark.parametrize(("n", "k", "bad"), [(14, 4, 6), (18, 4, 6), (18, 6, 8)])
def test_disconnection_bound_is_an_upper_bound_by_enumeration(n: int, k: int, bad: int) -> None:
    """Remove every set of ``bad`` clients from H(k, n): the fraction that cuts the graph
    stays below the union bound the helper uses (which is not vacuous here)."""
    ids = list(range(1, n + 1))
    g = Graph.harary(ids, k, SEED)
    subsets = list(itertools.combinations(ids, bad))
    cut = sum(1 for gone in subsets if not _connected(g, set(ids) - set(gone)))
    bound = 2.0 ** log2_disconnection_bound(n, k, bad)
    assert 0 < cut / len(subsets) <= bound < 1


@pytest.mark.parametrize(("n", "k", "memo"), [(7, 2, None), (50, 10, None), (300, 36, 16)])
def test_harary_neighbours_are_the_ring_positions_around_each_client(
    n: int, k: int, memo: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also when the graph keeps only ``memo`` neighbourhoods worked out: every client's,
    asked for twice in two orders, is still right, and no more than ``memo`` are kept."""
    if memo is not None:
        monkeypatch.setattr(_graph, "_MEMO", memo)
    # written from the spec (docs/protocol.md): ring order by SHA-256(label || seed || id),
    # each client joined to the k/2 nearest on either side
    ids = list(range(3, 3 * n + 3, 3))
    ring = sorted(
        ids,
        key=lambda i: hashlib.sha256(
            b"secureagg/v1/harary-permutation" + SEED + i.to_bytes(4, "big")
        ).digest(),
    )
    g = Graph.harary(reversed(ids), k, SEED)
    for order in (ring, ids):
        for u in order:
            pos = ring.index(u)
            want = {ring[(pos + s) % n] for s in range(1, k // 2 + 1)}
            want |= {ring[(pos - s) % n] for s in range(1, k // 2 + 1)}
            assert g.neighbours(u) == want
            assert len(g._memo) <= (memo or n)
