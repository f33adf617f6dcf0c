"""The conformance suite against the memory backend of ``tests/plugins``: a backend defined
outside ``src/`` holds the same contract as the built-in ones.

Its providers are made the way the daemon makes them: by the registry entry
(:data:`tests.plugins.memory_backend.BACKEND`) from its settings model and a
:class:`~runnerscale.providers.registry.BackendContext`. The runner is ``idle`` (it waits until
it is stopped, as a runner waiting for its job does); no process is started, so the secret
properties hold by construction and are still checked.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import pytest

from runnerscale.model import InstanceSpec
from runnerscale.protocols import Provider
from runnerscale.providers.registry import BackendContext
from tests.plugins import memory_backend
from tests.plugins.memory_backend import BACKEND, SPACES, MemoryProvider, Record, stop
from tests.providers.conformance import (
    BackendUnderTest,
    Breakage,
    Interruption,
    ProviderConformance,
)


class MemoryBackend(BackendUnderTest):
    def __init__(self) -> None:
        super().__init__()
        self.space = f"conformance-{uuid.uuid4().hex[:8]}"

    def provider(self, *, pool: str | None = None, controller_id: str | None = None) -> Provider:
        settings = BACKEND.settings.model_validate({"space": self.space, "runner": "idle"})
        context = BackendContext(
            pool=pool or self.pool,
            controller_id=controller_id or self.controller_id,
            state_dir=Path("/nonexistent"),  # the memory backend keeps no files
        )
        return BACKEND.build(settings, context)

    @property
    def inventory(self) -> dict[str, memory_backend.Record]:
        return SPACES.setdefault(self.space, {})

    async def tags(self, instance_id: str) -> Mapping[str, str] | None:
        record = self.inventory.get(instance_id)
        if record is None:
            return None
        return {
            "controller": record.controller_id,
            "pool": record.pool,
            "runner": record.runner_name,
        }

    async def leftovers(self) -> list[str]:
        return [
            f"record {name} (task {'running' if r.task and not r.task.done() else 'ended'})"
            for name, r in self.inventory.items()
        ]

    async def end(self, instance_id: str) -> None:
        record = self.inventory[instance_id]
        record.stop.set()  # the runner ends by itself; its record stays
        assert record.task is not None
        await record.task

    async def vanish(self, instance_id: str) -> None:
        record = self.inventory.pop(instance_id)
        await stop(record, 1.0)

    def breakages(self) -> Sequence[Breakage]:
        def unstartable(patch: pytest.MonkeyPatch) -> Provider:
            def failing_start(*args: object) -> asyncio.Task[int]:
                raise OSError("cannot start a task (injected)")

            patch.setattr(MemoryProvider, "_start", failing_start)
            return self.provider()

        return [
            Breakage("the runner's task cannot start (after the record was made)", unstartable),
        ]

    def interruptions(self) -> Sequence[Interruption]:
        async def record_without_task(spec: InstanceSpec) -> None:
            # Its runners live in the daemon's process: a kill -9 takes them along, and leaves
            # a record only where the space outlives it (as a database would): between the
            # record and the task, a record without a task.
            self.inventory[spec.runner_name] = Record(
                id=spec.runner_name,
                runner_name=spec.runner_name,
                pool=self.pool,
                controller_id=self.controller_id,
                created_at=time.time(),
            )

        return [Interruption("after the record, before the task", record_without_task)]

    async def remove_everything(self) -> None:
        for record in list(self.inventory.values()):
            await stop(record, 1.0)
        SPACES.pop(self.space, None)


@pytest.fixture
async def backend() -> AsyncIterator[MemoryBackend]:
    made = MemoryBackend()
    yield made
    await made.remove_everything()


class TestMemoryConformance(ProviderConformance):
    pass
