"""Who may use the control API over HTTP: never a browser, never through a stranger's name,
and on TCP only with the bearer token.

Why each check:

- **No browser.** A web page the operator opens can send requests to ``127.0.0.1`` (a
  ``text/plain`` POST needs no CORS preflight), so without this any page could scale the
  fleet (cross-site request forgery). Browsers mark every cross-origin request, and every
  POST, with ``Origin``, and modern ones every request with ``Sec-Fetch-Site``; the command
  line and scripts send neither. So a request carrying either is refused (403), whatever it
  asks and whoever it claims to be.
- **Our own name in ``Host``.** DNS rebinding points a name the attacker owns at
  ``127.0.0.1``, making the browser treat the daemon as the attacker's site; its requests
  then name the attacker's host. A request must name the address it arrived at (or
  ``localhost`` on loopback, or this machine's host name) and its port; on the unix socket,
  ``localhost`` or nothing (403 otherwise).
- **The token, on TCP.** Anyone on the machine (any user, any container sharing the network)
  can connect to a TCP port; only the token tells the operator apart (401). It is compared in
  constant time (hashes of both, compared with :func:`hmac.compare_digest`), so the time an
  answer takes says nothing about how much of a guess was right. On the unix socket the file
  system has already decided: its mode lets in the daemon's user and root only.
- **JSON for what changes something.** A POST must say ``Content-Type: application/json``
  (415 otherwise): the kinds an HTML form can send are refused even by a browser that sent no
  ``Origin``.

Deciding apart from doing: :func:`refusal` decides from the request's headers and the address
it arrived at; the ASGI middlewares :class:`ControlGuard` and :class:`TokenGate` answer the
refusal or pass the request on (:class:`Gate` is what every gate does, for the dashboard's
too: :mod:`runnerscale.dashboard`). No token, given or expected, is ever logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from runnerscale.logs import untrusted

__all__ = [
    "ControlGuard",
    "Gate",
    "Refusal",
    "TokenGate",
    "bearer_refusal",
    "foreign_host",
    "refusal",
    "same_secret",
]

log = logging.getLogger("runnerscale.access")

#: Methods that change something (the control API's POST and DELETE).
_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_JSON = "application/json"


@dataclass(frozen=True)
class Refusal:
    """Why a request is turned away: its HTTP status and the reason given."""

    status: int
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Worth a warning in the log (a browser or a stranger's Host: someone tried something).
    suspicious: bool = False


def _browser(headers: Headers) -> Refusal | None:
    marks = [name for name in ("Origin", "Sec-Fetch-Site") if name.lower() in headers]
    if not marks:
        return None
    return Refusal(
        403,
        f"the control API does not answer web browsers (the request carries {marks[0]}): use "
        "runnerscale status or runnerscale scale, or a client that sends no Origin (the "
        "status page in a browser: runnerscale dashboard)",
        suspicious=True,
    )


def _split_host(value: str) -> tuple[str, int | None] | None:
    """``Host``'s name and port (None: no port given), or None when it cannot be one."""
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    else:
        name, _, port = value.partition(":")
    if port and not port.isdigit():
        return None
    return name.lower(), int(port) if port else None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``text`` writes (an IPv4 address mapped into IPv6 as itself), or None."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _names_us(name: str, local: str) -> bool:
    """Whether a ``Host`` name is the local address, ``localhost`` on loopback, or this
    machine's host name."""
    ours = _ip(local)
    if ours is None:
        return False
    if name == "localhost":
        return ours.is_loopback
    return _ip(name) == ours or name == socket.gethostname().lower()


def foreign_host(headers: Headers, local: tuple[str, int | None] | None) -> Refusal | None:
    """A ``Host`` that names someone else (DNS rebinding), or None when it names us (``local``:
    the address the request came to, ASGI's ``server``; None or no port: a unix socket)."""
    given = headers.get("host", "")
    if local is None or local[1] is None:  # the unix socket (uvicorn: its path, no port)
        if given in ("", "localhost"):
            return None
        allowed = "localhost"
    else:
        address, port = local
        parts = _split_host(given)
        if parts is not None and (parts[1] or 80) == port and _names_us(parts[0], address):
            return None
        allowed = f"the address it listens on and its port ({address}:{port})"
    return Refusal(
        403,
        f"this answers only requests that name it (Host: {allowed}); this one "
        "named another host, as a web page using DNS rebinding would",
        suspicious=True,
    )


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def same_secret(given: str, expected: str) -> bool:
    """Whether ``given`` is ``expected``, in a time that says nothing about how much of it
    was right (hashes of both, compared with :func:`hmac.compare_digest`)."""
    return hmac.compare_digest(_digest(given), _digest(expected))


