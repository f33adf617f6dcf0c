"""The daemon's listeners: which endpoints are served where, and behind which gate.

Why: the daemon has two audiences. GitHub and monitoring reach ``server.listen`` (TCP): the
webhook (which proves itself by its signature), ``/metrics`` and the health endpoints (open by
default, or for holders of the token, or off: ``server.metrics``, ``server.health``), and
the instances of external providers their metadata and callback routes (open: each
instance's own token is the key, :mod:`runnerscale.instancemeta`). The
control API (status, scaling, runner removal) is the operator's alone, so it is never served
open there. It is served:

- by default on a unix socket, ``control.sock`` in the state directory (``server.control:
  unix:///PATH`` elsewhere), mode 0600: the kernel lets in the daemon's user and root only,
  and no web page can reach a unix socket;
- with ``server.control: tcp://HOST:PORT`` on a listener of its own (or on ``server.listen``
  itself when that is the address given), where the bearer token is the key: from
  ``server.api_token``, else made at first start in ``api-token`` in the state directory (mode
  0600), which ``runnerscale status`` reads.

Either way :class:`~runnerscale.access.ControlGuard` refuses browsers and foreign ``Host``
names. Deciding apart from doing: :func:`layout` says what goes where from the configuration
alone; :func:`open_listeners` makes the token and binds the sockets.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from runnerscale.access import ControlGuard, TokenGate
from runnerscale.apitoken import TokenFileError, ensure_token
from runnerscale.config.control import (
    API_TOKEN_FILE,
    Access,
    TcpControl,
    UnixControl,
)
from runnerscale.config.control import control_address as address_of
from runnerscale.config.schema import Config
from runnerscale.httpserve import LoopbackServer, Service, SocketInUseError, UnixSocketServer
from runnerscale.publicurl import public_url
from runnerscale.server import DaemonHTTP, Group

__all__ = ["ControlError", "Layout", "Listeners", "layout", "open_listeners"]

log = logging.getLogger("runnerscale")


class ControlError(Exception):
    """A listener cannot be opened, or the token cannot be had; the message says why."""


@dataclass(frozen=True)
class Layout:
    """What the configuration asks for: where the control API is and who may read what."""

    control: UnixControl | TcpControl
    #: The control API shares ``server.listen`` (``server.control`` names that address).
    shared: bool
    metrics: Access
    health: Access
    #: Whether anything asks for the bearer token (a tcp:// control API, or metrics or
    #: health set to ``token``).
    needs_token: bool
    #: Where the token made at first start is kept (None: none is needed, or
    #: ``server.api_token`` gives it).
    token_file: Path | None


def layout(config: Config) -> Layout:
    """Where each group of endpoints goes, from the configuration alone."""
    server = config.server
    control = address_of(server.control, config.state_dir)
    tcp = isinstance(control, TcpControl)
    shared = isinstance(control, TcpControl) and (control.host, control.port) == (
        server.host,
        server.port,
    )
    needs = tcp or "token" in (server.metrics, server.health)
    made = needs and server.api_token is None
    token_file = config.state_dir / API_TOKEN_FILE if made else None
    return Layout(control, shared, server.metrics, server.health, needs, token_file)


def _token(config: Config, plan: Layout) -> str | None:
    if not plan.needs_token:
        return None
    if config.server.api_token is not None:
        return config.server.api_token.get_secret_value()
    assert plan.token_file is not None
    try:
        return ensure_token(plan.token_file)
    except TokenFileError as error:
        raise ControlError(str(error)) from None
    except OSError as error:
        raise ControlError(
            f"cannot write the API token to {plan.token_file}: {error.strerror or error}"
        ) from None


async def _not_here(request: Request) -> Response:
    return JSONResponse(
        {
            "message": "the control API is not served on this address: use runnerscale status "
            "or runnerscale scale with the daemon's config (they reach its control socket, or "
            "server.control), or for the status page runnerscale dashboard; see "
            "docs/configuration.md#the-control-api"
        },
        status_code=404,
    )


def _public_routes(
    http: DaemonHTTP, plan: Layout, token: str | None, guard: list[Middleware]
) -> list[BaseRoute]:
    # The instances' routes: open, the instance's token is the key (none: 401).
    routes: list[BaseRoute] = [*http.routes("webhook"), *http.routes("instances")]
    groups: tuple[tuple[Group, Access], ...] = (("metrics", plan.metrics), ("health", plan.health))
    for group, access in groups:
        if access == "off":
            continue
        gate = []
        if access == "token":
            assert token is not None  # layout() asked for one
            gate.append(Middleware(TokenGate, token=token))
        routes += http.routes(group, gate)
    if plan.shared:
        routes += http.routes("control", guard)
    else:
        every = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        routes.append(Route("/api/{rest:path}", _not_here, methods=every))
        routes.append(Route("/", _not_here, methods=["GET"]))  # where the status page is not
    return routes


class Listeners(Service):
    """The public listener and, unless it shares that one, the control API's own."""

    def __init__(
        self,
        public: LoopbackServer,
        control: LoopbackServer | UnixSocketServer | None,
        plan: Layout,
        public_url: str,
    ) -> None:
        self.public = public
        self.control = control
        self.plan = plan
        #: Where instances reach the daemon (``server.public_url``, or the listener's).
        self.public_url = public_url

    @property
    def url(self) -> str:
        """The public listener's (``http://HOST:PORT``)."""
        return self.public.url

    @property
    def control_url(self) -> str:
        """Where the control API answers: ``unix:///PATH`` or ``http://HOST:PORT``."""
        return (self.control or self.public).url

    async def start(self) -> None:
        # The control API first: once the public listener answers (what a supervisor or a
        # test waits for), the control API does too.
        if self.control is not None:
            await self.control.start()
        try:
            await self.public.start()
        except BaseException:
            if self.control is not None:
                await self.control.stop()
            raise
        where = self.control_url
        if isinstance(self.plan.control, UnixControl):
            where += " (mode 0600: this user and root)"
        else:
            kept = self.plan.token_file or "server.api_token"
            where += f" (bearer token: {kept})"
        log.info("control API on %s", where)

    async def stop(self) -> None:
        if self.control is not None:
            await self.control.stop()
        await self.public.stop()

    def close(self) -> None:
        """Release the sockets of listeners never started."""
        if self.control is not None:
            self.control.close()
        self.public.close()


