"""Render a ledger audit: rich terminal table, audit.md, audit.json and epsilon.png."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from secureagg.privacy.accounting import ACCOUNTANT_NAMES
from secureagg.privacy.audit import (
    ClientAudit,
    EmpiricalAudit,
    LedgerAudit,
    client_statement,
    common_statement,
)

__all__ = ["print_audit", "print_empirical", "write_empirical", "write_report"]

SHORT = ACCOUNTANT_NAMES


def _eps(x: float | None) -> str:
    if x is None:
        return "—"
    return "inf" if math.isinf(x) else f"{x:.3f}"


def _gap(c: ClientAudit) -> str:
    d = c.disagreement
    if d.pair is None:
        return "—"
    mark = " FLAG" if d.flagged else ""
    return f"{d.value:.2%} ({SHORT[d.pair[0]]}/{SHORT[d.pair[1]]}, r{d.round}){mark}"


def _short_gap(c: ClientAudit) -> str:
    d = c.disagreement
    if d.pair is None:
        return "—"
    return f"{d.value:.2%}" + (" !" if d.flagged else "")


def _budget(c: ClientAudit) -> str:
    if c.budget_epsilon is None:
        return "none"
    return f"{c.budget_epsilon:g}"


def _summary_line(audit: LedgerAudit) -> str:
    return (
        f"{len(audit.clients)} clients, {len(audit.over_budget)} over budget, "
        f"{len(audit.flagged)} with accountants disagreeing beyond "
        f"{audit.tolerance:.0%}; computed in {audit.seconds:.1f} s "
        f"(accountant runs: {', '.join(f'{SHORT[k]} {v}' for k, v in audit.evaluations.items())})"
    )


def print_audit(console: Console, audit: LedgerAudit, *, per_round: bool = False) -> None:
    """The per-client table (final figures), optionally each client's per-round figures."""
    deltas = sorted({c.delta for c in audit.clients})
    title = f"Privacy audit: {audit.source or 'ledger'}"
    if len(deltas) == 1:
        title += f" (δ = {deltas[0]:g})"
    table = Table(title=title, caption="ε: cumulative after the last round; ! = above tolerance")
    table.add_column("client", justify="right")
    table.add_column("rounds trained/in sum/recorded", justify="right")
    table.add_column("steps", justify="right")
    if len(deltas) > 1:
        table.add_column("δ", justify="right")
    for a in audit.accountants:
        style = "bold" if a == audit.reference else None
        table.add_column(SHORT[a], justify="right", style=style)
    table.add_column("max gap", justify="right")
    table.add_column("budget", justify="right")
    table.add_column("status")
    for c in audit.clients:
        colour = {"over budget": "red", "within budget": "green"}.get(c.status, "yellow")
        gap = _short_gap(c)
        table.add_row(
            str(c.client_id),
            f"{c.trained_rounds}/{c.participated_rounds}/{len(c.rounds)}",
            str(c.total_steps),
            *([f"{c.delta:g}"] if len(deltas) > 1 else []),
            *(_eps(c.final.get(a)) for a in audit.accountants),
            f"[red]{gap}[/red]" if c.disagreement.flagged else gap,
            _budget(c),
            f"[{colour}]{c.status}[/{colour}]",
        )
    console.print(table)
    console.print(_summary_line(audit))
    for c in audit.clients:
        for note in c.notes:
            console.print(f"[yellow]client {c.client_id}: {note}[/yellow]")
    if per_round:
        for c in audit.clients:
            console.print(_round_table(audit, c))
    if len(audit.clients) <= 3:
        for c in audit.clients:
            console.print(client_statement(audit, c))


def _round_table(audit: LedgerAudit, c: ClientAudit) -> Table:
    t = Table(title=f"client {c.client_id}: cumulative ε after each round")
    for col in ("round", "took part", "steps", "total steps"):
        t.add_column(col, justify="right")
    for a in audit.accountants:
        t.add_column(SHORT[a], justify="right")
    for r in c.rounds:
        took = "yes" if r.participated else f"no ({r.reason})"
        eps = (_eps(r.epsilon.get(a)) for a in audit.accountants)
        t.add_row(str(r.round), took, str(r.steps), str(r.total_steps), *eps)
    return t


