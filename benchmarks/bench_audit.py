"""Benchmark: audit a 100-client, 1,000-round ledger (10 local steps per round) with every
accountant after every round (the default), against a baseline that runs the four library
accountants afresh for every (client, round) record (measured on a random sample of records
and extrapolated). Also timed: the same audit with PRV and PLD at 24 checkpoints per client
(``--tight-points 24``), and the estimated cost of running the library PRV and PLD once per
distinct history (what every-round PRV/PLD cost before their series form).

    .venv/bin/python benchmarks/bench_audit.py [--clients 100] [--rounds 1000] [--repeat 1]

Ledger: sample rate 0.01, noise multiplier 1.1, delta 1e-5, each client drops out of a round
with probability 5% (so client histories differ). Prints a table of medians.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from secureagg.privacy import PrivacyLedger
from secureagg.privacy import accounting as acc
from secureagg.privacy._ledger import SCHEMA, SCHEMA_VERSION
from secureagg.privacy.audit import audit_ledger


def make_ledger(path: Path, clients: int, rounds: int, steps: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    doc: dict[str, object] = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION}
    body = {}
    for c in range(clients):
        recs: list[dict[str, object]] = []
        for r in range(rounds):
            drop = rng.random() < 0.05
            recs.append(
                {
                    "round": r,
                    "participated": not drop,
                    "reason": "dropout" if drop else None,
                    "steps": 0 if drop else steps,
                    "sample_rate": 0.01,
                    "noise_multiplier": 1.1,
                    "max_grad_norm": 1.0,
                    "delta": 1e-5,
                    "grad_sample_mode": "hooks",
                    "budget_epsilon": 8.0,
                    "epsilon": {},
                }
            )
        body[str(c)] = {"records": recs}
    doc["clients"] = body
    path.write_text(json.dumps(doc))
    return clients * rounds


def baseline_seconds_per_record(ledger: PrivacyLedger, sample: int, seed: int = 1) -> float:
    """Plain library accountants on a record's history, afresh for every record (no cache).

    Consecutive identical steps are merged, as the libraries' own ``step()`` does.
    """
    rng = random.Random(seed)
    clients = rng.choices(ledger.clients(), k=sample)
    picks = [(c, rng.randrange(len(ledger.records(c)))) for c in clients]
    began = time.perf_counter()
    for c, i in picks:
        merged: list[tuple[float, float, int]] = []
        for s in ledger.history(c)[: i + 1]:
            if not s.steps:
                continue
            if merged and merged[-1][:2] == (s.noise_multiplier, s.sample_rate):
                merged[-1] = (*merged[-1][:2], merged[-1][2] + s.steps)
            else:
                merged.append((s.noise_multiplier, s.sample_rate, s.steps))
        history = tuple(merged)
        for fn in (acc._opacus_rdp_reference, acc._dpa_rdp_reference, _plain_prv, _plain_pld):
            fn(history, 1e-5)
    return (time.perf_counter() - began) / sample


def library_tight_seconds_per_history(ledger: PrivacyLedger, sample: int) -> tuple[int, float]:
    """Distinct canonical histories in the ledger, and the library PRV + PLD time for one.

    The library functions are the ones ``accounting.epsilon`` uses (padded PRV domain, PLD at
    the audit's discretisation), each history on its own.
    """
    found: set[acc.Canonical] = set()
    for c in ledger.clients():
        merged: dict[tuple[float, float], int] = {}
        for rec in ledger.records(c):
            if rec.steps and rec.sample_rate:
                key = (rec.noise_multiplier, rec.sample_rate)
                merged[key] = merged.get(key, 0) + rec.steps
                found.add(tuple((z, q, k) for (z, q), k in sorted(merged.items())))
    histories = sorted(found)
    rng = random.Random(2)
    picks = rng.sample(histories, k=min(sample, len(histories)))
    began = time.perf_counter()
    for h in picks:
        acc._opacus_prv(h, 1e-5)
        acc._dpa_pld(h, 1e-5)
    return len(histories), (time.perf_counter() - began) / max(1, len(picks))


def _plain_prv(history: acc.Canonical, delta: float) -> float:
    from opacus.accountants import PRVAccountant

    a = PRVAccountant()
    a.history = list(history)
    return float(a.get_epsilon(delta)) if a.history else 0.0


def _plain_pld(history: acc.Canonical, delta: float) -> float:
    from dp_accounting.pld import PLDAccountant

    a = PLDAccountant()  # dp-accounting's default discretisation
    a.compose(acc._dpa_event(history))
    return float(a.get_epsilon(delta))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--baseline-sample", type=int, default=8)
    parser.add_argument("--tight-points", type=int, default=0)
    parser.add_argument("--compare-points", type=int, default=24)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.json"
        n = make_ledger(path, args.clients, args.rounds, args.steps)
        loads, audits, reports, checkpoints = [], [], [], []
        result = compared = None
        for _ in range(args.repeat):
            acc.clear_cache()
            t0 = time.perf_counter()
            ledger = PrivacyLedger.load(path)
            t1 = time.perf_counter()
            result = audit_ledger(ledger, tight_points=args.tight_points)
            t2 = time.perf_counter()
            from secureagg.cli._report_audit import write_report

            write_report(result, Path(tmp) / "report")
            t3 = time.perf_counter()
            acc.clear_cache()
            t4 = time.perf_counter()
            compared = audit_ledger(ledger, tight_points=args.compare_points)
            checkpoints.append(time.perf_counter() - t4)
            loads.append(t1 - t0)
            audits.append(t2 - t1)
            reports.append(t3 - t2)
        assert result is not None and compared is not None
        per_record = baseline_seconds_per_record(ledger, args.baseline_sample)
        distinct, per_history = library_tight_seconds_per_history(ledger, args.baseline_sample)

    base = per_record * n
    load, audit, report, checkpoint = (
        statistics.median(x) for x in (loads, audits, reports, checkpoints)
    )
    total = load + audit + report
    runs = ", ".join(f"{k} {v}" for k, v in result.evaluations.items())
    tight_runs = ", ".join(
        f"{k} {v}" for k, v in compared.evaluations.items() if k in ("opacus_prv", "dpa_pld")
    )
    every = "every round" if args.tight_points == 0 else f"{args.tight_points} checkpoints"
    print(
        f"ledger: {args.clients} clients x {args.rounds} rounds x {args.steps} steps "
        f"({n} records, 5% dropouts); median of {args.repeat}; all four accountants"
    )
    print(f"{'case':80} {'seconds':>10} {'ratio':>8}")
    rows = [
        (f"baseline: 4 library accountants per record, no cache (x{n}, est.)", base),
        ("load + validate ledger JSON", load),
        (
            f"library PRV + PLD once per distinct history ({distinct}), no series (est.)",
            distinct * per_history,
        ),
        (f"audit_ledger, PRV/PLD at {args.compare_points} checkpoints ({tight_runs})", checkpoint),
        (f"audit_ledger, PRV/PLD {every}, cold cache (runs: {runs})", audit),
        ("write audit.md, audit.json, epsilon.png", report),
        ("total: load + audit + report", total),
    ]
    for name, secs in rows:
        print(f"{name:80} {secs:10.2f} {base / secs:8.0f}x")
    print(f"baseline measured on {args.baseline_sample} random records: {per_record:.3f} s each")
    print(
        f"library PRV + PLD measured on {args.baseline_sample} random distinct histories: "
        f"{per_history:.3f} s each"
    )
    print(f"under 60 s: {'yes' if total < 60 else 'NO'}")


if __name__ == "__main__":
    main()
