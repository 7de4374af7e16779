"""``secureagg audit`` of a client-level distributed-DP ledger: its rounds and guarantees."""

from __future__ import annotations

import statistics
from pathlib import Path

from rich.console import Console
from rich.table import Table

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
    sampled = bool(rounds) and rounds[-1].sample_rate is not None
    hidden = sampled and rounds[-1].sampling == "hidden"
    if hidden:
        sampling = (
            f"hidden Poisson client sampling q = {rounds[-1].sample_rate:g} (every client in "
            f"every sum, secret coins; Zhu-Wang Thm 5); against the server and whoever sees "
            f"the sums, provided no coin shows in the replies' timing"
        )
    elif sampled:
        sampling = (
            f"visible Poisson client sampling q = {rounds[-1].sample_rate:g} (joint convexity,"
            f" zero-out); against whoever sees only the sums and not who took part"
        )
    else:
        sampling = "no client sampling, no amplification; against whoever sees only the sums"
    console.print(
        f"ε = {book.epsilon():.4f} at δ = {delta:g} after {len(rounds)} rounds; unit: one "
        f"client's whole update (zero-out: replaced by zero, its participation and noise "
        f"share unchanged); RDP of the sum (KLS21 Prop. 14 with "
        f"tau, or AKL21 Thm 3.5 for Skellam), {sampling}."
    )
    server = book.server_epsilons()
    if server:
        top = max(server, key=lambda c: server[c])
        how = (
            "the coins are hidden from it, so each client has the amplified RDP of the sums it"
            " is in"
            if hidden
            else "it sees who took part: no amplification; each client has the unsampled RDP"
            " of its own rounds"
        )
        console.print(
            f"Against the server: {how} (zero-out: its update replaced by zero): "
            f"largest ε = {server[top]:.4f} (client {top}), median "
            f"{statistics.median(server.values()):.4f}."
        )
