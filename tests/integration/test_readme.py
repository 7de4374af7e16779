"""Every command the README shows runs here, in order, so none of them can rot.

``make test`` is the one exception: it is this suite. ``make demo`` runs through make with a
short configuration (``ARGS``) and without re-installing; the other commands run as written
in a temporary folder, so a later command sees what an earlier one wrote.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```console\n(.*?)```", text, flags=re.S)
    return [
        line[2:].strip() for block in blocks for line in block.splitlines() if line.startswith("$ ")
    ]


def test_readme_shows_the_two_commands_first() -> None:
    commands = readme_commands()
    assert [shlex.split(c, comments=True) for c in commands[:2]] == [
        ["make", "demo"],
        ["make", "test"],
    ]


def _argv(command: str, tmp: Path) -> tuple[list[str], Path]:
    argv = shlex.split(command, comments=True)
    if argv == ["make", "demo"]:
        args = f"--rounds 2 --quiet --out {tmp / 'secureagg-report'}"
        return ["make", "-s", "-o", ".venv/.installed", "demo", f"ARGS={args}"], ROOT
    if argv[0] == "secureagg":
        return [str(BIN / "secureagg"), *argv[1:]], tmp
    if argv[0] == "python":
        return [sys.executable, str(ROOT / argv[1]), *argv[2:]], tmp
    raise AssertionError(f"README shows a command this test does not know how to run: {command}")


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path: Path) -> None:
    if not (ROOT / ".venv" / "bin" / "secureagg").exists() or shutil.which("make") is None:
        pytest.skip("needs the project's .venv (make venv) and make")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    ran = []
    for command in readme_commands():
        if shlex.split(command, comments=True) == ["make", "test"]:
            continue  # this suite
        argv, cwd = _argv(command, tmp_path)
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        assert "Traceback" not in proc.stderr, command
        ran.append(command)
    assert len(ran) >= 5
    assert (tmp_path / "secureagg-report" / "report.md").is_file()
    assert (tmp_path / "audit-report" / "audit.md").is_file()
