"""Serving an ASGI app with uvicorn on a socket bound up front, as an async context manager.

Binding first means the URL (and a port picked by the system) is known before anything that
needs it is built; the simulator writes its own URL into the JIT configurations it issues.
Used by the simulator, the daemon (on TCP, and on a unix socket for its control API) and the
tests' webhook receivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import socket
import stat
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import uvicorn
from starlette.types import ASGIApp

from runnerscale.files import make_dirs, socket_address


class Service(ABC):
    """Something started and stopped around an ``async with`` block."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to the process serving it.

    uvicorn's own ``serve`` takes SIGINT and SIGTERM while it runs (``signal.signal``, not the
    event loop's handlers) and raises them again when it stops. With several servers in one
    process (the demo runs the simulator, the daemon's listener and its control API), one
    Ctrl-C stopped one server, whose exit handed the signal to the next, while the process
    itself went on with its HTTP gone. The commands decide what a signal means; a server
    stops when told (:meth:`SocketServer.stop`)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit_requested = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_exit(self) -> None:
        """Stop serving now, rather than at uvicorn's next 0.1 s poll of ``should_exit``."""
        self.should_exit = True
        self._exit_requested.set()

    async def main_loop(self) -> None:
        """uvicorn's loop, woken by :meth:`request_exit` instead of polling every 0.1 s.

        Each pass is a tick uvicorn counts in tenths of a second (``on_tick`` refreshes the
        ``Date`` header every tenth tick): a pass a second, so the header stays current."""
        ticks = 0
        while not await self.on_tick(ticks):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._exit_requested.wait()
            ticks = (ticks + 10) % 864000


class SocketServer(Service):
    """An ASGI app served by uvicorn on a socket bound before (its URL is known first)."""

    def __init__(
        self,
        app: ASGIApp,
        sock: socket.socket,
        url: str,
        *,
        certfile: Path | None = None,
        keyfile: Path | None = None,
    ) -> None:
        if (certfile is None) != (keyfile is None):
            raise ValueError("certfile and keyfile go together")
        # Listening from now on: a client that connects before uvicorn has started waits in
        # the backlog instead of being refused.
        sock.listen(socket.SOMAXCONN)
        self.app = app
        self._socket = sock
        self.url = url
        self._tls = (certfile, keyfile)
        self._server: _EmbeddedServer | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        config = uvicorn.Config(
            self.app,
            # No logging set-up of uvicorn's own: its default installs a stderr handler on the
            # "uvicorn" loggers that does not propagate, so its tracebacks would bypass the
            # root handler and its redaction of secrets (runnerscale.logs).
            log_config=None,
            log_level="warning",
            lifespan="off",
            access_log=False,
            interface="asgi3",
            ssl_certfile=self._tls[0],
            ssl_keyfile=self._tls[1],
        )
        self._server = _EmbeddedServer(config)
        self.task = asyncio.create_task(
            self._server.serve(sockets=[self._socket]), name=f"http {self.url}"
        )
        while not self._server.started:
            if self.task.done():
                self.task.result()  # surfaces the start-up error
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.request_exit()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        self.close()

    def close(self) -> None:
        """Release the socket (also when the server never started)."""
        self._socket.close()


class LoopbackServer(SocketServer):
    """An ASGI app served by uvicorn on a TCP socket bound up front, so its URL is known first.

    With ``certfile`` and ``keyfile`` (PEM) it serves https, and :attr:`url` says so.
    """

    def __init__(
        self,
        app: ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        certfile: Path | None = None,
        keyfile: Path | None = None,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP (not 0): asyncio then sets TCP_NODELAY on accepted connections, which
        # avoids a ~40 ms delayed-ACK stall on every request.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        self.port: int = sock.getsockname()[1]
        scheme = "http" if certfile is None else "https"
        authority = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        super().__init__(app, sock, f"{scheme}://{authority}", certfile=certfile, keyfile=keyfile)


class SocketInUseError(OSError):
    """Another live process serves the unix socket's path."""


class UnixSocketServer(SocketServer):
    """An ASGI app served by uvicorn on a unix socket only its owner (and root) may use.

    The socket is made with mode 0600 from the start (its mode is set before ``bind``, which
    Linux gives the file it creates), in a folder made 0700 when missing. The path is held
    with a lock file beside it for the server's life: a second server on the same path is
    refused (:class:`SocketInUseError`) rather than taking the path from under the first, while
    a socket file left by a server that died (``kill -9``) is replaced. On closing, the socket
    file is removed if it is still the one this server made.
    """

    def __init__(self, app: ASGIApp, path: Path) -> None:
        make_dirs(path.parent)
        lock = os.open(
            path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise SocketInUseError(
                errno.EADDRINUSE, "another process serves this socket", str(path)
            ) from None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(path.lstat().st_mode):
                    path.unlink()  # left by a server that died: the lock was free
            os.fchmod(sock.fileno(), 0o600)
            with socket_address(path) as address:
                sock.bind(address)
            os.chmod(path, 0o600)
        except BaseException:
            sock.close()
            os.close(lock)
            raise
        self.path = path
        self._lock: int | None = lock
        self._inode = path.stat().st_ino
        super().__init__(app, sock, f"unix://{path}")

    def close(self) -> None:
        super().close()
        if self._lock is None:
            return
        with contextlib.suppress(FileNotFoundError):
            if self.path.lstat().st_ino == self._inode:
                self.path.unlink()
        os.close(self._lock)
        self._lock = None
