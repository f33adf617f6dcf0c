"""Serving an ASGI app with uvicorn on a socket bound up front, as an async context manager.

Binding first means the URL (and a port picked by the system) is known before anything that
needs it is built; the simulator writes its own URL into the JIT configurations it issues.
Used by the simulator, the daemon and the tests' webhook receivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Self

import uvicorn
from starlette.types import ASGIApp


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


class LoopbackServer(Service):
    """An ASGI app served by uvicorn on a socket bound up front, so its URL is known first.

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
        if (certfile is None) != (keyfile is None):
            raise ValueError("certfile and keyfile go together")
        self.app = app
        self._tls = (certfile, keyfile)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP (not 0): asyncio then sets TCP_NODELAY on accepted connections, which
        # avoids a ~40 ms delayed-ACK stall on every request.
        self._socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError:
            self._socket.close()
            raise
        self.port: int = self._socket.getsockname()[1]
        scheme = "http" if certfile is None else "https"
        authority = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        self.url = f"{scheme}://{authority}"
        self._server: uvicorn.Server | None = None
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
        self._server = uvicorn.Server(config)
        self.task = asyncio.create_task(
            self._server.serve(sockets=[self._socket]), name=f"http-{self.port}"
        )
        while not self._server.started:
            if self.task.done():
                self.task.result()  # surfaces the start-up error
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        self.close()

    def close(self) -> None:
        """Release the socket (also when the server never started)."""
        self._socket.close()
