"""The report of a ``--privacy client`` demo: client-level distributed DP, stated exactly.

report.json keeps the example-level report's layout (schema, config, data, privacy,
secure_aggregation, rounds, summary, files); ``privacy`` and each round's figures say what
the distributed mechanism released, to whom, and at what cost, from the distributed-DP
ledger (``ledger.json``).
"""

from __future__ import annotations

import math
from statistics import fmean, median
from typing import Any

import numpy as np

from secureagg._exceptions import ConfigError
from secureagg.demo._run import DemoResult
from secureagg.demo._summary import (
    dropouts_text,
    epsilon_text,
    files_section,
    percent_text,
    report_head,
    round_row,
    run_summary,
    secure_aggregation_section,
)
from secureagg.privacy import DistributedLedger

__all__ = [
    "MECHANISM_NAMES",
    "build_client_report",
    "client_guarantee_text",
    "render_client_markdown",
]

MECHANISM_NAMES = {"dgauss": "distributed discrete Gaussian", "skellam": "distributed Skellam"}
_ACCOUNTANT = "distributed-rdp"
_ACCOUNTING = (
    "Renyi DP of the sum of the honest clients' noise shares (Kairouz, Liu, Steinke 2021, "
    "Prop. 14 with its tau term; rounding-inflated sensitivity), visible Poisson client "
    "sampling by joint convexity of the Renyi divergence (the zero-out pair of mixtures), "
    "composed over the released rounds"
)


def _book(result: DemoResult) -> DistributedLedger:
    if result.distributed is None:
        raise ConfigError("internal: the client-level run kept no distributed ledger")
    return result.distributed


def _noise_std(local_std: float, members: int) -> float:
    """Per-coordinate std of the decoded average of ``members`` clients' noise shares."""
    return math.sqrt(members) * local_std / members


def client_guarantee_text(result: DemoResult) -> str:
    """The client-level guarantee in one paragraph: mechanism, unit, relation, release, whom."""
    cfg, book = result.config, _book(result)
    recs = book.rounds()
    eps = epsilon_text(book.epsilon())
    released = sum(1 for r in recs if r.released)
    first = recs[0] if recs else None
    t = result.graph.threshold
    n_min = t - cfg.colluders
    params = (
        ""
        if first is None
        else (
            f" Each client's share is a discrete Gaussian of variance {first.local_variance:.4g} "
            f"integer steps (std {first.local_std:.4g} in the update's units, gamma "
            f"{first.gamma:.3g}), in a {first.bits}-bit ring; with {n_min} honest shares the "
            f"sum's noise std is {math.sqrt(n_min) * first.local_std:.4g}, "
            f"{math.sqrt(n_min) * first.local_std / cfg.update_clip:.3g} times the clip."
        )
    )
    return (
        f"The run is ({eps}, {cfg.delta:g})-differentially private at the client level: the "
        f"privacy unit is one client's whole contribution (its update, L2-clipped to "
        f"{cfg.update_clip:g}), and replacing one client's update by zero (the neighbouring "
        f"relation: zero-out; its participation and noise share are unchanged) changes "
        f"the distribution of everything released "
        f"over the {released} released rounds by at most epsilon = {eps} except with "
        f"probability delta = {cfg.delta:g}. What is released is each round's sum from "
        f"secure aggregation: the sampled clients' clipped updates, rotated, rounded to a "
        f"grid and each carrying its own share of noise, summed modulo 2^{cfg.bits} (and the "
        f"model built from those sums). The mechanism is the "
        f"{MECHANISM_NAMES[first.mechanism if first else 'dgauss']} (every client adds a "
        f"share of integer noise before masking, so the unmasked sum already carries central "
        f"noise).{params} The guarantee holds against anyone who sees only the sums, not "
        f"who took part in them, as long as every released sum holds at "
        f"least threshold - colluders = {t} - {cfg.colluders} = {n_min} honest clients' "
        f"noise: a round with fewer than {t} clients in the sum is aborted and releases "
        f"nothing (it costs nothing). {_server_text(book, cfg.colluders)} It relies on secure "
        f"aggregation: a server that saw one "
        f"client's unmasked input would see a lightly noised update (this demo runs every "
        f"client and the server in one process, a simulation). Sampling is visible: "
        f"clients join each round by their own coin from the operating system with "
        f"probability {cfg.client_rate:g} "
        f"(never from --seed), which is what the sampling amplification assumes; the noise "
        f"comes from AES-256-CTR keyed by os.urandom. The figure is from {_ACCOUNTING}, as "
        f"recorded round by round in ledger.json (`secureagg audit ledger.json` recomputes "
        f"it), calibrated so that {epsilon_text(cfg.target_epsilon or math.inf)} is reached "
        f"after {cfg.rounds} rounds with {n_min} honest clients in each; rounds with more "
        f"honest clients in the sum cost less. Not covered: each example inside a client "
        f"is protected only as part of its client (no example-level accounting), the "
        f"features are standardised with the pooled training mean and deviation, and the "
        f"hyperparameters were picked by the developers on this public dataset."
    )


