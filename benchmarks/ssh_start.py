"""The SSH backend's start-up benchmark: runnerscale against a bare ``ssh node docker run``.

One node of the test fleet (``tests/sshfleet.py``: a network namespace with its own sshd),
logged into as root, whose Docker engine is the benchmark's own (``tests/docker_engine.py``,
reached through its socket as the node's engine); one image, the test runner image. Each round
queues a job in the GitHub simulator (listening on the fleet's bridge, where runners on the
node reach it) and measures the time until the runner that will take it is online there:

- **runnerscale**: from the moment the job is queued; the webhook reaches the daemon, which
  decides, asks GitHub for a JIT config and starts a container on the node through the SSH
  backend in docker mode (over its pooled connection and the engine socket forwarded there:
  the Docker backend's limits, labels, ``--init`` and all), whose entrypoint starts the runner;
- **bare ssh node docker run**: the JIT config is obtained first (not timed); from the start
  of the ``ssh`` command (a new connection each time, as a person or a script would run it)
  that runs ``docker run -d`` of the same image with the same network on the node, the JIT
  config on the command's standard input. Its job carries a label no pool serves, so
  runnerscale leaves it alone.

Rounds alternate between the two, so drift on the machine affects both alike. The target: the
median for runnerscale within 1.3x of the median for the bare command. Results go to
``benchmarks/ssh.md`` (a table) and ``benchmarks/ssh.png`` (every round).

Needs root, ``sshd``, ``iproute2``, ``dockerd``, ``debootstrap`` and the ``docker`` CLI
(``scripts/install-system-deps``), and the ssh backend installed (``scripts/bootstrap``):

    .venv/bin/python benchmarks/ssh_start.py [--rounds 15] [--out benchmarks/ssh.md]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test helpers: the fleet, the engine, the image

from benchmarks.docker_start import (
    REPO,
    SECRET,
    TARGET_RATIO,
    TOKEN,
    Samples,
    daemon_config,
    engine_version,
    plot,
    queue,
    ratio_of_medians,
    show,
    table_rows,
    until_completed,
)
from tests.docker_engine import Engine, import_runner_image, start_engine, stop_engine
from tests.sshfleet import Fleet, Node

from runnerscale.config import parse_config
from runnerscale.daemon import Daemon
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import WorldSettings

POOL_LABELS = ("self-hosted", "linux", "x64")
BARE_LABELS = ("self-hosted", "linux", "bare-ssh-docker-run")  # no pool serves it
JITCONFIG_ENV = "ACTIONS_RUNNER_INPUT_JITCONFIG"


def config_text(fleet: Fleet, node: Node, engine: Engine, image: str, api_url: str) -> str:
    return daemon_config(
        api_url,
        fleet.root / "state.db",
        f"""\
  - name: bench
    labels: [self-hosted, linux, auto]
    provider: ssh
    max_runners: 4
    idle_timeout: 60s
    ssh:
      user: {fleet.user}
      key_file: {fleet.key_file}
      known_hosts: {fleet.known_hosts}
      mode: docker
      image: {image}
      docker_socket: {engine.url.removeprefix("unix://")}
      container: {{network: host, pull: never, cpus: 1, memory: 512m, pids_limit: 512}}
      hosts:
        - {{address: "{node.address}", slots: 4}}
