"""Start-up: ``runnerscale run`` from the process's start to a healthy ``/healthz`` (issue 18).

Each run starts ``python -m runnerscale run -c CONFIG`` as a process of its own, against the
GitHub simulator (in this process, on loopback) with SQLite state and one local pool, and polls
``/healthz`` every few milliseconds until it answers 200. Measured per run: the wall time from
spawning the process to the first 200, and the CPU time the daemon's process had used by then
(user + system, from ``/proc/PID/stat``; CPU is the steadier figure on a shared machine). Two
cases, alternating run by run: a **fresh** state (no database: it is created) and an
**existing** one (the database of an earlier run, at the current schema). Then one more start
under ``python -X importtime``, whose slowest imports (cumulative, top-level packages and the
slowest modules) say where the import time goes.

The code started is a copy of each checkout's ``src`` (without its ``__pycache__``) in the
scratch directory, compiled ahead of the runs as ``pip install`` compiles an installed package
(``--bytecode source``: not compiled, so each start compiles runnerscale's modules again, as
a checkout run with ``PYTHONDONTWRITEBYTECODE=1`` and no cache does); every start runs with
``PYTHONDONTWRITEBYTECODE=1``, so none writes a cache a later one would use, and nothing is
written into a checkout. The installed libraries' bytecode is the virtual environment's own
(compiled when pip installed them).

Target (issue 18): under 1 s to healthy.

    .venv/bin/python benchmarks/startup.py [--runs 10] [--baseline SRC] [--bytecode source]
        [--out benchmarks/startup.md]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the e2e helpers that write the config

from tests.e2e.harness import ENV, TOKEN, free_port, write_config

from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer

CASES = ("fresh", "existing")
#: How the started code's bytecode is had: compiled ahead (an installed package's case), or
#: compiled by every start (a checkout without a cache, run with PYTHONDONTWRITEBYTECODE=1).
BYTECODE = ("compiled", "source")
#: Runs ``runnerscale run`` with a mark at each phase of its start.
PHASES = ROOT / "benchmarks" / "startup_phases.py"
#: Starts per source whose phases are measured (medians).
PHASE_RUNS = 3
#: Ticks of ``/proc/PID/stat``'s CPU times per second.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    wall: float
    #: The daemon's user + system CPU seconds by its first healthy answer.
    cpu: float
    #: This process's (the simulator's and the polling's) CPU seconds meanwhile: what
    #: competed with the daemon for the cores.
    poller_cpu: float = 0.0
    #: Seconds the daemon was ready to run but waited for a core (``/proc/PID/schedstat``):
    #: the rest of ``wall - cpu`` it spent blocked (files, the network, the simulator).
    runnable: float = 0.0


@dataclass
class Outcome:
    runs: int
    #: One of :data:`BYTECODE`.
    bytecode: str
    #: The code started, by label: this checkout's, and the baseline's when given.
    sources: dict[str, Path]
    #: Samples by (source label, state case).
    samples: dict[tuple[str, str], list[Sample]] = field(default_factory=lambda: defaultdict(list))
    #: (module, cumulative seconds), slowest first.
    imports: list[tuple[str, float]] = field(default_factory=list)
    #: (top-level package, cumulative seconds), slowest first.
    packages: list[tuple[str, float]] = field(default_factory=list)
    #: By source label: (phase, wall, CPU) at each mark of ``startup_phases.py``, medians.
    phases: dict[str, list[tuple[str, float, float]]] = field(default_factory=dict)


def environment(directory: Path, src: Path) -> dict[str, str]:
    """A start's environment: ``src``'s code, and no bytecode written (each start alike)."""
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(src),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": str(directory),
        **ENV,
    }


def prepare_source(src: Path, into: Path, bytecode: str) -> Path:
    """A copy of the checkout's ``src`` at ``into``, without its ``__pycache__``, compiled
    ahead when ``bytecode`` is ``compiled`` (as ``pip install`` compiles a package): every
    start of it then loads the same files, whatever cache the checkout holds or lacks."""
    shutil.copytree(src, into, ignore=shutil.ignore_patterns("__pycache__"))
    if bytecode == "compiled" and not compileall.compile_dir(into, quiet=1):
        raise RuntimeError(f"{src} does not compile")
    return into


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (its own: it starts no child)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def listening(port: int) -> bool:
    """Whether something accepts connections on ``port``: a bare connection, far cheaper than
    an HTTP request, so that waiting for the daemon takes little of the cores it needs."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


