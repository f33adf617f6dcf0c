"""The provider conformance suite (``conformance.py``) against the local backend.

The runner is a Python process started the way the official runner is (``CMD``, the JIT
config in ``ACTIONS_RUNNER_INPUT_JITCONFIG``); it sleeps until it is stopped, or exits at once
when the JIT config did not reach it. Every provider of a test
shares one ``work_root`` (all pools, all controller ids), as two daemons on one host may.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import shutil
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from runnerscale.model import InstanceSpec
from runnerscale.protocols import Provider
from runnerscale.providers.local import LocalProvider, LocalSettings
from runnerscale.providers.local import provider as local
from tests.processes import processes_under
from tests.providers.conformance import (
    LINGERING_RUNNER,
    BackendUnderTest,
    Breakage,
    Interruption,
    ProviderConformance,
)
from tests.providers.interrupt import create_killed_after

COMMAND = (sys.executable, "-c", LINGERING_RUNNER, "--name={runner_name}")


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, 0)


class LocalBackend(BackendUnderTest):
    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def settings(self, **overrides: Any) -> LocalSettings:
        values: dict[str, Any] = {
            "pool": self.pool,
            "command": COMMAND,
            "work_root": self.root,
            "capacity": 8,
            "stop_grace": 5.0,
            "controller_id": self.controller_id,
        }
        values.update(overrides)
        return LocalSettings(**values)

    def provider(self, *, pool: str | None = None, controller_id: str | None = None) -> Provider:
        return LocalProvider(
            self.settings(pool=pool or self.pool, controller_id=controller_id or self.controller_id)
        )

    def _record(self, instance_id: str) -> dict[str, Any] | None:
        try:
            record: dict[str, Any] = json.loads(
                (self.root / instance_id / "instance.json").read_text()
            )
        except (OSError, ValueError):
            return None
        return record

    async def tags(self, instance_id: str) -> Mapping[str, str] | None:
        record = self._record(instance_id)
        if record is None:
            return None
        return {
            "controller": record["controller_id"],
            "pool": record["pool"],
            "runner": record["runner_name"],
        }

    async def leftovers(self) -> list[str]:
        found = []
        if self.root.exists():
            found += [
                f"directory {entry}"
                for entry in sorted(self.root.iterdir())
                if not entry.name.startswith(".")  # .lock, .logs (kept logs) are the root's
            ]
        found += [f"process {pid}" for pid in processes_under(self.root)]
        return found

    async def end(self, instance_id: str) -> None:
        record = self._record(instance_id)
        assert record is not None
        os.killpg(record["pid"], signal.SIGKILL)

    async def vanish(self, instance_id: str) -> None:
        record = self._record(instance_id)
        assert record is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record["pid"], signal.SIGKILL)
        _reap(record["pid"])  # the runner was this process's child
        shutil.rmtree(self.root / instance_id)

    def breakages(self) -> Sequence[Breakage]:
        def missing_command(patch: pytest.MonkeyPatch) -> Provider:
            return LocalProvider(self.settings(command=("/nonexistent/run.sh",)))

        def unopenable_log(patch: pytest.MonkeyPatch) -> Provider:
            real_open = os.open

            def failing_open(path: Any, *args: Any, **kwargs: Any) -> int:
                if Path(path).name == local.LOG_NAME:
                    raise OSError(errno.EIO, "Input/output error (injected)", str(path))
                return real_open(path, *args, **kwargs)

            patch.setattr(os, "open", failing_open)  # the local backend opens its log with it
            return self.provider()

        def refused_environment(patch: pytest.MonkeyPatch) -> Provider:
            return LocalProvider(self.settings(env={"BROKEN": "a\0b"}))

        def unrecordable_pid(patch: pytest.MonkeyPatch) -> Provider:
            real_write = LocalProvider._write_record

            def failing_write(provider: LocalProvider, directory: Path, record: Any) -> None:
                if record.pid is not None:
                    raise OSError(errno.ENOSPC, "No space left on device (injected)")
                real_write(provider, directory, record)

            patch.setattr(LocalProvider, "_write_record", failing_write)
            return self.provider()

        return [
            Breakage("the command does not exist (after the folder and record)", missing_command),
            Breakage("the log cannot be opened (after the folder and record)", unopenable_log),
            Breakage(
                "the OS refuses the environment (after the folder, record and log)",
                refused_environment,
            ),
            Breakage("the pid cannot be recorded (after the process started)", unrecordable_pid),
        ]

    def interruptions(self) -> Sequence[Interruption]:
        def killed_after(step: str) -> Interruption:
            async def make(spec: InstanceSpec) -> None:
                await create_killed_after(
                    step, functools.partial(LocalProvider, self.settings()), spec
                )

            return Interruption(f"kill -9 after the {step!r} step", make)

        async def half_written(spec: InstanceSpec) -> None:
            # Our writes are atomic (kill -9 cannot tear one); a crashed filesystem's may not be.
            folder = self.root / spec.runner_name
            folder.mkdir(mode=0o700, parents=True)
            (folder / local.RECORD_NAME).write_text('{"version": 1, "controller_id": ')

        return [
            killed_after("folder"),  # a folder without its record
            killed_after("record"),  # a record without a process
            Interruption("a half-written record", half_written),
        ]

    def remove_everything(self) -> None:
        for _ in range(3):
            pids = processes_under(self.root)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                _reap(pid)
        for path in self.root.glob("*/instance.json"):
            with contextlib.suppress(OSError, ValueError, TypeError):
                _reap(json.loads(path.read_text())["pid"])
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[LocalBackend]:
    made = LocalBackend(tmp_path.resolve() / "runners")
    yield made
    made.remove_everything()


class TestLocalConformance(ProviderConformance):
    pass
