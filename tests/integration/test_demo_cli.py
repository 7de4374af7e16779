"""`secureagg demo` end to end: the real command in a subprocess, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from secureagg.demo._report import LEDGER_FILE, REPORT_FILES
from secureagg.demo._summary import ACCOUNTANT
from secureagg.privacy import PrivacyLedger

ROOT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent / "secureagg"


def _secureagg(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXE), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("demo") / "report"
    # defaults (8 clients, one dropout every round) over 2 rounds
    proc = _secureagg("demo", "--rounds", "2", "--seed", "3", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    return out, json.loads((out / "report.json").read_text()), proc.stdout


def test_every_report_file_exists(short_run: tuple[Path, dict[str, Any], str]) -> None:
    out, _, stdout = short_run
    for name in REPORT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert "test accuracy" in stdout and "max |recovered - true|" in stdout


def test_json_has_the_documented_fields(short_run: tuple[Path, dict[str, Any], str]) -> None:
    _, report, _ = short_run
    assert report["schema"] == "secureagg.demo-report"
    assert report["config"]["rounds"] == 2 and report["config"]["clients"] == 8
    assert len(report["rounds"]) == 2
    for key in ("final_accuracy", "baseline_final_accuracy", "max_epsilon", "max_abs_error"):
        assert isinstance(report["summary"][key], float)
    assert set(report["data"]["clients"]) == {str(c) for c in range(1, 9)}


def test_error_within_the_bound_every_round_including_dropouts(
    short_run: tuple[Path, dict[str, Any], str],
) -> None:
    _, report, _ = short_run
    rounds = report["rounds"]
    # seed 3 was chosen so that a client drops before unmasking (advertise, masked input)
    stages = [why for r in rounds for why in r["dropped"].values()]
    assert stages and all(why.startswith("dropout:") for why in stages), stages
    for r in rounds:
        assert not r["aborted"]
        for cid in r["dropped"]:
            assert int(cid) not in r["members"]
        # dropout rate 1 (the default): one dropout every round, wherever it happened
        [(cid, d)] = r["dropouts"].items()
        assert d["in_sum"] == (int(cid) in r["members"]) == (d["stage"] == "unmask")
        assert r["max_abs_error"] <= r["error_bound"], r["round"]
        assert r["check_max_abs_error"] <= r["error_bound"], r["round"]
        assert r["error_bound"] < 1e-3  # 16 fractional bits: the bound is small
    assert report["summary"]["all_rounds_within_bound"] is True


def test_epsilon_figures_equal_the_ledgers(short_run: tuple[Path, dict[str, Any], str]) -> None:
    out, report, _ = short_run
    ledger = PrivacyLedger.load(out / LEDGER_FILE)
    assert ledger.clients() == list(range(1, 9))
    for c in ledger.clients():
        assert report["privacy"]["epsilon"][str(c)] == ledger.latest_epsilon(c, ACCOUNTANT)
        recs = ledger.records(c)
        assert [r.round for r in recs] == [1, 2]  # numbered from 1, as everywhere
        for rec in recs:
            assert report["rounds"][rec.round - 1]["epsilon"][str(c)] == rec.epsilon[ACCOUNTANT]
            assert report["privacy"]["epsilon_by_accountant"][str(c)] == recs[-1].epsilon
    assert 0 < report["summary"]["max_epsilon"] <= 4.0 + 1e-9


BAD = [
    (["--clients", "0"], "error: clients must be in [3, 1000], got 0"),
    (["--noise-multiplier", "-1"], "error: noise_multiplier must be in (0, 10000], got -1.0"),
    (["--threshold", "9"], "error: threshold must be in [2, 7], got 9"),
    (["--dataset", "mnist"], "error: unknown dataset 'mnist'"),
    (["--graph", "sparse", "--degree", "3"], "error: degree must be even"),
    (["--target-epsilon", "4", "--noise-multiplier", "1"], "error: give either"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_values_give_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from secureagg.cli import main

    assert main(["demo", *args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(message), err
    assert not (tmp_path / "r").exists()  # refused before any work


def test_bad_value_in_the_real_command_has_no_traceback() -> None:
    proc = _secureagg("demo", "--clients", "0", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == "error: clients must be in [3, 1000], got 0\n"


def test_an_interrupted_demo_leaves_a_ledger_the_audit_reads(tmp_path: Path) -> None:
    import signal
    import time

    out = tmp_path / "report"
    ledger = out / LEDGER_FILE
    proc = subprocess.Popen(
        [str(EXE), "demo", "--rounds", "500", "--out", str(out), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        # A shell runs background jobs with SIGINT ignored and children inherit that (then
        # Python installs no KeyboardInterrupt handler): give the demo Ctrl-C as a user has it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 90
        while not ledger.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert ledger.exists(), "no ledger was written while the demo ran"
        time.sleep(0.5)  # let it go on into a later round
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted" in stdout
    book = PrivacyLedger.load(ledger)
    rounds = {len(book.records(c)) for c in book.clients()}
    assert book.clients() == list(range(1, 9)) and len(rounds) == 1
    (done,) = rounds
    assert 1 <= done < 500
    audit = _secureagg("audit", str(ledger), "--out", str(tmp_path / "audit"))
    assert audit.returncode == 0, audit.stderr
    doc = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert len(doc["clients"]) == 8


def test_a_threshold_below_a_majority_is_said_in_the_output_and_the_report(
    tmp_path: Path,
) -> None:
    out = tmp_path / "report"
    proc = _secureagg("demo", "--clients", "4", "--rounds", "1", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "threshold 2 is below a majority of a neighbourhood of 4" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["secure_aggregation"]["majority"] == 3
    assert "below a majority" in report["secure_aggregation"]["threshold_note"]
    assert "**Note:** threshold 2 is below a majority" in (out / "report.md").read_text()


def test_client_level_demo_writes_a_distributed_ledger_the_audit_reads(tmp_path: Path) -> None:
    from secureagg.privacy import DistributedLedger

    out = tmp_path / "report"
    proc = _secureagg(
        "demo", "--privacy", "client", "--clients", "40", "--client-rate", "0.5",
        "--rounds", "2", "--local-epochs", "2", "--seed", "2", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "client-level distributed DP" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    cfg = report["config"]
    # --privacy client's own defaults where nothing was given, the user's values elsewhere
    assert (cfg["dataset"], cfg["update_clip"], cfg["delta"]) == ("digits", 0.5, 1e-4)
    assert (cfg["clients"], cfg["rounds"], cfg["local_epochs"]) == (40, 2, 2)
    for name in REPORT_FILES:
        assert (out / name).is_file(), name
    book = DistributedLedger.load(out / LEDGER_FILE)
    assert [r.round for r in book.rounds()] == [1, 2]
    assert report["privacy"]["epsilon"] == book.epsilon() <= 4.0
    assert report["privacy"]["unit"] == "one client's whole update"
    audit = _secureagg("audit", str(out / LEDGER_FILE))
    assert audit.returncode == 0, audit.stderr
    assert "Client-level distributed DP" in audit.stdout
    assert f"ε = {book.epsilon():.4f}" in audit.stdout


def test_client_level_bad_values_give_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from secureagg.cli import main

    args = ["demo", "--privacy", "client", "--graph", "sparse", "--out", str(tmp_path / "r")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "complete graph" in err, err
    assert not (tmp_path / "r").exists()
