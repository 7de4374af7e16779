"""Any dropout schedule gives the exact sum of the survivors' inputs, or a clean abort."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from secureagg import RoundAborted
from secureagg.protocol import Stage, default_threshold, simulate_round

BITS = 16
STAGES = list(Stage)


@st.composite
def rounds(draw: st.DrawFn) -> dict[str, object]:
    # mostly small rounds (each costs ~n^2 key agreements), sometimes up to 40 clients
    n = draw(st.one_of(st.integers(3, 12), st.integers(3, 12), st.integers(13, 40)))
    sparse = n >= 6 and draw(st.booleans())
    degree = draw(st.integers(1, (n - 2) // 2)) * 2 if sparse else None
    k = n - 1 if degree is None else degree
    threshold = draw(
        st.one_of(st.none(), st.none(), st.integers(2, max(2, (k + 1) // 2)), st.integers(2, k))
    )
    drop_rate = draw(st.sampled_from([0.0, 0.1, 0.25, 0.5]))
    schedule: dict[Stage, list[int]] = {s: [] for s in STAGES}
    for u in range(1, n + 1):
        if draw(st.floats(0, 1)) < drop_rate:
            schedule[draw(st.sampled_from(STAGES))].append(u)
    return {
        "n": n,
        "degree": degree,
        "threshold": threshold,
        "signed": draw(st.integers(0, 3)) == 0,
        "dropouts": schedule,
        "d": draw(st.integers(1, 16)),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def expected_complete_outcome(
    n: int, t: int, signed: bool, dropouts: dict[Stage, list[int]]
) -> frozenset[int] | None:
    """For the complete graph the outcome is predictable: the survivors, or None (abort)."""
    gone = {
        u: min(s.value for s, us in dropouts.items() if u in us)
        for u in range(1, n + 1)
        if any(u in us for us in dropouts.values())
    }

    def alive(stage: Stage) -> set[int]:
        return {u for u in range(1, n + 1) if gone.get(u, 99) > stage.value}

    u1, u2, u3 = alive(Stage.ADVERTISE), alive(Stage.SHARE_KEYS), alive(Stage.MASKED_INPUT)
    # the server needs t clients per stage; each client also needs t neighbours (itself not
    # counted) in U1, in U2 and in U3 before it goes on
    if min(len(u1), len(u2), len(u3)) < t + 1:
        return None
    responders = alive(Stage.UNMASK) & u3
    if signed:
        if len(alive(Stage.CONSISTENCY) & u3) < t:
            return None
        responders &= alive(Stage.CONSISTENCY)
    if len(responders) < t:
        return None
    return frozenset(u3)


@settings(
    max_examples=320,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(rounds())
def test_exact_sum_or_clean_abort(case: dict[str, object]) -> None:
    n, d = int(case["n"]), int(case["d"])  # type: ignore[call-overload]
    rng = np.random.default_rng(int(case["seed"]))  # type: ignore[call-overload]
    inputs = {u: rng.integers(0, 2**BITS, d, dtype=np.uint16) for u in range(1, n + 1)}
    dropouts: dict[Stage, list[int]] = case["dropouts"]  # type: ignore[assignment]
    degree = case["degree"]
    threshold = case["threshold"]
    try:
        res = simulate_round(
            inputs,
            bits=BITS,
            degree=degree,  # type: ignore[arg-type]
            threshold=threshold,  # type: ignore[arg-type]
            dropouts=dropouts,
            signed=bool(case["signed"]),
        )
    except RoundAborted:
        res = None
    graph = "complete" if degree is None else "sparse"
    event(f"{graph}: {'aborted' if res is None else 'exact sum'}")
    if degree is None:
        t = threshold if threshold is not None else default_threshold(n - 1)
        assert isinstance(t, int)
        want = expected_complete_outcome(n, t, bool(case["signed"]), dropouts)
        assert (res.survivors if res is not None else None) == want
    if res is None:
        return
    lost_early = {
        u for s, us in dropouts.items() if s.value <= Stage.MASKED_INPUT.value for u in us
    }
    assert not res.survivors & lost_early
    total = sum(inputs[u].astype(np.uint64) for u in res.survivors) % 2**BITS
    assert np.array_equal(res.total, total)
