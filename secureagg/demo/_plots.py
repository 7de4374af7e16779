"""The report's PNG plots (matplotlib's Agg canvas; pyplot's global state is never touched)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.ticker import MaxNLocator

from secureagg.demo._check import RoundCheck

__all__ = ["PLOTS", "plot_accuracy", "plot_cost", "plot_epsilon", "plot_server_view"]

PLOTS: dict[str, str] = {
    "accuracy": "accuracy.png",
    "epsilon": "epsilon.png",
    "server_view": "server_view.png",
    "cost": "cost.png",
}
"""Plot name -> file name inside the report folder."""

_DPI = 110


def _figure(width: float, height: float, cols: int = 1) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    axes = fig.subplots(1, cols)
    return fig, axes


def plot_accuracy(report: dict[str, Any], path: Path) -> None:
    """Held-out accuracy per round: private + secure against the baseline; dropouts marked."""
    rounds = report["rounds"]
    x = [r["round"] for r in rounds]
    fig, ax = _figure(6.4, 4.4)
    ax.plot(x, [r["baseline_accuracy"] for r in rounds], "-", color="0.45", label="baseline")
    ax.plot(
        x, [r["accuracy"] for r in rounds], "-o", ms=3, color="tab:blue", label="private + secure"
    )
    lost = [(r["round"], r["accuracy"]) for r in rounds if r["dropped"]]
    kept = [
        (r["round"], r["accuracy"])
        for r in rounds
        if any(d["in_sum"] for d in r["dropouts"].values())
    ]
    if lost:
        label = "a client's update lost (dropped before sending it)"
        ax.plot(*zip(*lost, strict=True), "x", color="tab:red", ms=8, label=label)
    if kept:
        label = "a client dropped at unmask (update in the sum)"
        ax.plot(*zip(*kept, strict=True), "o", mfc="none", color="tab:orange", ms=9, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy on held-out test set")
    ax.set_title(f"{report['data']['dataset']}: {len(report['data']['clients'])} clients")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncol=2, fontsize=8)  # below: never on the data
    fig.savefig(path)


def plot_epsilon(
    report: dict[str, Any],
    path: Path,
    others: Mapping[str, Sequence[tuple[int, float]]] | None = None,
) -> None:
    """Cumulative epsilon per client per round, as the ledger recorded it.

    ``others`` maps a label to (round, epsilon) pairs of other accountants, drawn thin.
    """
    rounds = report["rounds"]
    priv = report["privacy"]
    fig, ax = _figure(6.4, 3.8)
    x = [r["round"] for r in rounds]
    styles = ["-", "--", "-.", ":"]
    for i, cid in enumerate(sorted(report["data"]["clients"], key=int)):
        y = [r["epsilon"].get(cid, np.nan) for r in rounds]
        ax.plot(x, y, styles[i % len(styles)], lw=1.4, label=f"client {cid}")
    for (label, points), color in zip((others or {}).items(), ("0.55", "0.75"), strict=False):
        if points:
            ax.plot(
                [r + 1 for r, _ in points],
                [e for _, e in points],
                color=color,
                lw=2.5,
                alpha=0.8,
                label=label,
                zorder=0,
            )
    finals = {round(v, 9) for v in priv["epsilon"].values()}
    if len(finals) == 1 and len(priv["epsilon"]) > 1:
        ax.text(
            0.98,
            0.04,
            "every client took the same steps (same sample rate and noise):\nthe lines coincide",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=7,
            color="0.35",
        )
    target = report["config"].get("target_epsilon")
    if target is not None:
        ax.axhline(target, color="0.3", lw=0.8, ls=":", label=f"target {target:.2f}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel(f"cumulative epsilon (delta = {priv['delta']:g})")
    ax.set_title(f"privacy spent per client ({priv['accountant']}; max {priv['max_epsilon']:.2f})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.savefig(path)


def _centred(values: npt.NDArray[Any], bits: int) -> npt.NDArray[np.float64]:
    """``bits``-bit words as the signed integers they encode, in [-2^(bits-1), 2^(bits-1))."""
    v = np.asarray(values).astype(np.float64)
    out: npt.NDArray[np.float64] = np.where(v >= 2.0 ** (bits - 1), v - 2.0**bits, v)
    return out


def _signed(values: npt.NDArray[Any], bits: int, frac_bits: int) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = _centred(values, bits) / 2.0**frac_bits
    return out


def _masked_panel(
    axes: Any,
    view: dict[str, Any] | None,
    captured: tuple[int, npt.NDArray[Any], npt.NDArray[Any]] | None,
) -> tuple[int, int, npt.NDArray[Any]] | None:
    """Draw one masked vector on ``axes[0]``; (client, bits, its true vector), or None.

    With nothing captured, ``axes[0]`` and ``axes[1]`` say so and None is returned.
    """
    if captured is None or view is None:
        for ax in axes[:2]:
            ax.text(0.5, 0.5, "no masked vector captured", ha="center", transform=ax.transAxes)
        return None
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
    return cid, bits, true


def _against_true(
    ax: Any, checks: Sequence[RoundCheck], size: float, alpha: float
) -> npt.NDArray[Any]:
    """Scatter every round's recovered against true values, with the diagonal; the recovered."""
    true_all = np.concatenate([c.true for c in checks]) if checks else np.zeros(0)
    rec_all: npt.NDArray[Any] = (
        np.concatenate([c.recovered for c in checks]) if checks else np.zeros(0)
    )
    ax.scatter(true_all, rec_all, s=size, alpha=alpha, color="tab:green")
    if true_all.size:
        lo, hi = float(true_all.min()), float(true_all.max())
        ax.plot([lo, hi], [lo, hi], color="0.3", lw=0.8)
    return rec_all


