"""The EC2 backend end to end through the daemon (issue 15): the issue's pool as written, its
``ec2:`` block pointed at moto in server mode (``endpoint_url``: the fault proxy in front of
it, ``tests/moto_server.py``), the simulated GitHub over real HTTP, and the boot script's
stand-in (``tests/ec2_boot.py``) booting every instance moto runs: it reads and deletes the
JIT config parameter and starts the stand-in runner, which takes the job from the simulator.

One moto server serves the session (each test empties it); a test's daemon runs in this
process (the AWS credentials in ``os.environ`` for that test only: ``aws_environment``), or as
a ``runnerscale run`` process when it is killed with ``kill -9`` or its whole log is read. The
simulator is the lost-jobs tests' (a runner silent for 8 s is lost). Every test ends with
nothing left: no instance of the pool that is not terminated, no parameter under the prefix,
no runner at the fake GitHub, no live runner in the store.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from runnerscale.daemon import Daemon
from runnerscale.fakegithub.entities import Job
from runnerscale.fakegithub.server import SimulatorServer
from runnerscale.fakegithub.world import JobSpec
from runnerscale.model import RERUN
from runnerscale.providers.ec2 import provider as ec2_provider
from runnerscale.providers.ec2 import tags
from runnerscale.providers.pause import PAUSE_ENV
from tests.e2e.control import control_client
from tests.e2e.harness import (
    LINUX,
    WEBHOOK_SECRET,
    all_done,
    in_process_daemon,
    live_runners,
    record_jit_configs,
    rerun_after_loss,
    runnerscale_command,
    start_daemon_process,
    stop_daemon_process,
    wait_until,
    write_config,
)
from tests.e2e.test_lost_jobs import simulator
from tests.ec2_boot import BootStandIn
from tests.moto_server import Ec2Setup, aws_environment, ec2_setup, moto_server
from tests.providers.ec2 import support

__all__ = ["aws_environment", "ec2_setup", "moto_server", "simulator"]  # fixtures, imported

# Above the longest test's own waits (60 + 90 + 60 s in the burst), so a slow machine fails
# at the wait that is slow, with its name, not at this cap.
pytestmark = pytest.mark.timeout(300)

ISSUE_CONFIG = Path(__file__).parents[1] / "providers" / "ec2" / "issue15.yaml"
POOL = "ec2-x64"
CONTROLLER = "runnerscale-e2e"  # the controller id of the harness's daemons
LABELS = (*LINUX, "ec2")
PREFIX = "/runnerscale/jit"


@pytest.fixture
def boot(ec2_setup: Ec2Setup) -> Iterator[BootStandIn]:
    """The boot script's stand-in, booting the pool's instances every 0.2 s."""
    with BootStandIn(ec2_setup.server, match={tags.POOL: POOL}) as stand_in:
        yield stand_in


@pytest.fixture
def account(ec2_setup: Ec2Setup, aws_environment: dict[str, str], boot: BootStandIn) -> Ec2Setup:
    """The test account, its credentials in ``os.environ`` (for a daemon in this process),
    its instances booted by the stand-in."""
    return ec2_setup


# -- the configuration


def issue_pool(
    setup: Ec2Setup, *, idle_timeout: str = "2s", boot_timeout: str = "60s", extra: str = ""
) -> str:
    """The issue's pool as written, on the test account: moto's subnets, the proxy as the
    endpoint, a short idle timeout (and ``extra`` pool lines, indented by four)."""
    text = ISSUE_CONFIG.read_text().split("pools:\n", 1)[1]
    first, second = setup.subnet_ids
    for issue, ours in (
        ("subnet-aaa", first),
        ("subnet-bbb", second),
        (
            "idle_timeout: 2m",
            f"idle_timeout: {idle_timeout}\n    boot_timeout: {boot_timeout}{extra}",
        ),
        ("# endpoint_url: http://127.0.0.1:5000", f"endpoint_url: {setup.server.url}"),
    ):
        assert issue in text, f"the issue's configuration no longer says {issue}"
        text = text.replace(issue, ours)
    return text


def ec2_config(
    directory: Path,
    simulator: SimulatorServer,
    setup: Ec2Setup,
    *,
    create_timeout: str | None = None,
    **pool: Any,
) -> Path:
    return write_config(
        directory,
        simulator.url,
        poll_interval="1s",
        pools=issue_pool(setup, **pool),
        create_timeout=create_timeout,
    )


def listening_port(config: Path) -> int:
    return int(config.read_text().split("listen: 127.0.0.1:")[1].split()[0])


@asynccontextmanager
async def serving(config: Path, simulator: SimulatorServer) -> AsyncIterator[Daemon]:
    """The daemon of ``config`` in this process, hearing the simulator's webhooks."""
    async with in_process_daemon(config) as daemon:
        simulator.simulator.webhooks.add_hook(f"{daemon.url}/webhook", WEBHOOK_SECRET)
        yield daemon


