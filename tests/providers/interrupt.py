"""A create killed with SIGKILL at one of its steps, as a ``kill -9`` of the daemon would.

The create runs in a process of its own (``python -m tests.providers.interrupt``), with
:data:`~runnerscale.providers.pause.PAUSE_ENV` naming the step: the backend stands still right
after it, says so by writing a file, and is killed there. What the backend holds afterwards is
exactly what a crash at that step leaves. The provider's factory and the spec reach the process
pickled on its standard input (the JIT config is on no command line).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from runnerscale.model import InstanceSpec
from runnerscale.protocols import Provider
from runnerscale.providers.pause import PAUSE_ENV

#: The repository: the child imports ``tests`` from there.
ROOT = Path(__file__).resolve().parents[2]
#: How long a create may take to reach its step (never asserted as a timing).
PATIENCE = 60.0


@contextlib.asynccontextmanager
async def create_paused_after(
    step: str, factory: Callable[[], Provider], spec: InstanceSpec
) -> AsyncIterator[None]:
    """Run ``factory().create(spec)`` in a process of its own, standing still right after
    ``step`` while the block runs (a create in flight), and SIGKILL it there on leaving (a
    picklable ``factory``: a ``functools.partial`` of the provider class)."""
    with tempfile.TemporaryDirectory(prefix="rs-interrupt-") as folder:
        marker = Path(folder) / "paused"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.providers.interrupt",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, PAUSE_ENV: f"{step} {marker}"},
        )
        assert process.stdin is not None
        paused = False
        try:
            process.stdin.write(pickle.dumps((factory, spec)))
            await process.stdin.drain()
            process.stdin.close()
            with contextlib.suppress(TimeoutError):  # said below
                async with asyncio.timeout(PATIENCE):
                    while not marker.exists() and process.returncode is None:
                        await asyncio.sleep(0.02)
            paused = marker.exists()
            if paused:
                yield
        finally:
            if process.returncode is None:
                process.kill()
            _, errors = await process.communicate()
        if not paused:
            raise AssertionError(
                f"the create did not stop after step {step!r}:\n{errors.decode(errors='replace')}"
            )


async def create_killed_after(
    step: str, factory: Callable[[], Provider], spec: InstanceSpec
) -> None:
    """A create killed with SIGKILL right after ``step`` (see :func:`create_paused_after`)."""
    async with create_paused_after(step, factory, spec):
        pass


async def _create() -> None:
    factory, spec = pickle.loads(sys.stdin.buffer.read())
    await factory().create(spec)


if __name__ == "__main__":
    asyncio.run(_create())
