"""Audit a privacy ledger: recompute every client's cumulative epsilon with each accountant."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from secureagg._exceptions import ConfigError
from secureagg.privacy._ledger import PrivacyLedger, RoundRecord
from secureagg.privacy.accounting import (
    ACCOUNTANTS,
    ADD_REMOVE,
    HEADLINE,
    Canonical,
    epsilon_canonical,
    evaluations,
    relation_accountants,
)
from secureagg.privacy.audit._audit_result import (
    ClientAudit,
    Disagreement,
    LedgerAudit,
    RoundAudit,
)
from secureagg.privacy.audit._series import (
    SERIES_ACCOUNTANTS,
    SERIES_AGREEMENT,
    series_epsilons,
    series_evaluations,
)

__all__ = ["AGREEING_PAIRS", "CHEAP_ACCOUNTANTS", "audit_ledger"]

CHEAP_ACCOUNTANTS = ("opacus_rdp", "dpa_rdp")
"""Accountants computed one history at a time (about a millisecond each); the others, PRV and
PLD, take their series form and may be limited to checkpoints (see ``tight_points``)."""

AGREEING_PAIRS: tuple[tuple[str, str], ...] = (("opacus_rdp", "dpa_rdp"), ("opacus_prv", "dpa_pld"))
"""Pairs that implement the same analysis independently, so should agree closely."""


def _relative_gap(a: float, b: float) -> float:
    if math.isinf(a) and math.isinf(b):
        return 0.0
    return abs(a - b) / max(1.0, min(a, b))


def _checkpoints(records: list[RoundRecord], stride: int) -> set[int]:
    """Indices where the tight accountants run: first and last leaking record, grid crossings."""
    picks: set[int] = set()
    total, next_mark, last_leak = 0, stride, -1
    for i, rec in enumerate(records):
        if rec.steps == 0 or rec.sample_rate == 0:
            continue
        if last_leak < 0:
            picks.add(i)
        total += rec.steps
        last_leak = i
        if total >= next_mark:
            picks.add(i)
            next_mark = (total // stride + 1) * stride
    if last_leak >= 0:
        picks.add(last_leak)
    return picks


def _histories(records: list[RoundRecord]) -> list[Canonical]:
    """The client's canonical history after each record."""
    merged: dict[tuple[float, float], int] = {}
    key: Canonical = ()
    out: list[Canonical] = []
    for rec in records:
        for s in rec.releases:  # DP-SGD steps, and a noisy count release if any
            if s.steps and s.sample_rate:
                pair = (s.noise_multiplier, s.sample_rate)
                merged[pair] = merged.get(pair, 0) + s.steps
                key = tuple((z, q, n) for (z, q), n in sorted(merged.items()))
        out.append(key)
    return out


def _recorded_gap(name: str, recorded: float, mine: float) -> float:
    """Relative gap between a ledger figure and the audit's, less what the method allows.

    The series form of PRV/PLD (see ``_series``) may differ from the library run on one
    history, which is what the trainer records, by up to ``SERIES_AGREEMENT``.
    """
    if name not in SERIES_ACCOUNTANTS or math.isinf(recorded) or math.isinf(mine):
        return _relative_gap(recorded, mine)
    return max(0.0, abs(recorded - mine) - SERIES_AGREEMENT) / max(1.0, min(recorded, mine))


_Tight = dict[str, dict[tuple[Canonical, float], float]]


