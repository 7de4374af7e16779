"""`secureagg demo --privacy client`: settings, the ledger written every round, the report."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from statistics import median
from typing import Any

import pytest

from secureagg import ConfigError
from secureagg.demo import CLIENT_LEVEL_DEFAULTS, DemoConfig, DemoResult, choose_graph, run_demo
from secureagg.demo._client_report import _server_text
from secureagg.demo._report import LEDGER_FILE, REPORT_FILES, write_report
from secureagg.demo._summary import epsilon_text
from secureagg.hazmat import DDPParams
from secureagg.privacy import DistributedLedger

SMALL = DemoConfig(
    privacy="client",
    dataset="digits",
    clients=40,
    client_rate=0.5,
    rounds=2,
    local_epochs=2,
    learning_rate=0.5,
    update_clip=0.5,
    delta=1e-4,
    min_examples=1,
    seed=1,
)

BAD: list[tuple[dict[str, Any], str]] = [
    ({"privacy": "user"}, "privacy must be one of"),
    ({"client_rate": 0.0}, "client_rate must be in"),
    ({"client_rate": 1.5}, "client_rate must be in"),
    ({"bits": 4}, "bits must be in"),
    ({"graph": "sparse"}, "complete graph"),
    ({"weighting": "examples-public"}, "uniformly"),
    ({"target_epsilon": None, "noise_multiplier": 1.0}, "target-epsilon"),
    ({"colluders": 15}, "leaves no honest client"),
    ({"threshold": 25}, "not below the 20 clients expected per round"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_client_level_values_are_one_config_error(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        dataclasses.replace(SMALL, **change).validate()
    assert "\n" not in str(info.value)


def test_the_threshold_is_three_quarters_of_the_expected_clients_per_round() -> None:
    assert SMALL.validate().client_threshold == 15  # 0.75 x 40 x 0.5
    g = choose_graph(SMALL)
    assert (g.kind, g.threshold, g.below_majority) == ("complete", 15, False)
    assert dataclasses.replace(SMALL, threshold=12).client_threshold == 12
    full = dataclasses.replace(DemoConfig(privacy="client"), **CLIENT_LEVEL_DEFAULTS).validate()
    assert (full.dataset, full.clients, full.client_threshold) == ("digits", 300, 33)


@pytest.fixture(scope="module")
def run_and_ledgers(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoResult, list[int]]:
    path = tmp_path_factory.mktemp("ledger") / LEDGER_FILE
    seen: list[int] = []

    def progress(phase: str, done: int, total: int, detail: str) -> None:
        # when round r is done the ledger on disk already holds r records
        if phase == "private" and done >= 1 and detail.startswith(f"round {done}/"):
            seen.append(len(DistributedLedger.load(path).rounds()))

    result = run_demo(SMALL, progress, ledger_path=path)
    return result, seen


@pytest.mark.slow
def test_the_distributed_ledger_is_written_every_round(
    run_and_ledgers: tuple[DemoResult, list[int]],
) -> None:
    result, seen = run_and_ledgers
    assert seen == [1, 2]
    assert result.distributed is not None and result.private.ledger is None
    for m, rec in zip(result.private.rounds, result.distributed.rounds(), strict=True):
        assert rec.members == ([] if m.aborted else sorted(m.members))
        assert set(m.participants) <= set(range(1, 41))
    # each client's own coin: 2 x 40 heads at rate 0.5 has probability 2^-80
    assert any(len(m.participants) < 40 for m in result.private.rounds)


@pytest.mark.slow
def test_the_report_states_mechanism_unit_relation_release_and_adversary(
    run_and_ledgers: tuple[DemoResult, list[int]], tmp_path: Path
) -> None:
    result, _ = run_and_ledgers
    report = write_report(result, tmp_path)
    for name in REPORT_FILES:
        assert (tmp_path / name).is_file(), name
    assert json.loads((tmp_path / "report.json").read_text()) == report
    book = DistributedLedger.load(tmp_path / LEDGER_FILE)
    p = report["privacy"]
    assert p["mode"] == "client" and p["mechanism"] == "distributed discrete Gaussian"
    assert p["unit"] == "one client's whole update"
    assert p["neighbouring"].startswith("zero-out: one client's whole update replaced by zero")
    assert "secure-aggregation sum" in p["released"]
    assert "at least 15 honest clients' noise" in p["against"]
    # the sampling mode is stated: visible (the server sees who took part)
    assert p["sampling"].startswith("visible") and "sees who took part" in p["sampling"]
    assert all(r.sampling == "visible" for r in book.rounds())
    assert "| client sampling | visible" in (tmp_path / "report.md").read_text()
    # against the server, which sees every round's members: no amplification
    server = book.server_epsilons()
    assert p["server_epsilon"]["max"] == max(server.values())
    assert p["server_epsilon"]["median"] == median(server.values())
    top = max(server, key=lambda c: server[c])
    assert p["server_epsilon"]["max_client"] == top
    assert p["server_epsilon"]["max_rounds"] == sum(
        top in r.members for r in book.rounds() if r.released
    )
    assert p["server_epsilon"]["most_rounds"] == max(
        sum(c in r.members for r in book.rounds() if r.released) for c in server
    )
    assert p["epsilon"] == book.epsilon() <= SMALL.target_epsilon  # type: ignore[operator]
    for r, rec in zip(report["rounds"], book.rounds(), strict=True):
        assert r["epsilon"] == rec.epsilon
        assert r["honest"] == (len(rec.members) if rec.released else 0)
    text = p["guarantee"]
    for phrase in (
        "client level",
        "one client's whole contribution",
        "replacing one client's update by zero",
        "zero-out",
        "sum from secure aggregation",
        "discrete Gaussian",
        "anyone who sees only the sums, not who took part",
        "against the server (no client is assumed to collude",
        "the sampling hides nothing",
        "threshold - colluders = 15 - 0 = 15",
        "relies on secure aggregation",
        "own coin from the operating system",
    ):
        assert phrase in text, phrase
    md = (tmp_path / "report.md").read_text()
    assert f"({p['epsilon']:.2f}, 0.0001)-differentially private at the client level" in md
    # the decoded average's spread is the planned noise: measured RMS / planned std near 1
    # (650 coordinates per round, 2 rounds: one standard error is about 2%; a noise share
    # off by sqrt(2) would be 41% away)
    ratio = report["summary"]["noise_rms_over_std"]
    assert ratio is not None and abs(ratio - 1) < 0.15
    docs = (Path(__file__).parents[2] / "docs" / "demo.md").read_text()
    for name in set(report["privacy"]) | set(report["summary"]) | set(report["rounds"][0]):
        assert f"`{name}`" in docs, f"docs/demo.md does not describe {name}"
    assert math.isfinite(report["summary"]["max_abs_error"])


def test_the_largest_server_epsilon_is_reported_with_its_own_clients_rounds() -> None:
    # a client of one 20-member round out-spends one of two 300-member rounds: the text must
    # give the largest figure with the rounds of the client that has it, not the most rounds
    p = DDPParams("dgauss", 1000, 16, 1.0, 2e-4, (0.15 / 2e-4) ** 2)
    book = DistributedLedger()
    kw: dict[str, object] = dict(colluders=0, n_min=20, sample_rate=0.1, delta=1e-5)
    book.record(1, p, members=[1, *range(3, 22)], **kw)  # type: ignore[arg-type]
    book.record(2, p, members=[2, *range(100, 399)], **kw)  # type: ignore[arg-type]
    book.record(3, p, members=[2, *range(100, 399)], **kw)  # type: ignore[arg-type]
    eps = book.server_epsilons()
    assert eps[1] > eps[2]
    text = _server_text(book, 0)
    assert f"epsilon = {epsilon_text(eps[1])} (client 1, 1 round)" in text
    assert "2 rounds" not in text
