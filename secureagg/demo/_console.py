"""Terminal output of the demo: live progress and the final tables (rich)."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from secureagg.demo._summary import dropouts_text, epsilon_text, percent_text

__all__ = ["LiveProgress", "summary_tables"]

_PHASES = {
    "data": "data",
    "private": "private + secure",
    "baseline": "baseline",
}


class LiveProgress:
    """A rich progress display fed by run_demo's ``progress(phase, done, total, detail)``."""

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.fields[phase]}", table_column=Column(width=16, no_wrap=True)),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn(
                "{task.fields[detail]}",
                table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis"),
            ),
            console=console,
            disable=not enabled,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> LiveProgress:
        self._progress.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.__exit__(kind, exc, tb)

    def __call__(self, phase: str, done: int, total: int, detail: str) -> None:
        """Update (or start) the bar of ``phase``."""
        if detail.startswith("round ") and ": " in detail:
            detail = detail.split(": ", 1)[1]  # the bar already counts rounds
        if phase not in self._tasks:
            self._tasks[phase] = self._progress.add_task(
                "", total=total, phase=_PHASES.get(phase, phase), detail=detail
            )
        self._progress.update(self._tasks[phase], completed=done, total=total, detail=detail)


def _head_table(title: str, private: str, s: dict[str, Any]) -> Table:
    """The private-vs-baseline table, opened with the test accuracy of both."""
    head = Table(title=title, show_header=True, header_style="bold")
    head.add_column("")
    head.add_column(private, justify="right")
    head.add_column("baseline", justify="right")
    head.add_row(
        "test accuracy",
        percent_text(s["final_accuracy"]),
        percent_text(s["baseline_final_accuracy"]),
    )
    return head


def summary_tables(report: dict[str, Any]) -> list[Table]:
    """The final tables: private vs baseline, then one row per client."""
    if report["privacy"].get("mode") == "client":
        return _client_tables(report)
    s, p = report["summary"], report["privacy"]
    head = _head_table("secureagg demo", "private + secure", s)
    head.add_row(
        f"max epsilon (delta {p['delta']:g}, {p['accountant']})",
        epsilon_text(s["max_epsilon"]),
        "-",
    )
    if s["all_rounds_within_bound"] is None:
        head.add_row("max |recovered - true|", "[red]no round completed[/]", "-")
    else:
        ok = "[green]within bound[/]" if s["all_rounds_within_bound"] else "[red]ABOVE BOUND[/]"
        head.add_row("max |recovered - true|", f"{s['max_abs_error']:.3g} {ok}", "-")
    head.add_row(
        "rounds: dropout / update lost / aborted",
        f"{s['rounds_with_dropout']} / {s['rounds_missing_update']} / {s['aborted_rounds']}",
        "-",
    )
    head.add_row(
        "wall time", f"{s['seconds']['private']:.1f} s", f"{s['seconds']['baseline']:.1f} s"
    )
    per = Table(title="per client (mean per round)", header_style="bold")
    for col in ("client", "examples", "labels", "epsilon", "KiB", "ms", "in sum"):
        per.add_column(col, justify="right")
    rounds = report["rounds"]
    for cid, info in report["data"]["clients"].items():
        kib = s["client_bytes_per_round"].get(cid)
        ms = s["client_ms_per_round"].get(cid)
        in_sum = sum(1 for r in rounds if int(cid) in r["members"])
        per.add_row(
            cid,
            str(info["examples"]),
            "/".join(str(n) for n in info["label_counts"]),
            epsilon_text(p["epsilon"][cid]),
            "-" if kib is None else f"{kib / 1024:.1f}",
            "-" if ms is None else f"{ms:.0f}",
            f"{in_sum}/{len(rounds)}",
        )
    return [head, per, _rounds_table(report)]


def _rounds_table(report: dict[str, Any]) -> Table:
    table = Table(title="rounds", header_style="bold")
    table.add_column("round", justify="right")
    table.add_column("in sum", justify="right")
    table.add_column("dropouts")
    table.add_column("accuracy", justify="right")
    for r in report["rounds"]:
        table.add_row(
            str(r["round"]),
            f"{len(r['members'])}/{len(r['participants'])}",
            "[red]aborted[/] " * r["aborted"] + dropouts_text(r["dropouts"]),
            percent_text(r["accuracy"]),
        )
    return table


def _client_tables(report: dict[str, Any]) -> list[Table]:
    """A ``--privacy client`` run: private vs baseline, the guarantee's terms, the rounds."""
    s, p = report["summary"], report["privacy"]
    head = _head_table("secureagg demo: client-level distributed DP", "client-level DP + secure", s)
    head.add_row(
        f"epsilon (client level, delta {p['delta']:g})", epsilon_text(s["max_epsilon"]), "-"
    )
    ratio = s["noise_rms_over_std"]
    head.add_row(
        "noise in the average: measured / planned",
        "-" if ratio is None else f"{ratio:.3f}",
        "-",
    )
    head.add_row(
        "clients in a sum (mean) / aborted rounds",
        f"{s['mean_clients_in_sum']:.1f} / {s['aborted_rounds']}",
        "-",
    )
    head.add_row(
        "wall time", f"{s['seconds']['private']:.1f} s", f"{s['seconds']['baseline']:.1f} s"
    )
    terms = Table(title="the guarantee", header_style="bold", show_header=False)
    terms.add_column("")
    terms.add_column("")
    for name, key in (
        ("mechanism", "mechanism"),
        ("privacy unit", "unit"),
        ("neighbours", "neighbouring"),
        ("released", "released"),
        ("against", "against"),
    ):
        terms.add_row(name, str(p[key]))
    return [head, terms, _rounds_table(report)]
