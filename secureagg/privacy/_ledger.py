"""The privacy ledger: per client, per round, what was spent (JSON on disk, atomic writes)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from secureagg._exceptions import ConfigError, LedgerError
from secureagg.privacy._files import save_json
from secureagg.privacy._round_record import RoundRecord, finite, parse_record, record_problem
from secureagg.privacy._steps import as_int
from secureagg.privacy.accounting import (
    ACCOUNTANTS,
    ADD_REMOVE,
    HEADLINE,
    REPLACE_ONE,
    Step,
    epsilon,
    relation_accountants,
)

__all__ = ["SCHEMA", "SCHEMA_VERSION", "PrivacyLedger", "RoundRecord"]

SCHEMA = "secureagg.privacy-ledger"
SCHEMA_VERSION = 1


def _clash(
    previous: list[RoundRecord], run: int | None, rnd: int, relation: str = ADD_REMOVE
) -> str | None:
    """Why a record for ``(run, rnd)`` cannot follow ``previous``, or None if it can."""
    if previous and previous[-1].relation != relation:
        return (
            f"relation {relation!r} differs from the client's earlier {previous[-1].relation!r} "
            "(one client's epsilons are under one neighbouring relation)"
        )
    key = (-1 if run is None else run, rnd)
    if any(r.key == key for r in previous):
        return "this run and round is already recorded"
    same = [r.round for r in previous if r.run == run]
    if same and rnd <= same[-1]:
        return f"rounds of one run must increase, previous was {same[-1]}"
    return None


def _reject_constant(token: str) -> float:
    raise ValueError(f"non-finite number {token} (JSON has no NaN or Infinity)")


class PrivacyLedger:
    """Per-client, per-round privacy records with cumulative epsilons from every accountant.

    Nothing is written until :meth:`save`; a saved ledger reopened with :meth:`open` can be
    appended to by a later process.

    Parameters:
        path: The JSON file :meth:`save` writes by default (None: in memory until saved).
        accountants: Which figures :meth:`record` computes (default: all four of
            ``secureagg.privacy.accounting.ACCOUNTANTS``).

    Raises:
        ConfigError: An unknown accountant name.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        accountants: tuple[str, ...] = ACCOUNTANTS,
    ) -> None:
        unknown = [a for a in accountants if a not in ACCOUNTANTS]
        if unknown:
            raise ConfigError(f"unknown accountants {unknown}; choose from {ACCOUNTANTS}")
        self.path = None if path is None else Path(path)
        self.accountants = tuple(accountants)
        self._records: dict[int, list[RoundRecord]] = {}
        self._not_private: dict[int, str] = {}

    # --- reading ----------------------------------------------------------------------------

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, accountants: tuple[str, ...] = ACCOUNTANTS
    ) -> PrivacyLedger:
        """Read a ledger file.

        Parameters:
            path: The ledger's JSON file.
            accountants: The figures later :meth:`record` calls compute.

        Returns:
            The ledger, bound to ``path``.

        Raises:
            LedgerError: The file is not a valid ledger; the message names the file, client and
                entry that is wrong.
        """
        ledger = cls(path, accountants=accountants)
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise LedgerError(f"{where}: not a UTF-8 text file ({exc.reason})") from exc
        try:
            doc = json.loads(text, parse_constant=_reject_constant)
        except ValueError as exc:
            raise LedgerError(f"{where}: corrupt ledger, not valid JSON: {exc}") from exc
        ledger._load_doc(doc, where)
        return ledger

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, accountants: tuple[str, ...] = ACCOUNTANTS
    ) -> PrivacyLedger:
        """Load the ledger at ``path`` if the file exists, else a new empty one bound to it.

        Parameters:
            path: The ledger's JSON file.
            accountants: The figures :meth:`record` computes.

        Returns:
            The loaded or new ledger, bound to ``path``.
        """
        if Path(path).exists():
            return cls.load(path, accountants=accountants)
        return cls(path, accountants=accountants)

    def _load_doc(self, doc: object, where: str) -> None:
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
            raise LedgerError(f"{where}: not a secureagg privacy ledger (schema {found!r})")
        version = doc.get("schema_version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise LedgerError(f"{where}: schema_version must be an integer, got {version!r}")
        if version < SCHEMA_VERSION:
            raise LedgerError(
                f"{where}: written by older ledger schema version {version}; this secureagg "
                f"reads version {SCHEMA_VERSION} (re-create the ledger or convert it)"
            )
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"{where}: ledger schema version {version} is newer than this secureagg "
                f"understands ({SCHEMA_VERSION}); upgrade secureagg"
            )
        marks = doc.get("not_private", {})
        if not isinstance(marks, dict) or not all(
            isinstance(k, str) and k.isascii() and k.isdigit() and isinstance(v, str)
            for k, v in marks.items()
        ):
            raise LedgerError(f"{where}: 'not_private' must map client ids to reasons")
        self._not_private = {int(k): v for k, v in marks.items()}
        clients = doc.get("clients")
        if not isinstance(clients, dict):
            raise LedgerError(f"{where}: 'clients' must be an object")
        for key, body in clients.items():
            if not (key.isascii() and key.isdigit()):
                raise LedgerError(f"{where}: client id {key!r} is not a non-negative integer")
            cid = int(key)
            if not isinstance(body, dict) or not isinstance(body.get("records"), list):
                raise LedgerError(f"{where}: client {cid}: expected {{'records': [...]}}")
            parsed: list[RoundRecord] = []
            for i, raw in enumerate(body["records"]):
                rnd = raw.get("round") if isinstance(raw, dict) else None
                label = f"{where}: client {cid}, record #{i} (round {rnd!r})"
                try:
                    rec = parse_record(raw)
                except (ValueError, TypeError, KeyError, ConfigError) as exc:
                    raise LedgerError(f"{label}: {exc}") from exc
                clash = _clash(parsed, rec.run, rec.round, rec.relation)
                if clash is not None:
                    raise LedgerError(f"{label}: {clash}")
                parsed.append(rec)
            self._records[cid] = parsed

    # --- writing ----------------------------------------------------------------------------

    def record(
        self,
        client_id: int,
        round: int,
        *,
        participated: bool,
        steps: int,
        sample_rate: float,
        noise_multiplier: float,
        max_grad_norm: float,
        delta: float,
        grad_sample_mode: str,
        budget_epsilon: float | None = None,
        reason: str | None = None,
        run: int | None = None,
        count_noise: float | None = None,
        relation: str = ADD_REMOVE,
    ) -> RoundRecord:
        """Append one round for one client; epsilons are cumulative over its whole history.

        Records are unique by ``(run, round)``; within one run rounds increase. Rounds are
        numbered from 1, as in Flower and ``run_federated``. Under ``relation``
        "replace-one" only the ledger's accountants that apply (dp-accounting PLD) are
        computed; one client's records all have one relation.

        Parameters:
            client_id: The client, an integer >= 0.
            round: The round number.
            participated: Whether the client's update reached the aggregate.
            steps: DP-SGD steps the client took this round (0 if it declined).
            sample_rate: Poisson sampling rate of each step.
            noise_multiplier: Gaussian noise standard deviation relative to ``max_grad_norm``.
            max_grad_norm: Per-example gradient clipping norm.
            delta: The delta each epsilon is computed for.
            grad_sample_mode: How per-example gradients were computed ("hooks", "ghost", ...).
            budget_epsilon: The client's epsilon budget, if it has one.
            reason: Why a client did not participate: "budget" or "dropout".
            run: Which run the round belongs to (None: not given).
            count_noise: Standard deviation of the noisy count released this round, if any.
            relation: The neighbouring relation ("add-remove" or "replace-one").

        Returns:
            The new record, with the cumulative epsilon from each of the ledger's accountants.

        Raises:
            ConfigError: An impossible field value.
            LedgerError: A record for this ``(run, round)`` exists, or the round does not follow.
        """
        cid = as_int(client_id)
        if cid is None or cid < 0:
            raise ConfigError(f"client_id must be an integer >= 0, got {client_id!r}")
        entry: dict[str, Any] = {
            "round": round,
            "participated": participated,
            "reason": reason,
            "steps": steps,
            "sample_rate": sample_rate,
            "noise_multiplier": noise_multiplier,
            "max_grad_norm": max_grad_norm,
            "delta": delta,
            "grad_sample_mode": grad_sample_mode,
            "budget_epsilon": budget_epsilon,
        }
        problem = record_problem(entry)
        if problem is not None:
            raise ConfigError(f"client {cid}, round {round!r}: {problem}")
        if run is not None and (as_int(run) is None or run < 0):
            raise ConfigError(f"run must be an integer >= 0, got {run!r}")
        if count_noise is not None and ((c := finite(count_noise)) is None or c <= 0):
            raise ConfigError(f"count_noise must be None or finite and > 0, got {count_noise!r}")
        allowed = relation_accountants(relation)
        if relation == REPLACE_ONE and count_noise is not None:
            raise ConfigError("under replace-one the count is public: no count_noise")
        previous = self._records.get(cid, [])
        clash = _clash(previous, run, int(round), relation)
        if clash is not None:
            raise LedgerError(f"client {cid}, run {run}, round {round}: {clash}")
        step = Step(float(noise_multiplier), float(sample_rate), int(steps))
        history = [s for r in previous for s in r.releases] + [step]
        if count_noise is not None:
            history.append(Step(float(count_noise), 1.0, 1))
        figures = {
            name: epsilon(history, float(delta), name, relation=relation)
            for name in self.accountants
            if name in allowed
        }
        rec = RoundRecord(
            round=int(round),
            participated=participated,
            reason=reason,
            steps=int(steps),
            sample_rate=float(sample_rate),
            noise_multiplier=float(noise_multiplier),
            max_grad_norm=float(max_grad_norm),
            delta=float(delta),
            grad_sample_mode=grad_sample_mode,
            budget_epsilon=None if budget_epsilon is None else float(budget_epsilon),
            epsilon=figures,
            run=None if run is None else int(run),
            count_noise=None if count_noise is None else float(count_noise),
            relation=relation,
        )
        self._records.setdefault(cid, []).append(rec)
        return rec

    def mark_not_private(self, client_id: int, reason: str) -> None:
        """Record that a client's figures do not hold (e.g. its noise was repeatable).

        Parameters:
            client_id: The client.
            reason: Why, in a few words; written to the ledger file.
        """
        self._not_private[int(client_id)] = str(reason)

    def not_private(self) -> dict[int, str]:
        """Clients whose epsilons are void.

        Returns:
            Client id -> the reason (empty for an honest ledger).
        """
        return dict(self._not_private)

    def to_json(self) -> dict[str, Any]:
        """The whole ledger as the JSON document written to disk.

        Returns:
            A JSON-ready dict (schema, schema version, clients and their records).
        """
        doc: dict[str, Any] = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION}
        if self._not_private:
            doc["not_private"] = {str(c): r for c, r in sorted(self._not_private.items())}
        return doc | {
            "clients": {
                str(cid): {"records": [r.to_json() for r in recs]}
                for cid, recs in sorted(self._records.items())
            },
        }

    def save(self, path: str | os.PathLike[str] | None = None) -> None:
        """Write atomically: a temp file in the same folder, fsync, then ``os.replace``.

        Parameters:
            path: Where to write (default: the ledger's path); a ledger saved to a path is bound
                to it from then on.

        Raises:
            ConfigError: The ledger has no path and none was given.
        """
        target = save_json(path, self.path, self.to_json())
        if self.path is None:
            self.path = target

    # --- queries ----------------------------------------------------------------------------

    def clients(self) -> list[int]:
        """Client ids with at least one record.

        Returns:
            The ids, ascending.
        """
        return sorted(self._records)

    def records(self, client_id: int) -> list[RoundRecord]:
        """The client's records in round order.

        Parameters:
            client_id: The client.

        Returns:
            A copy of its records (empty if the client is unknown).
        """
        return list(self._records.get(client_id, []))

    def has(self, client_id: int, run: int | None, round: int) -> bool:
        """Whether the client already has a record for ``(run, round)``.

        Parameters:
            client_id: The client.
            run: The run (None: not given).
            round: The round number.

        Returns:
            True if such a record exists.
        """
        key = (-1 if run is None else run, round)
        return any(r.key == key for r in self._records.get(client_id, []))

    def history(self, client_id: int) -> list[Step]:
        """The client's DP-SGD steps, one entry per record, in round order.

        Parameters:
            client_id: The client.

        Returns:
            One :class:`~secureagg.privacy.accounting.Step` per record.
        """
        return [s for r in self._records.get(client_id, []) for s in r.releases]

    def relation(self, client_id: int) -> str:
        """The neighbouring relation of the client's epsilons ("add-remove" if no record).

        Parameters:
            client_id: The client.

        Returns:
            "add-remove" or "replace-one".
        """
        recs = self._records.get(client_id)
        return recs[-1].relation if recs else ADD_REMOVE

    def latest_epsilon(self, client_id: int, accountant: str = HEADLINE) -> float:
        """Cumulative epsilon of the client's latest record.

        Parameters:
            client_id: The client.
            accountant: Which accountant's figure (computed now if the record lacks it).

        Returns:
            The epsilon (0.0 for a client with no record; inf without noise).
        """
        recs = self._records.get(client_id)
        if not recs:
            return 0.0
        last = recs[-1]
        if accountant in last.epsilon:
            return last.epsilon[accountant]
        return epsilon(self.history(client_id), last.delta, accountant, relation=last.relation)

    def __len__(self) -> int:
        return sum(len(v) for v in self._records.values())
