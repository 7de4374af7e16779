"""The report document (what report.json holds), built from a DemoResult."""

from __future__ import annotations

import math
from statistics import fmean
from typing import Any

import numpy as np

from secureagg._version import __version__
from secureagg.demo._config import DemoConfig
from secureagg.demo._data import DemoData
from secureagg.demo._run import DemoResult
from secureagg.fl import RoundMetrics
from secureagg.privacy import PrivacyLedger
from secureagg.privacy.accounting import ACCOUNTANT_NAMES, HEADLINE

__all__ = [
    "ACCOUNTANT",
    "SCHEMA",
    "SCHEMA_VERSION",
    "build_report",
    "dropouts_text",
    "epsilon_text",
    "guarantee_text",
]

SCHEMA = "secureagg.demo-report"
SCHEMA_VERSION = 4
ACCOUNTANT = HEADLINE
"""The accountant whose epsilon the report states (the others are listed for comparison)."""

_METHOD = {
    "opacus_rdp": "Rényi DP of the subsampled Gaussian mechanism",
    "opacus_prv": "numerical composition of privacy random variables",
    "dpa_rdp": "Rényi DP of the subsampled Gaussian mechanism",
    "dpa_pld": "privacy loss distributions, pessimistic discretisation",
}


def epsilon_text(eps: float) -> str:
    """Epsilon for people: the ledger's figure to two decimals (report.json keeps it all)."""
    return f"{eps:.2f}" if math.isfinite(eps) else "inf"


def percent_text(x: float | None) -> str:
    """A fraction (an accuracy) for people: one decimal of percent, or "n/a" for none."""
    return "n/a" if x is None else f"{100 * x:.1f}%"


def files_section(ledger: str, settings: str) -> list[str]:
    """report.md's closing lines: the files (``ledger``: the ledger's line) and the settings."""
    return [
        "",
        "## Files",
        "",
        "- `report.json`: every figure above (fields described in docs/demo.md)",
        ledger,
        "",
        "Settings: " + settings,
        "",
    ]


def secure_aggregation_section(result: DemoResult, **fields: Any) -> dict[str, Any]:
    """report.json's secure_aggregation: ``fields`` (graph, degree, threshold, majority,
    threshold_note, bits, frac_bits, as the report kind has them), then the masking
    settings and the server's view."""
    return {
        **fields,
        "signed": result.config.signed,
        "dropout_rate": result.config.dropout_rate,
        "server_view": server_view(result),
    }


def dropouts_text(dropouts: dict[str, dict[str, Any]]) -> str:
    """A round's dropouts for people: "4 at unmask (update in sum)", or "-" for none."""
    parts = [RoundMetrics.describe_dropout(c, d["stage"], d["in_sum"]) for c, d in dropouts.items()]
    return ", ".join(parts) or "-"