def _markdown(audit: LedgerAudit) -> str:
    accs = audit.accountants
    lines = [
        f"# Privacy audit of `{audit.source or 'ledger'}`",
        "",
        _summary_line(audit) + ".",
        "",
        f"Reported epsilon: **{SHORT[audit.reference]}**. Largest disagreement: the largest "
        "relative gap, over all rounds, between two accountants that implement the same "
        "analysis independently (Opacus RDP vs dp-accounting RDP, Opacus PRV vs "
        f"dp-accounting PLD), flagged above {audit.tolerance:.0%}. How to read every figure: "
        "docs/audit.md.",
        "",
        "## Per client, after the last round",
        "",
        "| client | rounds trained / in sum / recorded | steps | delta | "
        + " | ".join(f"ε {SHORT[a]}" for a in accs)
        + " | largest disagreement | budget | status |",
        "|" + "---:|" * (4 + len(accs)) + "---|---:|---|",
    ]
    for c in audit.clients:
        lines.append(
            f"| {c.client_id} | {c.trained_rounds}/{c.participated_rounds}/{len(c.rounds)} | "
            f"{c.total_steps} | "
            f"{c.delta:g} | "
            + " | ".join(_eps(c.final.get(a)) for a in accs)
            + f" | {_gap(c)} | {_budget(c)} | {c.status} |"
        )
    notes = [(c.client_id, n) for c in audit.clients for n in c.notes]
    if notes:
        lines += ["", "## Notes", ""] + [f"- client {cid}: {n}" for cid, n in notes]
    lines += ["", "## What is guaranteed", ""]
    lines += [f"- **{item}.** {text}" for item, text in common_statement(audit)]
    lines += ["", "### Per client", ""]
    lines += [f"- {client_statement(audit, c)}" for c in audit.clients]
    lines += [
        "",
        "## Cumulative epsilon after each round",
        "",
        _rounds_caption(audit),
    ]
    for c in audit.clients:
        lines += [
            "",
            f"### Client {c.client_id}",
            "",
            "| round | took part | total steps | " + " | ".join(SHORT[a] for a in accs) + " |",
            "|" + "---:|" * (3 + len(accs)),
        ]
        for r in c.rounds:
            if r.epsilon.get(c.reference) is not None:  # N/A accountants show a dash
                took = "yes" if r.participated else f"no ({r.reason})"
                lines.append(
                    f"| {r.round} | {took} | {r.total_steps} | "
                    + " | ".join(_eps(r.epsilon.get(a)) for a in accs)
                    + " |"
                )
    return "\n".join(lines) + "\n"


def _rounds_caption(audit: LedgerAudit) -> str:
    if audit.tight_points:
        return (
            f"Rounds where every accountant ran (PRV and PLD at up to {audit.tight_points} "
            "checkpoints per client; the RDP figures for every round are in audit.json, and "
            "plotted in epsilon.png)."
        )
    return (
        "Every round, every accountant (also in audit.json, and plotted in epsilon.png). "
        "PRV and PLD figures are computed for many rounds at once and agree with the "
        "libraries run on each round alone to within 0.02 (docs/audit.md)."
    )


