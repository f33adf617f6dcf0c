"""How ``runnerscale status`` and ``runnerscale scale`` reach the daemon's control API.

Why: the command line finds the daemon from the configuration the daemon reads, so the two
always agree on where the control API is (:func:`runnerscale.config.control.control_address`):
its unix socket (the default, in the state directory), or a TCP listener, with the bearer
token from ``server.api_token`` or the file the daemon made. The request names the address it
goes to in ``Host`` and carries no ``Origin``, as the daemon's guard asks
(:mod:`runnerscale.access`). What can go wrong on the way (no socket, no permission, nothing
listening, no token) is said in one sentence with what to do; the token never is.
"""

from __future__ import annotations

import contextlib
import errno
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from runnerscale.apitoken import TokenFileError, read_token
from runnerscale.config.control import API_TOKEN_FILE, TcpControl, UnixControl, control_address
from runnerscale.config.schema import ControlConfig
from runnerscale.files import socket_address

__all__ = [
    "Connection",
    "ControlAnswerError",
    "ControlClientError",
    "ControlUnreachableError",
    "async_client",
    "call",
    "connection",
    "request_json",
    "unreachable",
]

#: Seconds a command waits for the daemon (a scale-up waits for its runners' creation).
TIMEOUT = 30.0


class ControlClientError(Exception):
    """A request to the control API came to nothing; the message says why."""


class ControlUnreachableError(ControlClientError):
    """The control API cannot be asked; the message says why and what to do."""


class ControlAnswerError(ControlClientError):
    """The control API refused or failed the request; the message is its own."""


@dataclass(frozen=True)
class Connection:
    """How to reach the control API: a base URL, over a unix socket or TCP, with headers."""

    base_url: str
    socket: Path | None
    headers: dict[str, str] = field(default_factory=dict, repr=False)


def _connect_host(host: str) -> str:
    """The address to connect to for a listener on ``host`` (a wildcard: loopback)."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - we connect to it, not bind
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def connection(config: ControlConfig) -> Connection:
    """Where the control API of the daemon run with ``config`` is, and the headers it wants
    (the token read here: :class:`ControlUnreachableError` when it cannot be)."""
    where = control_address(config.server.control, config.state_dir)
    if isinstance(where, UnixControl):
        return Connection("http://localhost", where.path)
    host = TcpControl(_connect_host(where.host), where.port)
    secret = config.server.api_token
    try:
        token = (
            secret.get_secret_value()
            if secret is not None
            else read_token(config.state_dir / API_TOKEN_FILE)
        )
    except TokenFileError as error:
        raise ControlUnreachableError(str(error)) from None
    return Connection(f"http://{host.authority}", None, {"Authorization": f"Bearer {token}"})


def _errno(error: BaseException) -> int | None:
    """The errno of the OS error under an httpx error, if any."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen.errno
        seen = seen.__cause__ or seen.__context__
    return None


def unreachable(where: Connection, error: Exception) -> ControlUnreachableError:
    """What stopped a request to the control API at ``where`` (``error``: httpx's, or the
    OS error under it), in one sentence with what to do."""
    code = _errno(error)
    if where.socket is None:
        return ControlUnreachableError(
            f"cannot reach the daemon's control API at {where.base_url}: is `runnerscale run` "
            "running with this config (its server.control)?"
        )
    socket = where.socket
    if code == errno.EACCES:
        return ControlUnreachableError(
            f"permission denied on the daemon's control socket {socket}: run as the daemon's "
            "user or root"
        )
    if code == errno.ECONNREFUSED:
        return ControlUnreachableError(
            f"cannot reach the daemon: nothing answers on its control socket {socket}; is "
            "`runnerscale run` running with this config?"
        )
    if code == errno.ENOENT:
        return ControlUnreachableError(
            f"cannot reach the daemon: its control socket {socket} is not there; is "
            "`runnerscale run` running with this config?"
        )
    return ControlUnreachableError(
        f"cannot reach the daemon on its control socket {socket}: {error}"
    )


def call(config: ControlConfig, method: str, path: str, body: object = None) -> httpx.Response:
    """One request to the control API of the daemon run with ``config``: its response
    (whatever its status), or :class:`ControlUnreachableError`."""
    where = connection(config)
    try:
        with contextlib.ExitStack() as held:
            uds = None
            if where.socket is not None:
                uds = held.enter_context(socket_address(where.socket))
            with httpx.Client(
                transport=httpx.HTTPTransport(uds=uds),
                base_url=where.base_url,
                headers=where.headers,
                timeout=TIMEOUT,
            ) as client:
                return client.request(method, path, json=body)
    except (httpx.TransportError, OSError) as error:  # OSError: the socket's folder
        raise unreachable(where, error) from None


def request_json(
    config: ControlConfig, method: str, path: str, body: object = None
) -> dict[str, Any]:
    """One request to the control API, and the JSON object it answered; what it said
    instead of doing it (a 4xx or 5xx) is a :class:`ControlAnswerError` with its message."""
    response = call(config, method, path, body)
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code >= 400 or not isinstance(payload, dict):
        message = payload.get("message") if isinstance(payload, dict) else None
        raise ControlAnswerError(str(message or response.text or response.reason_phrase))
    return payload


class _SocketTransport(httpx.AsyncHTTPTransport):
    """HTTP over the unix socket at ``path``, reached through :func:`socket_address` (whose
    folder stays open until the transport closes: a long path works too)."""

    def __init__(self, path: Path) -> None:
        self._held = contextlib.ExitStack()
        super().__init__(uds=self._held.enter_context(socket_address(path)))

    async def aclose(self) -> None:
        await super().aclose()
        self._held.close()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await super().__aexit__(exc_type, exc_value, traceback)
        self._held.close()


def async_client(config: ControlConfig, **options: Any) -> httpx.AsyncClient:
    """An HTTP client of the control API of the daemon run with ``config`` (requests take
    paths, ``/api/v1/status``), for scripts and tests."""
    where = connection(config)
    transport = (
        _SocketTransport(where.socket) if where.socket is not None else httpx.AsyncHTTPTransport()
    )
    return httpx.AsyncClient(
        transport=transport, base_url=where.base_url, headers=where.headers, **options
    )
