"""Webhook intake: the daemon's ``/webhook`` against a bare receiver, side by side, one core.

Why: the issue's intake target is a ratio (at least 0.8x the deliveries a second of a bare
Starlette app doing only the signature check), a tail latency, no decay as jobs queue up, and
nothing acknowledged lost to ``kill -9``. Absolute figures on a shared 2-core machine are
noisy, so both receivers run in ONE run, each pinned (``taskset``) to the same core, while the
load generator runs on the other core.

What runs:

* the load generator (this process): ``--connections`` keep-alive HTTP/1.1 connections on
  loopback, each sending signed ``workflow_job`` deliveries (``action: queued``, a distinct
  ``X-GitHub-Delivery`` GUID and job id each, the payload of
  ``shared/github-contract/webhooks/workflow_job/queued.payload.json`` with the job moved to
  ``acme/app`` and its labels to the pool's). Bodies are signed before the clock starts; the
  client is a minimal one over asyncio streams so that the generator is not what limits.
* (a) a bare receiver: a Starlette app (uvicorn, as the daemon serves) that checks the
  signature with :func:`runnerscale.github.webhooks.verify_signature` and answers 202;
* (b) the real daemon, ``runnerscale run`` with SQLite state, a fake GitHub
  (``runnerscale fake-github``, a process of its own, unpinned) and a local pool of one runner
  at most, so that the queued jobs it is told of only pile up: the backlog grows by one job per
  delivery;
* a crash check: a fresh daemon under the same load is killed with SIGKILL mid-load, then its
  store is opened and every job whose delivery got a 202 is looked for (``lost``); the
  deliveries that got no answer are sent again to the restarted daemon, which must take them
  (none dropped as a duplicate of a delivery that was never stored).

    .venv/bin/python benchmarks/intake.py [--deliveries 10000] [--connections 8] [--core 1]

Prints a Markdown table (and ``--json OUT`` writes the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path[:0] = [str(SRC), str(ROOT)]  # the code under test, and the tests' free_port

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.e2e.harness import free_port

from runnerscale.github.webhooks import sign, verify_signature
from runnerscale.store import open_store

CONTRACT = ROOT / ".." / "shared" / "github-contract"
QUEUED = CONTRACT / "webhooks" / "workflow_job" / "queued.payload.json"
SECRET = "bench-webhook-secret-value"
TOKEN = "ghp_bench_token_value_1234567890"
LABELS = ["self-hosted", "linux", "x64"]


# ---------------------------------------------------------------------------- deliveries


def deliveries(first_id: int, count: int) -> list[tuple[int, bytes, bytes]]:
    """``count`` signed requests (job id, request head, body), jobs ``first_id`` onwards."""
    template = json.loads(QUEUED.read_text())
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    requests = []
    for job_id in range(first_id, first_id + count):
        payload = copy.deepcopy(template)
        job = payload["workflow_job"]
        job.update(
            id=job_id,
            run_id=job_id,
            labels=LABELS,
            created_at=now,
            started_at=now,
            runner_id=None,
            runner_name=None,
            runner_group_id=None,
            runner_group_name=None,
        )
        repo = payload["repository"]
        repo.update(name="app", full_name="acme/app")
        repo["owner"]["login"] = "acme"
        body = json.dumps(payload).encode()
        head = (
            "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "X-GitHub-Event: workflow_job\r\n"
            f"X-GitHub-Delivery: {uuid.uuid4()}\r\n"
            f"X-Hub-Signature-256: {sign(SECRET, body)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        requests.append((job_id, head, body))
    return requests


@dataclass
class Answer:
    job_id: int
    status: int  # 0: no answer (the connection failed)
    latency: float
    done_at: float


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, body: bytes
) -> int:
    writer.write(head + body)
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed")
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return int(status_line.split()[1])


async def send(
    port: int, requests: Sequence[tuple[int, bytes, bytes]], connections: int
) -> list[Answer]:
    """Send every request over ``connections`` keep-alive connections; an answer per request
    (status 0 for those that got none: the receiver died)."""
    queue = list(reversed(requests))
    answers: list[Answer] = []

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                job_id, head, body = queue.pop()
                began = time.perf_counter()
                try:
                    status = await _exchange(reader, writer, head, body)
                except (ConnectionError, asyncio.IncompleteReadError, OSError):
                    answers.append(Answer(job_id, 0, 0.0, time.perf_counter()))
                    while queue:  # the receiver is gone: the rest get no answer either
                        answers.append(Answer(queue.pop()[0], 0, 0.0, time.perf_counter()))
                    return
                now = time.perf_counter()
                answers.append(Answer(job_id, status, now - began, now))
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return answers


@dataclass
class Figures:
    receiver: str
    deliveries: int
    per_second: float
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int]
    #: Deliveries a second for each successive thousand answered (the backlog grows).
    per_thousand: list[float] = field(default_factory=list)
    #: The receiver's CPU time (user + system, all its threads) per delivery answered, in
    #: microseconds: unlike the rates, it hardly moves with foreign load on the machine.
    cpu_us: float = 0.0


def cpu_seconds(pid: int) -> float:
    """The CPU time ``pid`` has used so far (user + system, every thread), from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measured(
    receiver: str, pid: int, port: int, requests: list[Any], connections: int
) -> Figures:
    """Send ``requests`` to the receiver ``pid`` serving ``port``: the figures of its answers."""
    cpu_before = cpu_seconds(pid)
    began = time.perf_counter()
    answers = await send(port, requests, connections)
    result = figures(receiver, answers, began)
    result.cpu_us = round(1e6 * (cpu_seconds(pid) - cpu_before) / len(answers), 1)
    return result