# -- what there is


def queue(simulator: SimulatorServer, count: int, duration: float = 1.0) -> list[Job]:
    jobs = simulator.simulator.world.create_jobs(
        [JobSpec("acme/app", LABELS, duration, None, f"job-{i}") for i in range(count)]
    )
    simulator.simulator.notify()
    return jobs


def succeeded(jobs: Sequence[Job]) -> bool:
    return all(job.conclusion is not None and job.conclusion.value == "success" for job in jobs)


async def instances(setup: Ec2Setup, **filters: str) -> list[dict[str, Any]]:
    """The pool's instances that are not terminated (``filters``: more tags). (A daemon run
    as a process picks its own controller id: the pool's tag is what every one carries.)"""
    found = await asyncio.to_thread(setup.instances, **{tags.POOL: POOL, **filters})
    return [entry for entry in found if entry["State"]["Name"] != "terminated"]


async def aws_leftovers(setup: Ec2Setup) -> list[str]:
    """The pool's instances not terminated, and every parameter under the prefix."""
    left = [f"instance {entry['InstanceId']}" for entry in await instances(setup)]
    named = await asyncio.to_thread(setup.parameters, PREFIX)
    return left + [f"parameter {name}" for name in named]


async def what_is_left(
    simulator: SimulatorServer, daemon: Daemon | None, setup: Ec2Setup
) -> list[str]:
    """The daemon's live runners, the runners registered at GitHub, the pool's instances not
    terminated and its parameters."""
    live = [] if daemon is None else live_runners(daemon.store)
    registered = [
        f"registered {runner.name} (busy: {runner.busy})"
        for runner in simulator.simulator.world.runners.values()
    ]
    return live + registered + await aws_leftovers(setup)


async def _left_and_undelivered(
    simulator: SimulatorServer, daemon: Daemon | None, setup: Ec2Setup
) -> list[str]:
    return await what_is_left(simulator, daemon, setup) + not_delivered(simulator)


def not_delivered(simulator: SimulatorServer) -> list[str]:
    """The webhook deliveries the daemon did not take (a job it never heard of is one)."""
    return [
        f"delivery {d.guid} ({d.action}, job {d.job_id}): {d.status} {d.status_code} {d.error}"
        for d in simulator.simulator.webhooks.log
        if d.status != "delivered"
    ]


async def nothing_left(simulator: SimulatorServer, daemon: Daemon | None, setup: Ec2Setup) -> bool:
    return not await what_is_left(simulator, daemon, setup)


async def wait_clean(
    simulator: SimulatorServer, daemon: Daemon | None, setup: Ec2Setup, what: str
) -> None:
    """Wait (a minute at most) until nothing is left; else fail saying what is."""
    await wait_until(
        lambda: nothing_left(simulator, daemon, setup),
        60,
        what,
        explain=lambda: _left_and_undelivered(simulator, daemon, setup),
    )


def online(simulator: SimulatorServer) -> list[str]:
    return sorted(r.name for r in simulator.simulator.world.runners.values() if r.connected)


async def metrics(daemon: Daemon) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{daemon.url}/metrics")).text


def instance_runner(entry: dict[str, Any]) -> str:
    """The runner an instance was launched for (its tag)."""
    return str({tag["Key"]: tag["Value"] for tag in entry["Tags"]}[tags.RUNNER])


def instance_of(boot: BootStandIn, runner: str) -> str:
    """The instance the stand-in booted the runner on."""
    (instance_id,) = [i for i, booted in boot.booted.items() if booted.runner_name == runner]
    return instance_id


