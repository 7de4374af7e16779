"""Run the HTTP example: a server process and client processes on 127.0.0.1, one killed.

    python examples/http_transport/run.py --clients 5 --kill 3

Client ``--kill`` stops answering after it has sent its encrypted key shares and is then
killed (SIGKILL), before it sends its masked update: the server closes that stage at its
deadline, removes the dead client's masks with its neighbours' shares, and decodes the
survivors' average. Then this script, which knows every client's update only because it
can recompute them (``federation.local_update``; no party of the round can), checks the
result against the survivors' plain average and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from federation import D, local_update  # noqa: E402

from secureagg.fl import plain_average  # noqa: E402


def _wait_for(path: Path, proc: subprocess.Popen[str], seconds: float) -> str:
    end = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > end:
            raise SystemExit(f"the server did not start: {proc.communicate()[1]}")
        time.sleep(0.02)
    return path.read_text()


def _read_until(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdout is not None
    for got in proc.stdout:
        if got.strip() == line:
            return
    raise SystemExit(f"the client ended before printing {line!r}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--kill", type=int, default=3, help="the client to kill mid-round (0: none)")
    p.add_argument("--stage-timeout", type=float, default=3.0)
    args = p.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}
    procs: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        port_file, out = Path(tmp, "port"), Path(tmp, "result.json")
        cmd = [sys.executable, str(HERE / "server.py"), "--clients", str(args.clients)]
        cmd += ["--port-file", str(port_file), "--out", str(out)]
        cmd += ["--stage-timeout", str(args.stage_timeout)]
        try:
            server = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
            )
            procs.append(server)
            url = f"http://127.0.0.1:{_wait_for(port_file, server, 60)}"
            clients = {}
            for cid in range(1, args.clients + 1):
                victim = cid == args.kill
                hang = ["--hang-after", "share-keys"] if victim else []
                cmd = [sys.executable, str(HERE / "client.py"), "--url", url, "--id", str(cid)]
                stdout = subprocess.PIPE if victim else subprocess.DEVNULL
                clients[cid] = subprocess.Popen([*cmd, *hang], stdout=stdout, text=True, env=env)
                procs.append(clients[cid])
            if args.kill:
                _read_until(clients[args.kill], "hanging")  # shares sent, masked update not
                clients[args.kill].kill()
                clients[args.kill].wait()
            codes = {cid: c.wait(timeout=120) for cid, c in clients.items()}
            _, err = server.communicate(timeout=120)
            if server.returncode != 0:
                raise SystemExit(f"the server failed: {err}")
            result = json.loads(out.read_text())
        finally:  # nothing this script started outlives it
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    if "aborted" in result:
        raise SystemExit(f"the round aborted: {result['aborted']}")
    survivors = [c for c in clients if c != args.kill]
    weights = np.zeros(D, dtype=np.float32)
    want = plain_average([local_update(c, weights) for c in survivors])
    every = plain_average([local_update(c, weights) for c in clients])
    got = np.asarray(result["average"])
    report = {
        "members": result["members"],
        "dropouts": result["dropouts"],
        "exit_codes": codes,
        "max_error": float(np.max(np.abs(got - want))),
        "error_bound": result["error_bound"],
        "distance_to_all_clients_average": float(np.max(np.abs(got - every))),
        "total_examples": result["total_examples"],
        "survivors_examples": sum(local_update(c, weights).num_examples for c in survivors),
    }
    print(json.dumps(report))
    ok = result["members"] == survivors and report["max_error"] <= result["error_bound"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