def _audit_client(
    cid: int,
    records: list[RoundRecord],
    keys: list[Canonical],
    picks: set[int],
    *,
    accountants: tuple[str, ...],
    tight: _Tight,
    reference: str,
    tolerance: float,
) -> ClientAudit:
    columns = accountants  # every audited accountant has a column, None where it is N/A
    relation = records[-1].relation
    if relation != ADD_REMOVE:  # only the accountants that apply; the rest stay None (N/A)
        applies = relation_accountants(relation)
        if reference not in applies:
            raise ConfigError(
                f"client {cid}'s ledger is under {relation}, which only {applies} account for; "
                f"the reference accountant {reference!r} does not apply"
            )
        accountants = tuple(a for a in accountants if a in applies)
        tight = {
            name: {
                (keys[i], records[i].delta): epsilon_canonical(
                    name, keys[i], records[i].delta, relation
                )
                for i in {*picks, len(records) - 1}
            }
            for name in accountants
        }
    rounds: list[RoundAudit] = []
    worst = Disagreement(0.0, None, None, False)
    mismatch = 0.0
    total = 0
    for i, (rec, key) in enumerate(zip(records, keys, strict=True)):
        if rec.steps and rec.sample_rate:
            total += rec.steps
        eps: dict[str, float | None] = dict.fromkeys(columns)
        for name in accountants:
            if name in tight:
                if i in picks:
                    eps[name] = tight[name][(key, rec.delta)]
            else:
                eps[name] = epsilon_canonical(name, key, rec.delta)
        for a, b in AGREEING_PAIRS:
            ea, eb = eps.get(a), eps.get(b)
            if ea is not None and eb is not None:
                gap = _relative_gap(ea, eb)
                if gap > worst.value:
                    worst = Disagreement(gap, rec.round, (a, b), gap > tolerance)
        for name, value in rec.epsilon.items():
            mine = eps.get(name)
            if mine is not None:
                mismatch = max(mismatch, _recorded_gap(name, value, mine))
        rounds.append(
            RoundAudit(
                rec.round,
                rec.participated,
                rec.reason,
                rec.steps,
                total,
                rec.delta,
                eps,
                dict(rec.epsilon),
            )
        )
    last_key, last_delta = keys[-1], records[-1].delta
    final = {
        a: tight[a][(last_key, last_delta)]
        if a in tight
        else epsilon_canonical(a, last_key, last_delta)
        for a in accountants
    }
    return _summarise(cid, records, rounds, final, reference, worst, mismatch)


def _summarise(
    cid: int,
    records: list[RoundRecord],
    rounds: list[RoundAudit],
    final: dict[str, float],
    reference: str,
    worst: Disagreement,
    mismatch: float,
) -> ClientAudit:
    last = records[-1]
    budget = last.budget_epsilon
    spent = final[reference]
    if budget is None:
        status = "no budget set"
    elif spent <= budget:
        status = "within budget"
    else:
        status = "over budget"
    notes: list[str] = []
    if last.relation != ADD_REMOVE:
        notes.append(
            f"under {last.relation} (the example count was declared public and sent): only "
            f"{', '.join(relation_accountants(last.relation))} applies; the add/remove "
            "accountants are not applicable"
        )
    deltas = sorted({r.delta for r in records})
    if len(deltas) > 1:
        notes.append(f"delta changed across rounds {deltas}; figures use each round's delta")
    budgets = sorted({r.budget_epsilon for r in records if r.budget_epsilon is not None})
    if len(budgets) > 1:
        notes.append(f"budget changed across rounds {budgets}; status uses the latest")
    if mismatch > 1e-6:
        notes.append(
            f"recorded epsilons differ from recomputed ones by up to {mismatch:.2%} (relative): "
            "written by another version or precision, or edited"
        )
    if budget is not None:
        over = [a for a, v in final.items() if v > budget]
        within = [a for a, v in final.items() if v <= budget]
        if over and status == "within budget":
            notes.append(f"within budget by {reference} but not by {', '.join(over)}")
        elif within and status == "over budget":
            notes.append(
                f"over budget by {reference} but within it by {', '.join(within)} "
                "(tighter accountants; the status follows the reference)"
            )
    if any(math.isinf(v) for v in final.values()):
        notes.append("some steps ran without noise (noise_multiplier 0): no finite guarantee")
    if worst.flagged and worst.pair is not None:
        notes.append(
            f"{worst.pair[0]} and {worst.pair[1]} disagree by {worst.value:.2%} "
            f"at round {worst.round}"
        )
    for name, value in final.items():
        if (
            name not in CHEAP_ACCOUNTANTS
            and value > min(final.get(a, math.inf) for a in CHEAP_ACCOUNTANTS) * 1.01
        ):
            notes.append(f"{name} exceeds the RDP bound by more than 1%: check its discretisation")
    return ClientAudit(
        client_id=cid,
        rounds=rounds,
        final=final,
        delta=last.delta,
        budget_epsilon=budget,
        reference=reference,
        status=status,
        disagreement=worst,
        recorded_mismatch=mismatch,
        participated_rounds=sum(r.participated for r in records),
        dropouts=sum(r.reason == "dropout" for r in records),
        budget_declines=sum(r.reason == "budget" for r in records),
        sample_rates=sorted({r.sample_rate for r in records}),
        noise_multipliers=sorted({r.noise_multiplier for r in records}),
        max_grad_norms=sorted({r.max_grad_norm for r in records}),
        grad_sample_modes=sorted({r.grad_sample_mode for r in records}),
        notes=notes,
        relation=last.relation,
    )


