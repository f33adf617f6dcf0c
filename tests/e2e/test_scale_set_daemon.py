"""A scale-set pool end to end over HTTP (issue 16): the real daemon (in process, or as a
``runnerscale run`` process where ``kill -9`` is needed) against fake-github's scale-set
protocol, with the local backend and stand-in runners, and short protocol settings (a 2 s
poll hold, a 5 s session lapse) so that the flows finish in seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runnerscale.daemon import Daemon
from runnerscale.fakegithub.entities import Job
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import JobSpec, WorldSettings
from runnerscale.scaleset_api import ScaleSetMessage
from tests.e2e.harness import (
    TOKEN,
    WEBHOOK_SECRET,
    all_done,
    in_process_daemon,
    leftovers,
    local_backend,
    local_pool,
    nothing_left,
    queue_jobs,
    start_daemon_process,
    stop_daemon_process,
    wait_until,
    write_config,
)
from tests.processes import processes_showing

pytestmark = pytest.mark.timeout(300)

SCALE_SET = "runnerscale-x64"
#: The short protocol settings: GitHub holds a poll about 50 s and lets a session lapse after
#: about a minute; the simulator does the same in seconds here.
SETTINGS = WorldSettings(
    runner_offline_after=30.0,
    scale_set_poll_hold=2.0,
    scale_set_session_lapse=5.0,
    scale_set_assign_timeout=20.0,
)


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(SimulatorOptions(tokens=(TOKEN,), world=SETTINGS)) as server:
        server.simulator.world.ensure_repo("acme/app")
        yield server


def scale_set_pool(directory: Path, max_runners: int = 6, min_idle: int = 0) -> str:
    """The issue's pool shape on the local backend, running the stand-in runner."""
    return f"""\
  - name: scaleset-x64
    demand: scale_set
    scale_set:
      name: {SCALE_SET}
      runner_group: Default
      labels: [linux, x64]
    provider: local
    max_runners: {max_runners}
    min_idle: {min_idle}
    idle_timeout: 2s
{local_backend(directory, max_runners)}"""


def queue_scale_set_jobs(
    simulator: SimulatorServer, count: int, duration: float = 1.0
) -> list[int]:
    """``count`` jobs with ``runs-on: runnerscale-x64``."""
    jobs = simulator.simulator.world.create_jobs(
        [JobSpec("acme/app", (SCALE_SET,), duration, None, f"ss-job-{i}") for i in range(count)]
    )
    simulator.simulator.notify()
    return [job.id for job in jobs]


async def cleaned_up(simulator: SimulatorServer, daemon: Daemon, work_root: Path) -> None:
    """Wait for nothing to be left; if something is, say what."""
    try:
        await wait_until(lambda: nothing_left(simulator, daemon, work_root), 120, "clean-up")
    except AssertionError as error:
        left = await leftovers(simulator, work_root)
        live = [(r.name, r.pool, str(r.state)) for r in daemon.store.runners() if r.state.live]
        raise AssertionError(f"{error}: left {left}, live in the store {live}") from None


def succeeded(jobs: list[Job]) -> bool:
    return all(job.conclusion is not None and job.conclusion.value == "success" for job in jobs)


def open_sessions(simulator: SimulatorServer) -> int:
    return len(simulator.simulator.scale_sets.sessions)


async def test_a_burst_on_a_scale_set_pool_is_served_and_nothing_is_left(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path, simulator.url, pools=scale_set_pool(tmp_path))
    world = simulator.simulator.world
    async with in_process_daemon(config) as daemon:
        await wait_until(lambda: open_sessions(simulator) == 1, 30, "the listener's session")
        job_ids = queue_scale_set_jobs(simulator, 12)
        await wait_until(lambda: all_done(world, job_ids), 120, "12 jobs to complete")
        assert succeeded([world.jobs[j] for j in job_ids])
        await cleaned_up(simulator, daemon, tmp_path / "runners")
        created = [r for r in daemon.store.runners() if r.pool == "scaleset-x64"]
        assert 12 <= len(created) <= 12 + 6
    assert open_sessions(simulator) == 0
    assert await leftovers(simulator, tmp_path / "runners") == {"registered": 0, "instances": 0}


def kill_on_first_jobs_message(
    simulator: SimulatorServer, daemon: asyncio.subprocess.Process
) -> list[int]:
    """Make the simulator ``kill -9`` the daemon process the moment it hands it the first
    message with events: that message is then delivered and certainly not acknowledged.
    The ids of the messages so delivered."""
    scale_sets = simulator.simulator.scale_sets
    original = scale_sets.get_message
    delivered: list[int] = []

    def killing(*args: Any, **kwargs: Any) -> ScaleSetMessage | None:
        message = original(*args, **kwargs)
        if message is not None and message.events and not delivered:
            delivered.append(message.message_id)
            daemon.send_signal(signal.SIGKILL)
        return message

    scale_sets.get_message = killing  # type: ignore[method-assign]
    return delivered


