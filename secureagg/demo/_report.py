"""Write the report folder: report.json, report.md, ledger.json and the PNG plots."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from secureagg._exceptions import ConfigError
from secureagg.demo._client_plots import plot_client_epsilon, plot_client_server_view
from secureagg.demo._client_report import build_client_report, render_client_markdown
from secureagg.demo._plots import PLOTS, plot_accuracy, plot_cost, plot_epsilon, plot_server_view
from secureagg.demo._run import DemoResult
from secureagg.demo._summary import (
    ACCOUNTANT,
    build_report,
    dropouts_text,
    epsilon_text,
    files_section,
    percent_text,
)

__all__ = ["LEDGER_FILE", "REPORT_FILES", "render_markdown", "write_report"]

LEDGER_FILE = "ledger.json"
REPORT_FILES: tuple[str, ...] = ("report.md", "report.json", LEDGER_FILE, *PLOTS.values())
"""Every file a report folder holds."""


def _setting(name: str, value: Any) -> str:
    return epsilon_text(value) if name == "target_epsilon" and value is not None else str(value)


def _verdict(ok: bool | None) -> str:
    return "no round completed" if ok is None else ("yes" if ok else "NO")


def render_markdown(report: dict[str, Any]) -> str:
    """report.md: the story of the run, with the plots embedded."""
    s, p, sa, d = report["summary"], report["privacy"], report["secure_aggregation"], report["data"]
    cfg = report["config"]
    lines = [
        "# secureagg demo report",
        "",
        f"Federated training of a {'logistic regression' if cfg['hidden'] == 0 else 'small MLP'}"
        f" on **{d['dataset']}** ({d['train_examples']} training examples split across "
        f"{len(d['clients'])} simulated hospitals, {d['test_examples']} held-out test examples "
        f"that no client trained on), {cfg['rounds']} rounds. Every client trains with Opacus "
        f"DP-SGD; every round's updates are summed by the secure aggregation protocol "
        f"({sa['graph']} graph, degree {sa['degree']}, threshold {sa['threshold']}, "
        f"{sa['bits']}-bit ring). The baseline is the same training on the same split and seed "
        f"without DP, masking or dropouts.",
        "",
        *([f"**Note:** {sa['threshold_note']}.", ""] if sa.get("threshold_note") else []),
        "| | private + secure | baseline |",
        "| --- | --- | --- |",
        f"| final test accuracy | {percent_text(s['final_accuracy'])} "
        f"| {percent_text(s['baseline_final_accuracy'])} |",
        f"| epsilon per client (max, delta {p['delta']:g}) | {epsilon_text(s['max_epsilon'])} "
        "| none (no DP) |",
        f"| largest recovered-vs-true error | {s['max_abs_error']:.3g} "
        f"(all rounds within bound: {_verdict(s['all_rounds_within_bound'])}) | - |",
        f"| rounds with a dropout / with an update lost / aborted | {s['rounds_with_dropout']} / "
        f"{s['rounds_missing_update']} / {s['aborted_rounds']} | - |",
        f"| wall time | {s['seconds']['private']:.1f} s | {s['seconds']['baseline']:.1f} s |",
        "",
        "## Privacy guarantee",
        "",
        p["guarantee"],
        "",
        "## Accuracy per round",
        "",
        f"![accuracy per round]({PLOTS['accuracy']})",
        "",
        "## Privacy spent",
        "",
        f"![cumulative epsilon per client]({PLOTS['epsilon']})",
        "",
        "## What the server saw, and what it recovered",
        "",
        "Left: one client's masked vector as the server received it (uniform on the ring). "
        "Middle: that client's true update. Right: every coordinate of every round's securely "
        "recovered average against the plain average of the surviving clients' updates.",
        "",
        f"![server view]({PLOTS['server_view']})",
        "",
        "## Protocol cost per client",
        "",
        f"![cost per client]({PLOTS['cost']})",
        "",
        "## Clients",
        "",
        "| client | examples | labels | epsilon | KiB / round | ms / round |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for cid, info in d["clients"].items():
        kib = s["client_bytes_per_round"].get(cid)
        ms = s["client_ms_per_round"].get(cid)
        kib_text = "-" if kib is None else f"{kib / 1024:.1f}"
        ms_text = "-" if ms is None else f"{ms:.0f}"
        lines.append(
            f"| {cid} | {info['examples']} | {info['label_counts']} | "
            f"{epsilon_text(p['epsilon'][cid])} | {kib_text} | {ms_text} |"
        )
    lines += [
        "",
        "## Rounds",
        "",
        "A client that drops at the unmasking stage has already sent its masked input: its "
        "update is in the sum, and the others' shares remove only its self-mask.",
        "",
        "| round | in sum | dropouts | accuracy | baseline | max epsilon | max error | bound "
        "| server ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["rounds"]:
        dropped = ("aborted; " if r["aborted"] else "") + dropouts_text(r["dropouts"])
        lines.append(
            f"| {r['round']} | {len(r['members'])}/{len(r['participants'])} | {dropped} | "
            f"{percent_text(r['accuracy'])} | {percent_text(r['baseline_accuracy'])} | "
            f"{epsilon_text(max(r['epsilon'].values(), default=0.0))} | "
            f"{r['max_abs_error']:.3g} | {r['error_bound']:.3g} | {r['server_ms']:.0f} |"
        )
    lines += files_section(
        f"- `{LEDGER_FILE}`: the privacy ledger the epsilon figures come from; "
        f"check it with `secureagg audit {LEDGER_FILE}`",
        ", ".join(f"`{k}={_setting(k, v)}`" for k, v in cfg.items()),
    )
    return "\n".join(lines)


def _other_accountants(result: DemoResult) -> dict[str, list[tuple[int, float]]]:
    """Per-round epsilon of the most-spent client by two other accountants, for comparison."""
    ledger = result.ledger
    if not ledger.clients():
        return {}
    cid = max(ledger.clients(), key=lambda c: ledger.latest_epsilon(c, ACCOUNTANT))
    names = {"opacus_prv": "Opacus PRV", "dpa_pld": "dp-accounting PLD"}
    return {
        f"client {cid}, {label}": [
            (rec.round, rec.epsilon[name]) for rec in ledger.records(cid) if name in rec.epsilon
        ]
        for name, label in names.items()
    }


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(result: DemoResult, out: Path) -> dict[str, Any]:
    """Write every file of REPORT_FILES under ``out`` (created if needed); return the JSON."""
    start = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    client_level = result.distributed is not None
    if result.distributed is not None:
        result.distributed.save(out / LEDGER_FILE)
        report = build_client_report(result)
    else:
        result.ledger.save(out / LEDGER_FILE)
        report = build_report(result)
    plot_accuracy(report, out / PLOTS["accuracy"])
    view = report["secure_aggregation"]["server_view"]
    captured = None if view is None else result.private.rounds[view["round"] - 1].captured
    if client_level:
        plot_client_epsilon(report, out / PLOTS["epsilon"])
        plot_client_server_view(report, captured, result.checks, out / PLOTS["server_view"])
    else:
        plot_epsilon(report, out / PLOTS["epsilon"], _other_accountants(result))
        plot_server_view(report, captured, result.checks, out / PLOTS["server_view"])
    plot_cost(report, out / PLOTS["cost"])
    seconds = report["summary"]["seconds"]
    seconds["report"] = time.perf_counter() - start
    seconds["total"] = sum(v for k, v in seconds.items() if k != "total")
    report["files"] = {"markdown": "report.md", "ledger": LEDGER_FILE, "plots": dict(PLOTS)}
    _write_text(out / "report.json", json.dumps(report, indent=1, allow_nan=False) + "\n")
    markdown = (
        render_client_markdown(report, PLOTS, LEDGER_FILE)
        if client_level
        else render_markdown(report)
    )
    _write_text(out / "report.md", markdown)
    return report
