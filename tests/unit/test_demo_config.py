"""DemoConfig validation and the graph choice: bad values are one ConfigError naming them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from secureagg import ConfigError
from secureagg.demo import DemoConfig, choose_graph

BAD: list[tuple[dict[str, Any], str]] = [
    ({"clients": 0}, "clients must be in \\[3, 1000\\], got 0"),
    ({"clients": 2}, "clients must be"),
    ({"clients": 3}, "with dropouts, 3 clients cannot finish a round"),
    ({"rounds": 0}, "rounds must be"),
    ({"local_epochs": -1}, "local_epochs must be"),
    ({"noise_multiplier": -1.0, "target_epsilon": None}, "noise_multiplier must be in"),
    ({"noise_multiplier": 1.0}, "either noise_multiplier or target_epsilon"),
    ({"target_epsilon": None}, "give a noise_multiplier or a target_epsilon"),
    ({"target_epsilon": 0.0}, "target_epsilon must be in"),
    ({"target_epsilon": float("nan")}, "target_epsilon must be in"),
    ({"delta": 0.0}, "delta must be in"),
    ({"delta": 0.5}, "delta must be in"),
    ({"max_grad_norm": 0.0}, "max_grad_norm must be in"),
    ({"dropout_rate": 1.5}, "dropout_rate must be in"),
    ({"dropout_rate": -0.1}, "dropout_rate must be in"),
    ({"sample_rate": 0.0}, "sample_rate must be in"),
    ({"sample_rate": 2.0}, "sample_rate must be in"),
    ({"dataset": "mnist"}, "unknown dataset 'mnist'"),
    ({"graph": "ring"}, "unknown graph 'ring'"),
    ({"threshold": 9}, "threshold must be in \\[2, 7\\], got 9"),
    ({"threshold": 1}, "threshold must be in"),
    ({"graph": "sparse", "degree": 3}, "degree must be even"),
    ({"graph": "sparse", "degree": 8}, "degree must be in"),
    ({"graph": "sparse", "degree": 4, "threshold": 5}, "threshold must be in \\[2, 4\\]"),
    ({"degree": 4}, "degree applies to the sparse graph only"),
    ({"clients": True}, "clients must be an integer"),
    ({"frac_bits": 0}, "frac_bits must be"),
    ({"skew": 0.0}, "skew must be in"),
    ({"test_fraction": 0.9}, "test_fraction must be in"),
    ({"seed": -1}, "seed must be"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_values_are_one_config_error(change: dict[str, Any], message: str) -> None:
    config = dataclasses.replace(DemoConfig(), **change)
    with pytest.raises(ConfigError, match=message) as info:
        config.validate()
    assert "\n" not in str(info.value)


def test_defaults_are_valid_and_private() -> None:
    config = DemoConfig().validate()
    assert config.clients == 8 and config.dataset == "breast-cancer"
    assert config.target_epsilon is not None and config.target_epsilon <= 8
    assert config.delta == 1e-5
    assert config.dropout_rate == 1.0  # one client drops every round by default


def test_three_clients_need_dropouts_off() -> None:
    assert DemoConfig(clients=3, dropout_rate=0.0).validate().clients == 3


def test_complete_graph_uses_a_majority_threshold() -> None:
    g = choose_graph(DemoConfig())
    assert (g.kind, g.degree, g.threshold) == ("complete", 7, 5)
    assert choose_graph(DemoConfig(threshold=3)).threshold == 3


def test_sparse_graph_is_sparser_than_complete() -> None:
    g = choose_graph(DemoConfig(graph="sparse", clients=16))
    assert g.kind == "sparse" and 2 <= g.degree < 15 and g.degree % 2 == 0
    assert 2 <= g.threshold <= g.degree
    explicit = choose_graph(DemoConfig(graph="sparse", degree=4))
    assert (explicit.degree, explicit.threshold) == (4, 3)


def test_threshold_above_the_helpers_degree_is_refused() -> None:
    with pytest.raises(ConfigError, match="above the graph degree"):
        choose_graph(DemoConfig(graph="sparse", clients=16, threshold=14))


def test_a_threshold_below_a_majority_is_named_as_such() -> None:
    """The demo may lower t below a majority (one dropout must not abort a 4-client round);
    it then runs with the protocol's opt-out and says so (issue 12)."""
    low = choose_graph(DemoConfig(clients=4))  # complete, degree 3, dropouts on: t = 2
    assert (low.threshold, low.majority, low.below_majority) == (2, 3, True)
    note = low.note()
    assert note is not None and "below a majority" in note and "opt-out" in note
    fine = choose_graph(DemoConfig())
    assert not fine.below_majority and fine.note() is None
    helper = choose_graph(DemoConfig(graph="sparse", clients=40))
    assert helper.below_majority is (helper.threshold < helper.majority)


def test_clip_norm_is_a_deprecated_name_of_max_grad_norm() -> None:
    with pytest.warns(DeprecationWarning, match="use max_grad_norm"):
        cfg = DemoConfig(clip_norm=0.25)  # type: ignore[call-arg]
    assert cfg.max_grad_norm == 0.25
    assert dataclasses.replace(cfg, max_grad_norm=0.5).max_grad_norm == 0.5
    assert "clip_norm" not in dataclasses.asdict(cfg)


def test_the_cli_still_takes_clip_norm_with_a_warning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``--clip-norm 0`` reaches max_grad_norm (its check refuses 0) and says it is deprecated."""
    from secureagg.cli import main

    assert main(["demo", "--clip-norm", "0", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "deprecated" in err and "--max-grad-norm" in err
    assert "max_grad_norm must be in (0, 1e+06], got 0.0" in err
    assert not (tmp_path / "r").exists()