async def test_kill_9_with_unacknowledged_messages_loses_no_job(
    simulator: SimulatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path, simulator.url, pools=scale_set_pool(tmp_path))
    process = await start_daemon_process(config, tmp_path / "daemon.log")
    try:
        await wait_until(lambda: open_sessions(simulator) == 1, 60, "the first daemon's session")
        delivered = kill_on_first_jobs_message(simulator, process)
        job_ids = queue_scale_set_jobs(simulator, 4)
        async with asyncio.timeout(60):
            await process.wait()
    finally:
        await stop_daemon_process(process)
    assert process.returncode == -signal.SIGKILL
    assert len(delivered) == 1
    # The old session is still open: the new daemon meets the 409 until it lapses.
    assert open_sessions(simulator) == 1
    world = simulator.simulator.world
    caplog.set_level(logging.INFO, logger="runnerscale")
    async with in_process_daemon(config) as daemon:
        await wait_until(lambda: all_done(world, job_ids), 120, "every job after the kill")
        assert succeeded([world.jobs[j] for j in job_ids])
        await cleaned_up(simulator, daemon, tmp_path / "runners")
    assert "another listener holds its session (409" in caplog.text
    assert open_sessions(simulator) == 0


async def control(simulator: SimulatorServer, method: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=simulator.url) as http:
        answer = await http.request(method, path)
    answer.raise_for_status()
    return answer


async def test_queue_tokens_expired_mid_poll_are_refreshed_and_jobs_served(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path, simulator.url, pools=scale_set_pool(tmp_path))
    world = simulator.simulator.world
    sessions = simulator.simulator.scale_sets.sessions
    async with in_process_daemon(config) as daemon:
        await wait_until(lambda: any(s.polls_in_flight for s in sessions.values()), 30, "a poll")
        (session,) = sessions.values()
        first_token = session.queue_token
        expired = (await control(simulator, "POST", "/_sim/scale-sets/expire-queue-tokens")).json()
        assert expired == {"expired": 1}
        job_ids = queue_scale_set_jobs(simulator, 4)
        await wait_until(lambda: all_done(world, job_ids), 90, "the jobs after the expiry")
        assert succeeded([world.jobs[j] for j in job_ids])
        (refreshed,) = sessions.values()
        assert refreshed.id == session.id  # refreshed, not re-created
        assert refreshed.queue_token != first_token
        await cleaned_up(simulator, daemon, tmp_path / "runners")


async def test_a_scale_set_deleted_behind_the_daemons_back_is_recreated(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path, simulator.url, pools=scale_set_pool(tmp_path))
    world = simulator.simulator.world
    scale_sets = simulator.simulator.scale_sets
    async with in_process_daemon(config) as daemon:
        await wait_until(lambda: open_sessions(simulator) == 1, 30, "the listener's session")
        first = queue_scale_set_jobs(simulator, 2)
        await wait_until(lambda: all_done(world, first), 60, "the jobs before the deletion")
        (old_id,) = scale_sets.scale_sets
        await control(simulator, "DELETE", f"/_sim/scale-sets/{old_id}")
        await wait_until(
            lambda: [i for i in scale_sets.scale_sets if i != old_id], 60, "the re-created set"
        )
        (new_id,) = scale_sets.scale_sets
        await wait_until(lambda: new_id in scale_sets.sessions, 30, "the new set's session")
        later = queue_scale_set_jobs(simulator, 3)
        await wait_until(lambda: all_done(world, later), 90, "the jobs after the deletion")
        assert succeeded([world.jobs[j] for j in first + later])
        await cleaned_up(simulator, daemon, tmp_path / "runners")
        stored = json.loads(daemon.store.get_value("scaleset:scaleset-x64") or "{}")
        assert stored["scale_set_id"] == new_id


