"""Building blocks for end-to-end tests: a simulator, a daemon (in-process or as a real
``runnerscale run`` process) with the local backend running stand-in runners, all over real
HTTP on loopback."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

import runnerscale
from runnerscale.config import load_config
from runnerscale.daemon import Daemon
from runnerscale.fakegithub.entities import Job, Runner
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import LOST_COMMUNICATION, JobSpec, World, WorldSettings
from runnerscale.protocols import Store

TOKEN = "ghp_e2e_token_value_1234567890"
WEBHOOK_SECRET = "e2e-webhook-secret-value"
LINUX = ["self-hosted", "linux", "x64"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    """The simulator over HTTP with the e2e token and the repository ``acme/app`` (import the
    fixture into a test module to use it)."""
    options = SimulatorOptions(tokens=(TOKEN,), world=WorldSettings(runner_offline_after=30.0))
    async with SimulatorServer(options) as server:
        server.simulator.world.ensure_repo("acme/app")
        yield server


def write_config(
    directory: Path,
    api_url: str,
    *,
    port: int | None = None,
    poll_interval: str = "2s",
    max_runners: int = 8,
    idle_timeout: str = "2s",
    target: str = "org: acme",
    state: str | None = None,
    pools: str | None = None,
    create_timeout: str | None = None,
) -> Path:
    """A config like the issue's example: one local pool running the stand-in runner (or the
    ``pools:`` items given, as YAML indented by two spaces). ``create_timeout``: a test that
    kills a daemon mid-create waits for the leftover, removed once this old (default 120s)."""
    path = directory / "runnerscale.yaml"
    create = "" if create_timeout is None else f"  create: {create_timeout}\n"
    pools = pools or local_pool(directory, max_runners, idle_timeout)
    path.write_text(
        f"""\
github:
  api_url: {api_url}
  token: ${{E2E_TOKEN}}
  webhook_secret: ${{E2E_WEBHOOK_SECRET}}
targets:
  - {target}
server:
  listen: 127.0.0.1:{port or free_port()}
state: {state or f"sqlite:///{directory}/state/state.db"}
poll_interval: {poll_interval}
timeouts:
{create}  janitor_interval: 2s
  queued_recheck: 5s
pools:
{pools}"""
    )
    return path


def local_pool(directory: Path, max_runners: int, idle_timeout: str) -> str:
    return f"""\
  - name: linux-x64
    labels: [self-hosted, linux, x64]
    provider: local
    max_runners: {max_runners}
    min_idle: 0
    idle_timeout: {idle_timeout}
{local_backend(directory, max_runners)}"""


def local_backend(directory: Path, capacity: int) -> str:
    """A local pool's backend lines (after ``idle_timeout``): the stand-in runner as the
    runner command, runner folders under ``directory/runners``."""
    return f"""\
    boot_timeout: 60s
    local:
      command: ["{sys.executable}", -m, runnerscale, sim-runner]
      capacity: {capacity}
      work_root: {directory}/runners
      stop_grace: 3s
"""


ENV: Mapping[str, str] = {"E2E_TOKEN": TOKEN, "E2E_WEBHOOK_SECRET": WEBHOOK_SECRET}
#: What a ``runnerscale`` process of a test runs: the code the test imports (a checkout's
#: ``src``, not whichever copy is installed), and the system's commands.
COMMAND_ENV: Mapping[str, str] = {
    "PATH": "/usr/bin:/bin",
    "PYTHONPATH": str(Path(runnerscale.__file__).parents[1]),
}


@asynccontextmanager
async def in_process_daemon(
    config_path: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[Daemon]:
    """The daemon of the config at ``config_path``, started (the e2e secrets and ``HOME`` the
    config's folder in its environment, plus ``env``), and stopped at the end."""
    config = load_config(config_path, env={**ENV, "HOME": str(config_path.parent), **(env or {})})
    daemon = Daemon.build(config, controller_id="runnerscale-e2e")
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


def queue_jobs(
    simulator: SimulatorServer, count: int, repo: str = "acme/app", duration: float = 1.0
) -> list[int]:
    jobs = simulator.simulator.world.create_jobs(
        [JobSpec(repo, tuple(LINUX), duration, None, f"job-{i}") for i in range(count)]
    )
    simulator.simulator.notify()
    return [job.id for job in jobs]


def record_jit_configs(world: World) -> list[str]:
    """The list that every JIT config the simulator issues from now on is appended to (the
    world keeps none: each is a secret that must turn up nowhere but in its runner)."""
    issued: list[str] = []
    original = world.generate_jitconfig

    def recording(*args: Any, **kwargs: Any) -> tuple[Runner, str]:
        runner, encoded = original(*args, **kwargs)
        issued.append(encoded)
        return runner, encoded

    world.generate_jitconfig = recording  # type: ignore[method-assign]
    return issued


def all_done(world: World, job_ids: list[int]) -> bool:
    return all(world.jobs[job_id].status.value == "completed" for job_id in job_ids)


async def rerun_after_loss(world: World, job: Job, runner: str) -> Job:
    """Wait for GitHub to fail ``job`` for losing ``runner`` (killed mid-job) and for its one
    re-run to succeed on another runner; the new attempt."""
    await wait_until(lambda: job.status.value == "completed", 60, "GitHub to fail the job")
    lost = LOST_COMMUNICATION.format(runner=runner)
    assert (job.conclusion, job.failure_reason) == ("failure", lost)

    def attempts() -> list[Job]:
        return [other for other in world.jobs.values() if other.run is job.run and other is not job]

    await wait_until(
        lambda: [a.conclusion for a in attempts()] == ["success"], 90, "the re-run to succeed"
    )
    (attempt,) = attempts()
    assert attempt.runner_name not in (None, runner)
    return attempt


async def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    poll: float = 0.2,
    *,
    explain: Callable[[], Any] | None = None,
) -> None:
    """Wait for ``predicate`` (sync or async) to hold; on timeout fail, saying what was
    awaited and, with ``explain`` (sync or async), what there was instead: a timeout seen only
    in CI must be diagnosable from its log."""
    try:
        async with asyncio.timeout(timeout):
            while not await _evaluate(predicate):
                await asyncio.sleep(poll)
    except TimeoutError:
        message = f"timed out after {timeout}s waiting for {what}"
        if explain is not None:
            message += f"; instead: {await _result(explain)}"
        raise AssertionError(message) from None


