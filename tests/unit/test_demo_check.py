"""The demo's own recovered-vs-true check: it recomputes the members' weighted average."""

from __future__ import annotations

import numpy as np
import pytest

from secureagg import ConfigError
from secureagg.demo._check import check_rounds
from secureagg.fl import RoundMetrics
from secureagg.privacy import LocalUpdate


def _round(
    recovered: np.ndarray | None, members: list[int], updates: dict[int, list[float]]
) -> RoundMetrics:
    return RoundMetrics(
        round=1,
        participants=sorted(updates),
        members=members,
        dropped={},
        accuracy=None,
        max_abs_error=0.0,
        error_bound=0.0,
        epsilon={},
        client_ms={},
        client_bytes={},
        server_ms=0.0,
        updates={c: LocalUpdate(np.array(v, dtype=np.float32), 1, 1) for c, v in updates.items()},
        recovered=recovered,
    )


UPDATES = {1: [1.0, 0.0], 2: [0.0, 2.0], 3: [4.0, 4.0]}
SIZES = {1: 1, 2: 3, 3: 100}


def test_weights_by_the_demos_sizes_and_counts_members_only() -> None:
    true = np.array([0.25, 1.5])  # (1 * [1, 0] + 3 * [0, 2]) / 4; client 3 is not a member
    w = "examples-public"
    [ok] = check_rounds([_round(true, [1, 2], UPDATES)], SIZES, w)
    assert ok.max_abs_error == 0.0 and np.array_equal(ok.true, true)
    [off] = check_rounds([_round(true + np.array([0.0, 1e-3]), [1, 2], UPDATES)], SIZES, w)
    assert off.max_abs_error == pytest.approx(1e-3)
    [wrong_members] = check_rounds([_round(true, [1, 2, 3], UPDATES)], SIZES, w)
    assert wrong_members.max_abs_error > 1.0


def test_uniform_weighting_checks_the_plain_mean() -> None:
    mean = np.array([0.5, 1.0])  # ([1, 0] + [0, 2]) / 2, whatever the sizes
    [ok] = check_rounds([_round(mean, [1, 2], UPDATES)], SIZES)
    assert ok.max_abs_error == 0.0 and np.array_equal(ok.true, mean)


def test_an_aborted_round_checks_nothing_and_missing_updates_are_refused() -> None:
    [aborted] = check_rounds([_round(None, [], UPDATES)], SIZES)
    assert aborted.max_abs_error == 0.0
    with pytest.raises(ConfigError, match="keep_vectors"):
        check_rounds([_round(np.zeros(2), [1, 4], UPDATES)], {**SIZES, 4: 1})
