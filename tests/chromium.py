"""Headless Chromium for the tests that render pages: where it is, the flags every run gets,
and a small client of its DevTools protocol for pages that keep changing.

A page rendered once (the simulation report) is one ``chromium --headless --screenshot``
run. A page that updates itself (the status page) needs to be asked what it shows, more than
once, while the test changes the world: :func:`headless` gives a :class:`Browser`, which
speaks the DevTools protocol over ``--remote-debugging-pipe`` (Chromium reads commands on its
descriptor 3 and answers on 4, each JSON message ended by a NUL byte), so no WebSocket
library and no debugging port are needed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

#: Every run: headless, nothing fetched in the background, a profile of the test's own.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    pytest.fail(
        "Chromium is not installed; `bash scripts/install-system-deps` installs it "
        "(CI runs it before the tests)"
    )


def command(profile: Path, *arguments: str) -> list[str]:
    """``chromium`` with :data:`FLAGS`, the profile folder and ``arguments``."""
    return [chromium(), *FLAGS, f"--user-data-dir={profile}", *arguments]


class DevToolsError(Exception):
    """Chromium answered a command with an error."""


@asynccontextmanager
async def headless(profile: Path, log: Path) -> AsyncIterator[Browser]:
    """Headless Chromium with the profile folder ``profile``, its output to ``log``, closed
    at the end."""
    browser = Browser(profile, log)
    await browser.start()
    try:
        yield browser
    finally:
        await browser.close()


class Browser:
    """Headless Chromium driven over its DevTools pipe (see :func:`headless`). Every command
    waits at most ``timeout`` seconds for its answer."""

    def __init__(self, profile: Path, log: Path, *, width: int = 1280, height: int = 1600) -> None:
        self.profile = profile
        self.log = log
        self.size = (width, height)
        self.timeout = 30.0
        self._process: asyncio.subprocess.Process | None = None
        self._commands: int | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        #: Every event Chromium sent (``method``, ``params``, ``sessionId``), in order.
        self.events: list[dict[str, Any]] = []

    async def start(self) -> None:
        to_chromium, commands = os.pipe()
        answers, from_chromium = os.pipe()
        # Chromium's descriptors 3 and 4, from ours (bash moves them there: sh reads one digit).
        move = f'exec "$@" 3<&{to_chromium} 4>&{from_chromium} {to_chromium}<&- {from_chromium}>&-'
        width, height = self.size
        with self.log.open("ab") as output:
            self._process = await asyncio.create_subprocess_exec(
                "/bin/bash",
                "-c",
                move,
                "bash",
                *command(
                    self.profile, "--remote-debugging-pipe", f"--window-size={width},{height}"
                ),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                pass_fds=(to_chromium, from_chromium),
            )
        os.close(to_chromium)
        os.close(from_chromium)
        self._commands = commands
        reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(answers, "rb", 0)
        )
        self._reader = asyncio.create_task(self._read(reader), name="chromium answers")

    async def close(self) -> None:
        process = self._process
        assert process is not None
        with contextlib.suppress(DevToolsError, TimeoutError, OSError):
            await self.send("Browser.close")
        try:
            async with asyncio.timeout(15):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._commands is not None:
            os.close(self._commands)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                message = json.loads((await reader.readuntil(b"\0"))[:-1])
            except asyncio.IncompleteReadError:
                break
            if "id" not in message:
                self.events.append(message)
                continue
            waiting = self._waiting.pop(message["id"], None)
            if waiting is not None and not waiting.done():
                waiting.set_result(message)
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_exception(DevToolsError("Chromium went away"))

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """One command, and its result."""
        assert self._commands is not None
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._next_id] = answer
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        async with asyncio.timeout(self.timeout):
            reply = await answer
        if "error" in reply:
            raise DevToolsError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def open(self, url: str) -> Page:
        """A new tab showing ``url``, reporting its log (``Log.entryAdded``) and its requests
        (``Network.requestWillBeSent``) in :attr:`events`."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"])
        for domain in ("Log", "Network"):
            await page.send(f"{domain}.enable")
        width, height = self.size
        await page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        await page.send("Page.navigate", {"url": url})
        return page


class Page:
    """A tab of a :class:`Browser`."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.send(method, params, self.session)

    def events(self, method: str) -> list[dict[str, Any]]:
        """The parameters of this tab's events named ``method``, so far."""
        return [
            event["params"]
            for event in self.browser.events
            if event.get("sessionId") == self.session and event["method"] == method
        ]

    async def evaluate(self, expression: str) -> Any:
        """What the JavaScript ``expression`` gives in the page, as JSON gives it back."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> None:
        """The page as shown, whole (not only the window), as a PNG at ``path``."""
        shot = await self.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
        )
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))