def sample(said: str, name: str, **labels: str) -> float | None:
    """The value of the series ``name{labels}`` in the metrics text ``said`` (None: none;
    the labels are written sorted, as the exposition writes them)."""
    inside = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    head = f"{name}{{{inside}}} "
    found = [line for line in said.splitlines() if line.startswith(head)]
    return float(found[-1].removeprefix(head)) if found else None


def launches(said: str, outcome: str) -> float | None:
    """Launch attempts of the pool by outcome, as the daemon's metrics count them."""
    return sample(
        said, "runnerscale_backend_events_total", pool=POOL, event="launch", outcome=outcome
    )


# -- 1: a burst, and back to zero


async def test_a_burst_is_served_through_the_ssm_hand_off_and_the_pool_goes_back_to_zero(
    simulator: SimulatorServer,
    ec2_setup: Ec2Setup,
    aws_environment: dict[str, str],
    tmp_path: Path,
) -> None:
    config = ec2_config(tmp_path, simulator, ec2_setup)
    world = simulator.simulator.world
    async with serving(config, simulator) as daemon:
        jobs = queue(simulator, 4, duration=2.0)
        # One more job, cancelled once its runner's instance is launched: that runner comes
        # online with nothing to do and leaves by the idle timeout.
        [spare] = queue(simulator, 1, duration=2.0)

        async def five_launched() -> bool:
            return len(await instances(ec2_setup)) == 5

        await wait_until(five_launched, 60, "five instances")
        world.cancel_run(spare.run)
        simulator.simulator.notify()
        with BootStandIn(ec2_setup.server, match={tags.POOL: POOL}) as boot:
            await wait_until(lambda: all_done(world, [j.id for j in jobs]), 90, "the burst")
            assert succeeded(jobs)
            served = {job.runner_name for job in jobs}
            # Each job ran on a runner the stand-in started with the JIT config it read from
            # its instance's parameter.
            assert served <= {runner.runner_name for runner in boot.booted.values()}, served
            assert len(served) == 4
            await wait_clean(simulator, daemon, ec2_setup, "back to zero")
            assert len(boot.booted) == 5, boot.booted
            assert not boot.failures
        said = await metrics(daemon)
    assert sample(said, "runnerscale_runner_removals_total", pool=POOL, reason="idle") == 1
    assert sample(said, "runnerscale_runner_removals_total", pool=POOL, reason="job_done") == 4
    assert launches(said, "launched") == 5
    every = await asyncio.to_thread(ec2_setup.instances, **{tags.CONTROLLER: CONTROLLER})
    assert len(every) == 5
    assert {entry["State"]["Name"] for entry in every} == {"terminated"}
    assert {tag["Value"] for e in every for tag in e["Tags"] if tag["Key"] == "team"} == {"ci"}
    assert len({instance_runner(e) for e in every}) == 5


# -- 2 and 3: the fallback


async def one_job(
    simulator: SimulatorServer, setup: Ec2Setup, tmp_path: Path
) -> tuple[dict[str, Any], str]:
    """One job served end to end by the issue's pool (under the faults the test set): the
    instance its runner ran on, and the daemon's metrics once nothing is left."""
    config = ec2_config(tmp_path, simulator, setup)
    async with serving(config, simulator) as daemon:
        [job] = queue(simulator, 1)
        await wait_until(lambda: all_done(simulator.simulator.world, [job.id]), 60, "the job")
        assert succeeded([job])
        await wait_clean(simulator, daemon, setup, "clean-up")
        [entry] = await asyncio.to_thread(setup.instances, **{tags.RUNNER: job.runner_name or ""})
        return entry, await metrics(daemon)


async def test_capacity_errors_move_the_launch_to_the_next_subnet_and_type_counted_by_reason(
    simulator: SimulatorServer,
    account: Ec2Setup,
    tmp_path: Path,
) -> None:
    first, second = account.subnet_ids
    faults = account.server.faults
    faults.insufficient_capacity(["m7i.large"])
    faults.insufficient_capacity(["m6i.large"], subnets=[first])
    entry, said = await one_job(simulator, account, tmp_path)
    ice = "InsufficientInstanceCapacity"
    assert [(f.instance_type, f.subnet, f.market, f.outcome) for f in faults.launches] == [
        ("m7i.large", first, "spot", ice),
        ("m7i.large", second, "spot", ice),
        ("m6i.large", first, "spot", ice),
        ("m6i.large", second, "spot", "launched"),
    ]
    assert (entry["InstanceType"], entry["SubnetId"]) == ("m6i.large", second)
    assert entry.get("InstanceLifecycle") == "spot"
    assert launches(said, "insufficient_capacity") == 3
    assert launches(said, "launched") == 1


