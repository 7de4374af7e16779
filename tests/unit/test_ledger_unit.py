"""The privacy ledger: records, round trip, restarts, atomic saves and clear errors."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from secureagg import ConfigError, LedgerError
from secureagg.privacy import PrivacyLedger, RoundRecord, Step
from secureagg.privacy.accounting import epsilons

FAST = ("opacus_rdp", "dpa_rdp")
ARGS: dict[str, Any] = dict(
    steps=10,
    sample_rate=0.05,
    noise_multiplier=1.1,
    max_grad_norm=1.0,
    delta=1e-5,
    grad_sample_mode="ghost",
    budget_epsilon=8.0,
)


def _ledger(path: Path | None = None) -> PrivacyLedger:
    led = PrivacyLedger(path, accountants=FAST)
    for r in range(3):
        led.record(3, r, participated=True, **ARGS)
    led.record(7, 0, participated=True, **ARGS)
    led.record(7, 1, participated=False, reason="dropout", **ARGS)
    led.record(7, 2, participated=False, reason="budget", **{**ARGS, "steps": 0})
    return led


def test_record_computes_cumulative_epsilons_of_all_accountants() -> None:
    led = PrivacyLedger()
    rec = led.record(3, 0, participated=True, **ARGS)
    rec2 = led.record(3, 4, participated=True, **ARGS)
    assert isinstance(rec, RoundRecord)
    assert set(rec.epsilon) == {"opacus_rdp", "opacus_prv", "dpa_rdp", "dpa_pld"}
    assert rec2.epsilon == epsilons([Step(1.1, 0.05, 20)], 1e-5)
    assert all(rec2.epsilon[k] > rec.epsilon[k] for k in rec.epsilon)
    assert led.history(3) == [Step(1.1, 0.05, 10)] * 2
    assert led.latest_epsilon(3, "dpa_pld") == rec2.epsilon["dpa_pld"]


def test_queries() -> None:
    led = _ledger()
    assert led.clients() == [3, 7]
    assert [r.round for r in led.records(7)] == [0, 1, 2]
    assert led.records(99) == [] and led.latest_epsilon(99) == 0.0
    # a dropout after training is charged, a budget refusal is not
    assert led.history(7) == [Step(1.1, 0.05, 10), Step(1.1, 0.05, 10), Step(1.1, 0.05, 0)]
    assert (
        led.latest_epsilon(7, "opacus_rdp") == led.records(3)[1].epsilon["opacus_rdp"]
    )  # 20 steps each
    # an accountant not recorded is computed on demand
    assert led.latest_epsilon(3, "dpa_pld") == pytest.approx(
        epsilons([Step(1.1, 0.05, 30)], 1e-5)["dpa_pld"]
    )


def test_round_trip_and_append_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    led = _ledger(path)
    led.save()
    again = PrivacyLedger.open(path, accountants=FAST)
    assert again.to_json() == led.to_json()
    again.record(3, 3, participated=True, **ARGS)
    again.save()
    third = PrivacyLedger.load(path)
    assert [r.round for r in third.records(3)] == [0, 1, 2, 3]
    assert third.records(3)[:3] == led.records(3)
    assert [p.name for p in tmp_path.iterdir()] == ["ledger.json"]  # no temp file left
    doc = json.loads(path.read_text())
    assert doc["schema"] == "secureagg.privacy-ledger" and doc["schema_version"] == 1


def test_open_missing_file_gives_an_empty_ledger_bound_to_it(tmp_path: Path) -> None:
    led = PrivacyLedger.open(tmp_path / "new.json", accountants=FAST)
    assert led.clients() == []
    led.record(1, 0, participated=True, **ARGS)
    led.save()
    assert PrivacyLedger.load(tmp_path / "new.json").clients() == [1]


def test_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ledger.json"
    led = _ledger(path)
    led.save()
    before = path.read_bytes()
    led.record(3, 9, participated=True, **ARGS)

    def boom(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        led.save()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ledger.json"]


def test_no_noise_is_recorded_as_null_and_read_back_as_infinite(tmp_path: Path) -> None:
    led = PrivacyLedger(tmp_path / "l.json", accountants=FAST)
    led.record(1, 0, participated=True, **{**ARGS, "noise_multiplier": 0.0})
    led.save()
    assert json.loads((tmp_path / "l.json").read_text())["clients"]["1"]["records"][0][
        "epsilon"
    ] == {"opacus_rdp": None, "dpa_rdp": None}
    assert math.isinf(PrivacyLedger.load(tmp_path / "l.json").latest_epsilon(1))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"steps": -1}, "steps must be >= 0"),
        ({"sample_rate": 1.5}, "sample_rate"),
        ({"noise_multiplier": -0.1}, "noise_multiplier"),
        ({"delta": 0.0}, "delta"),
        ({"max_grad_norm": math.inf}, "max_grad_norm"),
        ({"budget_epsilon": -2.0}, "budget_epsilon"),
        ({"grad_sample_mode": ""}, "grad_sample_mode"),
    ],
)
def test_record_refuses_impossible_values(change: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=f"client 3, round 0: .*{match}"):
        PrivacyLedger().record(3, 0, participated=True, **{**ARGS, **change})


def test_record_refuses_inconsistent_rounds_and_reasons() -> None:
    led = _ledger()
    with pytest.raises(
        LedgerError, match="client 3, run None, round 2: this run and round is already recorded"
    ):
        led.record(3, 2, participated=True, **ARGS)
    with pytest.raises(ConfigError, match="reason"):
        led.record(3, 5, participated=False, reason="bored", **ARGS)
    with pytest.raises(ConfigError, match="declined for budget"):
        led.record(3, 5, participated=False, reason="budget", **ARGS)
    with pytest.raises(ConfigError, match="client_id"):
        led.record(-1, 0, participated=True, **ARGS)
    with pytest.raises(ConfigError, match="in memory only"):
        led.save()


# --- files that must be refused, each with a message naming what is wrong -------------------


def _doc() -> dict[str, Any]:
    return _ledger().to_json()


def _write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def _with_record(change: dict[str, Any], client: str = "7", index: int = 1) -> dict[str, Any]:
    doc = copy.deepcopy(_doc())
    doc["clients"][client]["records"][index].update(change)
    return doc


BAD_FILES = [
    ("{not json", "corrupt ledger, not valid JSON"),
    (
        '{"schema": "secureagg.privacy-ledger", "schema_version": 1, "clients": {"1": NaN}}',
        "non-finite number NaN",
    ),
    ("[1, 2]", "not a secureagg privacy ledger"),
    ({"schema": "opacus.accountant", "schema_version": 1, "clients": {}}, "opacus.accountant"),
    ({**_ledger().to_json(), "schema_version": 0}, "older ledger schema version 0"),
    ({**_ledger().to_json(), "schema_version": 2}, "newer than this secureagg"),
    ({**_ledger().to_json(), "schema_version": "1"}, "schema_version must be an integer"),
    ({**_ledger().to_json(), "clients": {"x": {"records": []}}}, "client id 'x'"),
    ({**_ledger().to_json(), "clients": {"4": []}}, "client 4: expected"),
    (_with_record({"steps": -10}), r"client 7, record #1 \(round 1\): steps must be >= 0"),
    (_with_record({"sample_rate": 1.2}), r"client 7, record #1 \(round 1\): sample_rate"),
    (_with_record({"steps": 2.5}), r"record #1 \(round 1\): steps must be an integer"),
    (
        _with_record({"round": 0}),
        r"record #1 \(round 0\): (this run and round is already|rounds of one run must)",
    ),
    (_with_record({"participated": "yes"}), "participated must be true or false"),
    (_with_record({"epsilon": {"opacus_rdp": -1.0}}), r"epsilon\['opacus_rdp'\]"),
    (_with_record({"epsilon": {"moments": 1.0}}), "unknown accountant 'moments'"),
    (_with_record({"colour": "red"}), r"unknown fields \['colour'\]"),
]


@pytest.mark.parametrize(("doc", "match"), BAD_FILES)
def test_bad_files_are_refused_with_a_clear_error(tmp_path: Path, doc: object, match: str) -> None:
    path = _write(tmp_path, doc)
    with pytest.raises(LedgerError, match=match) as info:
        PrivacyLedger.load(path)
    assert str(path) in str(info.value)


def test_missing_field_is_named(tmp_path: Path) -> None:
    doc = _doc()
    del doc["clients"]["3"]["records"][2]["delta"]
    with pytest.raises(LedgerError, match=r"client 3, record #2 \(round 2\): missing fields"):
        PrivacyLedger.load(_write(tmp_path, doc))


def test_binary_garbage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bin.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(LedgerError, match="UTF-8"):
        PrivacyLedger.load(path)


def test_records_are_keyed_by_run_and_round() -> None:
    led = PrivacyLedger(accountants=("opacus_rdp",))
    led.record(3, 1, participated=True, run=10, **ARGS)
    led.record(3, 2, participated=True, run=10, **ARGS)
    led.record(3, 1, participated=True, run=11, **ARGS)  # a new run starts its rounds again
    with pytest.raises(LedgerError, match="already recorded"):
        led.record(3, 2, participated=True, run=10, **ARGS)
    with pytest.raises(LedgerError, match="must increase"):
        led.record(3, 0, participated=True, run=11, **ARGS)
    assert led.has(3, 10, 2) and not led.has(3, 11, 2)
    again = PrivacyLedger(accountants=("opacus_rdp",))
    again._load_doc(led.to_json(), "mem")
    assert [(r.run, r.round) for r in again.records(3)] == [(10, 1), (10, 2), (11, 1)]
    assert sum(s.steps for s in again.history(3)) == 3 * ARGS["steps"]
