"""The plots of a ``--privacy client`` demo that differ from the example-level ones."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.ticker import MaxNLocator

from secureagg.demo._check import RoundCheck
from secureagg.demo._plots import _against_true, _centred, _figure, _masked_panel

__all__ = ["plot_client_epsilon", "plot_client_server_view"]


def plot_client_epsilon(report: dict[str, Any], path: Path) -> None:
    """The run's client-level epsilon after each round (the ledger's) and the sums' sizes.

    Parameters:
        report: The client-level report document.
        path: The PNG to write.
    """
    rounds = report["rounds"]
    priv = report["privacy"]
    fig, ax = _figure(6.4, 3.8)
    x = [r["round"] for r in rounds]
    ax.plot(x, [r["epsilon"] for r in rounds], "-o", ms=3, color="tab:blue", label="epsilon")
    target = priv.get("target_epsilon")
    if target is not None:
        ax.axhline(target, color="0.3", lw=0.8, ls=":", label=f"target {target:.2f}")
    aborted = [(r["round"], r["epsilon"]) for r in rounds if r["aborted"]]
    if aborted:
        ax.plot(*zip(*aborted, strict=True), "x", color="tab:red", ms=8, label="aborted (free)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel(f"client-level epsilon (delta = {priv['delta']:g})")
    ax.set_title(
        f"{priv['mechanism']}: one client's whole update (max {priv['max_epsilon']:.2f})",
        fontsize=9,
    )
    twin = ax.twinx()
    twin.bar(x, [r["honest"] for r in rounds], color="0.85", zorder=0, label="honest in sum")
    twin.axhline(priv["n_min"], color="0.55", lw=0.8, ls="--", label=f"floor {priv['n_min']}")
    twin.set_ylabel("honest clients in the sum")
    ax.set_zorder(twin.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.grid(alpha=0.3)
    handles = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, loc="upper left")
    fig.savefig(path)


def plot_client_server_view(
    report: dict[str, Any],
    captured: tuple[int, npt.NDArray[Any], npt.NDArray[Any]] | None,
    checks: Sequence[RoundCheck],
    path: Path,
) -> None:
    """One masked vector as the server saw it, that client's encoded share, decoded vs true.

    Parameters:
        report: The client-level report document.
        captured: (client, masked vector, encoded vector) of one round, if kept.
        checks: Every round's decoded and true (clipped mean) averages.
        path: The PNG to write.
    """
    fig, axes = _figure(11.5, 3.6, cols=3)
    shown = _masked_panel(axes, report["secure_aggregation"]["server_view"], captured)
    if shown is not None:
        cid, bits, true = shown
        axes[1].hist(_centred(true, bits), bins=40, color="tab:orange")
        axes[1].set_title(
            f"client {cid}'s share before masking\n(rotated, rounded, + its noise; integers)",
            fontsize=9,
        )
        axes[1].set_xlabel("value in [-2^(b-1), 2^(b-1))")
    ax = axes[2]
    rec_all = _against_true(ax, [c for c in checks if c.true.size], size=3, alpha=0.3)
    stds = [r["noise_std"] for r in report["rounds"] if r["noise_std"] is not None]
    std = f"{float(np.median(stds)):.2g}" if stds else "n/a"
    ax.set_title(
        f"decoded vs true mean of clipped updates\n(all rounds; the spread is the DP noise, "
        f"std ~{std})",
        fontsize=9,
    )
    ax.set_xlabel("true (mean of the members' clipped updates)")
    ax.set_ylabel("decoded (secure sum / members)")
    ax.grid(alpha=0.3)
    if not math.isfinite(float(np.sum(rec_all))):
        ax.text(0.5, 0.5, "non-finite values", ha="center", transform=ax.transAxes)
    fig.savefig(path)