async def _result(call: Callable[[], Any]) -> Any:
    result = call()
    if asyncio.iscoroutine(result):
        result = await result
    return result


async def _evaluate(predicate: Callable[[], Any]) -> bool:
    return bool(await _result(predicate))


async def leftovers(simulator: SimulatorServer, work_root: Path) -> dict[str, int]:
    """What is still around: registered runners in the simulator, runner directories."""
    world = simulator.simulator.world
    return {"registered": len(world.runners), "instances": len(runner_directories(work_root))}


async def nothing_left(simulator: SimulatorServer, daemon: Daemon, work_root: Path) -> bool:
    """Nothing left behind: no runner registered in the simulator, no runner directory
    (process) under ``work_root``, no live runner in the daemon's store."""
    left = await leftovers(simulator, work_root)
    return not any(left.values()) and not live_runners(daemon.store)


def live_runners(store: Store) -> list[str]:
    """The store's live runners, as ``name (state, job, last error)``: what a clean-up wait
    says it saw."""
    return [
        f"{r.name} ({r.state.value}, job {r.job_id}, {r.last_error})"
        for r in store.runners()
        if r.state.live
    ]


def runner_directories(work_root: Path) -> list[Path]:
    """One directory per runner instance under ``work_root/<pool>/`` (hidden ones excluded)."""
    if not work_root.exists():
        return []
    return [p for p in work_root.glob("*/*") if p.is_dir() and not p.name.startswith(".")]


def command_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``runnerscale`` process a test starts: :data:`COMMAND_ENV`, a wide
    terminal, and ``env``."""
    return {**COMMAND_ENV, "COLUMNS": "200", **(env or {})}


async def runnerscale_command(
    *arguments: str, env: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """``runnerscale ARGUMENTS`` as a user runs it, in a process of its own: exit code and
    output (stdout and stderr together)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runnerscale",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=command_env(env),
    )
    async with asyncio.timeout(240):
        output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def start_command_process(
    *arguments: str, log: Path, env: Mapping[str, str] | None = None
) -> asyncio.subprocess.Process:
    """``runnerscale ARGUMENTS`` as a user runs it, in a process of its own that goes on
    (a daemon, the simulator), its output (stdout and stderr) to ``log``."""
    with log.open("ab") as output:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runnerscale",
            *arguments,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            env=command_env(env),
        )


async def start_daemon_process(
    config: Path, log: Path, env: Mapping[str, str] | None = None
) -> asyncio.subprocess.Process:
    """``runnerscale run -c CONFIG`` in a process of its own, logging at debug to ``log``,
    with the e2e secrets and ``HOME`` the config's folder (plus ``env``)."""
    return await start_command_process(
        "run",
        "-c",
        str(config),
        "--log-level",
        "debug",
        log=log,
        env={**ENV, "HOME": str(config.parent), **(env or {})},
    )


async def answers(url: str) -> bool:
    """Whether ``url`` answers ``200`` (a server that is not listening yet does not)."""
    async with httpx.AsyncClient() as client:
        try:
            return (await client.get(url)).status_code == 200
        except httpx.TransportError:
            return False


async def start_dashboard_process(
    config: Path, log: Path
) -> tuple[asyncio.subprocess.Process, str]:
    """``runnerscale dashboard -c CONFIG`` in a process of its own, as the daemon's user runs
    it (its messages to ``log``), and the link it printed."""
    with log.open("ab") as errors:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runnerscale",
            "dashboard",
            "-c",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
            env=command_env({**ENV, "HOME": str(config.parent)}),
        )
    assert process.stdout is not None
    async with asyncio.timeout(60):
        link = (await process.stdout.readline()).decode().strip()
    return process, link


async def stop_daemon_process(
    daemon: asyncio.subprocess.Process, how: signal.Signals = signal.SIGTERM
) -> None:
    """SIGTERM (or ``how``: SIGINT is Ctrl-C) to a daemon from :func:`start_daemon_process`
    (or another process of :func:`start_command_process`) that still runs, and wait for it
    (its ``returncode`` then says how it ended)."""
    if daemon.returncode is None:
        daemon.send_signal(how)
        async with asyncio.timeout(30):
            await daemon.wait()
