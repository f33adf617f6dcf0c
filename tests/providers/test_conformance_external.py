"""The provider conformance suite (``conformance.py``) against the external backend, over
docs/backends/external.md's own provider (``garm-provider-local``, taken from the page) and the
real instance endpoints served on loopback the way the daemon serves them.

An instance is the page's boot script in a session of its own: it fetches the runner's three
files from the endpoints with its token, reports ``idle`` and starts the runner, which checks
that its files arrived and waits, as a runner waiting for its job does. The JIT config is
GitHub-shaped (the endpoints split it into those files) and unique to each test, so finding
it anywhere is a leak. The providers speak v0.1.1, so that the provider is told the pool on
every command and another pool's provider neither sees nor touches an instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from runnerscale.model import InstanceSpec
from runnerscale.protocols import Provider
from runnerscale.providers.external.contract import controller_uuid, pool_uuid
from tests.instancemeta.conftest import Served, served
from tests.instancemeta.jit import encoded
from tests.processes import processes_under
from tests.providers.conformance import (
    BackendUnderTest,
    Breakage,
    Interruption,
    ProviderConformance,
)
from tests.providers.external.documented import Installed, install, lingering_runner, rig
from tests.providers.external.waiting import booted

__all__ = ["served"]  # a fixture, imported

#: Seconds the backend's processes get to go after a delete signalled them.
GOING = 10.0


class ExternalBackend(BackendUnderTest):
    known_failures: ClassVar[Mapping[str, str]] = {
        "test_a_leftover_of_an_interrupted_create_is_listed_and_removed_by_delete": (
            "garm's ProviderInstance has no creation time and no state for a half-made "
            "instance: a provider killed mid-create leaves a folder the next ListInstances "
            "shows as a stopped instance of no live runner (the janitor removes it as an "
            "orphan at once), not as incomplete with a created_at"
        ),
    }

    def __init__(self, served: Served, folder: Path) -> None:
        super().__init__()
        # GitHub's shape (base64 of the runner's base64 files), unique to this test.
        self.secret = encoded(runner=json.dumps({"agentName": uuid.uuid4().hex}).encode())
        self.served = served
        self.installed: Installed = install(folder, lingering_runner())
        self.rig = rig(self.installed, served.registry)

    def _provider(
        self,
        executable: Path | None = None,
        *,
        pool: str | None = None,
        controller_id: str | None = None,
    ) -> Provider:
        """A provider over ``executable`` (by default the page's provider)."""
        self.rig.executable = executable or self.installed.provider
        return self.rig.provider(
            pool=pool or self.pool,
            controller_id=controller_id or self.controller_id,
            labels=frozenset({"self-hosted", "conformance"}),
            interface_version="v0.1.1",
        )

    def provider(self, *, pool: str | None = None, controller_id: str | None = None) -> Provider:
        return self._provider(pool=pool, controller_id=controller_id)

    def _folder(self, instance_id: str) -> Path:
        return self.installed.root / controller_uuid(self.controller_id) / instance_id

    async def booted(self, instance_id: str) -> None:
        await booted(self.served.registry, instance_id, self._folder(instance_id))

    async def tags(self, instance_id: str) -> Mapping[str, str] | None:
        """From the provider's own folders: the controller's UUID in the path, the pool's in
        its ``pool`` file, the runner's name the folder's (mapped back to the names)."""
        for controller in (self.controller_id, f"{self.controller_id}-other"):
            folder = self.installed.root / controller_uuid(controller) / instance_id
            if not folder.is_dir():
                continue
            pools = {
                pool_uuid(controller_uuid(controller), pool): pool
                for pool in (self.pool, f"{self.pool}-other")
            }
            pool_id = (folder / "pool").read_text().strip()
            return {
                "controller": controller,
                "pool": pools.get(pool_id, pool_id),
                "runner": folder.name,
            }
        return None

    async def leftovers(self) -> list[str]:
        """The instances' folders, and the processes working in them (given a moment to go
        after a delete signalled them)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GOING
        while processes_under(self.installed.root) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        folders = [
            str(path.relative_to(self.installed.root)) for path in self.installed.instance_dirs()
        ]
        return folders + [f"process {pid}" for pid in processes_under(self.installed.root)]

    def _pid(self, instance_id: str) -> int:
        return int((self._folder(instance_id) / "pid").read_text())

    async def end(self, instance_id: str) -> None:
        os.killpg(self._pid(instance_id), signal.SIGKILL)

    async def vanish(self, instance_id: str) -> None:
        os.killpg(self._pid(instance_id), signal.SIGKILL)
        shutil.rmtree(self._folder(instance_id))

    def _wrapper(self, name: str, create: str) -> Path:
        """The page's provider behind a wrapper that does ``create`` for CreateInstance (the
        real provider's run is ``"$real"``) and is the provider for the other commands."""
        return self.installed.shim(
            name,
            "#!/bin/bash\n"
            f"real={self.installed.provider}\n"
            'if [ "$GARM_COMMAND" != CreateInstance ]; then exec "$real"; fi\n'
            f"{create}\n",
        )

    def breakages(self) -> Sequence[Breakage]:
        missing = self.installed.provider.parent / "no-such-provider"
        fails = self._wrapper(
            "fails-after", '"$real" >/dev/null; echo "out of quota after it was made" >&2; exit 1'
        )
        errors = self._wrapper(
            "answers-error",
            '"$real" | /usr/bin/jq -c \'.status = "error" | .provider_fault = "bm8gcXVvdGE="\'',
        )
        garbage = self._wrapper("prints-garbage", '"$real" >/dev/null; echo "Created it!"')
        return [
            Breakage("the provider program cannot be started", lambda _: self._provider(missing)),
            Breakage(
                "the provider fails after it made the folder and started the process",
                lambda _: self._provider(fails),
            ),
            Breakage(
                "the provider made the instance and answers status error",
                lambda _: self._provider(errors),
            ),
            Breakage(
                "the provider made the instance and prints no JSON",
                lambda _: self._provider(garbage),
            ),
        ]

    def interruptions(self) -> Sequence[Interruption]:
        async def folder_only(spec: InstanceSpec) -> None:
            # What the provider killed right after its folder and pool file leaves.
            folder = self._folder(spec.runner_name)
            folder.mkdir(parents=True)
            (folder / "pool").write_text(
                pool_uuid(controller_uuid(self.controller_id), self.pool) + "\n"
            )

        return [
            Interruption("the provider killed after it wrote the instance's folder", folder_only)
        ]


@pytest.fixture
async def backend(served: Served, tmp_path: Path) -> AsyncIterator[ExternalBackend]:
    made = ExternalBackend(served, tmp_path / "provider")
    yield made
    for pid in processes_under(made.installed.root):  # what a failed test left running
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class TestExternalConformance(ProviderConformance):
    pass