async def test_spot_short_for_every_type_launches_on_demand(
    simulator: SimulatorServer,
    account: Ec2Setup,
    tmp_path: Path,
) -> None:
    faults = account.server.faults
    faults.spot_unavailable()
    entry, said = await one_job(simulator, account, tmp_path)
    markets = [(f.instance_type, f.market, f.outcome) for f in faults.launches]
    assert markets == [
        (kind, "spot", "InsufficientInstanceCapacity")
        for kind in ("m7i.large", "m6i.large", "m5.large")
        for _ in account.subnet_ids
    ] + [("m7i.large", "on-demand", "launched")]
    assert "InstanceLifecycle" not in entry  # on-demand: moto marks only spot ones
    assert entry["InstanceType"] == "m7i.large"
    assert launches(said, "insufficient_capacity") == 6
    assert launches(said, "launched") == 1


# -- 4: an instance terminated from outside mid-job


async def test_an_instance_terminated_mid_job_loses_its_job_which_is_rerun(
    simulator: SimulatorServer,
    account: Ec2Setup,
    boot: BootStandIn,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Seen once in CI only (the re-run's runner left busy after its job succeeded): the
    # daemon's log at INFO is printed with a failure.
    caplog.set_level(logging.INFO, logger="runnerscale")
    config = ec2_config(tmp_path, simulator, account, extra="\n    rerun_lost_jobs: true")
    world = simulator.simulator.world
    async with serving(config, simulator) as daemon, control_client(daemon) as control:
        [job] = queue(simulator, 1, duration=5.0)
        await wait_until(lambda: job.status.value == "in_progress", 60, "the job to start")
        runner = job.runner_name
        assert runner is not None
        instance_id = instance_of(boot, runner)
        await asyncio.to_thread(boot.terminate_from_outside, instance_id)

        await rerun_after_loss(world, job, runner)
        await wait_clean(simulator, daemon, account, "clean-up")
        (loss,) = daemon.store.job_losses()
        assert (loss.job_id, loss.pool, loss.outcome) == (job.id, POOL, RERUN)
        assert runner in loss.reason
        said = await metrics(daemon)
        assert sample(said, "runnerscale_jobs_rerun_total", pool=POOL) == 1
        status = (await control.get("/api/v1/status")).json()
        assert [(lost["job_id"], lost["outcome"]) for lost in status["lost_jobs"]] == [
            (job.id, RERUN)
        ]


# -- 5: kill -9 of the daemon during launches


#: The steps of the provider's create the daemon is killed after, and what the restarted
#: daemon says of the instances they left.
KILLED_AFTER = {
    # Launched, never tagged written: it never gets a parameter; incomplete, terminated once
    # older than the create timeout.
    "launched": "incomplete: ",
    # Tagged, no parameter: its runner never comes online; removed at its boot timeout.
    "tagged": "did not come online within 10s",
    # Given its parameter (which the boot script takes at once): it runs its runner, which
    # serves its job (taken before the kill, or after the restart) and is removed once
    # finished (by its pool's worker, or the janitor's sweep if that comes first).
    "parameter": "finished -> deleting: ",
}


@pytest.mark.parametrize("step", list(KILLED_AFTER))
async def test_a_daemon_killed_mid_launch_leaks_nothing_after_a_restart(
    simulator: SimulatorServer,
    ec2_setup: Ec2Setup,
    boot: BootStandIn,
    tmp_path: Path,
    step: str,
) -> None:
    config = ec2_config(tmp_path, simulator, ec2_setup, boot_timeout="10s", create_timeout="4s")
    port = listening_port(config)
    simulator.simulator.webhooks.add_hook(f"http://127.0.0.1:{port}/webhook", WEBHOOK_SECRET)
    world = simulator.simulator.world
    marker = tmp_path / "paused"
    log = tmp_path / "daemon.log"
    aws = ec2_setup.server.environment()
    daemon = await start_daemon_process(config, log, env={**aws, PAUSE_ENV: f"{step} {marker}"})
    try:
        # Long enough that a runner booted before the kill still runs after the restart.
        jobs = queue(simulator, 2, duration=6.0)

        def paused() -> int:
            return len(marker.read_text().splitlines()) if marker.exists() else 0

        # Both creates stand still at the step (on a slow machine the second one takes longer
        # than a moment: killed before it, its instance would show another step's leftovers).
        await wait_until(lambda: paused() >= len(jobs), 60, f"both creates to stop after {step!r}")
        daemon.send_signal(signal.SIGKILL)
        await daemon.wait()
        left = await instances(ec2_setup)
        assert left, "the killed creates left no instance"
        daemon = await start_daemon_process(config, log, env=aws)
        await wait_until(lambda: all_done(world, [j.id for j in jobs]), 90, "the jobs")
        assert succeeded(jobs)
        await wait_clean(simulator, None, ec2_setup, "nothing left")
    finally:
        await stop_daemon_process(daemon)
    said = log.read_text()
    assert "Traceback" not in said
    runners = {entry["InstanceId"]: instance_runner(entry) for entry in left}
    for instance_id, runner in runners.items():
        assert (instance_id in boot.booted) is (step == "parameter"), step
        lines = [line for line in said.splitlines() if runner in line]
        assert any(KILLED_AFTER[step] in line for line in lines), lines
    served = {job.runner_name for job in jobs}
    # The runners of the killed creates served the jobs when they booted; others did if not.
    assert (served == set(runners.values())) is (step == "parameter"), (served, runners)


# -- 6: orphans


async def test_orphaned_instances_and_parameters_are_cleaned_by_the_janitor(
    simulator: SimulatorServer,
    ec2_setup: Ec2Setup,
    aws_environment: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ec2_provider, "SWEEP_INTERVAL", 1.0)
    monkeypatch.setattr(ec2_provider, "ORPHAN_GRACE", 1.0)
    owner = {tags.CONTROLLER: CONTROLLER, tags.POOL: POOL}
    theirs = {tags.CONTROLLER: "another-deployment", tags.POOL: POOL}

    def launch(labels: dict[str, str]) -> str:
        answer = ec2_setup.ec2.run_instances(
            MinCount=1,
            MaxCount=1,
            LaunchTemplate={"LaunchTemplateName": ec2_setup.launch_template_name},
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in labels.items()],
                }
            ],
        )
        return str(answer["Instances"][0]["InstanceId"])

    written = {tags.HANDOFF: "written", tags.SSM_PREFIX: PREFIX}
    orphan = await asyncio.to_thread(launch, {**owner, tags.RUNNER: "rs-ec2-x64-orphan", **written})
    other = await asyncio.to_thread(launch, {**theirs, tags.RUNNER: "rs-ec2-x64-theirs", **written})
    gone = "i-0123456789abcdef0"  # no such instance
    await asyncio.to_thread(support.put_parameter, ec2_setup, gone, "orphan-secret", owner)
    config = ec2_config(tmp_path, simulator, ec2_setup)
    async with serving(config, simulator) as daemon:

        async def cleaned() -> bool:
            ours = await instances(ec2_setup, **{tags.CONTROLLER: CONTROLLER})
            names = await asyncio.to_thread(ec2_setup.parameters, PREFIX)
            return not ours and names == []

        await wait_until(cleaned, 30, "the orphans to be cleaned")
        swept = {"pool": POOL, "event": "parameter", "outcome": "swept"}

        async def counted() -> bool:  # (a sweep counts just after its delete)
            said = await metrics(daemon)
            return (
                sample(said, "runnerscale_cleanups_total", pool=POOL, kind="instance_orphan") == 1
                and sample(said, "runnerscale_backend_events_total", **swept) == 1
            )

        await wait_until(counted, 10, "the clean-ups counted")
    assert support.state(ec2_setup, orphan) == "terminated"
    assert support.state(ec2_setup, other) == "running"  # another controller's: not ours


