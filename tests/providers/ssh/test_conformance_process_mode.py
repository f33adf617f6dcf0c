"""The provider conformance suite (``tests/providers/conformance.py``) against the SSH backend
in process mode, on the loopback OpenSSH server (``tests/sshd.py``) as the test user.

The runner is ``run.sh`` of :mod:`tests.providers.ssh.support`, started the way production
starts the official one (the JIT config in ``ACTIONS_RUNNER_INPUT_JITCONFIG``, handed over on
the launcher's standard input): it keeps running until it is stopped. The server is on this
host, so the suite's scans of ``/proc`` (command lines, environments) see the runners, and the
backend's state is read in the test user's home directly. Interrupted creates are real: a
process creating the runner is killed with SIGKILL after the folder was made.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from runnerscale.model import InstanceSpec
from runnerscale.protocols import Provider
from runnerscale.providers.ssh.connection import NodeConnection, NodeUnreachable
from runnerscale.providers.ssh.provider import SshProvider
from runnerscale.providers.ssh.settings import SshConfig
from tests.processes import processes_under
from tests.providers.conformance import (
    BackendUnderTest,
    Breakage,
    Interruption,
    ProviderConformance,
)
from tests.providers.interrupt import create_killed_after
from tests.providers.ssh.support import (
    BOOTED,
    RunnerScript,
    SshBackendParts,
    folders_under,
    home_of,
    kill_all_under,
    runner_script,
    ssh_config,
    tags_of,
    unique,
)
from tests.sshd import SshServer, ssh_server

__all__ = ["ssh_server"]

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(180)]


class SshProcessBackend(SshBackendParts, BackendUnderTest):
    def __init__(self, server: SshServer, script: RunnerScript, folder: Path) -> None:
        super().__init__()
        self.server = server
        self.folder = folder
        self.work = unique("conformance")
        #: Where the runners' folders are, as this host sees the node's filesystem.
        self.root = home_of(server.user) / self.work
        self.config = ssh_config(
            [server], folder, mode="process", command=[str(script.path)], work_dir=f"~/{self.work}"
        )
        self.node = server.address

    def settings(self, **changes: Any) -> SshConfig:
        return self.config.model_copy(update=changes)

    def _folder(self, instance_id: str) -> Path:
        node, _, name = instance_id.rpartition("/")
        assert node == self.node, instance_id
        return self.root / self.controller_id / self.pool / name

    async def booted(self, instance_id: str) -> None:
        log = self._folder(instance_id) / "runner.log"
        async with asyncio.timeout(60):
            while BOOTED not in (log.read_text() if log.exists() else ""):
                await asyncio.sleep(0.05)

    async def tags(self, instance_id: str) -> Mapping[str, str] | None:
        return tags_of(self.root, instance_id.rpartition("/")[2])

    async def leftovers(self) -> list[str]:
        found = [f"folder {path.relative_to(self.root)}" for path in folders_under(self.root)]
        found += [f"process {pid}" for pid in processes_under(self.root)]
        return found

    def _runner_pids(self, instance_id: str) -> tuple[int, list[int]]:
        """The launcher (the group's leader) and the runner's processes."""
        leader = int((self._folder(instance_id) / "pid").read_text().split()[0])
        members = [pid for pid in processes_under(self._folder(instance_id)) if pid != leader]
        return leader, members

    async def end(self, instance_id: str) -> None:
        await self.booted(instance_id)
        _, members = self._runner_pids(instance_id)
        for pid in members:  # the runner dies; its launcher records how
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    async def vanish(self, instance_id: str) -> None:
        leader, _ = self._runner_pids(instance_id)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader, signal.SIGKILL)
        shutil.rmtree(self._folder(instance_id))

    def breakages(self) -> Sequence[Breakage]:
        def missing_command(patch: pytest.MonkeyPatch) -> Provider:
            return SshProvider(self.settings(command=["/nonexistent/run.sh"]), self.context())

        def unwritable_work_dir(patch: pytest.MonkeyPatch) -> Provider:
            return SshProvider(self.settings(work_dir="/proc/runnerscale"), self.context())

        def answer_lost(step: str, marker: str) -> Breakage:
            """The command of a step does its work on the node, then its answer is lost."""
            real = NodeConnection.run

            async def lost(connection: NodeConnection, command: Any, **options: Any) -> Any:
                done = await real(connection, command, **options)
                if any(marker in word for word in command):
                    raise NodeUnreachable(f"node {connection.address}: injected: {step} lost")
                return done

            def arm(patch: pytest.MonkeyPatch) -> Provider:
                patch.setattr(NodeConnection, "run", lost)
                return self.provider()

            return Breakage(f"the answer to {step} is lost (after it did its work)", arm)

        return [
            Breakage("the runner command is not on the node (after the folder)", missing_command),
            Breakage("the work_dir cannot be made (before anything)", unwritable_work_dir),
            answer_lost("making the folder", 'printf \'%s\\n\' "$5" > "$dir/created"'),
            answer_lost("starting the runner", "runnerscale-launcher"),
        ]

    def interruptions(self) -> Sequence[Interruption]:
        async def folder_without_process(spec: InstanceSpec) -> None:
            factory = functools.partial(SshProvider, self.config, self.context())
            await create_killed_after("folder", factory, spec)

        return [Interruption("kill -9 after the folder was made", folder_without_process)]

    def remove_everything(self) -> None:
        kill_all_under(self.root)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
async def backend(ssh_server: SshServer, tmp_path: Path) -> AsyncIterator[SshProcessBackend]:
    with runner_script() as script:
        made = SshProcessBackend(ssh_server, script, tmp_path)
        try:
            yield made
        finally:
            made.remove_everything()


class TestSshProcessConformance(ProviderConformance):
    pass
