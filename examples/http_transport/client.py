"""One client of a secure-aggregation round, over HTTP (httpx).

    python examples/http_transport/client.py --url http://127.0.0.1:PORT --id 3

It fetches the global model and the round config, trains locally, and answers each server
message with what its SecureAggClient returns. Its update leaves this process only
masked. ``--hang-after share-keys`` makes it stop answering after that stage (run.py then
kills it, to show a client lost mid-round).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from federation import encoder, local_update

from secureagg import SecureAggClient, SecureAggError


def say(text: str) -> None:
    print(text, flush=True)


def run(args: argparse.Namespace) -> int:
    with httpx.Client(base_url=args.url, timeout=10.0) as http:
        weights = np.frombuffer(http.get("/model").raise_for_status().content, dtype="<f4")
        client = SecureAggClient(encoder(), args.id)
        client.provide_update(local_update(args.id, weights))  # encoded; kept in the session
        config = http.get("/config").raise_for_status().content
        http.post(f"/message/{args.id}", content=client.join(config)).raise_for_status()
        sent = "advertise"
        say(f"sent {sent}")
        step, deadline = 0, time.monotonic() + args.timeout
        while client.stage is not None:
            if args.hang_after == sent:
                say("hanging")
                time.sleep(3600)
            r = http.get(f"/inbox/{args.id}", params={"after": step})
            if r.status_code == 410:
                say(f"left the round: {r.text}")
                return 1
            if r.status_code == 204:
                if time.monotonic() > deadline:
                    say("gave up waiting for the server")
                    return 1
                time.sleep(0.01)
                continue
            r.raise_for_status()
            step = int(r.headers["X-Step"])
            sent = client.stage.label  # the stage of the reply about to be sent
            reply = client.receive(r.content)
            http.post(f"/message/{args.id}", content=reply).raise_for_status()
            say(f"sent {sent}")
    say("done")
    return 0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--timeout", type=float, default=60.0, help="give up after this many s")
    p.add_argument("--hang-after", choices=["advertise", "share-keys", "masked-input"])
    args = p.parse_args(argv)
    try:
        sys.exit(run(args))
    except (SecureAggError, httpx.HTTPError) as exc:
        say(f"client {args.id}: {type(exc).__name__}: {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