""",
    )


async def until_online(server: SimulatorServer, since: float, name: str | None = None) -> float:
    """Seconds from ``since`` until the runner ``name`` (or any runner not online at the call)
    is online at the simulator."""
    world = server.simulator.world
    before = {runner.name for runner in world.runners.values() if runner.connected}
    async with asyncio.timeout(120):
        while True:
            for runner in world.runners.values():
                if runner.connected and runner.name not in before and name in (None, runner.name):
                    return time.perf_counter() - since
            await asyncio.sleep(0.005)


async def runnerscale_round(server: SimulatorServer, daemon: Daemon, index: int) -> float:
    online = asyncio.ensure_future(until_online(server, time.perf_counter()))
    job_id = queue(server, POOL_LABELS, f"rs-{index}")
    took = await online
    await until_completed(server, job_id)
    async with asyncio.timeout(60):  # the container is reaped before the next round
        while [r for r in daemon.store.runners() if r.state.live]:
            await asyncio.sleep(0.05)
    return took


@dataclass
class SshSamples(Samples):
    #: A new SSH connection that does nothing (``ssh node true``): what the bare path pays
    #: for its connection.
    connection: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Bare:
    """What the bare path needs: the node, reached with the fleet's key, and its engine."""

    fleet: Fleet
    node: Node
    engine: Engine
    image: str

    def command(self, name: str) -> str:
        """What runs on the node: the JIT config read from standard input into the
        environment of ``docker run`` (never on a command line)."""
        run = shlex.join(
            [
                *("docker", "-H", self.engine.url, "run", "-d", "--name", name),
                *("--network", "host", "-e", JITCONFIG_ENV, self.image),
            ]
        )
        return f"IFS= read -r {JITCONFIG_ENV} && export {JITCONFIG_ENV} && exec {run} >/dev/null"

    async def connection(self) -> float:
        """Seconds that ``ssh node true`` takes."""
        since = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *self.fleet.ssh_argv(self.node, "true"), stdin=asyncio.subprocess.DEVNULL
        )
        if await process.wait() != 0:
            raise RuntimeError(f"ssh {self.node.name} true failed")
        return time.perf_counter() - since


async def bare_round(
    server: SimulatorServer, http: httpx.AsyncClient, bare: Bare, index: int
) -> float:
    name = f"bare-{index}"
    answer = await http.post(
        f"/repos/{REPO}/actions/runners/generate-jitconfig",
        json={"name": name, "runner_group_id": 1, "labels": list(BARE_LABELS)},
    )
    answer.raise_for_status()
    jitconfig = answer.json()["encoded_jit_config"]
    job_id = queue(server, BARE_LABELS, name)
    argv = bare.fleet.ssh_argv(bare.node, "sh", "-c", bare.command(name))
    since = time.perf_counter()
    online = asyncio.ensure_future(until_online(server, since, name))
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate(f"{jitconfig}\n".encode())
    if process.returncode != 0:
        online.cancel()
        raise RuntimeError(f"ssh {bare.node.name} docker run failed: {err.decode().strip()}")
    took = await online
    await until_completed(server, job_id)
    remove = await asyncio.create_subprocess_exec(
        "docker", "-H", bare.engine.url, "rm", "-f", name, stdout=asyncio.subprocess.DEVNULL
    )
    await remove.wait()
    return took


async def measure(fleet: Fleet, engine: Engine, image: str, rounds: int) -> SshSamples:
    samples = SshSamples()
    [node] = fleet.nodes
    options = SimulatorOptions(
        host=fleet.host_address,
        tokens=(TOKEN,),
        world=WorldSettings(runner_offline_after=60.0, queue_timeout=3600.0),
    )
    async with SimulatorServer(options) as server:
        server.simulator.world.ensure_repo(REPO)
        text = config_text(fleet, node, engine, image, server.url)
        daemon = Daemon.build(parse_config(text, source="benchmark"), controller_id="rs-bench")
        await daemon.start()
        server.simulator.webhooks.add_hook(f"{daemon.url}/webhook", SECRET)
        headers = {"Authorization": f"token {TOKEN}"}
        bare = Bare(fleet, node, engine, image)
        try:
            async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
                # One untimed round of each: the first container start warms the engine, and
                # the daemon forwards the node's engine socket on its first create.
                await runnerscale_round(server, daemon, -1)
                await bare_round(server, http, bare, -1)
                with Progress(console=Console(stderr=True)) as progress:
                    task = progress.add_task("rounds", total=rounds)
                    for index in range(rounds):
                        samples.runnerscale.append(await runnerscale_round(server, daemon, index))
                        samples.bare.append(await bare_round(server, http, bare, index))
                        samples.connection.append(await bare.connection())
                        progress.advance(task)
        finally:
            await daemon.stop()
    return samples