# -- 7: no secret anywhere


async def test_no_jit_config_is_in_user_data_tags_logs_or_metrics(
    simulator: SimulatorServer, ec2_setup: Ec2Setup, boot: BootStandIn, tmp_path: Path
) -> None:
    """The daemon as a process logging at debug: its whole output is read, as an operator
    would read it."""
    issued = record_jit_configs(simulator.simulator.world)
    config = ec2_config(tmp_path, simulator, ec2_setup)
    port = listening_port(config)
    simulator.simulator.webhooks.add_hook(f"http://127.0.0.1:{port}/webhook", WEBHOOK_SECRET)
    world = simulator.simulator.world
    log = tmp_path / "daemon.log"
    exposed: list[str] = []
    said = ""
    daemon = await start_daemon_process(config, log, env=ec2_setup.server.environment())
    try:
        jobs = queue(simulator, 2, duration=3.0)
        await wait_until(
            lambda: all(job.status.value == "in_progress" for job in jobs), 60, "both jobs"
        )
        exposed += await asyncio.to_thread(boot.exposed_texts)
        async with control_client(config) as control, httpx.AsyncClient() as http:
            status = (await control.get("/api/v1/status")).text
            said += (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            await wait_until(lambda: all_done(world, [j.id for j in jobs]), 60, "the jobs")
            await wait_clean(simulator, None, ec2_setup, "clean-up")
            exposed += await asyncio.to_thread(boot.exposed_texts)
            said += (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    finally:
        await stop_daemon_process(daemon)
    assert len(issued) == 2
    assert any(text.startswith("#!") for text in exposed), "no user data was read"
    assert any(text.startswith(f"{tags.RUNNER}=") for text in exposed), "no tag was read"
    logged = log.read_text()
    assert "launched m7i.large spot" in logged  # the launches are in it
    for secret in issued:
        assert secret not in logged
        assert secret not in said
        assert secret not in status
        assert not [text for text in exposed if secret in text]


# -- 8: manual scaling


async def test_scale_up_and_down_by_hand_through_the_daemon(
    simulator: SimulatorServer,
    account: Ec2Setup,
    tmp_path: Path,
) -> None:
    config = ec2_config(tmp_path, simulator, account, idle_timeout="1h")
    env = {"HOME": str(tmp_path)}
    async with serving(config, simulator) as daemon:
        code, output = await runnerscale_command(
            "scale", "up", "-c", str(config), "--pool", POOL, "-n", "2", env=env
        )
        assert code == 0, output
        assert "created 2 of 2" in output
        await wait_until(lambda: len(online(simulator)) == 2, 60, "two runners online")
        assert len(await instances(account)) == 2
        first, second = online(simulator)
        code, output = await runnerscale_command(
            "scale", "down", "-c", str(config), "--runner", first, env=env
        )
        assert code == 0, output

        async def one_left() -> bool:
            left = await instances(account)
            return online(simulator) == [second] and [instance_runner(e) for e in left] == [second]

        await wait_until(one_left, 60, f"{first} and its instance gone")
        code, output = await runnerscale_command(
            "scale", "down", "-c", str(config), "--pool", POOL, env=env
        )
        assert code == 0, output
        await wait_clean(simulator, daemon, account, "clean-up")


# -- 9: a spot interruption notice on an idle runner


async def test_an_idle_runner_given_an_interruption_notice_is_removed_and_takes_no_job(
    simulator: SimulatorServer,
    account: Ec2Setup,
    boot: BootStandIn,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = ec2_config(tmp_path, simulator, account, idle_timeout="1h")
    world = simulator.simulator.world
    async with serving(config, simulator) as daemon:
        [runner] = await daemon.controller.scale_up(POOL, 1)
        await wait_until(lambda: online(simulator) == [runner], 60, "the runner online")
        instance_id = instance_of(boot, runner)
        await asyncio.to_thread(boot.interrupt, instance_id)

        async def removed() -> bool:
            record = daemon.store.get_runner(runner)
            return (
                record is not None
                and not record.state.live
                and not online(simulator)
                and support.state(account, instance_id) == "terminated"
            )

        await wait_until(removed, 30, f"{runner} removed")
        [job] = queue(simulator, 1)
        await wait_until(lambda: all_done(world, [job.id]), 60, "the job")
        assert succeeded([job])
        assert job.runner_name != runner
        said = await metrics(daemon)
        removals = sample(
            said, "runnerscale_runner_removals_total", pool=POOL, reason="interrupted"
        )
        assert removals == 1
        await wait_clean(simulator, daemon, account, "clean-up")
    assert f"runner {runner} drains (spot interruption notice)" in caplog.text
