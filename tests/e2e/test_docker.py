"""The daemon end to end with the Docker backend: simulator + daemon + a real Docker engine.

Runners are containers of the test runner image (``tests/docker_engine.py``): the runner
image's real entrypoint (``images/runner/entrypoint.sh``) starts the stand-in runner, which
reaches the simulator over the host's network (the engine here has no bridge). Each test ends
by checking that nothing was left: no container, no runner registered in the simulator, no
live runner in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import certifi
import docker
import httpx
import pytest

from runnerscale.daemon import Daemon
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import JobSpec, WorldSettings
from runnerscale.providers.docker.provider import LABEL_CONTROLLER, LABEL_POOL
from tests.docker_engine import (
    Engine,
    import_runner_image,
    make_tls,
    remove_labelled,
    start_engine,
    stop_engine,
    tls_engine_args,
)
from tests.e2e.control import control_client
from tests.e2e.harness import (
    LINUX,
    TOKEN,
    WEBHOOK_SECRET,
    all_done,
    free_port,
    in_process_daemon,
    queue_jobs,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.timeout(300)

CONTROLLER = "runnerscale-e2e"  # the harness's controller id


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    # A runner that goes silent mid-job fails its job after 15 s (GitHub: 10 minutes; the
    # stand-in runner's heartbeat is every 5 s).
    world = WorldSettings(runner_offline_after=30.0, lost_runner_timeout=15.0)
    options = SimulatorOptions(tokens=(TOKEN,), world=world)
    async with SimulatorServer(options) as server:
        server.simulator.world.ensure_repo("acme/app")
        yield server


@pytest.fixture
def engine_client(docker_engine: Engine) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=docker_engine.url, version="auto")
    yield client
    remove_labelled(client)
    client.close()


def docker_pool(
    engine: Engine,
    image: str,
    *,
    name: str = "linux-docker",
    labels: str = "[self-hosted, linux, auto]",
    max_runners: int = 6,
    min_idle: int = 0,
) -> str:
    return f"""\
  - name: {name}
    labels: {labels}
    provider: docker
    max_runners: {max_runners}
    min_idle: {min_idle}
    idle_timeout: 2s
    boot_timeout: 60s
    docker:
      host: {engine.url}
      image: {image}
      network: host
      pull: never
      cpus: 0.5
      memory: 256m
      pids_limit: 256
      read_only: true
      work_tmpfs: /home/runner/_work
      stop_grace: 5s
      labels: {{team: e2e}}
"""


def containers(client: docker.DockerClient, pool: str = "linux-docker") -> list[object]:
    return list(
        client.containers.list(
            all=True,
            ignore_removed=True,
            filters={"label": [f"{LABEL_CONTROLLER}={CONTROLLER}", f"{LABEL_POOL}={pool}"]},
        )
    )


def hook(simulator: SimulatorServer, daemon: Daemon) -> None:
    simulator.simulator.webhooks.add_hook(f"{daemon.url}/webhook", WEBHOOK_SECRET)


@contextlib.asynccontextmanager
async def another_engine(
    scratch: Path, extra_args: Sequence[str] = ()
) -> AsyncIterator[tuple[Engine, str, docker.DockerClient]]:
    """A second engine of the test's own, holding the runner image: (engine, image, client).
    Stopped, with its containers and data, afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="rsdk2-", dir="/tmp"))
    engine = await asyncio.to_thread(start_engine, directory, extra_args=extra_args)
    client = docker.DockerClient(base_url=engine.url, version="auto")
    try:
        image = await asyncio.to_thread(import_runner_image, engine.url, scratch)
        yield engine, image, client
    finally:
        client.close()
        await asyncio.to_thread(stop_engine, engine)
        shutil.rmtree(directory, ignore_errors=True)


async def nothing_left(
    simulator: SimulatorServer, daemon: Daemon, client: docker.DockerClient
) -> bool:
    live = [r for r in daemon.store.runners() if r.state.live]
    held = await asyncio.to_thread(containers, client)
    return not live and not held and not simulator.simulator.world.runners