def plot_server_view(
    report: dict[str, Any],
    captured: tuple[int, npt.NDArray[Any], npt.NDArray[Any]] | None,
    checks: Sequence[RoundCheck],
    path: Path,
) -> None:
    """What the server saw (one masked vector) next to the truth, and recovered vs true."""
    fig, axes = _figure(11.5, 3.6, cols=3)
    shown = _masked_panel(axes, report["secure_aggregation"]["server_view"], captured)
    if shown is not None:
        cid, bits, true = shown
        # the last coordinate is the client's (masked) weight, not part of the update
        decoded = _signed(np.asarray(true)[:-1], bits, report["secure_aggregation"]["frac_bits"])
        axes[1].hist(decoded, bins=16, color="tab:orange")
        axes[1].set_title(f"client {cid}'s true weighted update\n(decoded)", fontsize=9)
        axes[1].set_xlabel("value")
    ax = axes[2]
    _against_true(ax, checks, size=5, alpha=0.5)
    worst = report["summary"]["max_abs_error"]
    ax.set_title(
        f"recovered vs true average of survivors\n(all rounds; max |error| = {worst:.2g})",
        fontsize=9,
    )
    ax.set_xlabel("true (plain weighted average)")
    ax.set_ylabel("recovered (secure sum / weight)")
    ax.grid(alpha=0.3)
    fig.savefig(path)


def plot_cost(report: dict[str, Any], path: Path) -> None:
    """Protocol cost per client and round: bytes sent + received, milliseconds."""
    summary = report["summary"]
    ids = sorted(summary["client_bytes_per_round"], key=int)
    fig, axes = _figure(9.0, 3.4, cols=2)
    axes[0].bar(ids, [summary["client_bytes_per_round"][c] / 1024 for c in ids], color="tab:blue")
    axes[0].set_title("traffic per round (sent + received)", fontsize=9)
    axes[0].set_xlabel("client")
    axes[0].set_ylabel("KiB")
    ms = summary["client_ms_per_round"]
    axes[1].bar(ids, [ms.get(c, 0.0) for c in ids], color="tab:purple")
    axes[1].set_title("time per round (training + encoding + protocol)", fontsize=9)
    axes[1].set_xlabel("client")
    axes[1].set_ylabel("ms")
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
    fig.savefig(path)
