"""The runner image's entrypoint (images/runner/entrypoint.sh), run with bash on this host.

No Docker: RUNNER_HOME is a temporary directory holding a fake ``run.sh`` and
RUNNERSCALE_ENTRYPOINT_D a temporary directory of extension scripts. The last test puts the
stand-in runner behind ``run.sh`` and lets it run a job against the GitHub simulator.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer

ENTRYPOINT = Path(__file__).resolve().parents[2] / "images" / "runner" / "entrypoint.sh"
SECRET = "eyJydW5uZXIiOiJzZWNyZXQtaml0LWNvbmZpZyJ9-0f1e2d3c"
JITCONFIG_ENV = "ACTIONS_RUNNER_INPUT_JITCONFIG"
MISSING_MESSAGE = (
    f"runnerscale-entrypoint: {JITCONFIG_ENV} is not set: this image is started by "
    "runnerscale's docker backend, which passes the runner's one-job configuration in it"
)
TOKEN = "ghp_entrypoint_test_token"
AUTH = {"Authorization": f"token {TOKEN}"}

# A run.sh that records how it was started (the number of its arguments, then each), then exits
# with $FAKE_RUN_EXIT (default 0).
RECORDING_RUN_SH = """\
printf '%s\\n' "$#" "$@" > "$RUNNER_HOME/args"
env > "$RUNNER_HOME/run-env"
echo run.sh >> "$RUNNER_HOME/order"
exit "${FAKE_RUN_EXIT:-0}"
"""

# A run.sh that runs until SIGTERM, which it answers like a runner that stopped its job.
LONG_RUN_SH = """\
trap 'echo term > "$RUNNER_HOME/got-term"; exit 143' TERM
echo started > "$RUNNER_HOME/started"
while :; do sleep 0.05; done
"""


@dataclass
class Layout:
    home: Path  # RUNNER_HOME
    entry_d: Path  # RUNNERSCALE_ENTRYPOINT_D

    def run_sh(self, body: str) -> Path:
        path = self.home / "run.sh"
        path.write_text(f"#!/usr/bin/env bash\n{body}")
        path.chmod(0o755)
        return path

    def script(self, name: str, body: str) -> Path:
        # Not executable on purpose: the entrypoint runs each with bash.
        path = self.entry_d / name
        path.write_text(f"#!/usr/bin/env bash\nset -eu\n{body}")
        return path

    def env(self, jitconfig: str | None = SECRET, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RUNNERSCALE_", "ACTIONS_RUNNER_INPUT_"))
        }
        env.update(
            RUNNER_HOME=str(self.home),
            RUNNERSCALE_ENTRYPOINT_D=str(self.entry_d),
            RUNNERSCALE_RUNNER_NAME="rs-linux-7",
            RUNNERSCALE_POOL="linux",
        )
        if jitconfig is not None:
            env[JITCONFIG_ENV] = jitconfig
        env.update(extra)
        return env

    def lines(self, name: str) -> list[str]:
        return (self.home / name).read_text().splitlines()


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    home = tmp_path / "home"
    entry_d = tmp_path / "entrypoint.d"
    home.mkdir()
    entry_d.mkdir()
    return Layout(home, entry_d)


def run(env: dict[str, str], timeout: float = 15) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ENTRYPOINT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def start() -> Iterator[Callable[[dict[str, str]], subprocess.Popen[str]]]:
    """Starts the entrypoint in the background; kills whatever is left at the end."""
    started: list[subprocess.Popen[str]] = []

    def _start(env: dict[str, str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            ["bash", str(ENTRYPOINT)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield _start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


def wait_for(path: Path, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"{path.name} did not appear within {timeout} s")
        time.sleep(0.02)


def finish(process: subprocess.Popen[str], timeout: float = 10) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def assert_no_secret(*outputs: str) -> None:
    for output in outputs:
        assert SECRET not in output


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_without_a_jit_config_it_exits_2_and_says_why(layout: Layout, value: str | None) -> None:
    layout.run_sh(RECORDING_RUN_SH)
    layout.script("10-a.sh", 'echo 10-a >> "$RUNNER_HOME/order"\n')
    result = run(layout.env(jitconfig=value))
    assert result.returncode == 2
    assert result.stderr == MISSING_MESSAGE + "\n"
    assert result.stdout == ""
    assert not (layout.home / "order").exists()  # no script, no runner


def test_extension_scripts_run_in_lexical_order_before_the_runner(layout: Layout) -> None:
    layout.run_sh(RECORDING_RUN_SH)
    for name in ("20-b.sh", "10-a.sh", "30-c.sh", "1-first.sh"):
        layout.script(name, f'echo {name} >> "$RUNNER_HOME/order"\n')
    (layout.entry_d / "15-not-a-script.txt").write_text('echo txt >> "$RUNNER_HOME/order"\n')
    (layout.entry_d / "README").write_text("not run\n")
    result = run(layout.env())
    assert result.returncode == 0, result.stderr
    assert layout.lines("order") == ["1-first.sh", "10-a.sh", "20-b.sh", "30-c.sh", "run.sh"]
    for name in ("1-first.sh", "10-a.sh", "20-b.sh", "30-c.sh"):
        assert f"runnerscale-entrypoint: running {layout.entry_d / name}\n" in result.stderr


@pytest.mark.parametrize("entry_d", ["missing", "empty"])
def test_a_missing_or_empty_script_directory_is_fine(layout: Layout, entry_d: str) -> None:
    layout.run_sh(RECORDING_RUN_SH)
    if entry_d == "missing":
        layout.entry_d.rmdir()
    result = run(layout.env())
    assert result.returncode == 0, result.stderr
    assert layout.lines("order") == ["run.sh"]


def test_a_failing_script_stops_with_exit_3_before_the_runner(layout: Layout) -> None:
    layout.run_sh(RECORDING_RUN_SH)
    layout.script("10-ok.sh", 'echo 10-ok >> "$RUNNER_HOME/order"\n')
    failing = layout.script("20-broken.sh", "exit 5\n")
    layout.script("30-later.sh", 'echo 30-later >> "$RUNNER_HOME/order"\n')
    result = run(layout.env())
    assert result.returncode == 3
    assert layout.lines("order") == ["10-ok"]  # neither the later script nor run.sh
    assert f"{failing} failed with exit code 5" in result.stderr
    assert_no_secret(result.stdout, result.stderr)


def test_the_jit_config_reaches_run_sh_only_in_its_environment(layout: Layout) -> None:
    layout.run_sh(RECORDING_RUN_SH)
    layout.script("10-env.sh", 'env > "$RUNNER_HOME/script-env"\nenv\n')
    # A variable named like the entrypoint's own must not carry the secret to children.
    result = run(layout.env(jit_config="decoy"))
    assert result.returncode == 0, result.stderr
    assert layout.lines("args") == ["0"]  # nothing on run.sh's command line
    run_env = (layout.home / "run-env").read_text()
    # Where the official runner reads it (and removes it before it runs a job).
    assert f"{JITCONFIG_ENV}={SECRET}\n" in run_env
    script_env = (layout.home / "script-env").read_text()
    assert_no_secret(run_env.replace(f"{JITCONFIG_ENV}={SECRET}\n", ""))
    assert_no_secret(script_env, result.stdout, result.stderr)
    assert JITCONFIG_ENV not in script_env
    # What scripts and the runner do get.
    for name, value in [
        ("RUNNER_HOME", str(layout.home)),
        ("RUNNERSCALE_RUNNER_NAME", "rs-linux-7"),
        ("RUNNERSCALE_POOL", "linux"),
        ("RUNNER_MANUALLY_TRAP_SIG", "1"),
    ]:
        assert f"{name}={value}\n" in script_env
        assert f"{name}={value}\n" in run_env


def test_the_runners_exit_code_is_the_entrypoints(layout: Layout) -> None:
    layout.run_sh(RECORDING_RUN_SH)
    result = run(layout.env(FAKE_RUN_EXIT="7"))
    assert result.returncode == 7
    assert "runner exited with code 7" in result.stderr
    assert_no_secret(result.stdout, result.stderr)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_is_forwarded_to_the_runner_as_sigterm_and_exits_0(
    layout: Layout, start: Callable[[dict[str, str]], subprocess.Popen[str]], sig: signal.Signals
) -> None:
    layout.run_sh(LONG_RUN_SH)
    process = start(layout.env())
    wait_for(layout.home / "started")
    process.send_signal(sig)
    code, out, err = finish(process)
    assert code == 0, err
    assert layout.lines("got-term") == ["term"]
    assert "runner stopped (exit code 143)" in err
    assert_no_secret(out, err)


def test_a_stop_during_the_scripts_ends_them_and_never_starts_the_runner(
    layout: Layout, start: Callable[[dict[str, str]], subprocess.Popen[str]]
) -> None:
    layout.run_sh(RECORDING_RUN_SH)
    # The sleep is in the script's process group, so it is stopped too (else it would hold the
    # output pipes open and `finish` would time out).
    layout.script("10-slow.sh", 'echo started > "$RUNNER_HOME/script-started"\nsleep 30\n')
    layout.script("20-later.sh", 'echo 20-later >> "$RUNNER_HOME/order"\n')
    process = start(layout.env())
    wait_for(layout.home / "script-started")
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code, _out, err = finish(process)
    assert code == 0, err
    assert time.monotonic() - began < 5
    assert not (layout.home / "order").exists()  # no later script, no runner
    assert "stopped before the runner started" in err


@pytest.mark.parametrize("state", ["missing", "not executable"])
def test_without_an_executable_run_sh_it_exits_4(layout: Layout, state: str) -> None:
    if state == "not executable":
        layout.run_sh(RECORDING_RUN_SH).chmod(0o644)
    result = run(layout.env())
    assert result.returncode == 4
    assert f"{layout.home / 'run.sh'} is missing or not executable" in result.stderr
    assert_no_secret(result.stdout, result.stderr)


@pytest.mark.slow
async def test_the_stand_in_runner_behind_the_entrypoint_runs_a_job(layout: Layout) -> None:
    """run.sh execs ``runnerscale sim-runner``, which reads the JIT config from its environment
    like the real one."""
    layout.run_sh(f'exec "{sys.executable}" -m runnerscale sim-runner "$@"\n')
    layout.script("10-prepare.sh", 'echo ready > "$RUNNER_HOME/prepared"\n')
    async with (
        SimulatorServer(SimulatorOptions(tokens=(TOKEN,))) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as control,
    ):
        await control.post("/_sim/repos", json={"repo": "acme/app"})
        created = await control.post(
            "/repos/acme/app/actions/runners/generate-jitconfig",
            json={"name": "rs-linux-7", "labels": ["self-hosted", "linux"], "runner_group_id": 1},
            headers=AUTH,
        )
        assert created.status_code == 201, created.text
        jitconfig = created.json()["encoded_jit_config"]
        job = (
            await control.post(
                "/_sim/jobs",
                json={"repo": "acme/app", "labels": ["self-hosted", "linux"], "duration": 0.5},
            )
        ).json()
        env = layout.env(jitconfig=jitconfig)
        process = await asyncio.create_subprocess_exec(
            "bash",
            str(ENTRYPOINT),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(30):
                out, err = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.communicate()
        output = out.decode() + err.decode()
        assert process.returncode == 0, output
        assert jitconfig not in output
        assert (layout.home / "prepared").exists()
        listed = (await control.get("/_sim/jobs")).json()
        record = next(j for j in listed if j["id"] == job["id"])
        assert (record["status"], record["conclusion"], record["runner_name"]) == (
            "completed",
            "success",
            "rs-linux-7",
        )
