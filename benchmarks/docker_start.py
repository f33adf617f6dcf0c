"""The Docker backend's start-up benchmark: runnerscale against a bare ``docker run``.

One run, one Docker engine, one image. Each round queues a job in the GitHub simulator and
measures the time until a runner in a container has taken it (the job is ``in_progress``):

- **runnerscale**: the job is queued; the webhook reaches the daemon, which decides, asks
  GitHub for a JIT config and starts a container through the Docker backend (limits, labels,
  ``--init`` and all), whose entrypoint starts the runner;
- **bare docker run**: the JIT config is obtained first (not timed), the job is queued (with a
  label no pool serves, so runnerscale leaves it alone) and ``docker run -d`` starts the same
  image with the same network, by the Docker CLI.

Rounds alternate between the two, so drift on the machine affects both alike. The target: the
median for runnerscale within 1.3x of the median for bare ``docker run``. Results go to
``benchmarks/docker.md`` (a table) and ``benchmarks/docker.png`` (every round).

Needs root, ``dockerd``, ``debootstrap`` and the ``docker`` CLI (``scripts/install-system-deps``):

    .venv/bin/python benchmarks/docker_start.py [--rounds 15] [--out benchmarks/docker.md]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
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
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test helpers that build the engine and the image

from tests.docker_engine import (
    Engine,
    import_runner_image,
    start_engine,
    stop_engine,
)

from runnerscale.config import parse_config
from runnerscale.daemon import Daemon
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import JobSpec, WorldSettings

TOKEN = "ghp_benchmark_token_0123456789"
SECRET = "benchmark-webhook-secret"
REPO = "acme/app"
POOL_LABELS = ("self-hosted", "linux", "x64")
BARE_LABELS = ("self-hosted", "linux", "bare-docker-run")  # no pool serves it
TARGET_RATIO = 1.3
JOB_SECONDS = 1.0


@dataclass
class Samples:
    runnerscale: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)


def daemon_config(api_url: str, state: Path, pool: str) -> str:
    """The daemon of a start-up benchmark: the simulator's repository, its webhooks, and the
    one ``pool`` (a list item of ``pools:``, indented by two spaces)."""
    return f"""\
github:
  api_url: {api_url}
  token: {TOKEN}
  webhook_secret: {SECRET}
targets:
  - repo: {REPO}
server:
  listen: 127.0.0.1:0
state: sqlite:///{state}
poll_interval: 60s
pools:
{pool}"""


def config_text(engine: Engine, image: str, api_url: str, state: Path) -> str:
    return daemon_config(
        api_url,
        state,
        f"""\
  - name: bench
    labels: [self-hosted, linux, auto]
    provider: docker
    max_runners: 4
    idle_timeout: 60s
    docker:
      host: {engine.url}
      image: {image}
      network: host
      pull: never
      cpus: 1
      memory: 512m
      pids_limit: 512
""",
    )


async def until_started(server: SimulatorServer, job_id: int, since: float) -> float:
    world = server.simulator.world
    async with asyncio.timeout(120):
        while world.jobs[job_id].status.value == "queued":
            await asyncio.sleep(0.005)
    return time.perf_counter() - since


async def until_completed(server: SimulatorServer, job_id: int) -> None:
    world = server.simulator.world
    async with asyncio.timeout(120):
        while world.jobs[job_id].status.value != "completed":
            await asyncio.sleep(0.05)


def queue(server: SimulatorServer, labels: tuple[str, ...], name: str) -> int:
    [job] = server.simulator.world.create_jobs([JobSpec(REPO, labels, JOB_SECONDS, None, name)])
    server.simulator.notify()
    return job.id


async def runnerscale_round(server: SimulatorServer, daemon: Daemon, index: int) -> float:
    since = time.perf_counter()
    job_id = queue(server, POOL_LABELS, f"rs-{index}")
    took = await until_started(server, job_id, since)
    await until_completed(server, job_id)
    async with asyncio.timeout(60):  # the container is reaped before the next round
        while [r for r in daemon.store.runners() if r.state.live]:
            await asyncio.sleep(0.05)
    return took


async def bare_round(
    server: SimulatorServer, http: httpx.AsyncClient, engine: Engine, image: str, index: int
) -> float:
    answer = await http.post(
        f"/repos/{REPO}/actions/runners/generate-jitconfig",
        json={"name": f"bare-{index}", "runner_group_id": 1, "labels": list(BARE_LABELS)},
    )
    answer.raise_for_status()
    jitconfig = answer.json()["encoded_jit_config"]
    name = f"bare-{index}"
    since = time.perf_counter()
    job_id = queue(server, BARE_LABELS, f"bare-{index}")
    process = await asyncio.create_subprocess_exec(
        "docker",
        "-H",
        engine.url,
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "-e",
        "ACTIONS_RUNNER_INPUT_JITCONFIG",
        image,
        env={**os.environ, "ACTIONS_RUNNER_INPUT_JITCONFIG": jitconfig},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"docker run failed: {err.decode().strip()}")
    took = await until_started(server, job_id, since)
    await until_completed(server, job_id)
    remove = await asyncio.create_subprocess_exec(
        "docker", "-H", engine.url, "rm", "-f", name, stdout=asyncio.subprocess.DEVNULL
    )
    await remove.wait()
    return took


async def measure(engine: Engine, image: str, rounds: int, scratch: Path) -> Samples:
    samples = Samples()
    options = SimulatorOptions(
        tokens=(TOKEN,), world=WorldSettings(runner_offline_after=60.0, queue_timeout=3600.0)
    )
    async with SimulatorServer(options) as server:
        server.simulator.world.ensure_repo(REPO)
        config = parse_config(
            config_text(engine, image, server.url, scratch / "state.db"), source="benchmark"
        )
        daemon = Daemon.build(config, controller_id="runnerscale-benchmark")
        await daemon.start()
        server.simulator.webhooks.add_hook(f"{daemon.url}/webhook", SECRET)
        headers = {"Authorization": f"token {TOKEN}"}
        try:
            async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
                # One untimed round of each: the first container start warms the engine.
                await runnerscale_round(server, daemon, -1)
                await bare_round(server, http, engine, image, -1)
                with Progress(console=Console(stderr=True)) as progress:
                    task = progress.add_task("rounds", total=rounds)
                    for index in range(rounds):
                        samples.runnerscale.append(await runnerscale_round(server, daemon, index))
                        samples.bare.append(await bare_round(server, http, engine, image, index))
                        progress.advance(task)
        finally:
            await daemon.stop()
    return samples


def summary(values: list[float]) -> tuple[float, float, float, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return min(ordered), statistics.median(ordered), p90, max(ordered)


def ratio_of_medians(samples: Samples) -> tuple[float, str]:
    """runnerscale's median over the bare path's, and whether that meets the target."""
    ratio = statistics.median(samples.runnerscale) / statistics.median(samples.bare)
    return ratio, "met" if ratio <= TARGET_RATIO else "missed"


def engine_version(engine: Engine) -> str:
    return subprocess.run(
        ["docker", "-H", engine.url, "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def table_rows(paths: list[tuple[str, list[float]]]) -> list[str]:
    """A Markdown table of each path's min, median, p90 and max."""
    rows = ["| path | min | median | p90 | max |", "|---|---:|---:|---:|---:|"]
    for name, values in paths:
        rows.append(f"| {name} | " + " | ".join(f"{v:.2f} s" for v in summary(values)) + " |")
    return rows


