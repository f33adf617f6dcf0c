"""Chaos: the daemon over HTTP against the fake GitHub under a fault storm, killed at random.

What a platform engineer fears, all at once: GitHub failing 10 % of every operation (and taking
2 s over some), 30 % of webhooks lost, 10 % duplicated, some reordered; 20 % of runner
creations failing, runners that never register, runners that die mid-job (their jobs fail for
lost communication, as GitHub fails them); and the daemon itself killed with SIGKILL at ten or
more random moments and started again. The daemon is the real ``runnerscale run`` process;
GitHub is the fake one, in this process, over real HTTP.

Runners run on one of two backends (``--backend``):

* ``local`` (the default): each runner is ``chaos_runner.py``, a process of this machine that
  draws its fate and, when it dies, kills itself;
* ``docker``: each runner is a container on a Docker engine of the benchmark's own (Debian's
  ``dockerd``, started here as in the tests: ``tests/docker_engine.py``), of the test runner
  image plus ``chaos_runner.py --at-boot`` as an extension script of the image's entrypoint
  (it fails or hangs the runners fated to, before they start) and a ``VOLUME``; the pool
  mounts a cache volume. A runner that dies is a container the benchmark kills with
  ``docker kill`` a few seconds after it started. Needs root, ``dockerd`` and ``debootstrap``.

Afterwards it checks what must hold whatever happened:

* every job served: each workflow job's latest attempt succeeded, and a job re-run only after
  its runner died (once per death: ``rerun_lost_jobs: true``); a re-run attempt that lost its
  runner too is not re-run again (by design) and is counted apart;
* no busy runner removed: every job that failed did so because the benchmark killed its
  runner (each death it causes is marked: by ``chaos_runner.py``, or before its ``docker kill``);
* nothing left: no runner registered with GitHub, no runner folder, no runner process; with
  Docker, no container, no volume but the pool's cache volume, no network but the engine's
  own, no container folder in the engine's data, no process in a container the run saw;
* no secret anywhere: the token, the webhook secret, every JIT configuration and runner
  credential issued are absent from every process's command line (sampled every second), the
  daemon's log, its state files, ``/metrics`` and the status API; with Docker, also from the
  containers' command lines (``Path``, ``Args``, ``Entrypoint``, ``Cmd``), their output and the
  engine's log. Not from their configuration (``docker inspect`` shows the environment, where
  the JIT configuration travels, to whoever reaches the engine: root on its host anyway).

Seeded: the job schedule, the kill moments and every runner's fate come from ``--seed`` (the
exact interleaving still depends on timing). Exit code 1 when a check fails.

    .venv/bin/python benchmarks/chaos.py [--backend local|docker] [--seed 1] [--jobs 80] \
        [--span 240] [--kills 12]

Each backend has a section of its own in ``benchmarks/chaos.md``; a run rewrites its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import docker
import docker.errors
import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from runnerscale.config.schema import PoolBase
from runnerscale.fakegithub.entities import Conclusion, Job, JobStatus
from runnerscale.fakegithub.faults import FaultPlan, OperationFaults, WebhookFaults
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import JobSpec, WorldSettings
from runnerscale.providers.docker.provider import LABEL_POOL

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test helpers: a free port, the processes showing a string,
# a Docker engine and the runner image

from benchmarks.chaos_runner import death_delay, fate
from tests.docker_engine import (
    Engine,
    ImageFile,
    import_runner_image,
    start_engine,
    stop_engine,
)
from tests.e2e.harness import free_port
from tests.processes import processes_showing

TOKEN = "ghp_chaos_token_0123456789abcdef"
WEBHOOK_SECRET = "chaos-webhook-secret-0123456789"
LABELS = ("self-hosted", "linux", "x64")
REPOS = ("acme/api", "acme/web", "acme/tools")
POOL = "chaos"
CHAOS_RUNNER = ROOT / "benchmarks" / "chaos_runner.py"
#: How long the fake GitHub waits for a silent busy runner before it fails the job. GitHub
#: takes minutes; at 10 s, the benchmark's first setting, a runner killed while all of its
#: job's webhooks were lost left a window shorter than one poll retry for the daemon to see
#: that job at all, a race no deployment meets.
LOST_RUNNER_TIMEOUT = 45.0
#: Once every job's latest attempt has ended, how long to wait for a re-run before stopping:
#: the longest a loss can take to be re-run once GitHub has failed its job, when all of its
#: webhooks were lost (a re-read every ``queued_recheck``, 20 s, at a poll, every 20 s; the
#: annotations read at the next examination, within 15 s), with room for an injected error.
SETTLE = 90.0


@dataclass(frozen=True)
class Plan:
    """One chaos run: how much work, how much trouble, on which backend."""

    backend: str = "local"
    seed: int = 1
    jobs: int = 80
    #: Jobs are queued over this many seconds.
    span: float = 240.0
    #: How many times the daemon is killed with SIGKILL (and started again).
    kills: int = 12
    max_runners: int = 6
    #: Shares of runners that fail at start, never register, die a few seconds in.
    fail: float = 0.2
    silent: float = 0.05
    dies: float = 0.1
    #: How long, after the last job was queued, everything may take to be served and cleaned.
    drain: float = 360.0

    def faults(self) -> FaultPlan:
        slow = OperationFaults(error_rate=0.1, latency=2.0)
        return FaultPlan(
            seed=self.seed,
            error_rate=0.1,
            operations={
                "actions/list-jobs-for-workflow-run": slow,
                "actions/get-job-for-workflow-run": slow,
            },
            webhooks=WebhookFaults(drop_rate=0.3, duplicate_rate=0.1, reorder_rate=0.1),
        )

    def fates(self) -> list[str]:
        """``chaos_runner.py``'s options: how each runner's fate is drawn."""
        return [
            "--seed", str(self.seed),
            "--fail", str(self.fail), "--silent", str(self.silent), "--dies", str(self.dies),
        ]  # fmt: skip


@dataclass
class Outcome:
    """What happened, and what the checks found."""

    jobs: int = 0
    served: int = 0
    reruns: int = 0
    runner_deaths: int = 0
    daemon_kills: int = 0
    creations: int = 0
    api_errors: int = 0
    webhooks: Counter[str] = field(default_factory=Counter)
    busy_removed: list[str] = field(default_factory=list)
    #: Jobs not served that no runner death of the benchmark's explains (queued for good, or
    #: failed on a runner that did not die).
    unserved: list[str] = field(default_factory=list)
    #: Jobs whose runner the benchmark killed mid-job and that were not re-run.
    lost_not_rerun: list[str] = field(default_factory=list)
    #: Jobs re-run once after their runner died whose new attempt lost its runner too: not
    #: re-run twice, by design (the job itself may be what kills its runners).
    lost_again: list[str] = field(default_factory=list)
    leftovers: dict[str, int] = field(default_factory=dict)
    secrets_found: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Where the runners ran, when there is more to say than the backend's name.
    setting: str = ""

    @property
    def held(self) -> bool:
        """What must hold whatever happened: every job served or lost with a runner the
        benchmark killed, no busy runner removed, nothing left, no secret anywhere."""
        return (
            not self.unserved
            and not self.busy_removed
            and not any(self.leftovers.values())
            and not self.secrets_found
        )

    @property
    def passed(self) -> bool:
        """All of :attr:`held`, and every job lost with its runner re-run (and served)."""
        return self.held and not self.lost_not_rerun


class Secrets:
    """Every secret of the run, to look for: the token, the webhook secret, and each JIT
    configuration and runner credential the fake GitHub issues (recorded as it issues them)."""

    def __init__(self, server: SimulatorServer) -> None:
        self.values: set[str] = {TOKEN, WEBHOOK_SECRET}
        world = server.simulator.world
        issue = world.generate_jitconfig

        def recording(scope: str, body: object, *, org_level: bool) -> tuple[object, str]:
            runner, encoded = issue(scope, body, org_level=org_level)
            self.values.update({encoded, runner.credential})
            return runner, encoded

        world.generate_jitconfig = recording  # type: ignore[assignment,method-assign]

    def found_in(self, text: str) -> list[str]:
        return sorted(
            f"{secret[:6]}... (length {len(secret)})" for secret in self.values if secret in text
        )


def config_text(plan: Plan, api_url: str, port: int, scratch: Path, backend: str) -> str:
    """The daemon's configuration; ``backend``: the pool's ``provider:`` and its block."""
    rerun = "    rerun_lost_jobs: true\n" if "rerun_lost_jobs" in PoolBase.model_fields else ""
    return f"""\
