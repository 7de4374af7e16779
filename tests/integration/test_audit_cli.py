"""`secureagg audit ...` end to end: report files, calculators, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secureagg.cli import main
from secureagg.privacy import PrivacyLedger

ARGS = dict(
    sample_rate=0.05, noise_multiplier=1.1, max_grad_norm=1.0, delta=1e-5, grad_sample_mode="hooks"
)


@pytest.fixture(scope="module")
def ledger_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ledger") / "ledger.json"
    led = PrivacyLedger(path, accountants=("opacus_rdp",))
    for c in (1, 2):
        for r in range(5):
            declined = c == 2 and r == 4
            led.record(
                c,
                r,
                participated=not declined,
                reason="budget" if declined else None,
                steps=0 if declined else 10,
                budget_epsilon=2.5,
                **ARGS,
            )
    led.save()
    return path


def test_audit_writes_the_report(
    ledger_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    args = ["--tight-points", "2", "--reference", "opacus_rdp"]  # budgets set by RDP figures
    assert main(["audit", str(ledger_path), "--out", str(out), *args]) == 0
    text = capsys.readouterr().out
    assert "Privacy audit" in text and "over budget" in text and "within budget" in text
    assert sorted(p.name for p in out.iterdir()) == ["audit.json", "audit.md", "epsilon.png"]
    doc = json.loads((out / "audit.json").read_text())
    one, two = doc["clients"]
    assert one["status"] == "over budget" and two["status"] == "within budget"
    assert two["budget_declines"] == 1 and two["total_steps"] == 40
    assert one["per_round"]["total_steps"] == [10, 20, 30, 40, 50]
    assert None not in one["per_round"]["epsilon"]["opacus_rdp"]
    assert None in one["per_round"]["epsilon"]["dpa_pld"]  # checkpoints only
    assert [i["item"] for i in doc["statement"]["common"]][:2] == [
        "DP setting",
        "Unit of privacy and adjacency",
    ]
    md = (out / "audit.md").read_text()
    for phrase in ("Poisson", "adding or removing one example", "secure aggregation", "1e-05"):
        assert phrase in md
    assert (out / "epsilon.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the explicit subcommand is the same thing; by default every accountant, every round
    assert main(["audit", "report", str(ledger_path), "--out", str(out), "--client", "2"]) == 0
    (two,) = json.loads((out / "audit.json").read_text())["clients"]
    for figures in two["per_round"]["epsilon"].values():
        assert None not in figures and figures == sorted(figures)
    assert "Every round, every accountant" in (out / "audit.md").read_text()


def test_epsilon_and_noise_calculators(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["audit", "epsilon", "-z", "1.1", "-q", "0.01", "-s", "10000", "-d", "1e-5"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("5.6320") == 2 and "5.1963" in out and "5.2029" in out
    argv = ["audit", "noise", "-e", "5.632", "-q", "0.01", "-s", "10000", "-d", "1e-5"]
    assert main([*argv, "--accountant", "dpa_rdp"]) == 0
    assert "1.10" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["epsilon", "-z", "1.1", "-q", "1.5", "-s", "10", "-d", "1e-5"], "sample_rate"),
        (["epsilon", "-z", "1.1", "-q", "0.1", "-s", "-10", "-d", "1e-5"], "steps"),
        (["epsilon", "-z", "1.1", "-q", "0.1", "-s", "10", "-d", "0"], "delta"),
        (["noise", "-e", "-1", "-q", "0.1", "-s", "10", "-d", "1e-5"], "target_epsilon"),
        (["empirical", "-m", "3"], "canaries"),
    ],
)
def test_bad_values_end_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_bad_ledgers_end_in_one_line(
    ledger_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(ledger_path.read_text())
    doc["clients"]["2"]["records"][3]["sample_rate"] = 1.5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    assert main(["audit", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "client 2, record #3 (round 3): sample_rate must be in [0, 1]" in err
    assert "\n" not in err
    assert not (tmp_path / "r").exists()  # refused before --out was created
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**doc, "schema_version": 0}))
    assert main(["audit", str(old)]) == 2
    assert "older ledger schema version 0" in capsys.readouterr().err
    assert main(["audit", str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
