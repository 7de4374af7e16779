"""``secureagg audit`` of a client-level distributed-DP ledger: its rounds and guarantees."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from secureagg.privacy import DistributedRound

__all__ = ["audit_distributed"]


def audit_distributed(ledger: Path, console: Console) -> None:
    """Print a distributed-DP ledger's rounds, its epsilon with the sampling mode it holds
    under, and each client's figure against the server.

    Parameters:
        ledger: The ledger file.
        console: Where to print.
    """
    from secureagg.privacy import DistributedLedger

    book = DistributedLedger.load(ledger)
    rounds = book.rounds()
    delta = rounds[-1].delta if rounds else 0.0
    table = Table(title=f"Client-level distributed DP: {ledger.name}")
    for col in ("round", "members", "honest", "n_min", "mechanism", "bits", "local σ", "sum σ"):
        table.add_column(col, justify="right")
    table.add_column("ε so far", justify="right")
    for r in rounds:
        honest = len(r.members) - r.colluders if r.released else 0
        table.add_row(
            str(r.round),
            str(len(r.members)) if r.released else "aborted",
            str(honest),
            str(r.n_min),
            r.mechanism,
            str(r.bits),
            f"{r.local_std:.4g}",
            f"{r.effective_std:.4g}",
            f"{r.epsilon:.4f}",
        )
    console.print(table)
    spans = _spans(rounds)
    modes = {mode for mode, _, _ in spans}
    if "visible" in modes:
        whom = "against whoever sees only the sums and not who took part"
    elif "hidden" in modes:
        whom = (
            "against the server and whoever sees the sums, provided no coin shows in the "
            "replies' timing"
        )
    else:
        whom = "against whoever sees only the sums"
    if len(spans) == 1:
        sampling = f"{_regime(spans[0][0], spans[0][1])}; {whom}"
    else:  # a ledger continued under another sampling mode or rate: each regime, then whom
        regimes = "; ".join(f"{_which(rs)}: {_regime(m, q)}" for m, q, rs in spans)
        sampling = f"rounds in {len(spans)} sampling regimes ({regimes}); {whom}"
        if {"visible", "hidden"} <= modes:
            sampling += " (the server sees who took part in the visible rounds: see below)"
    console.print(
        f"ε = {book.epsilon():.4f} at δ = {delta:g} after {len(rounds)} rounds; unit: one "
        f"client's whole update (zero-out: replaced by zero, its participation and noise "
        f"share unchanged); RDP of the sum (KLS21 Prop. 14 with "
        f"tau, or AKL21 Thm 3.5 for Skellam), {sampling}."
    )
    server = book.server_epsilons()
    if server:
        top = max(server, key=lambda c: server[c])
        if "visible" not in modes and "hidden" in modes:
            how = (
                "the coins are hidden from it, so each client has the amplified RDP of the sums"
                " it is in"
            )
        elif "hidden" not in modes:
            how = (
                "it sees who took part: no amplification; each client has the unsampled RDP"
                " of its own rounds"
            )
        else:
            how = (
                "it sees who took part in the visible rounds (no amplification there: the "
                "unsampled RDP of each one a client is in) but no coin of the hidden rounds "
                "(the amplified RDP of each hidden sum)"
            )
        console.print(
            f"Against the server: {how} (zero-out: its update replaced by zero): "
            f"largest ε = {server[top]:.4f} (client {top}), median "
            f"{statistics.median(server.values()):.4f}."
        )


def _mode(r: DistributedRound) -> str:
    return "none" if r.sample_rate is None else r.sampling


def _spans(rounds: list[DistributedRound]) -> list[tuple[str, float | None, list[int]]]:
    """Consecutive rounds under one sampling mode and rate: (mode, rate, round numbers)."""
    out: list[tuple[str, float | None, list[int]]] = []
    for r in rounds:
        if out and out[-1][:2] == (_mode(r), r.sample_rate):
            out[-1][2].append(r.round)
        else:
            out.append((_mode(r), r.sample_rate, [r.round]))
    return out or [("none", None, [])]


def _which(rounds: list[int]) -> str:
    return f"round {rounds[0]}" if len(rounds) == 1 else f"rounds {rounds[0]}-{rounds[-1]}"


def _regime(mode: str, q: float | None) -> str:
    if mode == "hidden":
        return (
            f"hidden Poisson client sampling q = {q:g} (every client in every sum, secret "
            f"coins; Zhu-Wang Thm 5)"
        )
    if mode == "visible":
        return f"visible Poisson client sampling q = {q:g} (joint convexity, zero-out)"
    return "no client sampling, no amplification"