async def metric(daemon: Daemon, line_start: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{daemon.url}/metrics")).text
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_burst_of_10_jobs_runs_in_limited_non_root_containers_and_nothing_is_left(
    simulator: SimulatorServer,
    docker_engine: Engine,
    runner_image: str,
    engine_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    pools = docker_pool(docker_engine, runner_image)
    config = write_config(tmp_path, simulator.url, poll_interval="2s", pools=pools)
    async with in_process_daemon(config) as daemon:
        # `auto` became this host's architecture and "no accelerator".
        assert set(daemon.controller.pools["linux-docker"].labels) >= {"x64", "cpu-only"}
        hook(simulator, daemon)
        job_ids = queue_jobs(simulator, 10, duration=4.0)
        world = simulator.simulator.world
        await wait_until(lambda: containers(engine_client), 60, "a runner container")
        inspected = containers(engine_client)[0]
        host = inspected.attrs["HostConfig"]  # type: ignore[attr-defined]
        assert host["NanoCpus"] == 500_000_000
        assert host["Memory"] == 256 * 1024**2
        assert host["PidsLimit"] == 256
        assert host["ReadonlyRootfs"] is True
        assert "/home/runner/_work" in host["Tmpfs"]
        assert inspected.attrs["Config"]["User"] in ("", "runner")  # type: ignore[attr-defined]
        assert inspected.labels["team"] == "e2e"  # type: ignore[attr-defined]
        await wait_until(lambda: all_done(world, job_ids), 120, "10 jobs to complete")
        assert all(world.jobs[j].conclusion.value == "success" for j in job_ids)  # type: ignore[union-attr]
        served_by = {world.jobs[j].runner_name for j in job_ids}
        assert len(served_by) == 10  # ephemeral: one container per job
        await wait_until(lambda: nothing_left(simulator, daemon, engine_client), 60, "clean-up")
        created = [r for r in daemon.store.runners() if r.pool == "linux-docker"]
        assert 10 <= len(created) <= 10 + 6


async def test_a_container_killed_from_outside_is_noticed_counted_and_replaced(
    simulator: SimulatorServer,
    docker_engine: Engine,
    runner_image: str,
    engine_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    pools = docker_pool(docker_engine, runner_image, min_idle=1)
    config = write_config(tmp_path, simulator.url, poll_interval="1s", pools=pools)
    world = simulator.simulator.world
    async with in_process_daemon(config) as daemon:
        hook(simulator, daemon)
        died = 'runnerscale_errors_total{kind="instance_died",pool="linux-docker"}'
        # A busy runner killed mid-job.
        [long_job] = queue_jobs(simulator, 1, duration=120.0)
        await wait_until(
            lambda: world.jobs[long_job].status.value == "in_progress", 60, "the job to start"
        )
        busy_name = world.jobs[long_job].runner_name
        assert busy_name is not None
        await asyncio.to_thread(lambda: engine_client.containers.get(busy_name).kill())
        await wait_until(
            lambda: daemon.store.get_runner(busy_name).state.value == "gone",  # type: ignore[union-attr]
            60,
            "the killed runner to be reaped",
        )
        assert await metric(daemon, died) >= 1
        # GitHub fails the job once its runner stays silent (here after 15 s).
        await wait_until(lambda: all_done(world, [long_job]), 60, "the orphaned job to fail")
        assert world.jobs[long_job].conclusion.value == "failure"  # type: ignore[union-attr]

        # An idle runner killed: min_idle brings a new one.
        def idle_names() -> list[str]:
            return [r.name for r in daemon.store.runners(pool="linux-docker") if r.state == "idle"]

        await wait_until(idle_names, 150, "an idle runner")
        [idle_name] = idle_names()
        await asyncio.to_thread(lambda: engine_client.containers.get(idle_name).kill())
        await wait_until(
            lambda: idle_names() and idle_names() != [idle_name], 150, "a new idle runner"
        )
        assert await metric(daemon, died) >= 2
        # The pool is whole: new jobs are served.
        job_ids = queue_jobs(simulator, 3, duration=1.0)
        await wait_until(lambda: all_done(world, job_ids), 90, "3 more jobs")
        assert all(world.jobs[j].conclusion.value == "success" for j in job_ids)  # type: ignore[union-attr]
        assert daemon.controller.status.pools[0].healthy


async def test_a_daemon_restarted_mid_burst_adopts_its_containers(
    simulator: SimulatorServer,
    docker_engine: Engine,
    runner_image: str,
    engine_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    pools = docker_pool(docker_engine, runner_image)
    config = write_config(tmp_path, simulator.url, poll_interval="2s", pools=pools)
    world = simulator.simulator.world
    job_ids = queue_jobs(simulator, 6, duration=10.0)
    async with in_process_daemon(config) as first:
        hook(simulator, first)

        async def three_running() -> bool:
            in_progress = sum(world.jobs[j].status.value == "in_progress" for j in job_ids)
            listed = await asyncio.to_thread(containers, engine_client)
            return in_progress >= 3 and len(listed) >= 3

        await wait_until(three_running, 90, "three jobs running in containers")
        states = {r.name: r.state.value for r in first.store.runners()}
    # The daemon is gone; its containers are not.
    listed = await asyncio.to_thread(containers, engine_client)
    running_before = {c.name for c in listed}  # type: ignore[attr-defined]
    assert len(running_before) >= 3, (
        f"containers after the stop: {running_before}; runners then: {states}; "
        f"engine log:\n{docker_engine.log_tail()}"
    )
    async with in_process_daemon(config) as second:  # same address: the hook still points here
        await wait_until(lambda: all_done(world, job_ids), 120, "all six jobs")
        outcomes = [(world.jobs[j].conclusion, world.jobs[j].runner_name) for j in job_ids]
        assert all(c is not None and c.value == "success" for c, _ in outcomes), outcomes
        # Each job ran once, and the runners of the first daemon finished their jobs.
        served_by = [world.jobs[j].runner_name for j in job_ids]
        assert len(set(served_by)) == 6
        assert running_before <= {r.name for r in second.store.runners()}
        await wait_until(lambda: nothing_left(simulator, second, engine_client), 60, "clean-up")


async def test_a_missing_image_makes_its_pool_unhealthy_and_leaves_others_alone(
    simulator: SimulatorServer,
    docker_engine: Engine,
    runner_image: str,
    engine_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    pools = docker_pool(docker_engine, runner_image) + docker_pool(
        docker_engine,
        "runnerscale-no-such-image:1",
        name="broken",
        labels="[self-hosted, linux, auto, broken]",
    )
    config = write_config(tmp_path, simulator.url, poll_interval="2s", pools=pools)
    world = simulator.simulator.world
    async with in_process_daemon(config) as daemon:
        hook(simulator, daemon)
        broken_job, arm_job = (
            job.id
            for job in world.create_jobs(
                [
                    JobSpec("acme/app", (*LINUX, "broken"), 1.0, None, "broken"),
                    JobSpec("acme/app", ("self-hosted", "linux", "arm64"), 1.0, None, "arm"),
                ]
            )
        )
        simulator.simulator.notify()
        good = queue_jobs(simulator, 2, duration=1.0)
        await wait_until(lambda: all_done(world, good), 90, "the healthy pool's jobs")

        def broken_status() -> object:
            pool = next(p for p in daemon.controller.status.pools if p.name == "broken")
            return pool if not pool.healthy else None

        await wait_until(broken_status, 60, "the broken pool to be unhealthy")
        pool = broken_status()
        assert "runnerscale-no-such-image:1" in str(pool.last_error)  # type: ignore[attr-defined]
        assert "'broken'" in str(pool.last_error)  # type: ignore[attr-defined]
        assert world.jobs[broken_job].status.value == "queued"
        async with httpx.AsyncClient() as http, control_client(daemon) as control:
            health = (await http.get(f"{daemon.url}/healthz")).json()
            status = (await control.get("/api/v1/status")).json()
        assert health["unhealthy_pools"] == ["broken"]
        # A job for another architecture is never provisioned for, and says why.
        [arm] = [job for job in status["unmatched"] if job["id"] == arm_job]
        assert arm["reason"] == "it needs arm64, but every pool here runs on x64"
        assert not [r for r in daemon.store.runners() if r.pool == "broken" and r.state.live]
        assert containers(engine_client, "broken") == []


async def test_two_engines_one_over_tls_serve_two_pools(
    simulator: SimulatorServer,
    docker_engine: Engine,
    runner_image: str,
    engine_client: docker.DockerClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    tls = make_tls(tmp_path / "tls")
    async with another_engine(tmp_path, tls_engine_args(tls, port)) as (_, remote_image, remote):
        # The configured CA must win over a CA bundle named in the environment.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
        remote_pool = docker_pool(
            docker_engine, remote_image, name="remote", labels="[self-hosted, linux, auto, remote]"
        ).replace(
            f"host: {docker_engine.url}",
            f"host: tcp://127.0.0.1:{port}\n      tls_ca_cert: {tls.ca}\n"
            f"      tls_client_cert: {tls.client_cert}\n      tls_client_key: {tls.client_key}",
        )
        # Each pool gets a label of its own: a job both pools could serve may land on either.
        local_pool = docker_pool(
            docker_engine, runner_image, labels="[self-hosted, linux, auto, local]"
        )
        pools = local_pool + remote_pool
        config = write_config(tmp_path, simulator.url, poll_interval="2s", pools=pools)
        world = simulator.simulator.world
        seen_remote: set[str] = set()
        async with in_process_daemon(config) as daemon:
            hook(simulator, daemon)
            jobs = world.create_jobs(
                [
                    JobSpec("acme/app", (*LINUX, where), 3.0, None, f"{where}-{i}")
                    for where in ("local", "remote")
                    for i in (1, 2)
                ]
            )
            local_jobs = [job.id for job in jobs if "local" in job.labels]
            remote_jobs = [job.id for job in jobs if "remote" in job.labels]
            simulator.simulator.notify()

            def done() -> bool:
                for container in containers(remote, "remote"):
                    seen_remote.add(container.name)  # type: ignore[attr-defined]
                return all_done(world, local_jobs + remote_jobs)

            await wait_until(done, 90, "jobs on both engines")
            every = local_jobs + remote_jobs
            assert all(world.jobs[j].conclusion.value == "success" for j in every)  # type: ignore[union-attr]
            remote_runners = {world.jobs[j].runner_name for j in remote_jobs}
            local_runners = {world.jobs[j].runner_name for j in local_jobs}
            assert all(name and name.startswith("rs-remote-") for name in remote_runners)
            assert all(name and name.startswith("rs-linux-docker-") for name in local_runners)
            assert remote_runners <= seen_remote  # their containers ran on the TLS engine
            await wait_until(
                lambda: not containers(remote, "remote") and not containers(engine_client),
                60,
                "clean-up on both engines",
            )


async def test_a_pool_whose_engine_is_away_at_start_takes_jobs_once_it_answers(
    simulator: SimulatorServer,
    docker_engine: Engine,
    runner_image: str,
    engine_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    # The pool's engine socket appears only after the daemon started: a link to a second
    # engine (which already holds the runner image, so the pool's first runner works).
    later_socket = tmp_path / "later.sock"
    here = docker_pool(docker_engine, runner_image, labels="[self-hosted, linux, auto, here]")
    later = docker_pool(
        docker_engine, runner_image, name="later", labels="[self-hosted, linux, auto, later]"
    ).replace(f"host: {docker_engine.url}", f"host: unix://{later_socket}")
    config = write_config(tmp_path, simulator.url, poll_interval="2s", pools=here + later)
    world = simulator.simulator.world
    async with (
        another_engine(tmp_path) as (engine, image, later_client),
        in_process_daemon(config) as daemon,  # it starts: "later" waits
    ):
        assert image == runner_image
        hook(simulator, daemon)
        assert daemon.waiting.keys() == {"later"}
        [job] = world.create_jobs([JobSpec("acme/app", (*LINUX, "here"), 1.0, None, "a")])
        [waiting_job] = world.create_jobs([JobSpec("acme/app", (*LINUX, "later"), 1.0, None, "b")])
        simulator.simulator.notify()
        await wait_until(lambda: all_done(world, [job.id]), 90, "the other pool's job")
        async with control_client(daemon) as control:
            status = (await control.get("/api/v1/status")).json()
        pool = next(p for p in status["pools"] if p["name"] == "later")
        assert not pool["healthy"]
        assert str(later_socket) in pool["last_error"]
        assert world.jobs[waiting_job.id].status.value == "queued"

        later_socket.symlink_to(engine.url.removeprefix("unix://"))  # the engine appears
        await wait_until(lambda: not daemon.waiting, 60, "the pool's engine to be asked")
        assert set(daemon.controller.pools["later"].labels) & {"x64", "arm64"}  # resolved
        await wait_until(lambda: all_done(world, [waiting_job.id]), 90, "its job")
        assert (world.jobs[waiting_job.id].runner_name or "").startswith("rs-later-")
        assert daemon.controller.pools["later"].healthy
        await wait_until(lambda: not containers(later_client, "later"), 60, "clean-up")


async def test_the_issues_scale_set_pool_on_docker_serves_jobs_and_returns_to_min_idle(
    docker_engine: Engine,
    runner_image: str,
    engine_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    """Issue 16's configuration as written (plus the ``docker:`` block that points at the
    test's engine): the scale set's JIT configs start containers, and the pool goes back to
    its one idle runner."""
    world_settings = WorldSettings(
        runner_offline_after=30.0, scale_set_poll_hold=2.0, scale_set_session_lapse=5.0
    )
    options = SimulatorOptions(tokens=(TOKEN,), world=world_settings)
    pools = f"""\
  - name: scaleset-x64
    demand: scale_set              # default: webhooks (with polling as the safety net)
    scale_set:
      name: runnerscale-x64        # jobs use runs-on: runnerscale-x64
      runner_group: Default
      labels: [linux, x64]         # extra labels (multi-label scale sets)
    provider: docker
    max_runners: 20
    min_idle: 1
    docker:
      host: {docker_engine.url}
      image: {runner_image}
      network: host
      pull: never
"""
    async with SimulatorServer(options) as simulator:
        world = simulator.simulator.world
        world.ensure_repo("acme/app")
        config = write_config(tmp_path, simulator.url, poll_interval="1h", pools=pools)
        async with in_process_daemon(config) as daemon:

            def idle_runners() -> list[object]:
                return [
                    r
                    for r in world.runners.values()
                    if r.connected and r.job_id is None and not r.used
                ]

            await wait_until(idle_runners, 90, "the idle runner (min_idle: 1)")
            jobs = world.create_jobs(
                [JobSpec("acme/app", ("runnerscale-x64",), 2.0, None, f"j{i}") for i in range(3)]
            )
            simulator.simulator.notify()
            job_ids = [job.id for job in jobs]
            await wait_until(lambda: all_done(world, job_ids), 120, "3 scale-set jobs")
            assert all(world.jobs[j].conclusion.value == "success" for j in job_ids)  # type: ignore[union-attr]
            served_by = {world.jobs[j].runner_name for j in job_ids}
            assert len(served_by) == 3  # ephemeral: one container per job

            async def back_to_min_idle() -> bool:
                held = await asyncio.to_thread(containers, engine_client, "scaleset-x64")
                return len(held) == 1 and len(world.runners) == 1 and len(idle_runners()) == 1

            await wait_until(back_to_min_idle, 60, "one idle runner again")
            assert daemon.controller.pools["scaleset-x64"].labels  # the scale set's labels