def figures(receiver: str, answers: list[Answer], began: float) -> Figures:
    answers = sorted(answers, key=lambda a: a.done_at)
    latencies = sorted(a.latency for a in answers if a.status)
    span = answers[-1].done_at - began
    per_thousand: list[float] = []
    start = began
    for index in range(999, len(answers), 1000):
        per_thousand.append(float(round(1000 / (answers[index].done_at - start))))
        start = answers[index].done_at
    statuses: dict[int, int] = {}
    for answer in answers:
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
    return Figures(
        receiver,
        len(answers),
        round(len(answers) / span, 1),
        round(1000 * statistics.median(latencies), 1),
        round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
        statuses,
        per_thousand,
    )


# ---------------------------------------------------------------------------- receivers


def bare_app() -> Any:
    """The reference: Starlette, the same signature check, nothing else."""

    async def webhook(request: Request) -> Response:
        body = await request.body()
        if not verify_signature(SECRET, body, request.headers.get("x-hub-signature-256")):
            return JSONResponse({"message": "bad signature"}, status_code=401)
        return JSONResponse({"message": "accepted"}, status_code=202)

    return Starlette(routes=[Route("/webhook", webhook, methods=["POST"])])


def serve_bare(port: int) -> None:
    uvicorn.run(bare_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def pinned(core: int | None, *command: str) -> list[str]:
    return [*(["taskset", "-c", str(core)] if core is not None else []), *command]


@contextlib.asynccontextmanager
async def process(command: list[str], log: Path, env: dict[str, str]) -> AsyncIterator[Any]:
    with log.open("ab") as output:
        child = await asyncio.create_subprocess_exec(
            *command, stdout=output, stderr=asyncio.subprocess.STDOUT, env=env
        )
    try:
        yield child
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(30):
                    await child.wait()
            except TimeoutError:
                child.kill()
                await child.wait()


async def listening(port: int, path: str = "/", seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise TimeoutError(f"nothing listens on {port}")


def environment() -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(SRC),
        "BENCH_TOKEN": TOKEN,
        "BENCH_WEBHOOK_SECRET": SECRET,
    }


def daemon_config(directory: Path, api_url: str, port: int) -> Path:
    """One local pool of one runner at most: the queued jobs pile up, as a burst's do."""
    path = directory / "runnerscale.yaml"
    path.write_text(f"""\
github:
  api_url: {api_url}
  token: ${{BENCH_TOKEN}}
  webhook_secret: ${{BENCH_WEBHOOK_SECRET}}
targets:
  - org: acme
server:
  listen: 127.0.0.1:{port}
state: sqlite:///{directory}/state/state.db
poll_interval: 15s
timeouts:
  queued_recheck: 1h
pools:
  - name: linux-x64
    labels: [self-hosted, linux, x64]
    provider: local
    max_runners: 1
    min_idle: 0
    idle_timeout: 1h
    boot_timeout: 60s
    local:
      command: ["{sys.executable}", -m, runnerscale, sim-runner]
      capacity: 1
      work_root: {directory}/runners
      stop_grace: 3s
""")
    return path


@contextlib.asynccontextmanager
async def fake_github(scratch: Path) -> AsyncIterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "runnerscale", "fake-github", "--port", str(port)]
    async with process([*command, "--token", TOKEN], scratch / "fake-github.log", environment()):
        await listening(port)
        yield f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def daemon(
    config: Path, port: int, core: int | None, profile: Path | None = None
) -> AsyncIterator[Any]:
    """``runnerscale run`` (under cProfile, its event loop's thread, with ``profile``)."""
    python = [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else [])]
    command = pinned(core, *python, "-m", "runnerscale", "run", "-c", str(config))
    env = {**environment(), "HOME": str(config.parent)}
    async with process(command, config.parent / "daemon.log", env) as child:
        await listening(port)
        await asyncio.sleep(2.0)  # its first reconcile and poll
        yield child


async def measure_bare(scratch: Path, requests: list[Any], args: argparse.Namespace) -> Figures:
    port = free_port()
    command = pinned(args.core, sys.executable, __file__, "--serve-bare", str(port))
    async with process(command, scratch / "bare.log", environment()) as child:
        await listening(port)
        await send(port, requests[:200], args.connections)  # warm up (distinct ids anyway)
        receiver = "bare Starlette + HMAC check"
        return await measured(receiver, child.pid, port, requests[200:], args.connections)