def report(samples: Samples, engine: Engine, rounds: int, out: Path) -> float:
    ratio, met = ratio_of_medians(samples)
    version = engine_version(engine)
    rows = table_rows(
        [
            ("runnerscale (queued → runner in container took the job)", samples.runnerscale),
            ("bare `docker run` (queued → runner took the job)", samples.bare),
        ]
    )
    text = "\n".join(
        [
            "# Docker backend: time to a running runner, against a bare `docker run`",
            "",
            "Made by `.venv/bin/python benchmarks/docker_start.py "
            f"--rounds {rounds}` (see its docstring for the method).",
            f"Engine: Docker {version}, storage driver {engine.storage_driver}, on "
            f"{os.cpu_count()} CPUs; image: the test runner image (Debian bookworm, the runner "
            "image's entrypoint, the stand-in runner).",
            "",
            *rows,
            "",
            f"**Ratio of medians: {ratio:.2f}x (target: at most {TARGET_RATIO}x): {met}.**",
            "",
            "Both are timed from the moment the job is queued in the simulator until the job "
            "is in progress. The bare path starts the Docker CLI right after queueing, with a "
            "JIT config obtained beforehand (untimed); the CLI's own start-up is in its "
            "figure. What runnerscale adds to the container start: the webhook delivery, the "
            "decision, one GitHub call for the JIT config, writing the runner's state before "
            "each step, and the Docker backend's own calls (image check, create, start, "
            "inspect). With the vfs storage driver (no overlay filesystem), a container start "
            "copies the image and takes seconds, so the ratio comes closer to 1.",
            "",
            "![every round](docker.png)",
            "",
        ]
    )
    out.write_text(text)
    return ratio


def plot(
    samples: Samples,
    out: Path,
    *,
    labels: tuple[str, str] = ("runnerscale (job queued → running)", "bare docker run"),
    title: str = "Time until a runner in a container has taken the job",
) -> None:
    """Every round of both paths (``labels``: runnerscale's, the bare one's)."""
    import matplotlib  # noqa: PLC0415 - only for the picture

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(figsize=(7, 3.5))
    rounds = range(1, len(samples.runnerscale) + 1)
    axes.plot(rounds, samples.runnerscale, "o-", label=labels[0])
    axes.plot(rounds, samples.bare, "s-", label=labels[1])
    axes.set_xlabel("round")
    axes.set_ylabel("seconds")
    axes.set_ylim(bottom=0)
    axes.legend()
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "docker.md")
    args = parser.parse_args()
    if shutil.which("docker") is None:
        print("benchmark: the docker CLI is needed for the bare docker run", file=sys.stderr)
        return 2
    # The bare rounds' jobs match no pool on purpose: their warnings would tear the progress bar.
    logging.getLogger("runnerscale").setLevel(logging.ERROR)
    scratch = Path(tempfile.mkdtemp(prefix="rsbench-", dir="/tmp"))
    engine = start_engine(scratch / "engine")
    try:
        image = import_runner_image(engine.url, scratch)
        samples = asyncio.run(measure(engine, image, args.rounds, scratch))
        report(samples, engine, args.rounds, args.out)
        plot(samples, args.out.with_suffix(".png"))
    finally:
        stop_engine(engine)
        shutil.rmtree(scratch, ignore_errors=True)
    show(samples, "time to a runner in a container (s)", "bare docker run", args.out)
    return 0


def show(samples: Samples, title: str, bare: str, out: Path) -> None:
    """The figures on the terminal, and where the report went."""
    table = Table(title=title)
    for column in ("path", "min", "median", "p90", "max"):
        table.add_column(column)
    for name, values in (("runnerscale", samples.runnerscale), (bare, samples.bare)):
        table.add_row(name, *(f"{v:.2f}" for v in summary(values)))
    Console().print(table)
    ratio, _ = ratio_of_medians(samples)
    print(f"ratio of medians: {ratio:.2f}x (target {TARGET_RATIO}x); written to {out}")


if __name__ == "__main__":
    raise SystemExit(main())