def _server_figures(book: DistributedLedger) -> dict[str, Any]:
    """Against the server: the largest epsilon, its client and that client's rounds, the
    median, and the most rounds any client took part in (not necessarily the same client:
    a round with fewer honest clients costs more)."""
    eps = book.server_epsilons()
    if not eps:
        return {"max": 0.0, "median": 0.0, "most_rounds": 0, "max_client": None, "max_rounds": 0}
    rounds = {c: sum(c in r.members for r in book.rounds() if r.released) for c in eps}
    top = max(eps, key=lambda c: eps[c])
    return {
        "max": eps[top],
        "median": median(eps.values()),
        "most_rounds": max(rounds.values()),
        "max_client": top,
        "max_rounds": rounds[top],
    }


def _server_text(book: DistributedLedger, colluders: int) -> str:
    f = _server_figures(book)
    top, mid, k = f["max"], f["median"], f["max_rounds"]
    whom = "the server" + (
        " (no client is assumed to collude with it: --colluders 0)"
        if colluders == 0
        else f" and up to {colluders} clients colluding with it (whose noise shares it knows)"
    )
    return (
        f"The server sees who took part in each round (every member sends it a masked "
        f"input), so against {whom} the sampling hides nothing: a client is "
        f"protected by the noise of the rounds it took part in, without amplification, and "
        f"its participation is not hidden (the relation is zero-out: its update replaced by "
        f"zero). The largest over clients is epsilon = {epsilon_text(top)} (client "
        f"{f['max_client']}, {k} round{'' if k == 1 else 's'}) and the median client's is "
        f"{epsilon_text(mid)}, at the same delta."
    )


def _round_row(result: DemoResult, i: int) -> dict[str, Any]:
    m = result.private.rounds[i]
    check = result.checks[i]
    rec = _book(result).rounds()[i]
    released = rec.released and m.recovered is not None and not m.aborted
    std = _noise_std(rec.local_std, len(m.members)) if released else None
    dev = check.recovered - check.true if released else np.zeros(0)
    rms = float(np.sqrt(np.mean(dev**2))) if dev.size else None
    return round_row(
        m,
        result.baseline.rounds[i].accuracy,
        {
            "max_abs_error": float(np.max(np.abs(dev))) if dev.size else None,
            "error_bound": None,
            "within_bound": None,
            "check_max_abs_error": check.max_abs_error if released else None,
            "noise_std": std,
            "noise_rms": rms,
            "honest": len(m.members) - rec.colluders if released else 0,
            "epsilon": rec.epsilon,
        },
    )


