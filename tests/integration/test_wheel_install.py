"""The wheel as a user installs it: built from this checkout, installed into a fresh virtual
environment, and run there, offline.

First with nothing but the wheel (``--no-deps``): ``import secureagg`` works and the
``secureagg`` command says in one line which extra to install. Then with the dependencies
this machine already has (the test's own environment's site-packages added to the fresh
environment's path, after its own): the command's ``--help`` and the core imports run from
the installed wheel, not from the checkout.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def _run(*argv: str | Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "PYTHONNOUSERSITE": "1"}  # no PYTHONPATH
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    built = subprocess.run(
        [
            *(PY, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"),
            *("--wheel-dir", str(dist), str(ROOT)),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = dist.glob("secureagg-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    assert "secureagg/py.typed" in names
    assert not any(n.startswith(("tests/", "docs/", "examples/")) for n in names)
    env = tmp / "venv"
    made = subprocess.run([PY, "-m", "venv", "--without-pip", str(env)], capture_output=True)
    assert made.returncode == 0, made.stderr
    installed = subprocess.run(
        [
            *(PY, "-m", "pip", "--python", str(env / "bin" / "python"), "install"),
            *("--no-deps", "--no-index", "--quiet", str(wheel)),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return env


def test_core_only_install_imports_and_names_the_cli_extra(venv: Path) -> None:
    py = venv / "bin" / "python"
    code = (
        "import importlib.metadata as md, secureagg; m = md.metadata('secureagg');"
        "print(secureagg.__file__); print(m['Requires-Python']);"
        "print(sorted(m.get_all('Provides-Extra')))"
    )
    proc = _run(py, "-c", code, cwd=venv)
    assert proc.returncode == 0, proc.stderr
    where, requires, extras = proc.stdout.splitlines()
    assert where.startswith(str(venv))  # the installed wheel, not the checkout
    assert requires == ">=3.11"
    assert "cli" in extras and "audit" not in extras
    proc = _run(venv / "bin" / "secureagg", "--help", cwd=venv)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == (
        "secureagg: the command line needs the 'cli' extra (click is not installed):"
        " pip install 'secureagg[cli]'\n"
    )


def test_with_dependencies_the_command_and_the_core_run_from_the_wheel(venv: Path) -> None:
    purelib = sysconfig.get_paths()["purelib"]  # this environment's packages, after the venv's
    [site] = (venv / "lib").glob("python3.*/site-packages")
    (site / "zz_dependencies.pth").write_text(purelib + "\n")
    proc = _run(venv / "bin" / "secureagg", "--help", cwd=venv)
    assert proc.returncode == 0, proc.stderr
    assert "demo" in proc.stdout and "audit" in proc.stdout
    code = (
        "import sys, secureagg, secureagg.protocol;"
        "from secureagg import PrivateTrainer, SecureAggregator;"
        "print(secureagg.__file__, secureagg.protocol.__file__, 'torch' in sys.modules)"
    )
    proc = _run(venv / "bin" / "python", "-c", code, cwd=venv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    top, protocol, torch_loaded = proc.stdout.split()
    assert top.startswith(str(venv)) and protocol.startswith(str(venv))
    assert torch_loaded == "True"
