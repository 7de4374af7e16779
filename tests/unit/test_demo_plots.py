"""The accuracy plot marks both kinds of dropout, at the rounds where they happened."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

from secureagg.demo._plots import plot_accuracy


def _round(rnd: int, dropouts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    lost = {c: f"dropout:{d['stage']}" for c, d in dropouts.items() if not d["in_sum"]}
    return {
        "round": rnd,
        "accuracy": 0.5 + rnd / 100,
        "baseline_accuracy": 0.9,
        "dropped": lost,
        "dropouts": dropouts,
    }


def test_lost_updates_and_dropouts_at_unmask_are_both_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rounds = [
        _round(1, {}),
        _round(2, {"3": {"stage": "unmask", "in_sum": True}}),
        _round(3, {"1": {"stage": "share-keys", "in_sum": False}}),
        _round(4, {"2": {"stage": "unmask", "in_sum": True}}),
        _round(5, {"4": {"stage": "advertise", "in_sum": False}}),
    ]
    report = {"rounds": rounds, "data": {"dataset": "digits", "clients": [1, 2, 3, 4]}}
    figures: list[Figure] = []
    saved = Figure.savefig

    def keep(self: Figure, *args: Any, **kw: Any) -> None:
        figures.append(self)
        saved(self, *args, **kw)

    monkeypatch.setattr(Figure, "savefig", keep)
    plot_accuracy(report, tmp_path / "accuracy.png")
    [fig] = figures
    lines = {line.get_label(): list(line.get_xdata()) for line in fig.axes[0].get_lines()}
    assert lines["private + secure"] == [1, 2, 3, 4, 5]  # rounds numbered from 1
    [lost] = [xs for label, xs in lines.items() if "lost" in label]
    [kept] = [xs for label, xs in lines.items() if "unmask" in label]
    assert lost == [3, 5] and kept == [2, 4]
    assert (tmp_path / "accuracy.png").stat().st_size > 0
