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
from secureagg.demo._plots import _figure

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


def _centred(values: npt.NDArray[Any], bits: int) -> npt.NDArray[np.float64]:
    v = np.asarray(values).astype(np.float64)
    out: npt.NDArray[np.float64] = np.where(v >= 2.0 ** (bits - 1), v - 2.0**bits, v)
    return out


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
    view = report["secure_aggregation"]["server_view"]
    if captured is not None and view is not None:
        cid, masked, true = captured
        bits = view["bits"]
        axes[0].hist(np.asarray(masked).astype(np.float64) / 2.0**bits, bins=16, range=(0, 1))
        axes[0].set_title(
            f"what the server saw from client {cid}\n(round {view['round']}, "
            f"KS p = {view['masked_uniform_ks_pvalue']:.2f} vs uniform)",
            fontsize=9,
        )
        axes[0].set_xlabel(f"masked value / 2^{bits}")
        axes[0].set_ylabel("coordinates")
        axes[1].hist(_centred(true, bits), bins=40, color="tab:orange")
        axes[1].set_title(
            f"client {cid}'s share before masking\n(rotated, rounded, + its noise; integers)",
            fontsize=9,
        )
        axes[1].set_xlabel("value in [-2^(b-1), 2^(b-1))")
    else:
        for ax in axes[:2]:
            ax.text(0.5, 0.5, "no masked vector captured", ha="center", transform=ax.transAxes)
    ax = axes[2]
    done = [c for c in checks if c.true.size]
    true_all = np.concatenate([c.true for c in done]) if done else np.zeros(0)
    rec_all = np.concatenate([c.recovered for c in done]) if done else np.zeros(0)
    ax.scatter(true_all, rec_all, s=3, alpha=0.3, color="tab:green")
    if true_all.size:
        lo, hi = float(true_all.min()), float(true_all.max())
        ax.plot([lo, hi], [lo, hi], color="0.3", lw=0.8)
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
