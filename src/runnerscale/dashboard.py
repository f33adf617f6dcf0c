"""``runnerscale dashboard``: the status page in a browser, through a read-only relay on a
loopback port of its own.

Why a relay, and not the browser on the control API itself: the control API refuses every
browser (:mod:`runnerscale.access`), which is what keeps a web page the operator opens from
scaling the fleet, and by default it is a unix socket, which no browser can open. The relay is
run by someone who may use the control API (the daemon's user or root, like ``runnerscale
status``), reaches it as the command line does (:mod:`runnerscale.controlclient`: the socket,
or TCP with the bearer token, which never goes to the browser), and passes on two reads only:
``GET /`` (the page: no data in it) and ``GET /api/v1/status``. Nothing that changes anything
is reachable through it.

Anyone on the machine can connect to a loopback port, so the status is for holders of the
relay's **key**: 32 random bytes made at each start, given once in the link printed at start,
``http://127.0.0.1:PORT/#key=KEY``. After ``#``, because a fragment is never sent to a server
or in a ``Referer``; the page takes it out of the address bar, keeps it in the tab's
``sessionStorage`` (this origin's, port included) and sends it as ``Authorization: Bearer``.
Not in a cookie: a browser sends a cookie of ``127.0.0.1`` to every port of ``127.0.0.1``
(cookies ignore ports: every other local service visited would get it), and with every request
any page makes to the relay; a header goes only where the page's script puts it. The key dies
with the relay.

The relay also refuses what the control API refuses of a browser that is not on its own page:
a ``Host`` that does not name it (DNS rebinding), and a request from another site
(``Sec-Fetch-Site`` other than ``same-origin`` or ``none``, an ``Origin`` not its own; a page
on another port of 127.0.0.1 is "same-site" and refused too). Neither the key nor the daemon's
token is logged or echoed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
from collections.abc import Callable

import httpx
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Scope

from runnerscale.access import Gate, Refusal, bearer_refusal, foreign_host
from runnerscale.config.schema import ControlConfig
from runnerscale.controlclient import (
    ControlUnreachableError,
    async_client,
    connection,
    unreachable,
)
from runnerscale.httpserve import LoopbackServer, Service

__all__ = ["Dashboard", "DashboardGate", "serve"]

log = logging.getLogger("runnerscale.dashboard")

#: The relay listens on this machine only (from elsewhere: ``ssh -L``).
HOST = "127.0.0.1"
STATUS = "/api/v1/status"
#: Seconds the relay waits for the daemon.
TIMEOUT = 10.0
#: The headers of the daemon's answers passed on (the page's policy among them).
_PASSED_ON = (
    "content-type",
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "cache-control",
)
#: ``Sec-Fetch-Site`` of the relay's own page's requests, and of a link opened or typed.
_OWN_SITE = frozenset({"same-origin", "none"})


def _from_elsewhere(headers: Headers) -> Refusal | None:
    """A request another site's page made (its ``Host`` already checked), or None."""
    site = headers.get("sec-fetch-site")
    origin = headers.get("origin")
    if (site is None or site in _OWN_SITE) and origin in (None, f"http://{headers['host']}"):
        return None
    return Refusal(
        403,
        "the dashboard answers its own page only: this request came from another site's page",
        suspicious=True,
    )


#: Why the status was refused without the key, and how to have it.
_KEY_WANTED = (
    "this needs the dashboard's key: open the link runnerscale dashboard printed (the key is "
    "its end, after #key=), or start it again for a new one"
)


class DashboardGate(Gate):
    """The relay's gate: its own name in ``Host``, its own page's requests only, and the key
    for everything but the page itself (which holds nothing)."""

    name = "dashboard"

    def __init__(self, app: ASGIApp, key: str) -> None:
        super().__init__(app)
        self._key = key

    def refusal(self, scope: Scope, headers: Headers) -> Refusal | None:
        return (
            foreign_host(headers, scope.get("server"))
            or _from_elsewhere(headers)
            or (
                bearer_refusal(headers, self._key, _KEY_WANTED, "runnerscale dashboard")
                if scope["path"] != "/"
                else None
            )
        )


class Dashboard(Service):
    """The relay of the daemon run with ``config``, on ``127.0.0.1:port`` (0: a free port);
    :attr:`link` is what to open. Raises
    :class:`~runnerscale.controlclient.ControlUnreachableError` when the daemon's token cannot
    be read, OSError when the port cannot be had."""

    def __init__(self, config: ControlConfig, port: int = 0) -> None:
        self._config = config
        self._where = connection(config)
        self.key = secrets.token_urlsafe(32)
        app = Starlette(
            routes=[
                Route("/", self._page, methods=["GET"]),
                Route(STATUS, self._status, methods=["GET"]),
            ],
            middleware=[Middleware(DashboardGate, key=self.key)],
        )
        self._server = LoopbackServer(app, HOST, port)
        self._client: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def link(self) -> str:
        """The page, with the key after ``#``."""
        return f"{self.url}/#key={self.key}"

    async def start(self) -> None:
        self._client = async_client(self._config, timeout=TIMEOUT)
        try:
            await self._server.start()
        except BaseException:
            await self._client.aclose()
            raise

    async def stop(self) -> None:
        await self._server.stop()
        if self._client is not None:
            await self._client.aclose()

    async def reachable(self) -> None:
        """Ask the daemon for its status once: :class:`ControlUnreachableError` (what stops
        it, and what to do) when it cannot be asked; its answer, whatever it is, is the
        page's to show."""
        answer = await self._relay(STATUS)
        if isinstance(answer, str):
            raise ControlUnreachableError(answer)

    async def _relay(self, path: str) -> Response | str:
        """The daemon's answer to ``GET path``, or why there is none."""
        assert self._client is not None
        try:
            answer = await self._client.get(path)
        except httpx.TransportError as error:
            return str(unreachable(self._where, error))
        headers = {name: answer.headers[name] for name in _PASSED_ON if name in answer.headers}
        return Response(answer.content, status_code=answer.status_code, headers=headers)

    async def _page(self, request: Request) -> Response:
        answer = await self._relay("/")
        return PlainTextResponse(answer, 502) if isinstance(answer, str) else answer

    async def _status(self, request: Request) -> Response:
        answer = await self._relay(STATUS)
        return JSONResponse({"message": answer}, 502) if isinstance(answer, str) else answer


async def serve(
    config: ControlConfig,
    port: int,
    announce: Callable[[Dashboard], None],
    on_secret: Callable[[str], None] = lambda secret: None,
) -> None:
    """Run the relay until SIGINT (Ctrl-C) or SIGTERM; ``announce`` is told of it once it
    listens and the daemon answers (to print its link), ``on_secret`` is given its key first
    (for the log's redaction). A daemon that cannot be asked at first is
    :class:`ControlUnreachableError`; later, the page says so and the relay asks again."""
    dashboard = Dashboard(config, port)
    on_secret(dashboard.key)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    async with dashboard:
        await dashboard.reachable()  # a wrong user or no daemon: said now, not in the page
        announce(dashboard)
        await stopping.wait()
