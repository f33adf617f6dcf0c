"""``LoopbackServer`` leaves logging to the daemon: uvicorn's own error log (a traceback from
an app) goes through the root handler and its redaction. Before, uvicorn installed a stderr
handler of its own that did not propagate, and wrote the traceback, secret and all.

``UnixSocketServer`` (the daemon's control API, issue 12) makes its socket 0600 before anyone
can connect, refuses a path another server holds, replaces one a dead server left, and works
with a path longer than a socket's address holds."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runnerscale.files import MAX_SOCKET_ADDRESS, socket_address
from runnerscale.httpserve import LoopbackServer, SocketInUseError, UnixSocketServer
from runnerscale.logs import REDACTED
from tests.logcapture import daemon_log

SECRET = "webhook-secret-value"


async def failing(request: Request) -> Response:
    raise RuntimeError(f"the store refused {SECRET}")


async def test_a_traceback_from_the_app_is_logged_redacted(
    capfd: pytest.CaptureFixture[str],
) -> None:
    app = Starlette(routes=[Route("/", failing)])
    with daemon_log([SECRET]) as output:
        async with LoopbackServer(app) as server, httpx.AsyncClient() as http:
            answer = await http.get(server.url)
    assert answer.status_code == 500
    assert SECRET not in answer.text
    text = output.getvalue()
    assert "uvicorn.error: Exception in ASGI application" in text
    assert f"RuntimeError: the store refused {REDACTED}" in text
    assert SECRET not in text
    printed = capfd.readouterr()
    assert SECRET not in printed.out + printed.err


async def hello(request: Request) -> Response:
    return Response("hello")


HELLO = Starlette(routes=[Route("/", hello)])


async def get_over(path: Path) -> httpx.Response:
    with socket_address(path) as address:
        transport = httpx.AsyncHTTPTransport(uds=address)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            return await http.get("/")


async def test_a_unix_socket_server_is_its_owners_from_the_start_and_leaves_no_socket(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run" / "control.sock"
    before = os.umask(0)  # bind alone would make the socket 0777
    try:
        server = UnixSocketServer(HELLO, path)
    finally:
        os.umask(before)
    assert stat.S_ISSOCK(path.lstat().st_mode)
    assert stat.S_IMODE(path.lstat().st_mode) == 0o600  # before it serves anything
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert server.url == f"unix://{path}"
    async with server:
        assert (await get_over(path)).text == "hello"
    assert not path.exists()


async def test_a_second_server_on_a_live_socket_is_refused_and_a_dead_ones_is_replaced(
    tmp_path: Path,
) -> None:
    path = tmp_path / "control.sock"
    async with UnixSocketServer(HELLO, path):
        with pytest.raises(SocketInUseError):
            UnixSocketServer(HELLO, path)
        assert (await get_over(path)).text == "hello"  # the first one's socket is untouched
    # A server killed -9 leaves its socket file behind (and frees its lock).
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))
    async with UnixSocketServer(HELLO, path):
        assert (await get_over(path)).text == "hello"


async def test_a_socket_path_longer_than_an_address_holds_works(tmp_path: Path) -> None:
    path = tmp_path / ("d" * 120) / "control.sock"
    assert len(str(path)) > MAX_SOCKET_ADDRESS
    async with UnixSocketServer(HELLO, path):
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        assert (await get_over(path)).text == "hello"
    assert not path.exists()


def read_to_end(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("kind", ["tcp", "unix"])
async def test_a_client_that_connects_before_the_server_starts_waits_instead_of_being_refused(
    tmp_path: Path, kind: str
) -> None:
    """A socket is listening from the moment it is bound. A caller that saw one of the daemon's
    listeners answer once found the other one bound but not listening yet, and was refused
    (CI, session 5)."""
    path = tmp_path / "control.sock"
    server = LoopbackServer(HELLO) if kind == "tcp" else UnixSocketServer(HELLO, path)
    if isinstance(server, LoopbackServer):
        early = socket.create_connection(("127.0.0.1", server.port))
    else:
        early = socket.socket(socket.AF_UNIX)
        early.connect(str(path))
    with early:
        early.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        async with server:
            reply = await asyncio.to_thread(read_to_end, early)
    assert reply.startswith(b"HTTP/1.1 200")
    assert reply.endswith(b"hello")


async def test_a_server_leaves_the_process_signals_alone() -> None:
    """uvicorn took SIGINT and SIGTERM while it served and raised them again when it stopped:
    with the demo's three servers, one Ctrl-C stopped one server after another while the demo
    went on without HTTP. The process's own handlers stay in place, and a stop raises none."""
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    app = Starlette(routes=[Route("/", lambda request: Response("ok"))])
    async with LoopbackServer(app):
        during = {signum: signal.getsignal(signum) for signum in before}
    assert during == before
    assert {signum: signal.getsignal(signum) for signum in before} == before