def report(samples: SshSamples, engine: Engine, rounds: int, out: Path) -> float:
    ratio, met = ratio_of_medians(samples)
    rs_median = statistics.median(samples.runnerscale)
    without = statistics.median(samples.bare) - statistics.median(samples.connection)
    openssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False)
    rows = table_rows(
        [
            (
                "runnerscale, ssh backend in docker mode (job queued → runner online)",
                samples.runnerscale,
            ),
            ("bare `ssh node docker run` (command started → runner online)", samples.bare),
            ("of which a new SSH connection alone (`ssh node true`)", samples.connection),
        ]
    )
    text = "\n".join(
        [
            "# SSH backend: time to a runner online, against a bare `ssh node docker run`",
            "",
            "Made by `.venv/bin/python benchmarks/ssh_start.py "
            f"--rounds {rounds}` (see its docstring for the method).",
            f"Node: a network namespace with its own OpenSSH server ({openssh.stderr.strip()}), "
            f"logged into as root; its engine: Docker {engine_version(engine)}, storage driver "
            f"{engine.storage_driver}; on {os.cpu_count()} CPUs; image: the test runner image "
            "(Debian bookworm, the runner image's entrypoint, the stand-in runner).",
            "",
            *rows,
            "",
            f"**Ratio of medians: {ratio:.2f}x (target: at most {TARGET_RATIO}x): {met}.**",
            "",
            "runnerscale is timed from the moment the job is queued in the simulator, the bare "
            "path from the start of its `ssh` command (its JIT config obtained beforehand, "
            "untimed), both until the runner is online at the simulator. What runnerscale adds "
            "to the container start: the webhook delivery, the decision, one GitHub call for "
            "the JIT config, writing the runner's state before each step, and the Docker "
            "backend's calls (image check, create, start, inspect), each a round trip over the "
            "node's pooled SSH connection to its forwarded engine socket. What the bare path "
            "pays that runnerscale does not: a new SSH connection (key exchange, "
            "authentication: the last row, timed alone in each round) and the Docker CLI's "
            "start on the node. runnerscale's connection to a node is opened once and kept, "
            "so it comes out ahead of the bare command. Set against the bare command less its "
            f"connection (medians subtracted: {without:.2f} s, a `docker run` over a connection "
            f"already open), runnerscale's median is {rs_median / without:.2f}x.",
            "",
            "![every round](ssh.png)",
            "",
        ]
    )
    out.write_text(text)
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "ssh.md")
    args = parser.parse_args()
    for tool in ("docker", "ssh"):
        if shutil.which(tool) is None:
            print(f"benchmark: the {tool} CLI is needed for the bare path", file=sys.stderr)
            return 2
    # The bare rounds' jobs match no pool on purpose: their warnings would tear the progress bar.
    logging.getLogger("runnerscale").setLevel(logging.ERROR)
    scratch = Path(tempfile.mkdtemp(prefix="rsbench-", dir="/tmp"))
    engine = start_engine(scratch / "engine")
    fleet = Fleet.start(1, user="root", alt_port_nodes=0)
    try:
        image = import_runner_image(engine.url, scratch)
        samples = asyncio.run(measure(fleet, engine, image, args.rounds))
        report(samples, engine, args.rounds, args.out)
        plot(
            samples,
            args.out.with_suffix(".png"),
            labels=("runnerscale (job queued → online)", "bare ssh node docker run"),
            title="Time until a runner in a container on an SSH node is online",
        )
    finally:
        fleet.close()
        stop_engine(engine)
        shutil.rmtree(scratch, ignore_errors=True)
    show(samples, "time to a runner online on an SSH node (s)", "bare ssh docker run", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
