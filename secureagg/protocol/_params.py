"""Pick the Harary degree k and Shamir threshold t from n, dropouts and collusion.

The bounds follow the graph parameter finder of Google's federated-compute secagg code
(semi-honest server): see docs/protocol.md, "Choosing k and t".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from secureagg._exceptions import ConfigError
from secureagg.protocol._graph import Graph

__all__ = [
    "CORRECTNESS_BITS",
    "SECURITY_BITS",
    "GraphParams",
    "RoundPlan",
    "choose_parameters",
    "default_threshold",
    "log2_disconnection_bound",
    "plan_round",
]

SECURITY_BITS = 40
CORRECTNESS_BITS = 20
_EPS = 1e-14  # keeps float rounding of rate * n from moving a count the unsafe way


@dataclass(frozen=True)
class GraphParams:
    """A degree and threshold with the failure bounds they were chosen to meet (log2).

    Attributes:
        n: The clients in the round.
        degree: Neighbours per client.
        threshold: The Shamir threshold.
        log2_security_failure: log2 of the bound on a security failure.
        log2_correctness_failure: log2 of the bound on a correctness failure.
    """

    n: int
    degree: int
    threshold: int
    log2_security_failure: float
    log2_correctness_failure: float


def default_threshold(degree: int) -> int:
    """A strict majority of a client's neighbourhood, the client included: floor((k+1)/2)+1.

    Parameters:
        degree: k, the neighbours per client.

    Returns:
        The threshold.
    """
    if not isinstance(degree, int) or isinstance(degree, bool) or degree < 1:
        raise ConfigError(f"degree must be a positive int, got {degree!r}")
    return (degree + 1) // 2 + 1


def _log_pmf(total: int, marked: int, drawn: int, x: int) -> float:
    """log P[X = x] for X ~ Hypergeometric(total, marked, drawn)."""
    return _log_comb(marked, x) + _log_comb(total - marked, drawn - x) - _log_comb(total, drawn)


def _log_comb(a: int, b: int) -> float:
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)


def _pmf_table(total: int, marked: int, drawn: int) -> list[float]:
    """P[X = x] for x = 0..drawn (zero outside the support)."""
    lo = max(0, drawn - (total - marked))
    hi = min(drawn, marked)
    return [
        math.exp(_log_pmf(total, marked, drawn, x)) if lo <= x <= hi else 0.0
        for x in range(drawn + 1)
    ]


def log2_disconnection_bound(n: int, degree: int, bad: int) -> float:
    """log2 of a union bound on a random Harary graph losing connectivity when ``bad`` go.

    Cutting H(k, n) needs k/2 consecutive removed clients in two places on the ring:
    n (n - k - 1) / 2 gap pairs, each all-bad with probability C(n-k, bad-k) / C(n, bad).
    """
    if degree > bad:
        return -math.inf
    ln = (
        math.log(n)
        + math.log(n - degree - 1)
        - math.log(2)
        + math.lgamma(bad + 1)
        + math.lgamma(n - degree + 1)
        - math.lgamma(n + 1)
        - math.lgamma(bad - degree + 1)
    )
    return ln / math.log(2)


def _check_rate(name: str, value: object) -> float:
    if not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def _try_degree(n: int, k: int, corrupt: int, survivors: int) -> GraphParams | None:
    per_event = 2.0 ** -(SECURITY_BITS + 1)  # the security budget split over two events
    if log2_disconnection_bound(n, k, corrupt + (n - survivors)) >= -(SECURITY_BITS + 1):
        return None
    # Corrupt neighbours X: t - 1 = smallest x with P[X > x] < 2^-41 / n.
    adv = _pmf_table(n, corrupt, k)
    tail = 0.0
    t1 = k
    for x in range(k, -1, -1):  # tail = P[X > x - 1] after adding adv[x]
        if tail >= per_event / n:
            break
        t1 = x
        tail += adv[x]
    # t1 is now the smallest x with P[X > x] < 2^-41 / n.
    threshold = max(t1 + 1, 2)
    # Surviving neighbours S: need P[S < t] < 2^-20 / n.
    surv = _pmf_table(n, survivors, k)
    p_short = sum(surv[:threshold])
    if p_short >= 2.0**-CORRECTNESS_BITS / n or threshold > k:
        return None
    p_corrupt = sum(adv[threshold:])
    p_cut = 2.0 ** log2_disconnection_bound(n, k, corrupt + (n - survivors))
    return GraphParams(
        n=n,
        degree=k,
        threshold=threshold,
        log2_security_failure=math.log2(max(n * p_corrupt + p_cut, 1e-300)),
        log2_correctness_failure=math.log2(max(n * p_short, 1e-300)),
    )


def choose_parameters(n: int, *, dropout_rate: float, corrupt_fraction: float) -> GraphParams:
    """The smallest even degree k (and its threshold t) meeting both failure bounds.

    Security: with at most ``corrupt_fraction * n`` colluding clients, the probability that
    some client has t or more corrupt neighbours, or that the honest survivors' graph comes
    apart, stays below 2^-40. Correctness: with at most ``dropout_rate * n`` dropouts, the
    probability that some client keeps fewer than t surviving neighbours stays below 2^-20.

    Parameters:
        n: The clients in the round.
        dropout_rate: The share of clients that may drop.
        corrupt_fraction: The share of clients that may collude with the server.

    Returns:
        The degree, threshold and the bounds they meet.

    Raises:
        ConfigError: No degree below n - 1 works (use the complete graph then).
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 3:
        raise ConfigError(f"n must be an int >= 3, got {n!r}")
    drop = _check_rate("dropout_rate", dropout_rate)
    adv = _check_rate("corrupt_fraction", corrupt_fraction)
    if drop + adv > 0.9:
        raise ConfigError("dropout_rate + corrupt_fraction must be at most 0.9")
    corrupt = math.floor((adv + _EPS) * n)
    survivors = math.ceil((1 - drop - _EPS) * n)
    for k in range(2, n - 1, 2):
        params = _try_degree(n, k, corrupt, survivors)
        if params is not None:
            return params
    raise ConfigError(
        f"no Harary degree below n - 1 meets the bounds for n={n}, dropout_rate={drop}, "
        f"corrupt_fraction={adv}; use the complete graph with a majority threshold"
    )