github:
  api_url: {api_url}
  token: ${{CHAOS_TOKEN}}
  webhook_secret: ${{CHAOS_WEBHOOK_SECRET}}
targets:
  - org: acme
server:
  listen: 127.0.0.1:{port}
state: sqlite:///{scratch}/state/state.db
poll_interval: 5s
webhook_poll_interval: 20s
timeouts:
  janitor_interval: 5s
  queued_recheck: 20s
pools:
  - name: {POOL}
    labels: [{", ".join(LABELS)}]
    max_runners: {plan.max_runners}
    idle_timeout: 5s
    boot_timeout: 30s
{rerun}{backend}"""


class Runners:
    """Where the runners run: the pool's backend, what it needs started and stopped, the
    trouble its runners get besides their own fates, what it may leave and what else must
    show no secret.

    This one is the local backend: every runner is ``chaos_runner.py``, a process of this
    machine that draws its fate itself (and kills itself when it dies)."""

    name = "local"

    def __init__(self, plan: Plan, scratch: Path) -> None:
        self.plan = plan
        self.scratch = scratch
        #: Where the runners that died are marked, by the runner or by the benchmark.
        self.marks = scratch / "marks"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    def backend(self) -> str:
        """The pool's ``provider:`` and its block, indented as items of ``pools:``."""
        runner = [sys.executable, str(CHAOS_RUNNER), "--marks", str(self.marks)]
        command = ", ".join(f'"{part}"' for part in [*runner, *self.plan.fates()])
        return f"""\
    provider: local
    local:
      command: [{command}]
      capacity: {self.plan.max_runners}
      work_root: {self.scratch}/runners
      stop_grace: 2s
"""

    def setting(self) -> str:
        return ""

    async def trouble(self) -> None:
        """Trouble for the runners while the run goes on (cancelled at its end): none here,
        the runners bring their own."""

    async def leftovers(self) -> dict[str, int]:
        return {
            "runner folders": _runner_folders(self.scratch),
            "runner processes": _runner_processes(),
        }

    def texts(self) -> list[str]:
        """What else must show no secret, besides the daemon's log, state and answers."""
        return []