def build_client_report(result: DemoResult) -> dict[str, Any]:
    """report.json of a ``--privacy client`` demo (fields in docs/demo.md).

    Parameters:
        result: The finished demo.

    Returns:
        The JSON document.
    """
    cfg, data, book = result.config, result.data, _book(result)
    recs = book.rounds()
    rounds = [_round_row(result, i) for i in range(len(result.private.rounds))]
    ids = sorted(data.clients)
    done = [r for r in rounds if not r["aborted"] and r["noise_std"] is not None]
    first = next((r for r in recs if r.released), recs[0] if recs else None)
    joined = {c: sum(1 for r in rounds if c in r["members"]) for c in ids}
    ratio = [r["noise_rms"] / r["noise_std"] for r in done]
    return {
        **report_head(
            cfg,
            data,
            {
                str(c): {
                    "examples": data.clients[c].size,
                    "label_counts": data.label_counts(c),
                    "rounds_in_sum": joined[c],
                }
                for c in ids
            },
        ),
        "privacy": {
            "mode": "client",
            "accountant": _ACCOUNTANT,
            "accounting": _ACCOUNTING,
            "ledger_schema": DistributedLedger().to_json()["schema"],
            "delta": cfg.delta,
            "unit": "one client's whole update",
            "neighbouring": (
                "zero-out: one client's whole update replaced by zero (its participation and "
                "noise share unchanged)"
            ),
            "released": (
                "each round's secure-aggregation sum of the sampled clients' clipped, rotated, "
                "rounded, noised updates (and the model built from the sums)"
            ),
            "against": (
                f"anyone who sees only the sums, not who took part, while every released sum "
                f"holds at least {result.graph.threshold - cfg.colluders} honest clients' "
                f"noise; against the server (colluding with at most {cfg.colluders} clients), "
                f"which sees the members of every round, see server_epsilon"
            ),
            "server_epsilon": _server_figures(book),
            "mechanism": None if first is None else MECHANISM_NAMES[first.mechanism],
            "bits": cfg.bits,
            "gamma": None if first is None else first.gamma,
            "local_variance": None if first is None else first.local_variance,
            "local_std": None if first is None else first.local_std,
            "update_clip": cfg.update_clip,
            "threshold": result.graph.threshold,
            "colluders": cfg.colluders,
            "n_min": result.graph.threshold - cfg.colluders,
            "client_rate": cfg.client_rate,
            "weighting": "uniform",
            "noise_source": "AES-256-CTR keyed by os.urandom (exact discrete Gaussian sampler)",
            "sampling": (
                "visible: each client's own OS coin per round (never --seed) decides whether "
                "it joins the round, so the server sees who took part (hidden sampling, "
                "DistributedDP(sampling='hidden'), is in the API, not in this demo)"
            ),
            "target_epsilon": cfg.target_epsilon,
            "epsilon": book.epsilon(),
            "max_epsilon": book.epsilon(),
            "guarantee": client_guarantee_text(result),
        },
        "secure_aggregation": secure_aggregation_section(
            result,
            graph="complete",
            degree=None,
            threshold=result.graph.threshold,
            majority=None,
            threshold_note=None,
            bits=cfg.bits,
            frac_bits=None,
        ),
        "rounds": rounds,
        "summary": run_summary(
            result,
            rounds,
            done,
            {
                "max_epsilon": book.epsilon(),
                "max_abs_error": max((r["max_abs_error"] for r in done), default=0.0),
                "all_rounds_within_bound": None,
                "noise_rms_over_std": median(ratio) if ratio else None,
                "mean_clients_in_sum": fmean([len(r["members"]) for r in done]) if done else 0.0,
            },
        ),
    }


