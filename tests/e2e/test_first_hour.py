"""Issue 13's first hour, walked as a new user walks it, with every command taken from the
README and the docs (:mod:`tests.documented`) and run as a process of its own with a bare
environment: ``--version`` and ``--help``; ``runnerscale demo``; the example of
docs/configuration.md against ``runnerscale fake-github`` (checked, run, given a job through
the simulator's control API, watched with ``status`` and ``status --json``); ``service install
--root`` and ``systemd-analyze verify`` as docs/deploy.md says; the status page through
``runnerscale dashboard`` in headless Chromium. Then everything is stopped, and nothing is
left: no process, no runner, no folder outside the test's.

The doc's ports, paths and file names are replaced by the test's own; nothing else is."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import runnerscale
from tests.chromium import headless
from tests.documented import (
    CONFIGURATION,
    DEPLOY,
    README,
    documented_example,
    example_here,
    says,
    shell_block,
)
from tests.e2e.harness import (
    answers,
    free_port,
    runner_directories,
    runnerscale_command,
    start_command_process,
    start_dashboard_process,
    stop_daemon_process,
    wait_until,
)
from tests.e2e.statuspage import showing
from tests.processes import processes_showing
from tests.systemd import verify

pytestmark = [pytest.mark.slow, pytest.mark.chromium, pytest.mark.timeout(300)]

#: What the README says ``--help`` lists, among the rest.
COMMANDS = ("demo", "fake-github", "config", "run", "status", "dashboard", "simulate", "service")
#: Where the example of docs/configuration.md keeps its state: not touched by the test.
EXAMPLE_STATE = Path("/var/tmp/runnerscale")


def runnerscale_arguments(command: list[str], program: str = ".venv/bin/runnerscale") -> list[str]:
    """The arguments of a documented ``runnerscale`` command."""
    assert command[0] == program, command
    return command[1:]


def exported(command: list[str]) -> dict[str, str]:
    """The variables a documented ``export NAME=VALUE ...`` sets."""
    assert command[0] == "export", command
    return dict(word.split("=", 1) for word in command[1:])


async def curl_post(command: list[str]) -> Any:
    """A documented ``curl -s -X POST URL -d BODY``, sent as curl sends it: its JSON answer."""
    assert command[:4] == ["curl", "-s", "-X", "POST"], command
    assert command[5] == "-d", command
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            command[4],
            content=command[6],
            headers={"Content-Type": "application/x-www-form-urlencoded"},  # curl -d's
        )
    assert answer.status_code == 201, answer.text
    return answer.json()


async def test_the_first_hour_from_the_readme_to_the_status_page(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    example_state_before = await asyncio.to_thread(EXAMPLE_STATE.exists)

    # (a) --help lists every command (the README); the version (docs/deploy.md).
    says(README, ".venv/bin/runnerscale --help")
    code, output = await runnerscale_command("--help", env=home)
    assert code == 0, output
    assert all(f" {name} " in output for name in COMMANDS), output
    says(DEPLOY, "runnerscale --version")
    code, output = await runnerscale_command("--version", env=home)
    assert (code, output.strip()) == (0, runnerscale.__version__)

    # (b) The README's first command (after the bootstrap).
    demo = shell_block(README, "runnerscale demo")
    assert demo == [["bash", "scripts/bootstrap", "&&", ".venv/bin/runnerscale", "demo"]]
    code, output = await runnerscale_command("demo", env=home)
    assert code == 0, output
    assert "demo passed: every servable job was served, nothing left behind" in output
    assert left_behind(tmp_path) == []

    # (c) The example of docs/configuration.md against the simulator, step by step.
    simulator_port, daemon_port = free_port(), free_port()
    config = example_here(
        documented_example(), tmp_path, f"http://127.0.0.1:{simulator_port}", daemon_port
    )
    walk = shell_block(
        CONFIGURATION,
        "fake-github",
        {
            r"\b9000\b": str(simulator_port),
            r"\b8787\b": str(daemon_port),
            "runnerscale.yaml": str(config),
        },
    )
    fake_github, repository, export, validate, run, job, status, dashboard = walk
    secrets = exported(export)
    fake = await start_command_process(
        *runnerscale_arguments(fake_github), log=tmp_path / "fake-github.log", env=home
    )
    daemon = None
    try:
        simulator = f"http://127.0.0.1:{simulator_port}"
        await wait_until(lambda: answers(f"{simulator}/_sim/jobs"), 30, "the simulator")
        assert (await curl_post(repository))["full_name"] == "acme/app"

        code, output = await runnerscale_command(
            *runnerscale_arguments(validate), env={**home, **secrets}
        )
        assert (code, output.strip()) == (0, f"{config}: valid. pools: linux-x64 (local, max 4)")
        daemon = await start_command_process(
            *runnerscale_arguments(run), log=tmp_path / "daemon.log", env={**home, **secrets}
        )
        await wait_until(
            lambda: answers(f"http://127.0.0.1:{daemon_port}/healthz"), 30, "the daemon"
        )

        queued = await curl_post(job)
        job_id = queued["id"]
        # Terminal 3 has neither variable: status needs them not.
        said = "pool linux-x64: 0 queued, 1 busy"
        await until_said(runnerscale_arguments(status), home, lambda out: said in out, said)
        await wait_until(lambda: concluded(simulator, job_id), 60, "the job done")
        says(CONFIGURATION, "runnerscale status -c FILE --json")
        code, output = await runnerscale_command(*runnerscale_arguments(status), "--json", env=home)
        assert code == 0, output
        done = json.loads(output)
        assert [pool["name"] for pool in done["pools"]] == ["linux-x64"]
        assert [wait["id"] for wait in done["queue_waits"]] == [job_id]
        code, output = await runnerscale_command(*runnerscale_arguments(status), env=home)
        assert code == 0, output
        assert "queue waits of the last job: " in output
        assert await concluded(simulator, job_id) == "success"

        # (d) docs/deploy.md: what an install would write, and systemd's verdict on the unit.
        root = tmp_path / "root"
        install, analyze = shell_block(
            DEPLOY,
            "--root",
            {"/tmp/runnerscale-root": str(root), r"\brunnerscale\.yaml": str(config)},
        )
        code, output = await runnerscale_command(
            *runnerscale_arguments(install, program="runnerscale"), env={**home, **secrets}
        )
        assert code == 0, output
        assert "wrote /etc/systemd/system/runnerscale.service" in output
        assert analyze[:2] == ["systemd-analyze", "verify"]
        unit = Path(analyze[2])
        assert unit == root / "etc/systemd/system/runnerscale.service"
        verify(unit)
        lines = (await asyncio.to_thread(unit.read_text)).splitlines()
        assert any(
            line.startswith("ExecStart=") and line.endswith(f" run -c {config}") for line in lines
        )

        # (e) The status page, through the link `runnerscale dashboard` prints.
        assert runnerscale_arguments(dashboard) == ["dashboard", "-c", str(config)]
        relay, link = await start_dashboard_process(config, tmp_path / "dashboard.log")
        try:
            assert link.startswith("http://127.0.0.1:"), link
            async with headless(tmp_path / "profile", tmp_path / "chromium.log") as browser:
                page = await browser.open(link)
                seen = await showing(
                    page, "the pool and the job's wait", lambda s: s["pool"] and s["plotted"]
                )
                await page.screenshot(tmp_path / "status-page.png")
        finally:
            relay.send_signal(signal.SIGINT)  # Ctrl-C
            async with asyncio.timeout(30):
                assert await relay.wait() == 0
        assert seen["pool"]["max_runners"] == 4
        assert seen["plotted"] == [job_id]
        assert seen["problem"] is None
    finally:
        # (f) Ctrl-C in each terminal.
        if daemon is not None:
            await stop_daemon_process(daemon, signal.SIGINT)
        await stop_daemon_process(fake, signal.SIGINT)
    assert daemon is not None
    assert daemon.returncode == 0, (tmp_path / "daemon.log").read_text()
    assert fake.returncode == 0, (tmp_path / "fake-github.log").read_text()
    assert left_behind(tmp_path) == []
    assert await asyncio.to_thread(EXAMPLE_STATE.exists) == example_state_before


async def concluded(simulator: str, job_id: int) -> str | None:
    """The conclusion of the job ``job_id`` of the simulator (``GET /_sim/jobs``), once done."""
    async with httpx.AsyncClient() as client:
        jobs = (await client.get(f"{simulator}/_sim/jobs")).json()
    [conclusion] = [job["conclusion"] for job in jobs if job["id"] == job_id]
    assert conclusion is None or isinstance(conclusion, str)
    return conclusion


def left_behind(folder: Path) -> list[str]:
    """What the walk left that it should not have: a process of its own (they all have
    ``HOME`` ``folder``), a runner's folder, a demo's folder."""
    return [
        *processes_showing([str(folder)], environ=True),
        *map(str, runner_directories(folder / "runners")),
        *map(str, folder.glob("runnerscale-demo-*")),
    ]


async def until_said(
    arguments: list[str], env: dict[str, str], check: Callable[[str], bool], what: str
) -> str:
    """What ``runnerscale ARGUMENTS`` says once ``check`` holds for it (and it exits 0)."""
    said = ""

    async def holds() -> bool:
        nonlocal said
        code, said = await runnerscale_command(*arguments, env=env)
        assert code == 0, said
        return check(said)

    try:
        await wait_until(holds, 60, what, poll=0.5)
    except AssertionError as error:
        raise AssertionError(f"{error}; it says {said}") from None
    return said
