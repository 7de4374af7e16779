"""The layers in pyproject.toml's [tool.importlinter] hold, and `make lint` catches a breach.

Each breach test copies the package to a temporary folder, adds one import that breaks a
rule, and runs the same ``lint-imports`` that ``make lint`` runs against that copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
LAYERS = "Layers:"  # the contract names in pyproject.toml start so
PRIVATE = "No package imports another package's private modules"


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        ROOT / "secureagg", tmp_path / "secureagg", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_tree_keeps_its_contracts(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # upward: the primitives must not know the protocol
        ("hazmat/_prg.py", "import secureagg.protocol", LAYERS),
        # upward: the sans-I/O protocol must not reach the trainer (and torch)
        ("protocol/_codec.py", "from secureagg.privacy import PrivacyConfig", LAYERS),
        # upward between siblings: the demo must not use the Flower layer
        ("demo/_check.py", "import secureagg.flower", LAYERS),
        # downward but private: another package's underscore module
        ("protocol/_graph.py", "from secureagg.hazmat._modarith import reduce_into", PRIVATE),
        ("cli/_audit.py", "from secureagg.privacy.audit._series import series_epsilons", PRIVATE),
    ],
)
def test_a_breach_fails_lint(tree: Path, module: str, line: str, contract: str) -> None:
    _append(tree / "secureagg" / module, line)
    result = _lint(tree)
    assert result.returncode != 0
    (status,) = [
        line
        for line in result.stdout.splitlines()
        if line.startswith(contract) and line.endswith(("KEPT", "BROKEN"))
    ]
    assert status.endswith("BROKEN")
    importer = "secureagg." + module.removesuffix(".py").replace("/", ".")
    assert importer in result.stdout.split("Broken contracts", 1)[1]


def test_make_lint_runs_the_contracts() -> None:
    lint = (ROOT / "Makefile").read_text().split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "lint-imports" in lint
