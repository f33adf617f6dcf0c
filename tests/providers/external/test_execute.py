"""One run of a provider program, at its bounds: output beyond the limit, a child that keeps
the pipes open, a run cancelled (the daemon stopping), a program that cannot be started."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from runnerscale.model import InstanceSpec
from runnerscale.protocols import ProviderError
from runnerscale.providers.external import execute
from tests.providers.external.support import Rig, group_alive, hanging_pid


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/bash\nexport PATH=/usr/bin:/bin\n" + body)
    path.chmod(0o755)
    return str(path)


async def test_output_beyond_the_limit_is_read_and_dropped(tmp_path: Path) -> None:
    program = script(tmp_path / "loud", "head -c 300000 /dev/zero | tr '\\0' x\necho done >&2\n")
    result = await execute.run(program, {}, b"", time_limit=30, limit=1000)
    assert (result.exit_code, len(result.stdout), result.stderr) == (0, 1000, b"done\n")
    assert result.truncated


async def test_stdin_is_given_and_closed(tmp_path: Path) -> None:
    program = script(tmp_path / "echo", "cat\n")
    result = await execute.run(program, {}, b'{"name":"r"}', time_limit=30)
    assert result.stdout == b'{"name":"r"}'


async def test_a_child_holding_the_pipes_does_not_hold_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(execute, "DRAIN_GRACE", 0.2)
    pid_file = tmp_path / "child.pid"
    program = script(
        tmp_path / "leaky",
        f"setsid sleep 300 &\necho $! > {pid_file}\necho '[]'\n",
    )
    try:
        result = await execute.run(program, {}, b"", time_limit=30)
        assert (result.exit_code, result.stdout) == (0, b"[]\n")
    finally:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)


async def test_a_cancelled_run_is_killed(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "hanging")
    provider = rig.provider()
    task = asyncio.create_task(provider.list())
    pid = await hanging_pid(rig)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert group_alive(pid) == []


async def test_a_cancelled_create_revokes_its_grant(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "hanging")
    provider = rig.provider()
    task = asyncio.create_task(
        provider.create(InstanceSpec(runner_name="lxd-r1", pool="lxd", jitconfig="jit"))
    )
    pid = await hanging_pid(rig)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert group_alive(pid) == []
    assert rig.access.revoked == ["lxd-r1"]
    assert [call.command for call in rig.calls()] == ["CreateInstance"]  # no run while stopping


async def test_a_program_that_cannot_start_is_a_provider_error(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "working")
    provider = rig.provider()
    provider.settings = provider.settings.model_copy(
        update={"executable": str(tmp_path / "removed-since")}
    )
    with pytest.raises(ProviderError) as raised:
        await provider.list()
    assert str(raised.value) == (
        f"pool 'lxd': provider {tmp_path / 'removed-since'} ListInstances cannot be started: "
        "No such file or directory"
    )
    assert rig.events == [("command", "failed")]