@dataclass(frozen=True)
class RoundPlan:
    """The neighbour graph's degree and the threshold for a round of ``n`` clients.

    Built by :func:`plan_round`, the one place the simulator, the Flower strategy and the
    demo get them from.

    Attributes:
        n: The clients in the round.
        degree: Neighbours per client.
        threshold: The Shamir threshold.
        complete: Whether every client neighbours every other.
    """

    n: int
    degree: int
    threshold: int
    complete: bool

    @property
    def majority(self) -> int:
        """The smallest threshold above half a neighbourhood (the client included)."""
        return default_threshold(self.degree)

    @property
    def below_majority(self) -> bool:
        """True when clients accept this threshold only with ``allow_minority_threshold``."""
        return self.threshold < self.majority

    def graph(self, ids: Iterable[int], seed: bytes | None = None) -> Graph:
        """The graph over ``ids``.

        Parameters:
            ids: The ``n`` client ids.
            seed: A server-chosen seed for a Harary graph's ring, only with the config's
                ``server_graph_seed`` opt-out; None (the default) leaves it to the clients'
                commit-reveal.

        Returns:
            The graph.
        """
        if self.complete:
            return Graph.complete(ids)
        return Graph.harary(ids, self.degree, rng_seed=seed)


def plan_round(
    n: int,
    *,
    degree: int | None = None,
    threshold: int | None = None,
    dropout_rate: float | None = None,
    corrupt_fraction: float | None = None,
    allow_minority_threshold: bool = False,
) -> RoundPlan:
    """Degree and threshold for ``n`` clients.

    Parameters:
        n: The clients in the round.
        degree: A Harary graph of that even degree (complete when it reaches n - 1); None
            means the complete graph, or, when ``dropout_rate`` and ``corrupt_fraction`` are
            given, the degree :func:`choose_parameters` picks.
        threshold: None means a majority of a neighbourhood (:func:`default_threshold`), or
            the chosen one when that is higher.
        dropout_rate: With ``corrupt_fraction``, lets :func:`choose_parameters` pick.
        corrupt_fraction: With ``dropout_rate``, lets :func:`choose_parameters` pick.
        allow_minority_threshold: Allow a threshold below the majority (the clients refuse
            it without the same opt-out, see :class:`ClientPolicy`).

    Returns:
        The plan.

    Raises:
        ConfigError: Impossible settings, or a minority threshold without the opt-out.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 3:
        raise ConfigError(f"a round needs at least 3 clients, got {n!r}")
    chosen: int | None = None
    if degree is None and (dropout_rate is not None or corrupt_fraction is not None):
        params = choose_parameters(
            n, dropout_rate=dropout_rate or 0.0, corrupt_fraction=corrupt_fraction or 0.0
        )
        degree, chosen = params.degree, params.threshold
    if degree is not None and (
        isinstance(degree, bool) or not isinstance(degree, int) or degree < 2 or degree % 2
    ):
        raise ConfigError(f"degree must be an even int >= 2 (Harary graph), got {degree!r}")
    complete = degree is None or degree >= n - 1
    k = n - 1 if complete or degree is None else degree
    majority = default_threshold(k)
    if threshold is None:
        threshold = majority if chosen is None else max(chosen, majority)
        if allow_minority_threshold and chosen is not None:
            threshold = chosen
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 2 <= threshold <= k:
        raise ConfigError(f"threshold must be an int in [2, degree={k}], got {threshold!r}")
    if threshold < majority and not allow_minority_threshold:
        raise ConfigError(
            f"threshold {threshold} is not above half of a neighbourhood of {k + 1} (at least "
            f"{majority}); clients refuse it unless they allow a minority threshold"
        )
    return RoundPlan(n=n, degree=k, threshold=threshold, complete=complete)
