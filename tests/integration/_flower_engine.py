"""Flower's own processes (SuperLink, SuperNodes, ``flwr run``) started and stopped by a test.

Every process runs with HOME and FLWR_HOME in the test's temporary folder, telemetry and
update checks off, and the venv's ``bin`` first on PATH (Flower starts its helpers by name).
Each process leads its own process group; :meth:`Engine.close` stops each one by its own
PID with a bounded wait, then kills what is left of its group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from secureagg.flower._records import INLINE_MAX

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "flower_app"
BIN = Path(sys.executable).parent


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that are free on 127.0.0.1 right now."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


class Engine:
    """The Flower processes of one test, all under ``tmp``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        home = tmp / "home"
        (home / ".flwr").mkdir(parents=True)
        self.env = {
            **os.environ,
            "HOME": str(home),
            "FLWR_HOME": str(home / ".flwr"),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "OMP_NUM_THREADS": "1",  # several ClientApps share this machine's few cores
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("VIRTUAL_ENV", None)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def log(self, name: str) -> str:
        """What process ``name`` has printed so far."""
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        """Start one Flower executable from the venv, its output going to ``name``.log."""
        with open(self.tmp / f"{name}.log", "wb") as out:
            proc = subprocess.Popen(
                [str(BIN / argv[0]), *argv[1:]],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.tmp,
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def superlink(self, port: int, *, simulation: bool = False) -> None:
        """A SuperLink on 127.0.0.1:``port`` (Fleet, Control and runtime APIs), ready to use,
        and a connection named "test" to it as the default in FLWR_HOME/config.toml."""
        argv = [
            "flower-superlink",
            "--insecure",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--isolation",
            "subprocess",
            "--disable-runtime-dependency-installation",  # the venv has the app's dependencies
        ]
        if simulation:
            argv.append("--simulation")
        proc = self.start("superlink", *argv)
        (self.tmp / "home" / ".flwr" / "config.toml").write_text(
            '[superlink]\ndefault = "test"\n\n'
            f'[superlink.test]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"the SuperLink exited:\n{self.log('superlink')[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"the SuperLink was not up in 60 s:\n{self.log('superlink')[-3000:]}")

    def supernode(self, name: str, superlink_port: int, port: int, node_config: str) -> None:
        """A SuperNode listening on 127.0.0.1:``port``, connecting to the SuperLink."""
        self.start(
            name,
            "flower-supernode",
            "--insecure",
            "--superlink",
            f"127.0.0.1:{superlink_port}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--node-config",
            node_config,
        )

    def wait_connected(self, names: list[str], timeout: float = 90) -> None:
        """Wait until each SuperNode in ``names`` has its node id from the SuperLink."""
        deadline = time.monotonic() + timeout
        waiting = list(names)
        while waiting and time.monotonic() < deadline:
            for name in list(waiting):
                if self.procs[name].poll() is not None:
                    raise AssertionError(f"{name} exited:\n{self.log(name)[-3000:]}")
                if "SuperNode ID:" in self.log(name):
                    waiting.remove(name)
            time.sleep(0.3)
        if waiting:
            raise AssertionError(f"not connected in {timeout} s: {waiting}")

    def flwr_run(self, *args: str, timeout: float) -> str:
        """``flwr run`` with ``args`` (streamed to the end of the run); its output."""
        proc = subprocess.run(
            [str(BIN / "flwr"), "run", *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.tmp,
            timeout=timeout,
        )
        out = proc.stdout + proc.stderr
        (self.tmp / "flwr-run.log").write_text(out)
        assert proc.returncode == 0, out[-4000:]
        return out

    def close(self) -> None:
        """Stop every process: SIGTERM, a bounded wait, then SIGKILL for its whole group."""
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(list(self.procs.values())):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # helpers it started, if any outlived it


def run_config(**values: Any) -> list[str]:
    """``--run-config`` arguments for ``flwr run``: one ``key=value`` each, TOML values."""
    out = []
    for key, value in values.items():
        out += ["--run-config", f"{key.replace('_', '-')}={json.dumps(value)}"]
    return out


def check_results(tmp: Path, *, rounds: int, ledgers: list[Path]) -> dict[str, Any]:
    """Check the example's results JSON and the nodes' privacy ledgers (``ledgers``, by
    partition id) after ``rounds`` secure rounds."""
    nodes = len(ledgers)
    results: dict[str, Any] = json.loads((tmp / "results.json").read_text())
    assert sorted(results["rounds"], key=int) == [str(r) for r in range(1, rounds + 1)]
    for report in results["rounds"].values():
        assert report["aborted"] is None, report
        assert len(report["nodes"]) == nodes
        assert sorted(report["survivors"]) == sorted(report["nodes"])  # everyone in the sum
        assert report["dropouts"] == {} and report["declined"] == {}, report
        assert 0 < report["error_bound"] < 1e-3
        # Each masked input is over 4 KiB (2,410 parameters), so it travelled as a raw-bytes
        # Array through Flower's own transport, not inline in the ConfigRecord.
        assert report["bytes_received"] > nodes * INLINE_MAX
        # uniform weighting: the summed weight counts the nodes, no example count is sent
        assert abs(report["total_examples"] - nodes) < 1e-3
    accuracy = {int(r): a for r, a in results["accuracy"].items()}
    assert sorted(accuracy) == list(range(rounds + 1))
    assert accuracy[rounds] > 0.4 > accuracy[0]  # it learned (10 classes: chance is 0.1)
    for pid, path in enumerate(ledgers):
        ledger = json.loads(path.read_text())
        records = ledger["clients"][str(pid)]["records"]
        assert [r["round"] for r in records] == list(range(1, rounds + 1))
        assert all(r["participated"] and r["noise_multiplier"] == 1.0 for r in records)
        eps = [r["epsilon"]["opacus_rdp"] for r in records]
        assert 0 < eps[0] < eps[-1]  # DP-SGD ran, and its accountant kept counting
    return results