async def test_a_scale_set_pool_and_a_webhook_pool_each_serve_their_own_jobs(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    pools = scale_set_pool(tmp_path, max_runners=4) + local_pool(tmp_path, 4, "2s")
    config = write_config(tmp_path, simulator.url, pools=pools)  # polling too: the safety net
    world = simulator.simulator.world
    async with in_process_daemon(config) as daemon:
        simulator.simulator.webhooks.add_hook(f"{daemon.url}/webhook", WEBHOOK_SECRET)
        await wait_until(lambda: open_sessions(simulator) == 1, 30, "the listener's session")
        scale_set_jobs = queue_scale_set_jobs(simulator, 4)
        webhook_jobs = queue_jobs(simulator, 4)
        every = scale_set_jobs + webhook_jobs
        await wait_until(lambda: all_done(world, every), 120, "both pools' jobs")
        assert succeeded([world.jobs[j] for j in every])
        await cleaned_up(simulator, daemon, tmp_path / "runners")
        pool_of = {r.name: r.pool for r in daemon.store.runners()}
        served_by = {j: pool_of.get(world.jobs[j].runner_name or "") for j in every}
        assert served_by == {
            **dict.fromkeys(scale_set_jobs, "scaleset-x64"),
            **dict.fromkeys(webhook_jobs, "linux-x64"),
        }
        # The webhook deliveries of the scale-set jobs did not add demand (counted twice, they
        # would make about 8). One runner more than the jobs is the statistics' lag: a runner
        # that finished before the message saying so leaves ``totalAssignedJobs`` one high
        # for a moment, and the scaler replaces it (seen once under load).
        created = Counter(r.pool for r in daemon.store.runners())
        assert created["linux-x64"] == 4
        assert 4 <= created["scaleset-x64"] <= 5, created


def record_secrets(simulator: SimulatorServer) -> dict[str, list[str]]:
    """Where every secret the simulator issues from now on is recorded, by kind: the world's
    new secrets (registration tokens, queue tokens, runner credentials), the admin JWTs of
    ``runner-registration``, and the scale set's JIT configs."""
    world, scale_sets = simulator.simulator.world, simulator.simulator.scale_sets
    issued: dict[str, list[str]] = {"token": [], "JIT config": [], "admin token": []}
    new_secret, encode, register = world.new_secret, world.encode_jitconfig, scale_sets.register

    def recorded_secret(prefix: str) -> str:
        issued["token"].append(new_secret(prefix))
        return issued["token"][-1]

    def recorded_jitconfig(*args: Any, **kwargs: Any) -> str:
        issued["JIT config"].append(encode(*args, **kwargs))
        return issued["JIT config"][-1]

    def recorded_admin_token(*args: Any, **kwargs: Any) -> tuple[int, str]:
        tenant, token = register(*args, **kwargs)
        issued["admin token"].append(token)
        return tenant, token

    world.new_secret = recorded_secret  # type: ignore[method-assign]
    world.encode_jitconfig = recorded_jitconfig  # type: ignore[method-assign]
    scale_sets.register = recorded_admin_token  # type: ignore[method-assign]
    return issued


async def test_no_scale_set_secret_in_the_log_or_on_a_command_line(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    issued = record_secrets(simulator)
    config = write_config(tmp_path, simulator.url, pools=scale_set_pool(tmp_path))
    world = simulator.simulator.world
    log = tmp_path / "daemon.log"
    process = await start_daemon_process(config, log)
    try:
        await wait_until(lambda: open_sessions(simulator) == 1, 60, "the daemon's session")
        job_ids = queue_scale_set_jobs(simulator, 3, duration=8.0)
        await wait_until(
            lambda: any(world.jobs[j].status.value == "in_progress" for j in job_ids),
            60,
            "a runner at work",
        )
        at_work = processes_showing(["sim-runner"])
        secrets = [TOKEN, *(secret for kind in issued.values() for secret in kind)]
        on_command_lines = processes_showing(secrets)
        await control(simulator, "POST", "/_sim/scale-sets/expire-queue-tokens")
        await wait_until(lambda: all_done(world, job_ids), 90, "every job")
    finally:
        await stop_daemon_process(process)
    assert process.returncode == 0
    assert at_work, "no runner was at work when the command lines were read"
    assert on_command_lines == [], "a secret on these command lines"
    prefixes = {token.split("_")[0] for token in issued["token"] if "_" in token}
    assert {"sq", "rnr"} <= prefixes  # queue tokens and runner credentials
    assert len(issued["JIT config"]) >= 3
    assert issued["admin token"]
    text = log.read_text()
    assert "scale set runnerscale-x64" in text  # the listener did log
    secrets = [TOKEN, *(secret for kind in issued.values() for secret in kind)]  # all now
    leaked = [number for number, secret in enumerate(secrets) if secret in text]
    assert leaked == [], "secrets (by number) in the daemon's log"


async def test_two_orgs_each_with_its_scale_set_pool_serve_their_own_jobs(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    """``scale_set.target``: one scale set of the same name in each of two organisations;
    each org's jobs are run by its own pool's runners, registered there."""
    simulator.simulator.world.ensure_repo("widgets/app")
    widgets_pool = (
        scale_set_pool(tmp_path, max_runners=3)
        .replace("scaleset-x64", "widgets-x64")
        .replace("runner_group: Default", "runner_group: Default\n      target: org:widgets")
    )
    config = write_config(
        tmp_path,
        simulator.url,
        target="org: acme\n  - org: widgets",
        pools=scale_set_pool(tmp_path, max_runners=3) + widgets_pool,
    )
    world = simulator.simulator.world
    async with in_process_daemon(config) as daemon:
        await wait_until(lambda: open_sessions(simulator) == 2, 30, "both listeners' sessions")
        jobs = world.create_jobs(
            [
                JobSpec(repo, (SCALE_SET,), 1.0, None, f"{repo}-{i}")
                for repo in ("acme/app", "widgets/app")
                for i in range(3)
            ]
        )
        simulator.simulator.notify()
        job_ids = [job.id for job in jobs]
        await wait_until(lambda: all_done(world, job_ids), 90, "6 jobs to complete")
        assert succeeded(jobs)
        pool_of = {runner.name: (runner.pool, runner.target) for runner in daemon.store.runners()}
        served = {(job.repo.full_name, pool_of[job.runner_name or ""]) for job in jobs}
        assert served == {
            ("acme/app", ("scaleset-x64", "org:acme")),
            ("widgets/app", ("widgets-x64", "org:widgets")),
        }
        await cleaned_up(simulator, daemon, tmp_path / "runners")
    assert open_sessions(simulator) == 0