def bearer(headers: Headers) -> str | None:
    """What ``Authorization: Bearer`` carries, or None."""
    scheme, _, given = headers.get("authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else None


def bearer_refusal(
    headers: Headers, secret: str, message: str, realm: str = "runnerscale"
) -> Refusal | None:
    """None when ``Authorization: Bearer`` carries ``secret`` (compared in constant time),
    else a 401 that says ``message``."""
    given = bearer(headers)
    if given is not None and same_secret(given, secret):
        return None
    return Refusal(401, message, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})


def token_refusal(headers: Headers, token: str) -> Refusal | None:
    """None when ``Authorization: Bearer`` carries the daemon's ``token``."""
    return bearer_refusal(
        headers,
        token,
        "this needs the daemon's bearer token (Authorization: Bearer TOKEN), which runnerscale "
        "status and scale send: server.api_token, or the api-token file in the daemon's state "
        "directory",
    )


def _not_json(method: str, headers: Headers) -> Refusal | None:
    if method not in _CHANGING or method == "DELETE":
        return None
    media = headers.get("content-type", "").partition(";")[0].strip().lower()
    if media == _JSON:
        return None
    return Refusal(415, f"send the request's body as JSON (Content-Type: {_JSON}), e.g. {{}}")


def refusal(
    method: str, headers: Headers, local: tuple[str, int | None] | None, token: str | None
) -> Refusal | None:
    """Why the control API refuses this request, or None to serve it: a browser, a foreign
    ``Host`` (``local``: the address it came to, ASGI's ``server``), a missing or wrong token
    (``token`` None: none is asked, the unix socket), or a change not sent as JSON, checked
    in that order."""
    return (
        _browser(headers)
        or foreign_host(headers, local)
        or (token_refusal(headers, token) if token is not None else None)
        or _not_json(method, headers)
    )


async def answer(refused: Refusal, send: Send) -> None:
    """Send the refusal as the response: its status, headers and message (JSON)."""
    body = json.dumps({"message": refused.message}).encode()
    headers = [
        (b"content-type", _JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        *((key.lower().encode(), value.encode()) for key, value in refused.headers.items()),
    ]
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "the unix socket"


class Gate(ABC):
    """An ASGI gate: every request passes :meth:`refusal` or is answered with it; a
    suspicious refusal is logged as a warning (what was tried, from where), a missing key
    at info."""

    #: What the gate keeps, for the log ("control API").
    name: str

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @abstractmethod
    def refusal(self, scope: Scope, headers: Headers) -> Refusal | None:
        """Why this request is refused, or None to serve it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refused = self.refusal(scope, headers)
        if refused is None:
            await self.app(scope, receive, send)
            return
        if refused.suspicious:
            log.warning(
                "%s: refused %s %s from %s (Host %s, Origin %s): %s",
                self.name,
                scope["method"],
                untrusted(scope["path"]),
                _client(scope),
                untrusted(headers.get("host", "-")),
                untrusted(headers.get("origin", "-")),
                refused.message,
            )
        elif refused.status == 401:
            log.info("%s: refused %s without the right token", self.name, _client(scope))
        await answer(refused, send)


class ControlGuard(Gate):
    """The control API's gate: every request passes :func:`refusal` or is answered with it."""

    name = "control API"

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        super().__init__(app)
        self._token = token

    def refusal(self, scope: Scope, headers: Headers) -> Refusal | None:
        return refusal(scope["method"], headers, scope.get("server"), self._token)


class TokenGate:
    """An endpoint for holders of the token only (``/metrics`` or health set to ``token``)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = token_refusal(Headers(scope=scope), self._token)
            if refused is not None:
                await answer(refused, send)
                return
        await self.app(scope, receive, send)