def runnable_seconds(pid: int) -> float:
    """Seconds process ``pid``'s main thread has waited on a run queue so far (0 where the
    kernel keeps no scheduler statistics)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


async def start_once(
    config: Path,
    port: int,
    *,
    src: Path = ROOT / "src",
    python_flags: tuple[str, ...] = (),
    stderr: Path | None = None,
) -> Sample:
    """Start the daemon, wait for a healthy ``/healthz``, stop it; its wall and CPU time."""
    url = f"http://127.0.0.1:{port}/healthz"
    with (stderr or Path(os.devnull)).open("wb") as errors:
        began, began_cpu = time.perf_counter(), time.process_time()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *python_flags,
            "-m",
            "runnerscale",
            "run",
            "-c",
            str(config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=errors,
            env=environment(config.parent, src),
        )
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"the daemon ended with {process.returncode} at start")
                try:
                    if await listening(port) and (await client.get(url)).status_code == 200:
                        wall = time.perf_counter() - began
                        poller = time.process_time() - began_cpu
                        pid = process.pid
                        return Sample(wall, cpu_seconds(pid), poller, runnable_seconds(pid))
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.005)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await process.wait()


def package_of(module: str) -> str:
    """Who a module's import time is charged to: its top-level package (runnerscale's own
    by subpackage, to say which part of it)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "runnerscale" else parts[0]


def slowest_imports(log: Path, top: int) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """From an ``-X importtime`` log: the slowest modules (cumulative: with what they import)
    and the packages whose own modules take the most (self time summed by :func:`package_of`:
    the figures add up to the whole import time)."""
    modules: dict[str, float] = {}
    packages: dict[str, float] = defaultdict(float)
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.removeprefix("import time:").split("|")
        try:
            own, cumulative = int(parts[0]) / 1e6, int(parts[1]) / 1e6
        except ValueError:
            continue  # the header
        module = parts[2].strip()
        modules[module] = max(modules.get(module, 0.0), cumulative)
        packages[package_of(module)] += own
    by_time = sorted(modules.items(), key=lambda item: -item[1])[:top]
    return by_time, sorted(packages.items(), key=lambda item: -item[1])[:top]


async def run(
    runs: int,
    directory: Path,
    baseline: Path | None = None,
    *,
    top: int = 15,
    phase_runs: int = PHASE_RUNS,
    bytecode: str = "compiled",
) -> Outcome:
    """``runs`` starts per case, alternating the cases (and this checkout with ``baseline``,
    another checkout's ``src``, when given: ratios taken side by side)."""
    sources = {"this": ROOT / "src"}
    if baseline is not None:
        sources["baseline"] = baseline
    outcome = Outcome(runs=runs, bytecode=bytecode, sources=sources)
    started = {
        label: prepare_source(src, directory / "code" / label, bytecode)
        for label, src in sources.items()
    }
    options = SimulatorOptions(tokens=(TOKEN,))
    async with SimulatorServer(options) as simulator:
        simulator.simulator.world.ensure_repo("acme/app")
        port = free_port()
        # One local pool with no runner wanted (min_idle 0), SQLite state under ``directory``.
        config = write_config(directory, simulator.url, port=port, poll_interval="1h")
        state = directory / "state"
        for src in started.values():  # warm the file cache and create the state once
            await start_once(config, port, src=src)
        for _ in range(runs):
            for label, src in started.items():
                for case in CASES:
                    if case == "fresh":
                        shutil.rmtree(state, ignore_errors=True)
                    sample = await start_once(config, port, src=src)
                    outcome.samples[label, case].append(sample)
        for label, src in started.items():
            outcome.phases[label] = await phases(config, port, src, directory, phase_runs)
        log = directory / "importtime.log"
        flags = ("-X", "importtime")
        await start_once(config, port, src=started["this"], python_flags=flags, stderr=log)
        outcome.imports, outcome.packages = slowest_imports(log, top)
    return outcome


async def phases(
    config: Path, port: int, src: Path, directory: Path, runs: int
) -> list[tuple[str, float, float]]:
    """Wall and CPU seconds at each phase of the start (medians of ``runs`` starts on the
    existing state), from :mod:`startup_phases`'s marks."""
    marks: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for run_index in range(runs):
        log = directory / f"phases-{run_index}.log"
        await start_once(config, port, src=src, python_flags=(str(PHASES),), stderr=log)
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("phase "):
                _, wall, cpu, name = line.split(" ", 3)
                marks[name].append((float(wall), float(cpu)))
    return [
        (name, statistics.median(w for w, _ in seen), statistics.median(c for _, c in seen))
        for name, seen in marks.items()
    ]