def render_client_markdown(report: dict[str, Any], plots: dict[str, str], ledger: str) -> str:
    """report.md of a ``--privacy client`` demo.

    Parameters:
        report: :func:`build_client_report`'s document.
        plots: Plot name -> file name.
        ledger: The ledger's file name.

    Returns:
        The Markdown.
    """
    s, p, d, cfg = report["summary"], report["privacy"], report["data"], report["config"]
    sizes = [c["examples"] for c in d["clients"].values()]
    joined = [c["rounds_in_sum"] for c in d["clients"].values()]
    ratio = "n/a" if s["noise_rms_over_std"] is None else f"{s['noise_rms_over_std']:.3f}"
    lines = [
        "# secureagg demo report: client-level distributed DP",
        "",
        f"Federated training of a {'logistic regression' if cfg['hidden'] == 0 else 'small MLP'}"
        f" on **{d['dataset']}** across {len(d['clients'])} simulated devices ("
        f"{min(sizes)} to {max(sizes)} training examples each, median {median(sizes):g}; "
        f"{d['test_examples']} held-out test examples that no client trained on), "
        f"{cfg['rounds']} rounds. Each round every device joins by its own coin with "
        f"probability {p['client_rate']:g}; the joined devices train with plain SGD, clip "
        f"their update to L2 norm {p['update_clip']:g}, add a share of discrete Gaussian noise and "
        f"send it masked; secure aggregation (complete graph over the round's devices, "
        f"threshold {p['threshold']}, {p['bits']}-bit ring) releases only the sum. The "
        f"baseline trains every device every round without clipping, noise or masking.",
        "",
        "| | client-level DP + secure | baseline |",
        "| --- | --- | --- |",
        f"| final test accuracy | {percent_text(s['final_accuracy'])} "
        f"| {percent_text(s['baseline_final_accuracy'])} |",
        f"| epsilon (client level, delta {p['delta']:g}) | {epsilon_text(s['max_epsilon'])} "
        "| none (no DP) |",
        f"| devices in a released sum (mean) / aborted rounds | "
        f"{s['mean_clients_in_sum']:.1f} / {s['aborted_rounds']} | - |",
        f"| rounds with a dropout / with an update lost | {s['rounds_with_dropout']} / "
        f"{s['rounds_missing_update']} | - |",
        f"| wall time | {s['seconds']['private']:.1f} s | {s['seconds']['baseline']:.1f} s |",
        "",
        "## Privacy guarantee",
        "",
        p["guarantee"],
        "",
        "| | |",
        "| --- | --- |",
        f"| mechanism | {p['mechanism']} |",
        "| privacy unit | one client (its whole update) |",
        f"| neighbouring relation | {p['neighbouring']} |",
        f"| client sampling | {p['sampling']} |",
        f"| released | {p['released']} |",
        f"| against | {p['against']} |",
        f"| accounting | {p['accounting']} |",
        "",
        "## Accuracy per round",
        "",
        f"![accuracy per round]({plots['accuracy']})",
        "",
        "## Privacy spent",
        "",
        f"![client-level epsilon per round]({plots['epsilon']})",
        "",
        "## What the server saw, and what it recovered",
        "",
        "Left: one device's masked vector as the server received it (uniform on the ring). "
        "Middle: the same device's encoded share before masking (rotated, rounded, plus its "
        "noise share). Right: every coordinate of every round's decoded average against the "
        "plain mean of the members' clipped updates: the spread is the DP noise, by design "
        f"(measured RMS / expected std, median over rounds: {ratio}).",
        "",
        f"![server view]({plots['server_view']})",
        "",
        "## Protocol cost per device",
        "",
        f"![cost per client]({plots['cost']})",
        "",
        f"Devices: {len(d['clients'])}; rounds in a released sum per device: min "
        f"{min(joined)}, median {median(joined):g}, max {max(joined)}.",
        "",
        "## Rounds",
        "",
        "| round | in sum | honest | dropouts | accuracy | baseline | epsilon | noise std "
        "| server ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["rounds"]:
        dropped = ("aborted; " if r["aborted"] else "") + dropouts_text(r["dropouts"])
        std = "-" if r["noise_std"] is None else f"{r['noise_std']:.3g}"
        lines.append(
            f"| {r['round']} | {len(r['members'])}/{len(r['participants'])} | {r['honest']} | "
            f"{dropped} | {percent_text(r['accuracy'])} | {percent_text(r['baseline_accuracy'])} | "
            f"{epsilon_text(r['epsilon'])} | {std} | {r['server_ms']:.0f} |"
        )
    lines += files_section(
        f"- `{ledger}`: the distributed-DP ledger ({p['ledger_schema']}) the epsilon figures "
        f"come from; check it with `secureagg audit {ledger}`",
        ", ".join(f"`{k}={v}`" for k, v in cfg.items()),
    )
    return "\n".join(lines)