#: The chaos extension of the runner image's entrypoint (it sees the pool's environment).
EXTENSION = """\
#!/bin/bash
# The chaos benchmark's fate for this runner (benchmarks/chaos_runner.py), before it starts.
# shellcheck disable=SC2086 # the options are words
exec python3 -m chaos_runner --at-boot $CHAOS_RUNNER_OPTIONS
"""
CACHE_VOLUME = "chaos-cache"


class DockerRunners(Runners):
    """The Docker backend, on an engine of the run's own (see the module docstring). The
    benchmark kills (``docker kill``) the containers of the runners fated to die, and keeps
    what must show no secret: the containers' command lines and output, the engine's log."""

    name = "docker"

    def __init__(self, plan: Plan, scratch: Path) -> None:
        super().__init__(plan, scratch)
        self.directory = scratch / "engine"
        self.engine: Engine | None = None
        self.image = ""
        self._client: docker.DockerClient | None = None
        self.networks: set[str] = set()
        #: Every container the run saw: its id, and its command line as the engine has it.
        self.seen: set[str] = set()
        self.commands: set[str] = set()
        #: The output of every container seen ended, by id.
        self.outputs: dict[str, str] = {}
        self.doomed: set[str] = set()

    async def __aenter__(self) -> Self:
        # A short folder of its own: the engine's socket path must stay short.
        self.directory = Path(tempfile.mkdtemp(prefix="rsck-", dir="/tmp"))
        self.engine = await asyncio.to_thread(start_engine, self.directory)
        extra: list[ImageFile] = [
            ("opt/runnerscale/chaos_runner.py", CHAOS_RUNNER.read_bytes(), 0o644, 0),
            ("etc/runnerscale/entrypoint.d/50-chaos.sh", EXTENSION.encode(), 0o755, 0),
        ]
        self.image = await asyncio.to_thread(
            import_runner_image,
            self.engine.url,
            self.scratch,
            extra=extra,
            changes=["VOLUME /home/runner/_work"],
            repository="runnerscale-chaos-runner",
        )
        self._client = docker.DockerClient(base_url=self.engine.url, version="auto")
        self.networks = {str(network.name) for network in self._client.networks.list()}
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._client is not None:
            self._client.close()
        if self.engine is not None:
            await asyncio.to_thread(stop_engine, self.engine)
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def client(self) -> docker.DockerClient:
        assert self._client is not None, "the engine is not started"
        return self._client

    def backend(self) -> str:
        assert self.engine is not None
        return f"""\
    provider: docker
    docker:
      host: {self.engine.url}
      image: {self.image}
      pull: never
      network: host
      stop_grace: 2s
      env:
        CHAOS_RUNNER_OPTIONS: "{" ".join(self.plan.fates())}"
      volumes:
        {CACHE_VOLUME}: /home/runner/.cache
"""

    def setting(self) -> str:
        assert self.engine is not None
        version = self.client.version()
        return (
            f"Docker {version.get('Version')} (Debian's dockerd, storage driver "
            f"{self.engine.storage_driver}), image {self.image}"
        )

    async def trouble(self) -> None:
        kills: set[asyncio.Task[None]] = set()
        try:
            while True:
                for name in await asyncio.to_thread(self._survey):
                    kills.add(asyncio.create_task(self._kill_later(name)))
                await asyncio.sleep(0.5)
        finally:
            for task in kills:
                task.cancel()
            await asyncio.gather(*kills, return_exceptions=True)

    def _survey(self) -> list[str]:
        """Look at the pool's containers: keep their command lines and the output of those
        that ended; return the running ones newly doomed to die."""
        doomed = []
        listed = self.client.containers.list(
            all=True, ignore_removed=True, filters={"label": f"{LABEL_POOL}={POOL}"}
        )
        for container in listed:
            attrs = container.attrs
            config = attrs.get("Config") or {}
            self.seen.add(str(container.id))
            command = [attrs.get("Path"), attrs.get("Args"), config.get("Entrypoint")]
            self.commands.add(json.dumps([*command, config.get("Cmd")]))
            name = str(container.name)
            if container.status in ("exited", "dead") and container.id not in self.outputs:
                with contextlib.suppress(docker.errors.NotFound):
                    self.outputs[str(container.id)] = container.logs().decode(errors="replace")
            plan = self.plan
            if (
                container.status == "running"
                and name not in self.doomed
                and fate(plan.seed, name, plan.fail, plan.silent, plan.dies) == "dies"
            ):
                self.doomed.add(name)
                doomed.append(name)
        return doomed

    async def _kill_later(self, name: str) -> None:
        await asyncio.sleep(death_delay(name))
        await asyncio.to_thread(self._kill, name)

    def _kill(self, name: str) -> None:
        """``docker kill`` the runner's container if it still runs, marked as the benchmark's
        doing first."""
        with contextlib.suppress(docker.errors.NotFound):
            container = self.client.containers.get(name)
            if container.status != "running":
                return
            self.marks.mkdir(parents=True, exist_ok=True)
            mark = self.marks / f"{name}.died"
            mark.write_text(str(time.time()))
            try:
                container.kill()
            except docker.errors.APIError:  # it ended meanwhile
                mark.unlink(missing_ok=True)

    async def leftovers(self) -> dict[str, int]:
        return await asyncio.to_thread(self._leftovers)

    def _leftovers(self) -> dict[str, int]:
        assert self.engine is not None
        client = self.client
        folders = self.engine.directory / "data" / "containers"
        return {
            "containers": len(client.containers.list(all=True)),
            "volumes": sum(1 for v in client.volumes.list() if v.name != CACHE_VOLUME),
            "networks": sum(1 for n in client.networks.list() if n.name not in self.networks),
            "container folders": len(list(folders.iterdir())) if folders.exists() else 0,
            "runner processes": len(_processes_in(self.seen)),
        }

    def texts(self) -> list[str]:
        assert self.engine is not None
        engine_log = (self.engine.directory / "dockerd.log").read_text(errors="replace")
        return [*self.commands, *self.outputs.values(), engine_log]