def open_listeners(
    http: DaemonHTTP,
    config: Config,
    port: int | None = None,
    on_secret: Callable[[str], None] | None = None,
) -> Listeners:
    """The daemon's listeners, bound (``port`` overrides ``server.listen``'s, for tests);
    the token made or read first when one is needed (``on_secret`` learns it, for the log's
    redaction); the instances' registry told where they reach the daemon, now that the port
    is known. Raises :class:`ControlError` with what to change."""
    plan = layout(config)
    token = _token(config, plan)
    if token is not None and on_secret is not None:
        on_secret(token)
    tcp_token = token if isinstance(plan.control, TcpControl) else None
    guard = [Middleware(ControlGuard, token=tcp_token)]
    server = config.server
    public_port = server.port if port is None else port
    try:
        public = LoopbackServer(
            Starlette(routes=_public_routes(http, plan, token, guard)), server.host, public_port
        )
    except OSError as error:
        where = f"{server.host}:{public_port}"
        raise _cannot_listen(where, public_port, "server.listen", error) from None
    try:
        control = _control_listener(http, plan, guard)
    except BaseException:
        public.close()
        raise
    reached_at = public_url(server.public_url, server.host, public.port)
    if http.instances is not None:
        http.instances.serve_at(reached_at)
    return Listeners(public, control, plan, reached_at)


def _control_listener(
    http: DaemonHTTP, plan: Layout, guard: list[Middleware]
) -> LoopbackServer | UnixSocketServer | None:
    if plan.shared:
        return None
    app = Starlette(routes=http.routes("control"), middleware=guard)
    where = plan.control
    try:
        if isinstance(where, UnixControl):
            return UnixSocketServer(app, where.path)
        return LoopbackServer(app, where.host, where.port)
    except SocketInUseError:
        raise ControlError(
            f"the control socket {where} is served by another daemon: give each daemon on "
            "this host its own server.control (e.g. unix:///run/runnerscale/b.sock)"
        ) from None
    except OSError as error:
        port = where.port if isinstance(where, TcpControl) else None
        raise _cannot_listen(f"{where} (the control API)", port, "server.control", error) from None


def _cannot_listen(where: str, port: int | None, setting: str, error: OSError) -> ControlError:
    """Why a listener cannot be opened, naming the address, the setting and the fix."""
    if error.errno == errno.EADDRINUSE and port is not None:
        return ControlError(
            f"cannot listen on {where}: port {port} is already in use by another process "
            f"(`ss -ltnp 'sport = :{port}'` shows which): stop it, or set {setting} to a free "
            "port"
        )
    if error.errno == errno.EACCES and port is not None and port < 1024:
        return ControlError(
            f"cannot listen on {where}: ports below 1024 need root (or CAP_NET_BIND_SERVICE): "
            f"set {setting} to a port of 1024 or more"
        )
    return ControlError(f"cannot listen on {where}: {error.strerror or error} (check {setting})")
