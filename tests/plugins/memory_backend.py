"""A backend defined under tests/: runners as asyncio tasks in the daemon's own process.

It exists to prove that a backend is a plug-in: nothing under ``src/`` names it. Its
distribution (written by :func:`tests.plugins.entry_points.install`) declares::

    [runnerscale.providers]
    memory = tests.plugins.memory_backend:BACKEND

and a pool then says ``provider: memory`` with a ``memory:`` block of :class:`MemoryConfig`.

The backend's "machines" are records in an in-memory inventory (a *space*, named in the
settings, shared by every provider over it, so a new provider object sees what an old one
made, as after a restart), each tagged with the controller id, the pool and the runner name.
A runner is an asyncio task: ``runner: sim`` runs the simulator's stand-in runner
(:class:`runnerscale.fakegithub.runner.StandInRunner`) with the JIT config, so it registers, takes
one job, runs it and exits, like ``runnerscale sim-runner`` does in a process; ``runner: idle``
waits until it is stopped (what the conformance suite needs: a runner waiting for its job).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from runnerscale.config.base import ConfigModel
from runnerscale.fakegithub.jitconfig import JitConfigError, decode
from runnerscale.fakegithub.runner import EXIT_BAD_CONFIG, StandInRunner
from runnerscale.hostlabels import HostFacts, detect_local_host
from runnerscale.model import Instance, InstanceSpec
from runnerscale.protocols import Provider, ProviderError
from runnerscale.providers.registry import Backend, BackendContext
from runnerscale.providers.settings import StopGrace

__all__ = ["BACKEND", "SPACES", "MemoryConfig", "MemoryProvider", "Record"]


class MemoryConfig(ConfigModel):
    """The ``memory`` backend (tests only): each runner is a task in the daemon's process."""

    space: str = Field(
        default="default", min_length=1, description="The inventory the pool's runners live in."
    )
    runner: Literal["sim", "idle"] = Field(
        default="sim",
        description="sim: the simulator's stand-in runner; idle: waits until it is stopped.",
    )
    capacity: int | None = Field(default=None, ge=1, description="At most this many runners.")
    stop_grace: StopGrace = 5.0


@dataclass
class Record:
    """One runner as the backend holds it (its tags, and its task while it runs)."""

    id: str
    runner_name: str
    pool: str
    controller_id: str
    created_at: float
    task: asyncio.Task[int] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    exit_code: int | None = None

    def instance(self) -> Instance:
        running = self.task is not None and not self.task.done()
        # A record whose task never started: a create interrupted between its two steps.
        incomplete = self.task is None
        return Instance(
            id=self.id,
            runner_name=self.runner_name,
            pool=self.pool,
            running=running,
            exit_code=None if running else self.exit_code,
            created_at=self.created_at,
            detail=(
                "incomplete: a record without its task (a create was interrupted)"
                if incomplete
                else "a task in memory"
            ),
            incomplete=incomplete,
        )


#: Every space's inventory: runner name -> record. The backend's state, outside any provider.
SPACES: dict[str, dict[str, Record]] = {}


class MemoryProvider:
    """:class:`~runnerscale.protocols.Provider` over one space, for one pool and controller."""

    def __init__(self, settings: MemoryConfig, context: BackendContext) -> None:
        self.settings = settings
        self.context = context
        self.inventory = SPACES.setdefault(settings.space, {})

    def _ours(self, record: Record) -> bool:
        return (record.controller_id, record.pool) == (
            self.context.controller_id,
            self.context.pool,
        )

    async def create(self, spec: InstanceSpec) -> Instance:
        name = spec.runner_name
        if name in self.inventory:
            raise ProviderError(f"pool {self.context.pool}: runner {name} exists already")
        capacity = self.settings.capacity
        if capacity is not None and sum(map(self._ours, self.inventory.values())) >= capacity:
            raise ProviderError(f"pool {self.context.pool}: at capacity ({capacity})")
        record = Record(
            id=name,
            runner_name=name,
            pool=self.context.pool,
            controller_id=self.context.controller_id,
            created_at=time.time(),
        )
        self.inventory[name] = record
        try:
            record.task = self._start(record, spec.jitconfig)
        except Exception as error:  # leave nothing: the record goes too
            self.inventory.pop(name, None)
            raise ProviderError(
                f"pool {self.context.pool}: cannot start runner {name}: {type(error).__name__}"
            ) from None
        return record.instance()

    def _start(self, record: Record, jitconfig: str) -> asyncio.Task[int]:
        return asyncio.create_task(self._run(record, jitconfig), name=f"memory:{record.id}")

    async def _run(self, record: Record, jitconfig: str) -> int:
        if self.settings.runner == "idle":
            await record.stop.wait()
            record.exit_code = 0
            return 0
        try:
            config = decode(jitconfig)
        except JitConfigError:
            record.exit_code = EXIT_BAD_CONFIG
            return EXIT_BAD_CONFIG
        runner = StandInRunner(config, out=io.StringIO())
        stopper = asyncio.create_task(record.stop.wait())
        stopper.add_done_callback(lambda _: runner.request_stop())
        try:
            record.exit_code = await runner.run()
        except Exception:  # the service went away: the runner ends, like a process would
            record.exit_code = 1
        finally:
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopper
        return record.exit_code

    async def delete(self, instance_id: str) -> None:
        record = self.inventory.get(instance_id)
        if record is None or not self._ours(record):
            return  # gone, or never ours: success
        await stop(record, self.settings.stop_grace)
        if self.inventory.get(instance_id) is record:
            del self.inventory[instance_id]

    async def get(self, instance_id: str) -> Instance | None:
        record = self.inventory.get(instance_id)
        return record.instance() if record is not None and self._ours(record) else None

    async def list(self) -> list[Instance]:
        return [r.instance() for r in list(self.inventory.values()) if self._ours(r)]

    async def close(self) -> None:
        """Runners outlive the provider (a new one over the space adopts them)."""


async def stop(record: Record, grace: float) -> None:
    """Ask the runner to stop, and cancel it after ``grace``."""
    record.stop.set()
    task = record.task
    if task is None or task.done():
        return
    try:
        async with asyncio.timeout(grace):
            await asyncio.shield(task)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        record.exit_code = -9


def build(settings: MemoryConfig, context: BackendContext) -> Provider:
    return MemoryProvider(settings, context)


def host_facts(settings: MemoryConfig, provider: Provider) -> HostFacts:
    """The runners run in the daemon's process: this host."""
    return detect_local_host()


def capacity(settings: MemoryConfig) -> int | None:
    return settings.capacity


BACKEND = Backend(
    settings=MemoryConfig,
    build=build,
    description="Settings of the memory backend (tests only; provider: memory).",
    host_facts=host_facts,
    capacity=capacity,
    example="{space: default}",
)
