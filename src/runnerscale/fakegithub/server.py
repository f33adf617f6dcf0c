"""Running the simulator as a real HTTP server (``runnerscale fake-github``, and tests).

Three tasks share one event loop: uvicorn serving :func:`runnerscale.fakegithub.app.create_app`, a
ticker that applies the world's timeouts when they fall due, and the webhook sender that drains
the delivery outbox over HTTP. :class:`SimulatorServer` owns all three as an async context
manager, so a test gets a live simulator on a free loopback port and leaves nothing running.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from starlette.types import Receive, Scope, Send

from runnerscale.clock import Clock, SystemClock
from runnerscale.fakegithub.api import Simulator
from runnerscale.fakegithub.app import create_app
from runnerscale.fakegithub.auth import Authenticator, load_app_public_key
from runnerscale.fakegithub.tls import ServerTls
from runnerscale.fakegithub.world import World, WorldSettings
from runnerscale.httpserve import LoopbackServer, Service

#: GitHub gives a webhook receiver 10 seconds to answer.
WEBHOOK_TIMEOUT = 10.0
#: The ticker never sleeps longer than this, so new deadlines are noticed promptly.
MAX_TICK = 1.0


@dataclass
class SimulatorOptions:
    host: str = "127.0.0.1"
    port: int = 0
    tokens: tuple[str, ...] = ()
    #: Scopes of classic tokens, by token (each one of ``tokens``); a token not named here
    #: behaves like a fine-grained token: no ``x-oauth-scopes``, never refused for a scope.
    token_scopes: dict[str, frozenset[str]] = field(default_factory=dict)
    app_id: int | None = None
    app_key: Path | str | None = None
    #: ``--webhook-url``: the App's webhook when ``app_id`` is set, else a hook that hears
    #: every owner (:meth:`runnerscale.fakegithub.webhooks.WebhookHub.add_hook`).
    webhook_urls: tuple[str, ...] = ()
    webhook_secret: str | None = None
    seed: int = 0
    world: WorldSettings = field(default_factory=WorldSettings)
    #: Serve https with this certificate (``fake-github --tls``); None serves plain http.
    tls: ServerTls | None = None


def build_simulator(options: SimulatorOptions, clock: Clock, api_url: str) -> Simulator:
    """Assemble world, credentials and hooks; the in-process simulation uses this too."""
    settings = dataclasses.replace(
        options.world,
        server_url=api_url,
        app_id=options.app_id,
        seed=options.seed,
        # The stand-in runner trusts the simulator's own CA from its JIT configuration.
        server_ca=None if options.tls is None else options.tls.ca_pem(),
    )
    world = World(clock, settings)
    public_key = None
    if options.app_key is not None:
        key_source = Path(options.app_key) if isinstance(options.app_key, Path) else options.app_key
        public_key = load_app_public_key(key_source)
    authenticator = Authenticator(
        world, options.tokens, options.app_id, public_key, token_scopes=options.token_scopes
    )
    simulator = Simulator(world, clock, authenticator, api_url=api_url)
    for url in options.webhook_urls:
        simulator.webhooks.add_hook(url, options.webhook_secret)
    return simulator


class SimulatorServer(Service):
    """A live simulator on a loopback port: ``async with SimulatorServer(opts) as server``."""

    def __init__(self, options: SimulatorOptions, clock: Clock | None = None) -> None:
        self.options = options
        self.clock = clock or SystemClock()
        self.simulator: Simulator
        tls = options.tls
        self._http_server = LoopbackServer(
            self._app,
            options.host,
            options.port,
            certfile=None if tls is None else tls.certfile,
            keyfile=None if tls is None else tls.keyfile,
        )
        self.port = self._http_server.port
        self.url = self._http_server.url
        try:
            self.simulator = build_simulator(options, self.clock, self.url)
        except BaseException:
            self._http_server.close()
            raise
        self._asgi = create_app(self.simulator)
        self._tasks: list[asyncio.Task[None]] = []
        self._http: httpx.AsyncClient | None = None

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The server is bound before the simulator exists (the simulator needs the URL).
        await self._asgi(scope, receive, send)

    async def start(self) -> None:
        self._http = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT)
        await self._http_server.start()
        self._tasks = [
            asyncio.create_task(self._tick_forever(), name="sim-ticker"),
            asyncio.create_task(self.simulator.webhooks.run(self._post), name="sim-webhooks"),
        ]

    async def wait(self) -> None:
        """Serve until the HTTP server stops (for the command line)."""
        assert self._http_server.task is not None
        await self._http_server.task

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._http_server.stop()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> int:
        assert self._http is not None
        response = await self._http.post(url, headers=headers, content=body)
        return response.status_code

    async def _tick_forever(self) -> None:
        world = self.simulator.world
        while True:
            world.tick()
            self.simulator.notify()
            deadline = world.next_deadline()
            delay = MAX_TICK if deadline is None else deadline - self.clock.now()
            await self.clock.sleep(min(MAX_TICK, max(0.05, delay)))