BACKENDS: dict[str, type[Runners]] = {"local": Runners, "docker": DockerRunners}


class DaemonProcess:
    """``runnerscale run`` in a process of its own, which the benchmark kills and restarts."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.config.parent),
            "CHAOS_TOKEN": TOKEN,
            "CHAOS_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
        if "PYTHONPATH" in os.environ:  # a checkout other than the installed one, under test
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        with self.log.open("ab") as output:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "runnerscale", "run", "-c", str(self.config),
                stdout=output, stderr=asyncio.subprocess.STDOUT, env=env,
            )  # fmt: skip

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 60)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


def _runner_processes() -> int:
    """Runner processes still alive: the chaos runner, or a stand-in it started."""
    return len(processes_showing([str(CHAOS_RUNNER), "sim-runner"]))


def _processes_in(containers: set[str]) -> list[str]:
    """Processes of this host in the control group of one of ``containers`` (by id)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cgroup = (entry / "cgroup").read_text()
        except OSError:  # gone meanwhile
            continue
        if any(container in cgroup for container in containers):
            found.append(entry.name)
    return found


def _runner_folders(scratch: Path) -> int:
    root = scratch / "runners"
    if not root.exists():
        return 0
    return sum(1 for path in root.glob("*/*") if path.is_dir() and not path.name.startswith("."))