def _round_epsilon(ledger: PrivacyLedger, rnd: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for cid in ledger.clients():
        for rec in ledger.records(cid):
            if rec.round == rnd:
                out[str(cid)] = rec.epsilon[ACCOUNTANT]
    return out


def _uniformity_pvalue(values: np.ndarray[Any, Any], bits: int) -> float:
    from scipy import stats

    scaled = values.astype(np.float64) / float(2**bits)
    return float(stats.kstest(scaled, "uniform").pvalue)


def server_view(result: DemoResult) -> dict[str, Any] | None:
    """The last captured masked vector's round, client, size and uniformity p-values."""
    for m in reversed(result.private.rounds):
        if m.captured is not None and m.bits is not None:
            cid, masked, true = m.captured
            return {
                "round": m.round,
                "client": int(cid),
                "bits": int(m.bits),
                "length": int(np.asarray(masked).shape[0]),
                "masked_uniform_ks_pvalue": _uniformity_pvalue(np.asarray(masked), m.bits),
                "true_uniform_ks_pvalue": _uniformity_pvalue(np.asarray(true), m.bits),
            }
    return None


def guarantee_text(result: DemoResult) -> str:
    """The privacy guarantee in one paragraph, with delta, the accountant and the figures."""
    cfg = result.config
    ledger = result.ledger
    eps = {c: ledger.latest_epsilon(c, ACCOUNTANT) for c in ledger.clients()}
    worst = max(eps.values()) if eps else math.inf
    others = []
    public = cfg.weighting == "examples-public"
    for name in ("opacus_prv", "dpa_rdp", "dpa_pld"):
        vals = [ledger.latest_epsilon(c, name) for c in ledger.clients()] if not public else []
        if vals:
            others.append(f"{ACCOUNTANT_NAMES[name]} accountant: {epsilon_text(max(vals))}")
    if public:
        others.append(
            "none: Opacus RDP, Opacus PRV and dp-accounting RDP analyse add/remove only, so "
            "they are not applicable under replace-one"
        )
    last = {c: ledger.records(c)[-1] for c in ledger.clients()}
    sigmas = sorted({round(r.noise_multiplier, 4) for r in last.values()})
    rates = sorted({round(r.sample_rate, 4) for r in last.values()})
    calibration = (
        f"noise calibrated so that epsilon reaches {epsilon_text(cfg.target_epsilon)} after "
        f"{cfg.rounds} rounds"
        if cfg.target_epsilon is not None
        else f"noise multiplier {cfg.noise_multiplier:g} fixed by the user"
    )
    full = " (full batch)" if rates == [1.0] else ""
    eps_text = epsilon_text(worst)
    if public:
        change = (
            "replacing one of its patients' records by another (the privacy unit is one "
            "record; the neighbouring relation is replace-one: the hospital's patient count "
            "is declared public, so whether a record is in the data at all is not protected)"
        )
        weight = (
            "which is its true patient count (examples-public weighting: the counts are "
            "sent and treated as public)"
        )
    else:
        change = (
            "adding or removing one of its patients' records (the privacy unit is one "
            "record; the neighbouring relation is add/remove one record)"
        )
        weight = (
            "which is 1 for every client (uniform weighting: no patient count leaves a hospital)"
        )
    return (
        f"Every client's training is ({eps_text}, {cfg.delta:g})-differentially private at the "
        f"example level: for each of the {len(eps)} simulated hospitals, {change} changes the "
        f"distribution of everything that client "
        f"released over all {cfg.rounds} rounds by at most epsilon = {eps_text} (the largest "
        f"client's figure) except with probability delta = {cfg.delta:g}. What a client "
        f"releases is its model update each round and its weight in the average, {weight}; "
        f"the guarantee holds against anyone who sees those, the server included. The figure "
        f"is the "
        f"{ACCOUNTANT_NAMES[ACCOUNTANT]} accountant ({_METHOD[ACCOUNTANT]}), over each client's "
        f"whole history of DP-SGD steps as recorded in ledger.json: per-example gradients "
        f"clipped to L2 norm {cfg.max_grad_norm:g}, Gaussian noise with multiplier "
        f"{', '.join(f'{z:g}' for z in sigmas)} ({calibration}), Poisson sampling at rate "
        f"{', '.join(f'{q:g}' for q in rates)}{full}, {cfg.local_epochs} local epoch(s) per "
        f"round; a client that trained and then dropped out is charged for that round. The "
        f"noise and the sampling come from generators seeded by the operating system's "
        f"random source every round, never from --seed (seed {cfg.seed} fixes the split and "
        f"the initial model only); the figure assumes exact Gaussian noise (floating-point "
        f"samples are outside it, docs/privacy.md). For "
        f"comparison: {'; '.join(others)}. The guarantee does not count secure aggregation: "
        f"in a deployment, masking additionally hides each update from the server, which "
        f"sees only the survivors' sum (this demo runs every client and the server in one "
        f"process, a simulation), but epsilon holds even against a server that saw every "
        f"update. "
        f"Outside the guarantee: the features are standardised with the pooled training mean "
        f"and deviation, and the hyperparameters were picked by the developers on this public "
        f"dataset; neither choice is accounted for."
    )


def report_head(
    cfg: DemoConfig, data: DemoData, clients: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The fields both report kinds open with: schema, versions, config and the data split
    (``clients``: each client's entry, by id)."""
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "secureagg_version": __version__,
        "config": cfg.to_json(),
        "data": {
            "dataset": data.dataset,
            "classes": list(data.class_names),
            "features": data.n_features,
            "train_examples": sum(p.size for p in data.clients.values()),
            "test_examples": int(data.y_test.shape[0]),
            "clients": clients,
        },
    }


def round_row(
    m: RoundMetrics, baseline_accuracy: float | None, figures: dict[str, Any]
) -> dict[str, Any]:
    """One round of report.json: who took part and what it cost, around ``figures`` (the
    round's error and privacy fields, which differ between the report kinds)."""
    return {
        "round": m.round,
        "participants": list(m.participants),
        "members": list(m.members),
        "dropped": {str(c): why for c, why in sorted(m.dropped.items())},
        "dropouts": {
            str(c): {"stage": stage, "in_sum": m.in_sum(c)}
            for c, stage in sorted(m.dropouts.items())
        },
        "aborted": bool(m.aborted),
        "accuracy": m.accuracy,
        "baseline_accuracy": baseline_accuracy,
        **figures,
        "client_ms": {str(c): v for c, v in sorted(m.client_ms.items())},
        "client_bytes": {str(c): v for c, v in sorted(m.client_bytes.items())},
        "server_ms": m.server_ms,
        "bits": m.bits,
    }


def _per_client(rounds: list[dict[str, Any]], ids: list[int], key: str) -> dict[str, float]:
    """Each client's mean of the rounds' ``key`` (a by-client map), over the rounds it is in."""
    return {
        str(c): fmean([r[key][str(c)] for r in rounds if str(c) in r[key]])
        for c in ids
        if any(str(c) in r[key] for r in rounds)
    }


def run_summary(
    result: DemoResult,
    rounds: list[dict[str, Any]],
    done: list[dict[str, Any]],
    figures: dict[str, Any],
) -> dict[str, Any]:
    """report.json's summary: accuracy against the baseline, then ``figures`` (the error and
    privacy fields of the report kind), then dropouts and costs; ``done``: the rounds that
    released a sum."""
    final = result.private.rounds[-1].accuracy
    base_final = result.baseline.rounds[-1].accuracy
    ids = sorted(result.data.clients)
    seconds = dict(result.seconds)
    seconds["total"] = sum(seconds.values())
    return {
        "final_accuracy": final,
        "baseline_final_accuracy": base_final,
        "accuracy_gap_points": None
        if final is None or base_final is None
        else 100.0 * (base_final - final),
        **figures,
        "rounds_with_dropout": sum(1 for r in rounds if r["dropouts"]),
        "rounds_missing_update": sum(
            1 for r in rounds if any(not d["in_sum"] for d in r["dropouts"].values())
        ),
        "aborted_rounds": len(rounds) - len(done),
        "client_bytes_per_round": _per_client(rounds, ids, "client_bytes"),
        "client_ms_per_round": _per_client(rounds, ids, "client_ms"),
        "server_ms_per_round": fmean([r["server_ms"] for r in rounds]),
        "seconds": seconds,
    }


def build_report(result: DemoResult) -> dict[str, Any]:
    """The JSON report document; every field is described in docs/demo.md."""
    cfg, data, ledger = result.config, result.data, result.ledger
    base_acc = [m.accuracy for m in result.baseline.rounds]
    rounds = [
        round_row(
            m,
            b,
            {
                "max_abs_error": m.max_abs_error,
                "error_bound": m.error_bound,
                "within_bound": None if m.aborted else bool(m.max_abs_error <= m.error_bound),
                "check_max_abs_error": check.max_abs_error,
                "epsilon": _round_epsilon(ledger, m.round),
            },
        )
        for m, check, b in zip(result.private.rounds, result.checks, base_acc, strict=True)
    ]
    ids = sorted(data.clients)
    eps = {str(c): ledger.latest_epsilon(c, ACCOUNTANT) for c in ledger.clients()}
    last = {c: ledger.records(c)[-1] for c in ledger.clients()}
    done = [r for r in rounds if not r["aborted"]]
    return {
        **report_head(
            cfg,
            data,
            {
                str(c): {"examples": data.clients[c].size, "label_counts": data.label_counts(c)}
                for c in ids
            },
        ),
        "privacy": {
            "accountant": ACCOUNTANT,
            "delta": cfg.delta,
            "unit": "example",
            "neighbouring": (
                "replace one example (the example count is public)"
                if cfg.weighting == "examples-public"
                else "add/remove one example"
            ),
            "released": (
                "each client's model updates and its weight (its true example count)"
                if cfg.weighting == "examples-public"
                else "each client's model updates and its weight (1: uniform weighting)"
            ),
            "weighting": cfg.weighting,
            "noise_source": "os.urandom-seeded generators, fresh every round and client",
            "max_grad_norm": cfg.max_grad_norm,
            "update_clip": cfg.update_clip,
            "noise_multiplier": {str(c): r.noise_multiplier for c, r in last.items()},
            "sample_rate": {str(c): r.sample_rate for c, r in last.items()},
            "epsilon": eps,
            "epsilon_by_accountant": {str(c): dict(r.epsilon) for c, r in last.items()},
            "max_epsilon": max(eps.values()),
            "guarantee": guarantee_text(result),
        },
        "secure_aggregation": secure_aggregation_section(
            result,
            graph=result.graph.kind,
            degree=result.graph.degree,
            threshold=result.graph.threshold,
            majority=result.graph.majority,
            threshold_note=result.graph.note(),
            bits=next((r["bits"] for r in rounds if r["bits"] is not None), None),
            frac_bits=cfg.frac_bits,
        ),
        "rounds": rounds,
        "summary": run_summary(
            result,
            rounds,
            done,
            {
                "max_epsilon": max(eps.values()),
                "max_abs_error": max((r["max_abs_error"] for r in done), default=0.0),
                "all_rounds_within_bound": all(r["within_bound"] for r in done) if done else None,
            },
        ),
    }
