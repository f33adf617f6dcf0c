"""Waiting for an instance of the docs' provider to boot (never a timing assert: a generous
bound, then a clear failure)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from runnerscale.instancemeta import InstanceRegistry

__all__ = ["PATIENCE", "booted", "reported"]

#: Seconds an instance may take to do what is waited for.
PATIENCE = 60.0


async def reported(registry: InstanceRegistry, runner_name: str, status: str) -> None:
    """Until the runner's instance reported ``status`` to the callback route."""
    async with asyncio.timeout(PATIENCE):
        while True:
            report = registry.report(runner_name)
            if report is not None and report.status == status:
                return
            await asyncio.sleep(0.05)


async def booted(registry: InstanceRegistry, runner_name: str, folder: Path) -> None:
    """Until the instance in ``folder`` reported ``idle`` and its runner runs with its three
    files (the boot script removed its token's files)."""
    await reported(registry, runner_name, "idle")
    runner = folder / "runner"
    async with asyncio.timeout(PATIENCE):
        while (folder / "auth").exists() or not all(
            (runner / f".{name}").exists()
            for name in ("runner", "credentials", "credentials_rsaparams")
        ):
            await asyncio.sleep(0.05)