def _latest_attempts(jobs: list[Job]) -> dict[tuple[int, str], Job]:
    latest: dict[tuple[int, str], Job] = {}
    for job in jobs:
        key = (job.run.id, job.name)
        if key not in latest or job.run_attempt > latest[key].run_attempt:
            latest[key] = job
    return latest


class Chaos:
    """One run: the fake GitHub, the daemon, the trouble, and what is left afterwards."""

    def __init__(
        self, plan: Plan, scratch: Path, server: SimulatorServer, runners: Runners
    ) -> None:
        self.plan = plan
        self.scratch = scratch
        self.server = server
        self.runners = runners
        self.world = server.simulator.world
        self.secrets = Secrets(server)
        self.outcome = Outcome(jobs=plan.jobs)
        #: The daemon's kills and restarts (the jobs' schedule has a generator of its own).
        self.rng = random.Random(f"kills:{plan.seed}")  # noqa: S311 - reproducible, no secret
        self.port = free_port()
        config = scratch / "runnerscale.yaml"
        config.write_text(config_text(plan, server.url, self.port, scratch, runners.backend()))
        self.daemon = DaemonProcess(config, scratch / "daemon.log")
        self.started = time.monotonic()
        #: Processes seen with a secret on their command line while the run went on.
        self.on_cmdlines: set[str] = set()

    async def run(self, console: Console) -> Outcome:
        plan, server = self.plan, self.server
        for repo in REPOS:
            self.world.ensure_repo(repo)
        server.simulator.webhooks.add_hook(f"http://127.0.0.1:{self.port}/webhook", WEBHOOK_SECRET)
        server.simulator.set_faults(plan.faults())
        self.started = time.monotonic()
        await self.daemon.start()
        sampler = asyncio.create_task(self._sample_cmdlines())
        trouble = asyncio.create_task(self.runners.trouble())
        try:
            await self._storm(console)
            self.outcome.leftovers = await self._wait_clean()
            await self._until_answering()
            # The control API is on the daemon's unix socket in its state directory.
            control = httpx.AsyncHTTPTransport(uds=str(self.scratch / "state" / "control.sock"))
            async with (
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}") as http,
                httpx.AsyncClient(transport=control, base_url="http://localhost") as status,
            ):
                texts = [(await http.get("/metrics")).text]
                texts.append((await status.get("/api/v1/status")).text)
            await self.daemon.stop()
        finally:
            sampler.cancel()
            trouble.cancel()
            await asyncio.gather(sampler, trouble, return_exceptions=True)
            await self.daemon.stop()
        self.outcome.seconds = time.monotonic() - self.started
        self.outcome.setting = self.runners.setting()
        _judge(self.outcome, list(self.world.jobs.values()), self.scratch)
        self._look_for_secrets(texts)
        self._count_trouble()
        return self.outcome

    async def _storm(self, console: Console) -> None:
        """Queue the jobs and kill the daemon on schedule; wait until every job is served, or
        every job's latest attempt has ended and no new attempt came for :data:`SETTLE`
        seconds (a failed one may still be re-run), or the time is up."""
        plan = self.plan
        with Progress(console=console, transient=True) as progress:
            bar = progress.add_task("chaos", total=plan.jobs)
            storm = asyncio.gather(self._queue_jobs(), self._kill_daemon())
            deadline = self.started + plan.span + 30.0 + plan.drain
            settled: tuple[int, float] | None = None
            while time.monotonic() < deadline:
                progress.update(bar, completed=self._served())
                if storm.done() and self._served() >= plan.jobs:
                    break
                if storm.done() and self._all_ended():
                    known = len(self.world.jobs)
                    if settled is None or settled[0] != known:
                        settled = (known, time.monotonic())
                    elif time.monotonic() - settled[1] >= SETTLE:
                        break
                else:
                    settled = None
                await asyncio.sleep(1.0)
            await storm

    def _all_ended(self) -> bool:
        latest = _latest_attempts(list(self.world.jobs.values()))
        return all(job.status is JobStatus.COMPLETED for job in latest.values())

    async def _queue_jobs(self) -> None:
        rng = random.Random(f"jobs:{self.plan.seed}")  # noqa: S311 - a reproducible schedule
        schedule = sorted(rng.uniform(0, self.plan.span) for _ in range(self.plan.jobs))
        for index, at in enumerate(schedule):
            await asyncio.sleep(max(0.0, self.started + at - time.monotonic()))
            repo = REPOS[index % len(REPOS)]
            duration = rng.uniform(3.0, 12.0)
            self.world.create_jobs([JobSpec(repo, LABELS, duration, None, f"job-{index}")])
            self.server.simulator.notify()

    async def _kill_daemon(self) -> None:
        kills = sorted(self.rng.uniform(5.0, self.plan.span + 30.0) for _ in range(self.plan.kills))
        for at in kills:
            await asyncio.sleep(max(0.0, self.started + at - time.monotonic()))
            await self.daemon.kill()
            self.outcome.daemon_kills += 1
            await asyncio.sleep(self.rng.uniform(0.5, 2.0))
            await self.daemon.start()

    async def _until_answering(self) -> None:
        """Wait (up to a minute) for the daemon to listen: the storm may end just after the
        last kill, while the restarted daemon is still starting."""
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}") as http:
            for _ in range(120):
                try:
                    await http.get("/healthz")
                    return
                except httpx.TransportError:
                    await asyncio.sleep(0.5)

    def _served(self) -> int:
        latest = _latest_attempts(list(self.world.jobs.values()))
        return sum(1 for job in latest.values() if job.conclusion is Conclusion.SUCCESS)

    async def _sample_cmdlines(self) -> None:
        while True:
            self.on_cmdlines.update(processes_showing(self.secrets.values))
            await asyncio.sleep(1.0)

    async def _wait_clean(self) -> dict[str, int]:
        """What is left after up to two minutes for everything to go away."""
        for _ in range(120):
            leftovers = {
                "runners registered": len(self.world.runners),
                **await self.runners.leftovers(),
            }
            if not any(leftovers.values()):
                break
            await asyncio.sleep(1.0)
        return leftovers

    def _look_for_secrets(self, texts: list[str]) -> None:
        texts.append((self.scratch / "daemon.log").read_text(errors="replace"))
        texts.extend(self.runners.texts())
        for path in (self.scratch / "state").rglob("*"):
            if path.is_file():
                texts.append(path.read_bytes().decode(errors="replace"))
        found = set(self.on_cmdlines)
        for text in texts:
            found.update(self.secrets.found_in(text))
        self.outcome.secrets_found = sorted(found)

    def _count_trouble(self) -> None:
        stats = self.server.simulator.stats
        self.outcome.api_errors = sum(
            count
            for statuses in stats.statuses.values()
            for status, count in statuses.items()
            if status >= 500
        )
        self.outcome.creations = stats.requests["actions/generate-runner-jitconfig-for-org"]
        self.outcome.webhooks = Counter(d.status for d in self.server.simulator.webhooks.log)