async def measure_daemon(
    scratch: Path, api_url: str, requests: list[Any], args: argparse.Namespace
) -> Figures:
    directory = scratch / "daemon"
    directory.mkdir()
    port = free_port()
    config = daemon_config(directory, api_url, port)
    async with daemon(config, port, args.core, args.profile) as child:
        await send(port, requests[:200], args.connections)
        receiver = "runnerscale run (SQLite)"
        return await measured(receiver, child.pid, port, requests[200:], args.connections)


@dataclass
class Crash:
    acknowledged: int
    unanswered: int
    lost: int
    resent_accepted: int
    resent_duplicate: int


async def crash_check(
    scratch: Path, api_url: str, requests: list[Any], args: argparse.Namespace
) -> Crash:
    """SIGKILL the daemon mid-load; every 202'd job must be in its store; the unanswered
    deliveries, sent again to the restarted daemon, must be taken (not dropped as duplicates)."""
    directory = scratch / "crash"
    directory.mkdir()
    port = free_port()
    config = daemon_config(directory, api_url, port)
    async with daemon(config, port, args.core) as child:
        sending = asyncio.ensure_future(send(port, requests, args.connections))
        await asyncio.sleep(args.kill_after)
        child.send_signal(signal.SIGKILL)
        answers = await sending
    acknowledged = {a.job_id for a in answers if a.status == 202}
    answered = {a.job_id for a in answers if a.status}
    unanswered = [request for request in requests if request[0] not in answered]
    store = open_store(f"sqlite:///{directory}/state/state.db")
    try:
        stored = {job.id for job in store.jobs()}
    finally:
        store.close()
    # What a redelivery sends again: what got no answer, and what was acknowledged but lost.
    resend = [request for request in requests if request[0] not in stored]
    async with daemon(config, port, args.core):
        again = await send(port, resend, args.connections) if resend else []
    return Crash(
        len(acknowledged),
        len(unanswered),
        len(acknowledged - stored),
        sum(a.status == 202 for a in again),
        sum(a.status == 200 for a in again),
    )


def table(results: list[Figures], crash: Crash | None) -> str:
    bare, real = results
    lines = [
        "| receiver | deliveries | deliveries/s | ratio | p50 ms | p99 ms | CPU µs each "
        "| CPU ratio | answers |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for result in results:
        ratio = result.per_second / bare.per_second
        answers = ", ".join(
            f"{status}: {count}" for status, count in sorted(result.statuses.items())
        )
        lines.append(
            f"| {result.receiver} | {result.deliveries} | {result.per_second:.0f} | "
            f"{ratio:.2f}x | {result.p50_ms} | {result.p99_ms} | {result.cpu_us:.0f} | "
            f"{bare.cpu_us / result.cpu_us:.2f}x | {answers} |"
        )
    lines += [
        "",
        "Deliveries/s per successive thousand (daemon; the backlog grows by one each):",
        "",
    ]
    lines.append(" ".join(str(rate) for rate in real.per_thousand))
    if crash is not None:
        lines += [
            "",
            "| crash check (SIGKILL mid-load) | value |",
            "| --- | ---: |",
            f"| deliveries answered 202 before the kill | {crash.acknowledged} |",
            f"| of those, missing from the store (lost) | {crash.lost} |",
            f"| deliveries unanswered | {crash.unanswered} |",
            f"| unanswered + lost, sent again after the restart: taken (202) | "
            f"{crash.resent_accepted} |",
            f"| sent again: dropped as duplicates (200) | {crash.resent_duplicate} |",
        ]
    return "\n".join(lines)


def show_logs(scratch: Path) -> None:
    for log in scratch.rglob("*.log"):
        print(f"--- {log}\n{log.read_text()[-3000:]}", file=sys.stderr)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    total = args.deliveries + 200
    with tempfile.TemporaryDirectory(prefix="intake-bench-") as folder:
        scratch = Path(folder)
        async with fake_github(scratch) as api_url:
            bare = await measure_bare(scratch, deliveries(1, total), args)
            real = await measure_daemon(scratch, api_url, deliveries(10_000_000, total), args)
            crash = None
            if args.crash:
                crash = await crash_check(
                    scratch, api_url, deliveries(20_000_000, args.crash), args
                )
            if args.keep_logs:
                show_logs(scratch)
    print(table([bare, real], crash))
    return {
        "bare": asdict(bare),
        "daemon": asdict(real),
        "ratio": round(real.per_second / bare.per_second, 3),
        "crash": None if crash is None else asdict(crash),
    }


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--core", type=int, default=1 if (os.cpu_count() or 1) > 1 else None)
    parser.add_argument(
        "--crash", type=int, default=3000, help="deliveries of the crash check (0: none)"
    )
    parser.add_argument("--kill-after", type=float, default=1.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--profile", type=Path, help="cProfile the daemon's run to this file")
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return {}
    if args.core is not None:
        # The generator on the other cores, the receivers on ``--core``.
        others = set(range(os.cpu_count() or 1)) - {args.core}
        if others:
            os.sched_setaffinity(0, others)
    result = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