def audit_ledger(
    ledger: PrivacyLedger,
    *,
    accountants: Sequence[str] = ACCOUNTANTS,
    reference: str = HEADLINE,
    tolerance: float = 0.05,
    tight_points: int = 0,
    clients: Sequence[int] | None = None,
) -> LedgerAudit:
    """Recompute every client's cumulative epsilon after every round, from its step history.

    Every accountant runs after every round by default. PRV and PLD take their series form
    (``_series``: many histories share one discretisation or composition; within
    ``SERIES_AGREEMENT`` of the libraries run on each history alone). ``tight_points=N > 0``
    runs them only at up to N checkpoints per client on a grid of total steps shared by all
    clients, plus each client's first and last round. Every history is computed once.
    """
    accs = tuple(a for a in ACCOUNTANTS if a in accountants)
    if not accs or len(accs) != len(set(accountants)):
        raise ConfigError(f"accountants must be a non-empty subset of {ACCOUNTANTS}")
    if reference not in accs:
        raise ConfigError(f"reference accountant {reference!r} must be one of {accs}")
    if not (isinstance(tolerance, int | float) and 0 <= tolerance < math.inf):
        raise ConfigError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    if isinstance(tight_points, bool) or not isinstance(tight_points, int) or tight_points < 0:
        raise ConfigError(f"tight_points must be an integer >= 0, got {tight_points!r}")
    ids = ledger.clients() if clients is None else list(clients)
    missing = [c for c in ids if not ledger.records(c)]
    if missing:
        raise ConfigError(f"no records for clients {missing} in this ledger")
    start = time.perf_counter()
    all_records = {c: ledger.records(c) for c in ids}
    most = max((sum(r.steps for r in recs) for recs in all_records.values()), default=0)
    stride = None if tight_points == 0 else max(1, math.ceil(most / tight_points))
    before = {**evaluations(), **series_evaluations()}
    keys = {c: _histories(recs) for c, recs in all_records.items()}
    picks = {
        c: set(range(len(recs))) if stride is None else _checkpoints(recs, stride)
        for c, recs in all_records.items()
    }
    wanted: dict[float, set[Canonical]] = {}
    for c, recs in all_records.items():
        for i in (*picks[c], len(recs) - 1):
            wanted.setdefault(recs[i].delta, set()).add(keys[c][i])
    tight: _Tight = {}
    for name in (a for a in accs if a in SERIES_ACCOUNTANTS):
        tight[name] = {
            (key, d): value
            for d, histories in wanted.items()
            for key, value in series_epsilons(name, histories, d).items()
        }
    audits = [
        _audit_client(
            c,
            all_records[c],
            keys[c],
            picks[c],
            accountants=accs,
            tight=tight,
            reference=reference,
            tolerance=tolerance,
        )
        for c in ids
    ]
    void = ledger.not_private()
    for audit in audits:  # figures that do not hold: the noise was repeatable
        if audit.client_id in void:
            audit.status = "NOT PRIVATE"
            audit.notes.insert(0, f"NOT PRIVATE: {void[audit.client_id]}")
    after = {**evaluations(), **series_evaluations()}
    return LedgerAudit(
        clients=audits,
        accountants=accs,
        reference=reference,
        tolerance=float(tolerance),
        tight_points=tight_points,
        seconds=time.perf_counter() - start,
        evaluations={a: after[a] - before[a] for a in accs},
        source=None if ledger.path is None else str(ledger.path),
    )
