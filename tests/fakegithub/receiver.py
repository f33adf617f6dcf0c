"""A real webhook receiver for the simulator's deliveries, on a loopback port.

Deliveries are only worth testing as they arrive over HTTP: headers as sent, the body as
signed. The receiver records each request (any path, so one receiver can stand for several
hooks: ``{url}/repo``, ``{url}/org``...) and answers ``status``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runnerscale.fakegithub.webhooks import WebhookHub
from runnerscale.httpserve import LoopbackServer


class Received(NamedTuple):
    headers: dict[str, str]
    body: bytes
    path: str

    @property
    def event(self) -> str:
        return self.headers["x-github-event"]

    def payload(self) -> Any:
        """The JSON payload, also out of a form-encoded (``payload=...``) body."""
        if self.headers.get("content-type") == "application/x-www-form-urlencoded":
            return json.loads(parse_qs(self.body.decode())["payload"][0])
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook endpoint that records what it gets and answers ``status``."""

    status: int = 200
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def endpoint(self, request: Request) -> Response:
        self.received.append(
            Received(dict(request.headers), await request.body(), request.url.path)
        )
        self.arrived.set()
        return Response(status_code=self.status)

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()

    def at(self, path: str, event: str | None = None) -> list[Received]:
        """What arrived at ``path`` (of ``event``, if given), in order."""
        return [r for r in self.received if r.path == path and event in (None, r.event)]

    def actions(self) -> list[str]:
        return [r.payload()["action"] for r in self.received if r.event == "workflow_job"]


@asynccontextmanager
async def serve_receiver() -> AsyncIterator[tuple[Receiver, str]]:
    """A :class:`Receiver` listening on a free loopback port, and its base URL."""
    receiver = Receiver()
    app = Starlette(routes=[Route("/{path:path}", receiver.endpoint, methods=["POST"])])
    async with LoopbackServer(app) as server:
        yield receiver, server.url


async def wait_attempted(hub: WebhookHub, count: int, timeout: float = 10.0) -> None:
    """Until ``count`` deliveries have been attempted (the receiver sees a request before its
    answer reaches the simulator, so the log lags the receiver a little)."""
    async with asyncio.timeout(timeout):
        while sum(1 for delivery in hub.log if delivery.attempted) < count:
            await asyncio.sleep(0.01)
