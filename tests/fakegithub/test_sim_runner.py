"""The stand-in runner as backends launch it: a real ``runnerscale sim-runner`` process, its
JIT config in ``ACTIONS_RUNNER_INPUT_JITCONFIG`` (or, still, on its command line)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from runnerscale.fakegithub.runner import JITCONFIG_ENV, take_jitconfig
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import LOST_COMMUNICATION
from tests.virtual_time import virtual_clock

LINUX = ["self-hosted", "linux"]
AUTH = {"Authorization": "token ghp_simulator_test_token"}


async def spawn(
    jitconfig: str | None, *, on_command_line: bool = False, options: list[str] | None = None
) -> asyncio.subprocess.Process:
    """``runnerscale sim-runner`` with the JIT config in its environment, as backends start it
    (``on_command_line``: as ``--jitconfig``, as they did before)."""
    env = {name: value for name, value in os.environ.items() if name != JITCONFIG_ENV}
    options = list(options or [])
    if jitconfig is not None and on_command_line:
        options += ["--jitconfig", jitconfig]
    elif jitconfig is not None:
        env[JITCONFIG_ENV] = jitconfig
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runnerscale",
        "sim-runner",
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


def cmdline(process: asyncio.subprocess.Process) -> str:
    return Path(f"/proc/{process.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


async def finish(process: asyncio.subprocess.Process, timeout: float = 30) -> tuple[int, str]:
    async with asyncio.timeout(timeout):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def new_jit(control: httpx.AsyncClient, name: str = "stand-in-1") -> tuple[int, str]:
    response = await control.post(
        "/repos/acme/app/actions/runners/generate-jitconfig",
        json={"name": name, "labels": LINUX, "runner_group_id": 1},
        headers=AUTH,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return body["runner"]["id"], body["encoded_jit_config"]


async def wait_until(predicate: object, timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("on_command_line", [False, True], ids=["environment", "option"])
async def test_runs_its_one_job_reports_and_exits(
    simulator: SimulatorServer, control: httpx.AsyncClient, on_command_line: bool
) -> None:
    await control.post("/_sim/repos", json={"repo": "acme/app"})
    runner_id, jitconfig = await new_jit(control)
    process = await spawn(jitconfig, on_command_line=on_command_line)
    world = simulator.simulator.world
    await wait_until(lambda: world.runners[runner_id].connected)
    assert (jitconfig in cmdline(process)) is on_command_line
    job = (
        await control.post(
            "/_sim/jobs",
            json={
                "repo": "acme/app",
                "labels": ["Linux"],
                "duration": 1.5,
                "conclusion": "failure",
            },
        )
    ).json()
    code, output = await finish(process)
    assert code == 0, output
    assert "Running job: job-0" in output
    assert jitconfig not in output
    listed = (await control.get("/_sim/jobs")).json()
    record = next(j for j in listed if j["id"] == job["id"])
    assert (record["status"], record["conclusion"], record["runner_name"]) == (
        "completed",
        "failure",
        "stand-in-1",
    )
    # A JIT runner is gone after its job.
    assert runner_id not in simulator.simulator.world.runners


async def test_sigterm_while_idle_leaves_cleanly(
    simulator: SimulatorServer, control: httpx.AsyncClient
) -> None:
    await control.post("/_sim/repos", json={"repo": "acme/app"})
    runner_id, jitconfig = await new_jit(control)
    process = await spawn(jitconfig)
    world = simulator.simulator.world
    await wait_until(lambda: world.runners[runner_id].connected)
    process.send_signal(signal.SIGTERM)
    code, output = await finish(process)
    assert code == 0, output
    assert not world.runners[runner_id].connected


async def test_removed_runner_exits_with_code_3(
    simulator: SimulatorServer, control: httpx.AsyncClient
) -> None:
    await control.post("/_sim/repos", json={"repo": "acme/app"})
    runner_id, jitconfig = await new_jit(control)
    process = await spawn(jitconfig)
    world = simulator.simulator.world
    await wait_until(lambda: world.runners[runner_id].connected)
    deleted = await control.delete(f"/repos/acme/app/actions/runners/{runner_id}", headers=AUTH)
    assert deleted.status_code == 204
    code, output = await finish(process, timeout=60)
    assert code == 3, output


async def test_bad_jitconfig_exits_with_code_2() -> None:
    code, output = await finish(await spawn("not-a-config"))
    assert code == 2
    assert "not a JIT configuration" in output


async def test_without_a_jitconfig_it_exits_2_and_says_where_it_looked() -> None:
    code, output = await finish(await spawn(None))
    assert code == 2
    assert f"no JIT config: set {JITCONFIG_ENV}" in output


def test_it_takes_the_jitconfig_as_the_official_runner_does() -> None:
    environ = {
        "ACTIONS_RUNNER_INPUT_JITCONFIG": "  from-the-environment\n",
        "actions_runner_input_url": "https://example",  # any case, any option
        "PATH": "/usr/bin",
    }
    assert take_jitconfig(None, environ) == "from-the-environment"
    assert environ == {"PATH": "/usr/bin"}  # nothing started later inherits them
    # The command line first; the variable is removed all the same.
    environ = {"ACTIONS_RUNNER_INPUT_JITCONFIG": "from-the-environment"}
    assert take_jitconfig("from-the-option", environ) == "from-the-option"
    assert environ == {}
    assert take_jitconfig(None, {"ACTIONS_RUNNER_INPUT_JITCONFIG": " "}) is None
    assert take_jitconfig(None, {}) is None


async def test_a_runner_killed_mid_job_fails_it_with_lost_communication(
    sim_options: SimulatorOptions,
) -> None:
    # The simulator on a virtual clock: the runner is a real process, but the simulator's
    # timeout is waited out by moving its clock on once the runner is gone.
    clock = virtual_clock()
    async with (
        SimulatorServer(sim_options, clock) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as control,
    ):
        await control.post("/_sim/repos", json={"repo": "acme/app"})
        runner_id, jitconfig = await new_jit(control)
        process = await spawn(jitconfig)
        job = (
            await control.post(
                "/_sim/jobs", json={"repo": "acme/app", "labels": LINUX, "duration": 600}
            )
        ).json()
        world = server.simulator.world
        await wait_until(lambda: world.jobs[job["id"]].status.value == "in_progress")
        process.kill()
        await finish(process)
        clock.advance(world.settings.lost_runner_timeout)
        await wait_until(lambda: world.jobs[job["id"]].status.value == "completed")
        record = world.jobs[job["id"]]
        assert record.conclusion is not None
        lost = LOST_COMMUNICATION.format(runner=record.runner_name)
        assert (record.conclusion.value, record.failure_reason) == ("failure", lost)
        assert runner_id not in world.runners


@pytest.mark.slow  # the runner hears of the cancel at its next heartbeat, 5 s on
async def test_a_cancelled_job_stops_the_runner_cleanly(
    simulator: SimulatorServer, control: httpx.AsyncClient
) -> None:
    await control.post("/_sim/repos", json={"repo": "acme/app"})
    runner_id, jitconfig = await new_jit(control)
    process = await spawn(jitconfig)
    job = (
        await control.post(
            "/_sim/jobs", json={"repo": "acme/app", "labels": LINUX, "duration": 600}
        )
    ).json()
    world = simulator.simulator.world
    await wait_until(lambda: world.jobs[job["id"]].status.value == "in_progress")
    cancelled = await control.post(
        f"/repos/acme/app/actions/runs/{job['run_id']}/cancel", headers=AUTH
    )
    assert cancelled.status_code == 202
    code, output = await finish(process, timeout=30)
    assert code == 0, output
    assert "was cancelled" in output
    assert runner_id not in world.runners


async def test_it_reads_the_settings_files_a_boot_script_fetched(
    simulator: SimulatorServer, control: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Without a JIT config given, the runner reads ``.runner``, ``.credentials`` and
    ``.credentials_rsaparams`` in its folder, as the official runner does once garm's boot
    script (or the external backend's) fetched them one by one."""
    await control.post("/_sim/repos", json={"repo": "acme/app"})
    runner_id, jitconfig = await new_jit(control)
    for name, content in json.loads(base64.b64decode(jitconfig)).items():
        (tmp_path / name).write_bytes(base64.b64decode(content))
    process = await spawn(None, options=["--root", str(tmp_path)])
    world = simulator.simulator.world
    await wait_until(lambda: world.runners[runner_id].connected)
    process.send_signal(signal.SIGTERM)
    code, output = await finish(process)
    assert code == 0, output


async def test_a_missing_settings_file_is_named(tmp_path: Path) -> None:
    (tmp_path / ".runner").write_text("{}")
    code, output = await finish(await spawn(None, options=["--root", str(tmp_path)]))
    assert code == 2
    assert "cannot read the runner's settings file .credentials" in output
