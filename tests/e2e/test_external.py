"""The issue's configuration as written (pool ``lxd``, provider ``external``), with
docs/backends/external.md's provider (taken from the page) in place of garm-provider-lxd, a
daemon in this process and the GitHub simulator over HTTP (issue 17).

Queued jobs are served end to end: each runner's instance made by ``CreateInstance``, booted
by the page's boot script through the daemon's metadata endpoints, its job completed, the
instance deleted, nothing left in the provider's folders nor in GitHub. A restarted daemon
adopts the instances ``ListInstances`` shows; an instance made behind its back is deleted by
the janitor; a failing provider backs the pool off (``status`` says why) and serving resumes
once it works; ``pools drain lxd --wait`` ends with ``RemoveAllInstances``. The provider runs
behind a shim that logs each command (and keeps each bootstrap document, whose instance
tokens then turn up in no log line and no command line, as the JIT configs do not).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from runnerscale.daemon import Daemon
from runnerscale.fakegithub.server import SimulatorServer
from runnerscale.fakegithub.world import JobSpec
from runnerscale.model import RunnerState
from runnerscale.providers.external.contract import controller_uuid, pool_uuid
from tests.e2e.harness import (
    WEBHOOK_SECRET,
    all_done,
    in_process_daemon,
    record_jit_configs,
    runnerscale_command,
    simulator,
    wait_until,
    write_config,
)
from tests.processes import processes_showing
from tests.providers.external.documented import Installed, install, stand_in_runner

__all__ = ["simulator"]  # a fixture, imported

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

POOL = "lxd"
LABELS = ("self-hosted", "linux", "x64", POOL)
ISSUE = Path(__file__).parents[1] / "providers" / "external" / "issue17.yaml"
#: The controller id of :func:`in_process_daemon`.
CONTROLLER = "runnerscale-e2e"
#: What the shim's provider says when the test breaks it.
BROKEN = "garm-provider-lxd: cannot reach the LXD socket"


class Provider:
    """The page's provider installed in a folder, behind a shim at the executable's place:
    the shim logs each command, keeps each bootstrap document, and fails CreateInstance while
    the file ``broken`` exists."""

    def __init__(self, folder: Path) -> None:
        self.installed: Installed = install(folder / "provider", stand_in_runner())
        self.log = folder / "commands.log"
        self.bootstraps = folder / "bootstraps.jsonl"
        self.broken = folder / "broken"
        self.executable = self.installed.shim(
            "garm-provider-lxd",
            "#!/bin/bash\n"
            f'echo "$GARM_COMMAND ${{GARM_INSTANCE_ID:-}}" >>{self.log}\n'
            'if [ "$GARM_COMMAND" = CreateInstance ]; then\n'
            f'    if [ -e {self.broken} ]; then echo "{BROKEN}" >&2; exit 1; fi\n'
            f'    bootstrap=$(/bin/cat); echo "$bootstrap" >>{self.bootstraps}\n'
            f'    exec {self.installed.provider} <<<"$bootstrap"\n'
            "fi\n"
            f"exec {self.installed.provider}\n",
        )

    def commands(self, command: str | None = None) -> list[str]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [line.strip() for line in lines if command is None or line.startswith(command)]

    def tokens(self) -> list[str]:
        """The instance tokens handed out so far."""
        text = self.bootstraps.read_text() if self.bootstraps.exists() else ""
        return [json.loads(line)["instance-token"] for line in text.splitlines()]

    def instances(self) -> list[str]:
        return [path.name for path in self.installed.instance_dirs()]


def configure(folder: Path, simulator: SimulatorServer, provider: Provider) -> Path:
    """The issue's pool as written, its two paths pointed at the test's provider."""
    pools = ISSUE.read_text().removeprefix("pools:\n")
    pools = pools.replace("/usr/local/bin/garm-provider-lxd", str(provider.executable))
    pools = pools.replace("/etc/runnerscale/lxd-provider.toml", str(provider.installed.config_file))
    assert str(provider.executable) in pools
    return write_config(folder, simulator.url, poll_interval="1s", pools=pools)


def hook(simulator: SimulatorServer, daemon_url: str) -> None:
    """GitHub's webhooks to the daemon: it hears of a job's end at once (the jobs last a
    second, less than a poll interval)."""
    simulator.simulator.webhooks.add_hook(f"{daemon_url}/webhook", WEBHOOK_SECRET)


def queue(simulator: SimulatorServer, count: int) -> list[int]:
    jobs = simulator.simulator.world.create_jobs(
        [JobSpec("acme/app", LABELS, 1.0, None, f"job-{number}") for number in range(count)]
    )
    simulator.simulator.notify()
    return [job.id for job in jobs]


def live(daemon: Daemon, state: RunnerState | None = None) -> list[str]:
    return [
        runner.name
        for runner in daemon.store.runners()
        if runner.state.live and (state is None or runner.state is state)
    ]


def left(simulator: SimulatorServer, daemon: Daemon, provider: Provider) -> dict[str, list[str]]:
    """What is still around: runners in GitHub, instances of the provider, live runners."""
    return {
        "github": sorted(runner.name for runner in simulator.simulator.world.runners.values()),
        "instances": provider.instances(),
        "live": live(daemon),
    }


async def nothing_left(simulator: SimulatorServer, daemon: Daemon, provider: Provider) -> None:
    try:
        await wait_until(
            lambda: not any(left(simulator, daemon, provider).values()), 60, "nothing left"
        )
    except AssertionError:
        raise AssertionError(
            f"left: {left(simulator, daemon, provider)}; commands: {provider.commands()}"
        ) from None


async def test_queued_jobs_are_served_end_to_end_and_no_secret_shows(
    simulator: SimulatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    provider = Provider(tmp_path)
    config = configure(tmp_path, simulator, provider)
    world = simulator.simulator.world
    jitconfigs = record_jit_configs(world)
    on_command_lines: list[str] = []

    async with in_process_daemon(config) as daemon:
        hook(simulator, daemon.url)
        jobs = queue(simulator, 3)

        def served() -> bool:
            on_command_lines.extend(processes_showing([*provider.tokens(), *jitconfigs]))
            return all_done(world, jobs)

        await wait_until(served, 60, "the jobs to be served", poll=0.1)
        await nothing_left(simulator, daemon, provider)

    assert all(world.jobs[job].conclusion == "success" for job in jobs)
    assert len(provider.commands("CreateInstance")) == 3
    assert len(provider.commands("DeleteInstance")) >= 3
    assert provider.commands("ListInstances")  # the daemon's inventory
    assert len(provider.tokens()) == 3
    assert len(jitconfigs) == 3
    assert on_command_lines == []
    logged = caplog.text + "".join(
        (folder / "log").read_text() for folder in provider.installed.root.glob("*/*")
    )
    assert "reports idle: the runner starts" in caplog.text  # the boots went through the daemon
    for secret in [*provider.tokens(), *jitconfigs]:
        assert secret not in logged


async def test_restart_orphan_failing_provider_and_drain(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    provider = Provider(tmp_path)
    config = configure(tmp_path, simulator, provider)
    world = simulator.simulator.world
    env = {"HOME": str(tmp_path)}

    async with in_process_daemon(config) as daemon:
        hook(simulator, daemon.url)
        code, output = await runnerscale_command(
            "scale", "up", "-c", str(config), "--pool", POOL, env=env
        )
        assert code == 0, output
        await wait_until(lambda: live(daemon, RunnerState.IDLE), 60, "an idle runner")
        (idle,) = live(daemon)

    # A new daemon adopts the runner's instance, which ListInstances shows: it serves a job.
    listed_before = len(provider.commands("ListInstances"))
    async with in_process_daemon(config) as daemon:
        hook(simulator, daemon.url)
        (job,) = queue(simulator, 1)
        await wait_until(lambda: all_done(world, [job]), 60, "the adopted runner's job")
        assert world.jobs[job].runner_name == idle
        assert len(provider.commands("ListInstances")) > listed_before
        assert len(provider.commands("CreateInstance")) == 1

        # An instance made behind the daemon's back: the janitor deletes it.
        await make_orphan(provider, daemon, "lxd-orphan")
        await wait_until(lambda: "lxd-orphan" not in provider.instances(), 60, "the janitor")
        assert "DeleteInstance lxd-orphan" in provider.commands("DeleteInstance")

        # A failing provider backs the pool off, and says why; serving resumes once it works.
        provider.broken.touch()
        (job,) = queue(simulator, 1)

        async def says_why() -> bool:
            code, output = await runnerscale_command("status", "-c", str(config), env=env)
            return code == 0 and BROKEN in output

        await wait_until(says_why, 60, "status to show the provider's error", poll=1.0)
        provider.broken.unlink()
        await wait_until(lambda: all_done(world, [job]), 90, "the job, once the provider works")

        code, output = await runnerscale_command(
            "pools", "drain", POOL, "-c", str(config), "--wait", "--timeout", "90s", env=env
        )
        assert code == 0, output
        assert f"pool {POOL}: drained, backend swept" in output
        # The issue's pool is the daemon's only pool on this provider: v0.1.0's
        # RemoveAllInstances (every instance of the controller) sweeps no other pool's.
        assert "RemoveAllInstances" in provider.commands()
        await nothing_left(simulator, daemon, provider)


async def make_orphan(provider: Provider, daemon: Daemon, name: str) -> None:
    """Run the page's provider as an operator would, creating ``name`` in the daemon's pool
    (its ids) with a token the daemon never gave: its boot fails, it stays listed."""
    controller = controller_uuid(CONTROLLER)
    process = await asyncio.create_subprocess_exec(
        str(provider.installed.provider),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        env={
            "GARM_COMMAND": "CreateInstance",
            "GARM_CONTROLLER_ID": controller,
            "GARM_POOL_ID": pool_uuid(controller, POOL),
            "GARM_PROVIDER_CONFIG_FILE": str(provider.installed.config_file),
            "GARM_INTERFACE_VERSION": "v0.1.0",
        },
    )
    bootstrap = {
        "name": name,
        "metadata-url": f"{daemon.url}/api/v1/metadata",
        "callback-url": f"{daemon.url}/api/v1/callbacks",
        "instance-token": "made-by-hand",
    }
    await process.communicate(json.dumps(bootstrap).encode())
    assert process.returncode == 0
    assert name in provider.instances()