def _cell(mark: tuple[float, float] | None) -> str:
    return "- | -" if mark is None else f"{mark[0]:.3f} | {mark[1]:.3f}"


def render(outcome: Outcome, command: str) -> str:
    lines = [
        f"`{command}`",
        "",
        f"{outcome.runs} runs per case (alternating), {os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]}; load average at the end "
        f"{' / '.join(f'{load:.1f}' for load in os.getloadavg())} (other work on the machine "
        "stretches the wall time, hardly the CPU time). Bytecode: "
        + (
            "compiled ahead, as an installed package's."
            if outcome.bytecode == "compiled"
            else "none cached: every start compiles runnerscale's modules."
        ),
        "",
        "| code | state | wall median (s) | wall min (s) | CPU median (s) | CPU min (s) "
        "| waiting for a core, median (s) | benchmark's CPU meanwhile, median (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (label, case), samples in outcome.samples.items():
        walls = [sample.wall for sample in samples]
        cpus = [sample.cpu for sample in samples]
        runnable = statistics.median(sample.runnable for sample in samples)
        poller = statistics.median(sample.poller_cpu for sample in samples)
        lines.append(
            f"| {label} | {case} | {statistics.median(walls):.3f} | {min(walls):.3f} | "
            f"{statistics.median(cpus):.3f} | {min(cpus):.3f} | {runnable:.3f} | {poller:.3f} |"
        )
    if "baseline" in outcome.sources:
        lines += ["", f"Baseline: `{outcome.sources['baseline']}`.", ""]
        lines += ["| state | wall this/baseline | CPU this/baseline |", "|---|---:|---:|"]
        for case in CASES:
            this, base = outcome.samples["this", case], outcome.samples["baseline", case]
            wall = statistics.median(s.wall for s in this) / statistics.median(s.wall for s in base)
            cpu = statistics.median(s.cpu for s in this) / statistics.median(s.cpu for s in base)
            lines.append(f"| {case} | {wall:.2f} | {cpu:.2f} |")
    labels = list(outcome.phases)
    lines += ["", "Where the time goes (seconds since the process started, medians of "]
    lines[-1] += f"{PHASE_RUNS} starts on the existing state, `benchmarks/startup_phases.py`):"
    lines += ["", "| phase | " + " | ".join(f"{x} wall | {x} CPU" for x in labels) + " |"]
    lines += ["|---|" + "---:|---:|" * len(labels)]
    by_label = {label: {n: (w, c) for n, w, c in outcome.phases[label]} for label in labels}
    for name, _, _ in outcome.phases[labels[0]]:
        cells = [_cell(by_label[label].get(name)) for label in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    total = sum(seconds for _, seconds in outcome.packages)
    lines += ["", "Import time at start by package (`-X importtime`, own modules' self time; "]
    lines[-1] += "its figures are inflated by the measuring, compare them with each other):"
    lines += ["", "| package | s |", "|---|---:|"]
    lines += [f"| {name} | {seconds:.3f} |" for name, seconds in outcome.packages]
    lines += [f"| (these {len(outcome.packages)}) | {total:.3f} |"]
    lines += ["", "Slowest modules (cumulative: with what they import):", ""]
    lines += ["| module | s |", "|---|---:|"]
    lines += [f"| {name} | {seconds:.3f} |" for name, seconds in outcome.imports]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--baseline", type=Path, default=None, help="another checkout's src, started alternately"
    )
    parser.add_argument(
        "--bytecode",
        choices=BYTECODE,
        default="compiled",
        help="compiled: ahead, as pip installs a package; source: compiled by every start",
    )
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rs-startup-") as scratch:
        outcome = asyncio.run(
            run(arguments.runs, Path(scratch), arguments.baseline, bytecode=arguments.bytecode)
        )
    command = f"python benchmarks/startup.py --runs {arguments.runs}"
    if arguments.baseline is not None:
        command += f" --baseline {arguments.baseline}"
    if arguments.bytecode != "compiled":
        command += f" --bytecode {arguments.bytecode}"
    text = render(outcome, command)
    print(text)
    if arguments.out is not None:
        arguments.out.write_text(text)


if __name__ == "__main__":
    main()
