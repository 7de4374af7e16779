"""The ``secureagg`` entry point: light ``--help``, one line for a missing extra or an
unusable ``--out`` (before any work), and an audit of a ledger with no clients.

Each case runs in a fresh interpreter, since what a command imports is the point.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from secureagg.cli import main
from secureagg.privacy import PrivacyLedger

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def _run_hiding(missing: str | None, *argv: str) -> str:
    """Code that runs ``secureagg ARGV`` with ``missing`` not importable, then prints JSON:
    the exit status and the heavy modules that were imported."""
    hide = "" if missing is None else f"sys.modules[{missing!r}] = None  # import fails"
    return f"""
        import json, sys
        {hide}
        from secureagg.cli import main
        rc = main({list(argv)!r})
        heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {{'torch', 'matplotlib'}})
        print(json.dumps({{"rc": rc, "heavy": heavy}}))
        """


def _result(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert "Traceback" not in proc.stderr, proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_help_imports_neither_torch_nor_matplotlib() -> None:
    proc = _python(_run_hiding(None, "--help"))
    assert "demo" in proc.stdout and "audit" in proc.stdout
    assert _result(proc) == {"rc": 0, "heavy": []}
    for command in ("demo", "audit"):
        proc = _python(_run_hiding(None, command, "--help"))
        assert _result(proc) == {"rc": 0, "heavy": []}, command


@pytest.mark.parametrize("module", ["click", "rich"])
def test_a_missing_extra_is_one_line_naming_it(module: str) -> None:
    proc = _python(_run_hiding(module, "--help"))
    assert _result(proc)["rc"] == 1
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("secureagg: the command line needs the 'cli' extra")
    assert f"({module} is not installed)" in proc.stderr
    assert "pip install 'secureagg[cli]'" in proc.stderr


def test_missing_matplotlib_in_audit_is_one_line(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.json"
    PrivacyLedger(ledger).save()
    out = tmp_path / "audit"
    proc = _python(_run_hiding("matplotlib", "audit", str(ledger), "--out", str(out)))
    assert _result(proc)["rc"] == 1
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "(matplotlib is not installed): pip install 'secureagg[cli]'" in proc.stderr


def test_missing_sklearn_in_demo_is_one_line(tmp_path: Path) -> None:
    argv = ("demo", "--rounds", "1", "--quiet", "--out", str(tmp_path / "r"))
    proc = _python(_run_hiding("sklearn", *argv))
    assert _result(proc)["rc"] == 1
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "(sklearn is not installed): pip install 'secureagg[cli]'" in proc.stderr


def test_another_missing_module_is_not_blamed_on_the_extra() -> None:
    code = """
        import sys
        sys.modules["secureagg.cli._app"] = None
        from secureagg.cli import main
        main(["--help"])
        """
    proc = _python(code)
    assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr  # a real bug shows


@pytest.mark.parametrize("command", ["demo", "audit-report", "audit-empirical"])
def test_an_unusable_out_fails_first_with_exit_2(command: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad = blocker / "report"  # a folder under a file: no user (not even root) can make it
    ledger = tmp_path / "ledger.json"
    PrivacyLedger(ledger).save()
    argv = {
        "demo": ["demo", "--out", str(bad)],
        "audit-report": ["audit", str(ledger), "--out", str(bad)],
        "audit-empirical": ["audit", "empirical", "--out", str(bad)],
    }[command]
    proc = _python(_run_hiding(None, *argv))
    result = _result(proc)
    assert result["rc"] == 2
    if command != "audit-empirical":  # its settings are checked by a class that needs torch
        assert result["heavy"] == []  # no torch: refused before any training or accounting
    assert proc.stderr == f"error: --out {str(bad)!r} cannot be used as a folder: Not a directory\n"


def test_audit_of_a_ledger_with_no_clients(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.json"
    PrivacyLedger(ledger).save()  # what a run that recorded nothing leaves behind
    out = tmp_path / "audit"
    assert main(["audit", str(ledger), "--out", str(out)]) == 0
    doc = json.loads((out / "audit.json").read_text())
    assert doc["clients"] == [] or doc["clients"] == {}
    assert "0 clients" in (out / "audit.md").read_text()
    assert (out / "epsilon.png").stat().st_size > 0