async def run(plan: Plan, scratch: Path, console: Console) -> Outcome:
    """One chaos run in ``scratch`` (the daemon's config, state, log and runner folders)."""
    world = WorldSettings(
        runner_offline_after=10.0, lost_runner_timeout=LOST_RUNNER_TIMEOUT, seed=plan.seed
    )
    async with (
        BACKENDS[plan.backend](plan, scratch) as runners,
        SimulatorServer(SimulatorOptions(tokens=(TOKEN,), world=world)) as server,
    ):
        return await Chaos(plan, scratch, server, runners).run(console)


def _judge(outcome: Outcome, every: list[Job], scratch: Path) -> None:
    """Fill the job checks: served, re-runs, deaths, and failures nobody caused on purpose."""
    died = {path.name.removesuffix(".died") for path in (scratch / "marks").glob("*.died")}
    outcome.runner_deaths = len(died)
    outcome.reruns = sum(1 for job in every if job.run_attempt > 1)
    latest = _latest_attempts(every)
    outcome.served = sum(1 for job in latest.values() if job.conclusion is Conclusion.SUCCESS)
    failed = [job for job in latest.values() if job.conclusion is not Conclusion.SUCCESS]
    lost = [
        job
        for job in failed
        if job.status is JobStatus.COMPLETED and job.runner_name is not None
        and job.runner_name in died
    ]  # fmt: skip
    outcome.lost_not_rerun = sorted(
        f"{job.name} on {job.runner_name}" for job in lost if job.run_attempt == 1
    )
    outcome.lost_again = sorted(
        f"{job.name} (attempt {job.run_attempt}) on {job.runner_name}"
        for job in lost
        if job.run_attempt > 1
    )
    outcome.unserved = sorted(
        f"{job.name} (job {job.id}, attempt {job.run_attempt}: {job.status.value}, "
        f"{job.conclusion})"
        for job in failed
        if job not in lost
    )
    outcome.busy_removed = sorted(
        f"{job.name} on {job.runner_name}: {job.failure_reason or job.conclusion}"
        for job in every
        if job.status is JobStatus.COMPLETED
        and job.conclusion is not Conclusion.SUCCESS
        and job.runner_name is not None
        and job.runner_name not in died
    )