def _plot(audit: LedgerAudit, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    if not audit.clients:
        for ax in (left, right):
            ax.text(0.5, 0.5, "no client in this ledger", ha="center", transform=ax.transAxes)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return
    ref = audit.reference
    alpha = 0.9 if len(audit.clients) <= 10 else max(0.15, 3 / len(audit.clients))
    for c in audit.clients:
        xs = [r.round for r in c.rounds]
        ys = [_finite(r.epsilon[ref]) for r in c.rounds]
        label = f"client {c.client_id}" if len(audit.clients) <= 10 else None
        left.plot(xs, ys, lw=1, alpha=alpha, label=label)
    for b in sorted({c.budget_epsilon for c in audit.clients if c.budget_epsilon is not None}):
        left.axhline(b, ls="--", color="red", lw=1)
        left.annotate(f"budget {b:g}", (0, b), color="red", va="bottom", fontsize=8)
    left.set(xlabel="round", ylabel=f"cumulative ε ({SHORT[ref]})", title="ε per client")
    if len(audit.clients) <= 10:
        left.legend(fontsize=8)
    worst = max(audit.clients, key=lambda c: _finite(c.spent) or 0.0)
    for a in audit.accountants:
        pts = [(r.round, r.epsilon[a]) for r in worst.rounds if r.epsilon.get(a) is not None]
        style = "-" if len(pts) == len(worst.rounds) else "o--"
        right.plot([p[0] for p in pts], [_finite(p[1]) for p in pts], style, ms=3, label=SHORT[a])
    right.set(
        xlabel="round",
        ylabel="cumulative ε",
        title=f"accountants side by side: client {worst.client_id} (δ={worst.delta:g})",
    )
    right.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _finite(x: float | None) -> float:
    return math.nan if x is None or math.isinf(x) else x


def write_report(audit: LedgerAudit, out: Path) -> dict[str, Path]:
    """Write audit.md, audit.json and epsilon.png under ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "audit.md", "json": out / "audit.json", "plot": out / "epsilon.png"}
    doc: dict[str, Any] = audit.to_json()
    doc["statement"] = {
        "common": [{"item": i, "text": t} for i, t in common_statement(audit)],
        "clients": {str(c.client_id): client_statement(audit, c) for c in audit.clients},
    }
    paths["json"].write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    paths["markdown"].write_text(_markdown(audit), encoding="utf-8")
    _plot(audit, paths["plot"])
    return paths


def _empirical_rows(runs: list[EmpiricalAudit]) -> list[list[str]]:
    rows = []
    for run in runs:
        c, b = run.config, run.best
        rows.append(
            [
                ("noise off" if c.noise_multiplier == 0 else f"DP-SGD σ={c.noise_multiplier:g}")
                + f" ({run.grad_sample_mode})"
                + (" VIOLATED" if run.violated else ""),
                f"{run.steps} × q={run.sample_rate:.4f}",
                f"{c.canaries} ({run.included} in)",
                f"{b.v}/{b.r}",
                f"{run.lower_bound:.3f}",
                _eps(run.upper_bounds.get("opacus_prv")),
                _eps(run.upper_bounds.get("dpa_pld")),
                _eps(run.upper_bounds.get("opacus_rdp")),
                f"{run.test_accuracy:.1%}",
            ]
        )
    return rows


_EMPIRICAL_HEAD = [
    "run",
    "steps",
    "canaries",
    "right/guesses",
    "ε lower (95%)",
    "ε upper PRV",
    "ε upper PLD",
    "ε upper RDP",
    "test accuracy",
]


def print_empirical(console: Console, runs: list[EmpiricalAudit]) -> None:
    """Lower bound next to the accountants' upper bounds, one row per run."""
    table = Table(title="Empirical audit in one training run (Steinke, Nasr & Jagielski 2023)")
    for h in _EMPIRICAL_HEAD:
        table.add_column(h, justify="right")
    for row in _empirical_rows(runs):
        table.add_row(*row)
    console.print(table)
    console.print(
        "The lower bound holds with 95% confidence (Bonferroni over the guess counts tried); "
        "a lower bound above an upper bound (VIOLATED) shows a bug in the DP implementation. "
        "Training runs secureagg's PrivateTrainer, the path a user gets."
    )


def write_empirical(runs: list[EmpiricalAudit], out: Path) -> dict[str, Path]:
    """Write empirical.json and empirical.md under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "empirical.json", "markdown": out / "empirical.md"}
    doc = {"runs": [r.to_json() for r in runs]}
    paths["json"].write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    lines = [
        "# Empirical privacy audit in one training run",
        "",
        'Method: Steinke, Nasr & Jagielski, "Privacy Auditing with One (1) Training Run" '
        "(NeurIPS 2023); white-box canaries on scikit-learn digits, trained by secureagg's "
        "PrivateTrainer (Opacus DP-SGD, noise from the OS CSPRNG; mode in the run column). "
        "How to read it: docs/audit.md.",
        "",
        "| " + " | ".join(_EMPIRICAL_HEAD) + " |",
        "|" + "---:|" * len(_EMPIRICAL_HEAD),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in _empirical_rows(runs)]
    lines += ["", "Per number of guesses r (v right, bound at the Bonferroni-corrected level):", ""]
    for run in runs:
        per = ", ".join(f"r={g.r}: v={g.v}, ε≥{g.lower_bound:.3f}" for g in run.per_guess)
        lines.append(f"- noise {run.config.noise_multiplier:g}: {per}")
    paths["markdown"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths
