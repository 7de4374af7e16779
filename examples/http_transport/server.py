"""The server of one secure-aggregation round, over HTTP (Starlette served by uvicorn).

    python examples/http_transport/server.py --clients 5 --port-file port.txt --out result.json

Routes (all bodies raw bytes, never unpickled):
  GET  /model              the global model, float32 little-endian
  GET  /config             the round config (SecureAggServer.config_bytes)
  POST /message/{client}   one protocol message from that client
  GET  /inbox/{client}?after=N   the server's next message for the client (header X-Step),
                           204 while there is none yet, 410 once the client is out of the round

A stage closes when every client it waits for has answered, or when --stage-timeout
seconds have passed (--join-timeout for the first): a client that crashed or hangs is
then a dropout. The result (the survivors' average, who they are, who dropped where)
goes to --out as JSON.
The client id is taken from the URL: a real deployment authenticates it (mutual TLS, or
secureagg's signed mode with identity keys) before it reaches ``receive``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import torch
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent))
from federation import CLIP, FRAC_BITS, MAX_CLIENTS, MAX_EXAMPLES, D

from secureagg import RoundAborted, SecureAggConfig, SecureAggregator, SecureAggServer

MAX_BODY = 16 * 2**20  # bytes: far above a masked update of this model


class RoundHost:
    """One round's SecureAggServer and the messages waiting for each client."""

    def __init__(self, clients: list[int], stage_timeout: float, join_timeout: float) -> None:
        self.weights = np.zeros(D, dtype=np.float32)  # the global model of this round
        settings = SecureAggConfig(clip=CLIP, frac_bits=FRAC_BITS)
        aggregator = SecureAggregator(
            {"w": torch.from_numpy(self.weights)},
            settings,
            max_clients=MAX_CLIENTS,
            max_examples=MAX_EXAMPLES,
        )
        self.server = SecureAggServer(aggregator, clients)
        self.clients = set(clients)
        self.stage_timeout = stage_timeout
        self.join_timeout = join_timeout
        self.step = 0
        self.outbox: dict[int, bytes] = {}
        self.outcome: dict[str, object] = {}

    async def run(self) -> None:
        """Close each stage when all have answered or at its deadline; then decode."""
        loop = asyncio.get_running_loop()
        server = self.server
        while server.stage is not None:
            first = self.step == 0  # clients are still starting: a longer deadline to join
            deadline = loop.time() + (self.join_timeout if first else self.stage_timeout)
            while server.waiting_for and loop.time() < deadline:
                await asyncio.sleep(0.01)
            try:
                out = server.close_stage()
            except RoundAborted as exc:
                self.outcome = {"aborted": str(exc)}
                break
            self.step += 1
            self.outbox = out
        else:
            res = server.result()
            self.outcome = {
                "members": res.members,
                "average": res.vector.tolist(),
                "total_examples": res.total_examples,
                "error_bound": res.error_bound,
            }
        self.step += 1
        self.outbox = {}
        self.outcome["dropouts"] = {str(u): s.name for u, s in server.dropouts.items()}
        self.outcome["rejected"] = [f"{r.client}: {r.reason}" for r in server.rejected]

    # --- routes ---------------------------------------------------------------------------

    async def model(self, request: Request) -> Response:
        return Response(self.weights.astype("<f4").tobytes(), media_type="application/octet-stream")

    async def config(self, request: Request) -> Response:
        return Response(self.server.config_bytes, media_type="application/octet-stream")

    def _client(self, request: Request) -> int | None:
        try:
            cid = int(request.path_params["client"])
        except ValueError:
            return None
        return cid if cid in self.clients else None

    async def message(self, request: Request) -> Response:
        cid = self._client(request)
        if cid is None:
            return Response("unknown client", status_code=404)
        if int(request.headers.get("content-length", 0)) > MAX_BODY:
            return Response("message too large", status_code=413)
        body = await request.body()
        self.server.receive(cid, body)  # never raises on bad bytes: the sender is dropped
        return Response(status_code=204)

    async def inbox(self, request: Request) -> Response:
        cid = self._client(request)
        if cid is None:
            return Response("unknown client", status_code=404)
        try:
            after = int(request.query_params.get("after", "0"))
        except ValueError:
            return Response("after must be an int", status_code=400)
        if self.step <= after:
            return Response(status_code=204)  # not yet: poll again
        data = self.outbox.get(cid)
        if data is None:
            return Response("not in the round any more", status_code=410)
        headers = {"X-Step": str(self.step)}
        return Response(data, media_type="application/octet-stream", headers=headers)


async def serve(args: argparse.Namespace) -> None:
    host = RoundHost(list(range(1, args.clients + 1)), args.stage_timeout, args.join_timeout)
    routes = [
        Route("/model", host.model),
        Route("/config", host.config),
        Route("/message/{client}", host.message, methods=["POST"]),
        Route("/inbox/{client}", host.inbox),
    ]
    app = Starlette(routes=routes)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    web = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(web.serve(sockets=[sock]))
    while not web.started:
        await asyncio.sleep(0.01)
    if args.port_file:  # written once the server listens; renamed so a reader never sees half
        tmp = Path(f"{args.port_file}.tmp")
        tmp.write_text(str(sock.getsockname()[1]))
        os.replace(tmp, args.port_file)
    await host.run()
    await asyncio.sleep(args.linger)  # let clients read their last message
    web.should_exit = True
    await serving
    Path(args.out).write_text(json.dumps(host.outcome, indent=1))
    print(json.dumps({k: v for k, v in host.outcome.items() if k != "average"}))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--port", type=int, default=0, help="0: any free port (see --port-file)")
    p.add_argument("--port-file", help="write the port here once listening")
    p.add_argument("--stage-timeout", type=float, default=5.0, help="seconds per stage")
    p.add_argument("--join-timeout", type=float, default=30.0, help="seconds to join")
    p.add_argument("--linger", type=float, default=0.5, help="seconds served after the round")
    p.add_argument("--out", default="result.json")
    asyncio.run(serve(p.parse_args(argv)))


if __name__ == "__main__":
    main()