def render(plan: Plan, outcome: Outcome) -> str:
    rows = [
        ("jobs queued", str(outcome.jobs)),
        ("jobs served (latest attempt succeeded)", str(outcome.served)),
        ("jobs re-run after their runner died", str(outcome.reruns)),
        ("jobs lost with their runner, not re-run", str(len(outcome.lost_not_rerun))),
        ("re-run jobs whose new attempt lost its runner too", str(len(outcome.lost_again))),
        ("runners killed mid-run by the benchmark", str(outcome.runner_deaths)),
        ("daemon killed with SIGKILL and restarted", str(outcome.daemon_kills)),
        ("runners registered (JIT configurations)", str(outcome.creations)),
        ("GitHub answers 5xx (injected)", str(outcome.api_errors)),
        ("webhook deliveries", ", ".join(f"{k} {v}" for k, v in sorted(outcome.webhooks.items()))),
        ("busy runners removed", str(len(outcome.busy_removed))),
        ("left behind", ", ".join(f"{k} {v}" for k, v in outcome.leftovers.items())),
        ("secrets found", str(len(outcome.secrets_found))),
        ("wall time", f"{outcome.seconds:.0f} s"),
    ]
    option = "" if plan.backend == "local" else f" --backend {plan.backend}"
    about = (
        f"The daemon (`runnerscale run`, {plan.backend} backend) against the fake GitHub over "
        "HTTP, under 10 % API errors (2 s latency on job reads), 30 % of webhooks lost, 10 % "
        f"duplicated, reordering; {plan.fail:.0%} of runners fail at start, {plan.silent:.0%} "
        f"never register, {plan.dies:.0%} die a few seconds in; the daemon killed {plan.kills} "
        "times." + (f" Runners: {outcome.setting}." if outcome.setting else "")
    )
    lines = [
        f"## {plan.backend.capitalize()} backend",
        "",
        textwrap.fill(about, width=95, break_on_hyphens=False, break_long_words=False),
        "Reproduce with:",
        "",
        "```sh",
        f".venv/bin/python benchmarks/chaos.py{option} --seed {plan.seed} --jobs {plan.jobs} "
        f"--span {plan.span:.0f} --kills {plan.kills}",
        "```",
        "",
        f"Result: **{'passed' if outcome.passed else 'FAILED'}**"
        + (
            ""
            if outcome.passed or not outcome.held
            else ": everything that must hold held, but some jobs lost with their runner "
            "were not re-run (listed below)"
        )
        + ".",
        "",
        "| figure | value |",
        "| --- | ---: |",
        *(f"| {name} | {value} |" for name, value in rows),
        "",
    ]
    for title, items in (
        ("Jobs not served, no runner death explains why", outcome.unserved),
        ("Jobs lost with their runner and not re-run", outcome.lost_not_rerun),
        ("Re-run once, lost again (not re-run twice, by design)", outcome.lost_again),
        ("Busy runners removed", outcome.busy_removed),
        ("Secrets found", outcome.secrets_found),
    ):
        if items:
            lines += [f"### {title}", "", *(f"- {item}" for item in items), ""]
    return "\n".join(lines)


