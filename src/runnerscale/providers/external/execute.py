"""Running a provider program once: garm's way (no shell, no arguments, the environment given
in full), with the bounds garm leaves out.

Why these bounds: a provider is a program runnerscale did not write. It may hang (it is killed
at the timeout: SIGTERM to its whole process group, SIGKILL a few seconds later, so what it
started in its group goes too; it runs in a session of its own so that no signal meant for the
daemon reaches it and killing it reaches nothing of the daemon's), print without end (at most
:data:`OUTPUT_LIMIT` bytes of each stream are kept, the rest read and dropped so that it never
blocks on a full pipe), or leave a child holding its output open (reading stops
:data:`DRAIN_GRACE` seconds after it exited). Cancelling a run (the daemon stopping) kills it
the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DRAIN_GRACE", "KILL_GRACE", "OUTPUT_LIMIT", "Completed", "TimedOutError", "run"]

log = logging.getLogger(__name__)

#: Bytes of stdout and of stderr kept of one run.
OUTPUT_LIMIT = 1024 * 1024
#: Seconds between SIGTERM and SIGKILL when a run is killed.
KILL_GRACE = 5.0
#: Seconds output is still read after the program exited (a child may hold the pipes).
DRAIN_GRACE = 2.0
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Completed:
    """A run that ended by itself."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    #: Whether some output was dropped beyond :data:`OUTPUT_LIMIT`.
    truncated: bool = False


class TimedOutError(Exception):
    """The run outlasted its timeout and was killed (its output so far is kept)."""

    def __init__(self, stdout: bytes, stderr: bytes) -> None:
        super().__init__("timed out")
        self.stdout = stdout
        self.stderr = stderr


class _Capture:
    """One stream, read to its end, its first ``limit`` bytes kept."""

    def __init__(self, stream: asyncio.StreamReader, limit: int) -> None:
        self.data = bytearray()
        self.truncated = False
        self._stream = stream
        self._limit = limit

    async def read(self) -> None:
        while chunk := await self._stream.read(_CHUNK):
            room = self._limit - len(self.data)
            if len(chunk) > room:
                self.truncated = True
            self.data += chunk[: max(room, 0)]


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    """Write ``data`` and close: a program that does not read its stdin is not an error."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        if data:
            stdin.write(data)
            await stdin.drain()
        stdin.close()
        await stdin.wait_closed()


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def _kill(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM to the run's process group, SIGKILL to it once the leader exited or after
    ``grace`` (whatever of the group ignored SIGTERM goes too)."""
    _signal_group(process.pid, signal.SIGTERM)
    await _exited(process, grace)
    _signal_group(process.pid, signal.SIGKILL)
    await _exited(process, grace)


async def _exited(process: asyncio.subprocess.Process, within: float) -> bool:
    """Whether the program exited within ``within`` seconds. (Not ``process.wait()``: that
    also waits for its pipes to close, which a child of it may hold open for ever.)"""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pause = 0.005
    while process.returncode is None:
        left = deadline - loop.time()
        if left <= 0:
            return False
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, 0.1)
    return True


async def run(
    executable: str,
    env: Mapping[str, str],
    stdin: bytes,
    *,
    time_limit: float,
    kill_grace: float = KILL_GRACE,
    limit: int = OUTPUT_LIMIT,
) -> Completed:
    """Run ``executable`` once with exactly ``env`` and ``stdin``; raise :class:`TimedOutError`
    when it outlasts ``time_limit`` seconds, ``OSError`` when it cannot be started."""
    process = await asyncio.create_subprocess_exec(
        executable,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        cwd="/",
        start_new_session=True,
        close_fds=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    out, err = _Capture(process.stdout, limit), _Capture(process.stderr, limit)
    readers = asyncio.gather(out.read(), err.read(), _feed(process.stdin, stdin))
    try:
        if not await _exited(process, time_limit):
            await _kill(process, kill_grace)
            await _drain(process, readers)
            raise TimedOutError(bytes(out.data), bytes(err.data)) from None
        await _drain(process, readers)
    except asyncio.CancelledError:
        if process.returncode is None:
            await asyncio.shield(_kill(process, kill_grace))
        readers.cancel()
        raise
    return Completed(
        exit_code=process.returncode if process.returncode is not None else -1,
        stdout=bytes(out.data),
        stderr=bytes(err.data),
        truncated=out.truncated or err.truncated,
    )


async def _drain(process: asyncio.subprocess.Process, readers: asyncio.Future[Any]) -> None:
    """Finish reading, but not for longer than :data:`DRAIN_GRACE` (a child of the program
    may keep its pipes open: then our ends are closed, so that no descriptor stays behind)."""
    try:
        async with asyncio.timeout(DRAIN_GRACE):
            await asyncio.shield(readers)
    except TimeoutError:
        log.debug("a provider's child holds its output open: stopped reading it")
        readers.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await readers
        # asyncio.subprocess.Process has no public close; its transport's closes the pipes.
        transport = getattr(process, "_transport", None)
        if transport is not None:
            transport.close()