REPORT_HEADER = """\
# Chaos benchmark

The daemon under a fault storm, on each backend. See the docstring of `benchmarks/chaos.py` for
what the storm is and what is checked; `benchmarks/chaos.py --backend NAME` rewrites the
section of its backend.

"""


def write_report(path: Path, backend: str, section: str) -> None:
    """Put ``section`` in the report at ``path`` as ``backend``'s, keeping the others'."""
    sections: dict[str, str] = {}
    if path.exists():
        for part in re.split(r"(?m)^(?=## \w+ backend$)", path.read_text())[1:]:
            sections[part.split()[1].lower()] = part.rstrip("\n") + "\n"
    sections[backend] = section.rstrip("\n") + "\n"
    ordered = [sections[name] for name in BACKENDS if name in sections]
    path.write_text(REPORT_HEADER + "\n".join(ordered))


def show(console: Console, outcome: Outcome) -> None:
    table = Table(title="chaos")
    table.add_column("check")
    table.add_column("result")
    table.add_row("served", f"{outcome.served}/{outcome.jobs}")
    table.add_row("lost with their runner, not re-run", str(len(outcome.lost_not_rerun)))
    table.add_row("unserved otherwise", str(len(outcome.unserved)))
    table.add_row("busy runners removed", str(len(outcome.busy_removed)))
    table.add_row("left behind", str(sum(outcome.leftovers.values())))
    table.add_row("secrets found", str(len(outcome.secrets_found)))
    console.print(table)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=sorted(BACKENDS), default=Plan.backend)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=Plan.jobs)
    parser.add_argument("--span", type=float, default=Plan.span)
    parser.add_argument("--kills", type=int, default=Plan.kills)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "chaos.md")
    args = parser.parse_args()
    plan = Plan(
        backend=args.backend, seed=args.seed, jobs=args.jobs, span=args.span, kills=args.kills
    )
    console = Console(stderr=True)
    scratch = Path(tempfile.mkdtemp(prefix="runnerscale-chaos-"))
    outcome = await run(plan, scratch, console)
    if outcome.passed:
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        console.print(f"kept the daemon's log and state for a look: {scratch}")
    show(console, outcome)
    write_report(args.out, plan.backend, render(plan, outcome))
    console.print(f"wrote {args.out}")
    return 0 if outcome.passed else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
