"""The local backend against real processes.

The fake runner is a small Python script started exactly as the official runner would be
(the configured command, the JIT config in ``ACTIONS_RUNNER_INPUT_JITCONFIG``). It reports its
argv, environment, ids and
session to ``report.json`` in its working directory, prints to stdout and stderr, and then
behaves as ``FAKE_MODE`` says: sleep, exit with a code, trap or ignore SIGTERM, leave a child
behind that ignores SIGTERM, or flood its log.

Every test leaves no process behind: the ``work_root`` fixture SIGKILLs whatever a record or
report under it still names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runnerscale.model import Instance, InstanceSpec
from runnerscale.protocols import ProviderError
from runnerscale.providers.local import (
    JITCONFIG_ENV,
    KEPT_LOG_BYTES,
    KEPT_LOGS,
    LocalProvider,
    LocalSettings,
    default_capacity,
    scrub_environment,
)
from runnerscale.providers.local import provider as local
from tests.test_files import mode, usual_umask

__all__ = ["usual_umask"]  # a fixture, imported

SECRET = "JITSECRET-eyJzZWNyZXQiOiAidGhpcyBpcyB0aGUgaml0IGNvbmZpZyJ9"
POOL = "linux-x64"

FAKE_RUNNER = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys, time

    mode = os.environ.get("FAKE_MODE", "sleep")

    def on_term(signum, frame):
        print("fake runner: got SIGTERM", flush=True)
        sys.exit(0)

    report = {
        "argv": sys.argv[1:],
        "env": dict(os.environ),
        "uid": os.getuid(),
        "pid": os.getpid(),
        "sid": os.getsid(0),
        "cwd": os.getcwd(),
    }
    if mode in ("trap", "child"):
        signal.signal(signal.SIGTERM, on_term)
    if mode == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "child":
        child = subprocess.Popen([
            sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "open('child_ready', 'w').close(); time.sleep(600)",
        ])
        while not os.path.exists("child_ready"):
            time.sleep(0.01)
        report["child"] = child.pid
    with open("report.json.tmp", "w") as file:
        json.dump(report, file)
    os.replace("report.json.tmp", "report.json")
    print("fake runner: started", flush=True)
    print("fake runner: a line on stderr", file=sys.stderr, flush=True)
    if mode.startswith("exit:"):
        print("fake runner: failing now", flush=True)
        sys.exit(int(mode[5:]))
    if mode == "flood":
        for number in range(3000):
            print(f"line {number:05d} " + "x" * 90)
        print("the very last line", flush=True)
        sys.exit(1)
    while True:
        time.sleep(0.2)
    """
)


# -- helpers and fixtures


def proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (index 0 is the state), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def alive(pid: int) -> bool:
    fields = proc_stat(pid)
    return fields is not None and fields[0] not in "ZX"


def kill_everything(root: Path) -> None:
    """SIGKILL every process a record or report under ``root`` names (test clean-up)."""
    groups: set[int] = set()
    pids: set[int] = set()
    for path in root.rglob("instance.json"):
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(path.read_text())
            fields = proc_stat(record["pid"]) if record.get("pid") else None
            if fields is not None and int(fields[19]) == record.get("start_time"):
                groups.add(record["pid"])
    for path in root.rglob("report.json"):
        with contextlib.suppress(OSError, ValueError):
            report = json.loads(path.read_text())
            pids.update(pid for pid in (report.get("pid"), report.get("child")) if pid)
    for pgid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    for pid in pids - {os.getpid()}:
        if alive(pid) and proc_stat(pid)[3] == str(pid):  # type: ignore[index]
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for pid in groups | pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, 0)


@pytest.fixture
def fake_runner(tmp_path: Path) -> Path:
    script = tmp_path / "fake_runner.py"
    script.write_text(FAKE_RUNNER)
    return script


@pytest.fixture
def work_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path.resolve() / "runners"
    yield root
    kill_everything(root)


@pytest.fixture
def make_settings(fake_runner: Path, work_root: Path) -> Callable[..., LocalSettings]:
    def make(mode: str = "sleep", **overrides: Any) -> LocalSettings:
        values: dict[str, Any] = {
            "pool": POOL,
            "command": (
                sys.executable,
                str(fake_runner),
                "--name={runner_name}",
                "--pool={pool}",
                "--workdir={workdir}",
            ),
            "work_root": work_root,
            "capacity": 4,
            "env": {"FAKE_MODE": mode, "FOO": "bar"},
            "stop_grace": 5.0,
        }
        values.update(overrides)
        return LocalSettings(**values)

    return make


def spec(name: str = "runner-1") -> InstanceSpec:
    return InstanceSpec(runner_name=name, pool=POOL, jitconfig=SECRET, labels=("linux",))


async def wait_until(predicate: Callable[[], object], timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def report_of(root: Path, name: str = "runner-1") -> dict[str, Any]:
    path = root / name / "work" / "report.json"
    await wait_until(path.exists)
    report: dict[str, Any] = json.loads(path.read_text())
    return report


async def log_contains(root: Path, text: str, name: str = "runner-1") -> None:
    path = root / name / "runner.log"
    await wait_until(lambda: path.exists() and text in path.read_text())


async def wait_exited(provider: LocalProvider, name: str = "runner-1") -> Instance:
    found: list[Instance] = []

    async def check() -> bool:
        instance = await provider.get(name)
        assert instance is not None
        found[:] = [instance]
        return not instance.running

    async with asyncio.timeout(20):
        while not await check():
            await asyncio.sleep(0.05)
    return found[0]


# -- creating


async def test_create_starts_the_runner_in_its_own_session_and_directory(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    provider = LocalProvider(make_settings())
    instance = await provider.create(spec())
    assert instance.id == "runner-1"
    assert instance.runner_name == "runner-1"
    assert instance.pool == POOL
    assert instance.running
    assert instance.created_at is not None

    report = await report_of(work_root)
    pid = report["pid"]
    assert report["sid"] == pid
    assert os.getsid(pid) == pid
    assert os.getsid(pid) != os.getsid(0)
    assert report["cwd"] == str(work_root / "runner-1" / "work")
    record = json.loads((work_root / "runner-1" / "instance.json").read_text())
    assert record["pid"] == pid
    assert record["runner_name"] == "runner-1"
    assert record["pool"] == POOL
    assert record["controller_id"] == "runnerscale"
    assert int(proc_stat(pid)[19]) == record["start_time"]  # type: ignore[index]

    await log_contains(work_root, "fake runner: started")
    await log_contains(work_root, "fake runner: a line on stderr")
    assert "starting runner runner-1" in (work_root / "runner-1" / "runner.log").read_text()

    [listed] = await provider.list()
    assert listed.id == "runner-1"
    assert listed.running
    assert listed.exit_code is None

    await provider.delete("runner-1")
    assert not alive(pid)
    assert not (work_root / "runner-1").exists()
    assert await provider.get("runner-1") is None
    assert await provider.list() == []


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


async def test_the_jit_config_reaches_the_environment_and_nothing_else(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    provider = LocalProvider(make_settings())
    instance = await provider.create(spec())
    report = await report_of(work_root)
    workdir = work_root / "runner-1" / "work"
    assert report["argv"] == ["--name=runner-1", f"--pool={POOL}", f"--workdir={workdir}"]
    assert SECRET.encode() not in cmdline(report["pid"])
    env = report["env"]
    assert env.pop(JITCONFIG_ENV) == SECRET  # where the official runner reads it
    assert all(SECRET not in value for value in env.values())
    record_text = (work_root / "runner-1" / "instance.json").read_text()
    assert SECRET not in record_text
    await log_contains(work_root, "fake runner: started")
    assert SECRET not in (work_root / "runner-1" / "runner.log").read_text()
    assert SECRET not in repr(instance)
    assert SECRET not in repr(spec())
    assert SECRET not in repr(await provider.list())

    await provider.delete("runner-1")
    archived = (work_root / ".logs" / "runner-1.log").read_text()
    assert "sent SIGTERM" in archived
    assert SECRET not in archived


async def test_the_environment_is_scrubbed(
    make_settings: Callable[..., LocalSettings],
    work_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_leak")
    monkeypatch.setenv("GITHUB_APP_PRIVATE_KEY", "-----BEGIN")
    monkeypatch.setenv("GH_HOST", "github.example")
    monkeypatch.setenv("RUNNERSCALE_X", "daemon-setting")
    monkeypatch.setenv("MY_SECRET", "s3cret")
    monkeypatch.setenv("aws_secret_access_key", "aws")
    monkeypatch.setenv("DB_PASSWORD", "pw")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
    monkeypatch.setenv("KEEP_ME", "kept")
    provider = LocalProvider(make_settings())
    await provider.create(spec())
    env = (await report_of(work_root))["env"]
    for name in (
        "GITHUB_TOKEN",
        "GITHUB_APP_PRIVATE_KEY",
        "GH_HOST",
        "RUNNERSCALE_X",
        "MY_SECRET",
        "aws_secret_access_key",
        "DB_PASSWORD",
        "SSH_AUTH_SOCK",
    ):
        assert name not in env
    assert env["KEEP_ME"] == "kept"
    assert env["FOO"] == "bar"  # settings.env
    assert env["PATH"] == os.environ["PATH"]
    await provider.delete("runner-1")


@pytest.mark.parametrize(
    ("name", "scrubbed"),
    [
        ("RUNNERSCALE_GITHUB_TOKEN", True),
        ("RUNNERSCALE_CONFIG", True),
        ("GITHUB_TOKEN", True),
        ("GITHUB_WORKSPACE", True),
        ("GH_TOKEN", True),
        ("GH_ENTERPRISE_TOKEN", True),
        ("NPM_TOKEN", True),
        ("webhook_secret", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("AWS_ACCESS_KEY_ID", True),
        ("AWS_SESSION_TOKEN", True),
        ("PGPASSWORD", True),
        ("APP_PRIVATE_KEY", True),
        ("GOOGLE_APPLICATION_CREDENTIALS", True),
        ("OPENAI_API_KEY", True),
        ("SSH_AUTH_SOCK", True),
        ("ACTIONS_RUNNER_INPUT_URL", True),  # the runner takes them as its options
        ("ACTIONS_RUNNER_INPUT_JITCONFIG", True),  # only the provider's own reaches it
        ("PATH", False),
        ("HOME", False),
        ("LANG", False),
        ("RUNNER_ALLOW_RUNASROOT", False),
        ("ACTIONS_RUNNER_HOOK_JOB_STARTED", False),
        ("HTTPS_PROXY", False),
    ],
)
def test_scrub_rule(name: str, scrubbed: bool) -> None:
    assert (name not in scrub_environment({name: "value"})) is scrubbed


async def test_a_jitconfig_placeholder_still_puts_it_on_the_command_line(
    make_settings: Callable[..., LocalSettings], work_root: Path, fake_runner: Path
) -> None:
    """The old way works (``config validate`` warns about it): the JIT config replaces
    ``{jitconfig}``, and is in the environment too."""
    command = (sys.executable, str(fake_runner), "--jitconfig", "{jitconfig}")
    provider = LocalProvider(make_settings(command=command))
    await provider.create(spec())
    report = await report_of(work_root)
    assert report["argv"] == ["--jitconfig", SECRET]
    assert report["env"][JITCONFIG_ENV] == SECRET
    record_text = (work_root / "runner-1" / "instance.json").read_text()
    assert SECRET not in record_text
    assert "{jitconfig}" in record_text  # the command is recorded with its placeholder
    await log_contains(work_root, "fake runner: started")
    assert SECRET not in (work_root / "runner-1" / "runner.log").read_text()
    await provider.delete("runner-1")


async def test_other_users_can_read_nothing_of_a_runner(
    make_settings: Callable[..., LocalSettings], work_root: Path, usual_umask: None
) -> None:
    provider = LocalProvider(make_settings())
    await provider.create(spec())
    await report_of(work_root)
    runner = work_root / "runner-1"
    assert {
        name: mode(path)
        for name, path in {
            "pool folder": work_root,
            "runner folder": runner,
            "work": runner / "work",
            "record": runner / "instance.json",
            "log": runner / "runner.log",
            "lock": work_root / ".lock",
        }.items()
    } == {
        "pool folder": 0o700,
        "runner folder": 0o700,
        "work": 0o700,
        "record": 0o600,
        "log": 0o600,
        "lock": 0o600,
    }
    await provider.delete("runner-1")
    assert (mode(work_root / ".logs"), mode(work_root / ".logs" / "runner-1.log")) == (0o700, 0o600)


def test_the_pool_folder_of_an_older_runnerscale_is_narrowed(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    work_root.mkdir()
    work_root.chmod(0o755)
    LocalProvider(make_settings())
    assert mode(work_root) == 0o700


# -- capacity, exits, reaping


async def test_capacity_is_enforced_and_freed_when_a_runner_exits(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    provider = LocalProvider(make_settings(capacity=1))
    await provider.create(spec("runner-1"))
    with pytest.raises(ProviderError, match="capacity") as refused:
        await provider.create(spec("runner-2"))
    message = str(refused.value)
    assert POOL in message
    assert "1 of 1" in message
    assert SECRET not in message
    assert not (work_root / "runner-2").exists()

    os.kill((await report_of(work_root))["pid"], signal.SIGKILL)
    await wait_exited(provider)
    second = await provider.create(spec("runner-2"))
    assert second.running
    instances = {instance.id: instance for instance in await provider.list()}
    assert instances["runner-1"].exit_code == -signal.SIGKILL
    assert instances["runner-2"].running
    await provider.delete("runner-1")
    await provider.delete("runner-2")


async def test_an_exited_runner_reports_its_code_and_is_reaped(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    provider = LocalProvider(make_settings("exit:3"))
    await provider.create(spec())
    pid = (await report_of(work_root))["pid"]
    exited = await wait_exited(provider)
    assert exited.exit_code == 3
    [listed] = await provider.list()
    assert not listed.running
    assert listed.exit_code == 3
    assert "exited with code 3" in listed.detail
    assert "fake runner: failing now" in listed.detail  # the log's last lines
    fields = proc_stat(pid)
    assert fields is None or fields[0] != "Z", "the exited runner was left a zombie"
    record = json.loads((work_root / "runner-1" / "instance.json").read_text())
    assert record["exit_code"] == 3

    # A fresh provider (a restarted daemon) still knows the code: it is in the record.
    [again] = await LocalProvider(make_settings()).list()
    assert again.exit_code == 3
    await provider.delete("runner-1")
    assert not (work_root / "runner-1").exists()
    assert "failing now" in (work_root / ".logs" / "runner-1.log").read_text()


async def test_a_clean_exit_has_no_log_in_its_detail(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    provider = LocalProvider(make_settings("exit:0"))
    await provider.create(spec())
    exited = await wait_exited(provider)
    assert exited.exit_code == 0
    assert "failing now" not in exited.detail
    await provider.delete("runner-1")


# -- removing


async def test_delete_sends_sigterm_first(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    provider = LocalProvider(make_settings("trap"))
    await provider.create(spec())
    pid = (await report_of(work_root))["pid"]
    await provider.delete("runner-1")
    assert not alive(pid)
    assert not (work_root / "runner-1").exists()
    archived = (work_root / ".logs" / "runner-1.log").read_text()
    assert "fake runner: got SIGTERM" in archived
    assert "sent SIGTERM" in archived
    assert "SIGKILL" not in archived


async def test_delete_escalates_to_sigkill(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    provider = LocalProvider(make_settings("ignore", stop_grace=0.5))
    await provider.create(spec())
    pid = (await report_of(work_root))["pid"]
    await provider.delete("runner-1")
    assert not alive(pid)
    assert not (work_root / "runner-1").exists()
    archived = (work_root / ".logs" / "runner-1.log").read_text()
    assert "sent SIGTERM" in archived
    assert "sent SIGKILL" in archived


async def test_delete_kills_what_the_runner_left_in_its_group(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    provider = LocalProvider(make_settings("child", stop_grace=0.5))
    await provider.create(spec())
    report = await report_of(work_root)
    assert alive(report["child"])
    await provider.delete("runner-1")
    assert not alive(report["pid"])
    assert not alive(report["child"])
    archived = (work_root / ".logs" / "runner-1.log").read_text()
    assert "fake runner: got SIGTERM" in archived  # the leader obeyed, its child did not
    assert "sent SIGKILL" in archived


@pytest.mark.slow
async def test_delete_does_not_block_the_event_loop(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    provider = LocalProvider(make_settings("ignore", stop_grace=3.0))
    await provider.create(spec())
    await report_of(work_root)
    deleting = asyncio.create_task(provider.delete("runner-1"))
    # The loop runs this test while the delete waits out the grace period.
    await log_contains(work_root, "sent SIGTERM")
    assert not deleting.done()
    await deleting
    assert "sent SIGKILL" in (work_root / ".logs" / "runner-1.log").read_text()


async def test_deleting_twice_or_an_unknown_id_is_fine(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    provider = LocalProvider(make_settings())
    await provider.create(spec())
    await report_of(work_root)
    await provider.delete("runner-1")
    await provider.delete("runner-1")
    await provider.delete("never-existed")
    await provider.delete("../etc")
    await provider.delete(".logs")
    await provider.delete("")
    assert await provider.get("../etc") is None
    assert (work_root / ".logs" / "runner-1.log").exists()


async def test_close_leaves_runners_running(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    provider = LocalProvider(make_settings())
    await provider.create(spec())
    pid = (await report_of(work_root))["pid"]
    await provider.close()
    assert alive(pid)
    await LocalProvider(make_settings()).delete("runner-1")
    assert not alive(pid)


# -- restarts and adoption


async def test_a_fresh_provider_adopts_running_runners(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    first = LocalProvider(make_settings())
    await first.create(spec())
    pid = (await report_of(work_root))["pid"]
    second = LocalProvider(make_settings())
    [adopted] = await second.list()
    assert adopted.id == "runner-1"
    assert adopted.running
    await second.delete("runner-1")
    assert not alive(pid)
    assert await first.list() == []


DAEMON = """
import asyncio, json, sys
from pathlib import Path
from runnerscale.model import InstanceSpec
from runnerscale.providers.local import LocalProvider, LocalSettings

async def main(config):
    provider = LocalProvider(LocalSettings(
        pool=config["pool"], command=tuple(config["command"]),
        work_root=Path(config["work_root"]), capacity=4, env=config["env"],
    ))
    for name in config["names"]:
        await provider.create(InstanceSpec(runner_name=name, pool=config["pool"],
                                           jitconfig=config["jitconfig"]))
    await provider.close()

asyncio.run(main(json.loads(sys.argv[1])))
"""


async def test_runners_survive_the_daemon_and_a_restarted_one_adopts_them(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    settings = make_settings()
    config = {
        "pool": POOL,
        "command": list(settings.command),
        "work_root": str(work_root),
        "env": dict(settings.env),
        "names": ["runner-1", "runner-2"],
        "jitconfig": SECRET,
    }
    # The "daemon" is another process that starts two runners and exits.
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, "-c", DAEMON, json.dumps(config), stderr=asyncio.subprocess.PIPE
    )
    _, err = await daemon.communicate()
    assert daemon.returncode == 0, err.decode()
    one = (await report_of(work_root, "runner-1"))["pid"]
    two = (await report_of(work_root, "runner-2"))["pid"]
    assert alive(one)
    assert alive(two)
    assert proc_stat(one)[1] != str(os.getpid())  # type: ignore[index]  # not our child

    restarted = LocalProvider(settings)
    instances = {instance.id: instance for instance in await restarted.list()}
    assert set(instances) == {"runner-1", "runner-2"}
    assert all(instance.running for instance in instances.values())

    # An adopted runner that exits: no longer running, its exit code is unknown.
    os.kill(two, signal.SIGKILL)
    gone = await wait_exited(restarted, "runner-2")
    assert gone.exit_code is None

    await restarted.delete("runner-1")
    await restarted.delete("runner-2")
    assert not alive(one)
    assert await restarted.list() == []


def fake_record(
    root: Path, name: str, *, pid: int | None, start_time: int | None, **extra: Any
) -> Path:
    directory = root / name
    (directory / "work").mkdir(parents=True)
    record = {
        "version": 1,
        "controller_id": "runnerscale",
        "pool": POOL,
        "runner_name": name,
        "created_at": time.time(),
        "command": ["run.sh"],
        "boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
        "pid": pid,
        "start_time": start_time,
    }
    record.update(extra)
    (directory / "instance.json").write_text(json.dumps(record))
    return directory


async def test_a_reused_pid_is_not_mistaken_for_the_runner(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    provider = LocalProvider(make_settings())  # creates work_root
    ours = int(proc_stat(os.getpid())[19])  # type: ignore[index]
    # Our own pid with another start time: the runner's pid was reused by this test process.
    fake_record(work_root, "reused", pid=os.getpid(), start_time=ours + 1)
    # Our own pid and start time, but recorded before a reboot.
    fake_record(work_root, "rebooted", pid=os.getpid(), start_time=ours, boot_id="before")
    instances = {instance.id: instance for instance in await provider.list()}
    assert not instances["reused"].running
    assert not instances["rebooted"].running
    assert instances["reused"].exit_code is None
    await provider.delete("reused")  # must not signal this test process
    await provider.delete("rebooted")
    assert not (work_root / "reused").exists()
    assert not (work_root / "rebooted").exists()


def start_in_own_session(cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], cwd=cwd, start_new_session=True
    )


async def test_a_process_started_but_not_recorded_is_recovered(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    """The daemon died between starting a runner and recording its pid."""
    provider = LocalProvider(make_settings())
    directory = fake_record(work_root, "runner-1", pid=None, start_time=None)
    unrecorded = start_in_own_session(directory / "work")
    try:
        [instance] = await provider.list()
        assert instance.running
        record = json.loads((directory / "instance.json").read_text())
        assert record["pid"] == unrecorded.pid
        await provider.delete("runner-1")
        assert not alive(unrecorded.pid)
        assert not directory.exists()
    finally:
        unrecorded.kill()
        unrecorded.wait(timeout=10)


async def test_other_controllers_runners_are_left_alone(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    provider = LocalProvider(make_settings())
    await provider.create(spec())
    pid = (await report_of(work_root))["pid"]
    other = LocalProvider(make_settings(controller_id="someone-else"))
    assert await other.list() == []
    assert await other.get("runner-1") is None
    await other.delete("runner-1")
    assert alive(pid)
    with pytest.raises(ProviderError, match="another controller"):
        await other.create(spec())
    assert alive(pid)
    await provider.delete("runner-1")


# -- names and directories


async def test_a_name_with_a_live_runner_is_refused_and_a_stale_one_replaced(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    provider = LocalProvider(make_settings())
    await provider.create(spec())
    first = (await report_of(work_root))["pid"]
    with pytest.raises(ProviderError, match="already exists"):
        await provider.create(spec())
    assert alive(first)

    os.kill(first, signal.SIGKILL)
    await wait_exited(provider)
    (work_root / "runner-1" / "work" / "leftover").write_text("from the first runner")
    (work_root / "runner-1" / "work" / "report.json").unlink()
    await provider.create(spec())  # the stale directory is replaced by a fresh one
    second = (await report_of(work_root))["pid"]
    assert second != first
    assert not (work_root / "runner-1" / "work" / "leftover").exists()
    assert (work_root / ".logs" / "runner-1.log").exists()  # the first runner's log
    await provider.delete("runner-1")


async def test_unusable_names_are_refused(make_settings: Callable[..., LocalSettings]) -> None:
    provider = LocalProvider(make_settings())
    for name in ("../escape", ".logs", "a/b", "", "x" * 200):
        with pytest.raises(ProviderError, match="not usable"):
            await provider.create(spec(name))


async def test_a_command_that_cannot_start_leaves_nothing_behind(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    provider = LocalProvider(make_settings(command=("/nonexistent/run.sh",)))
    with pytest.raises(ProviderError) as refused:
        await provider.create(spec())
    message = str(refused.value)
    assert "/nonexistent/run.sh" in message
    assert POOL in message
    assert SECRET not in message
    assert refused.value.__cause__ is None
    assert not (work_root / "runner-1").exists()
    assert await provider.list() == []


async def test_a_removed_runners_log_is_truncated_and_old_logs_pruned(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    logs = work_root / ".logs"
    logs.mkdir(parents=True)
    old = time.time() - 3600
    for number in range(KEPT_LOGS + 5):
        path = logs / f"old-{number:03d}.log"
        path.write_text("old\n")
        os.utime(path, (old + number, old + number))
    provider = LocalProvider(make_settings("flood"))
    await provider.create(spec())
    exited = await wait_exited(provider)
    assert exited.exit_code == 1
    assert "the very last line" in exited.detail
    assert len(exited.detail) < 3000
    await provider.delete("runner-1")

    archived = (logs / "runner-1.log").read_bytes()
    assert len(archived) <= KEPT_LOG_BYTES + 100
    assert archived.startswith(b"[... earlier output removed ...]\n")
    assert b"the very last line" in archived
    assert b"line 00000" not in archived
    kept = sorted(path.name for path in logs.glob("*.log"))
    assert len(kept) == KEPT_LOGS
    assert "runner-1.log" in kept
    assert "old-000.log" not in kept  # the oldest went first
    assert "old-204.log" in kept


# -- configuration


def test_unusable_settings_are_refused(make_settings: Callable[..., LocalSettings]) -> None:
    with pytest.raises(ProviderError, match="empty"):
        LocalProvider(make_settings(command=()))
    with pytest.raises(ProviderError, match="capacity"):
        LocalProvider(make_settings(capacity=0))


def test_default_capacity_is_the_cpu_count() -> None:
    assert default_capacity() == len(os.sched_getaffinity(0))
    settings = LocalSettings(pool="p", command=("x",), work_root=Path("/tmp"))
    assert settings.capacity == default_capacity()


def test_dropping_to_a_user_needs_root(
    make_settings: Callable[..., LocalSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local.os, "geteuid", lambda: 1000)
    with pytest.raises(ProviderError, match="not root"):
        LocalProvider(make_settings(user="nobody"))


def test_an_unknown_user_is_refused(make_settings: Callable[..., LocalSettings]) -> None:
    with pytest.raises(ProviderError, match="does not exist"):
        LocalProvider(make_settings(user="no-such-user-here"))


ROOT_ONLY = pytest.mark.skipif(
    os.geteuid() != 0, reason="switching users needs root; run the tests as root to cover it"
)


@ROOT_ONLY
def test_the_user_must_be_able_to_reach_the_work_root(
    make_settings: Callable[..., LocalSettings], tmp_path: Path
) -> None:
    tmp_path.chmod(0o700)
    with pytest.raises(ProviderError, match="cannot reach"):
        LocalProvider(make_settings(user="nobody"))


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A work_root every user can reach (pytest's tmp_path is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="runnerscale-local-"))
    root.chmod(0o755)
    yield root / "runners"
    kill_everything(root)
    shutil.rmtree(root)


@ROOT_ONLY
async def test_runs_the_runner_as_the_configured_user(shared_root: Path) -> None:
    script = (
        'id -u > uid; id -G > groups; echo "$HOME $USER" > home; touch written; '
        f'echo "${JITCONFIG_ENV}" > jitconfig; echo "running as $(id -un)"; exec sleep 600'
    )
    provider = LocalProvider(
        LocalSettings(
            pool=POOL,
            command=("/bin/sh", "-c", script),
            work_root=shared_root,
            capacity=2,
            user="nobody",
            stop_grace=5.0,
        )
    )
    await provider.create(spec())
    directory = shared_root / "runner-1"
    work = directory / "work"
    await wait_until((work / "home").exists)
    await log_contains(shared_root, "running as nobody")
    nobody = 65534
    assert (work / "uid").read_text().split() == [str(nobody)]
    assert (work / "groups").read_text().split() == [str(nobody)]
    assert (work / "home").read_text().split() == ["/nonexistent", "nobody"]
    assert (work / "written").stat().st_uid == nobody
    assert (work / "jitconfig").read_text() == f"{SECRET}\n"
    assert work.stat().st_uid == nobody
    # What tells the daemon which processes to kill stays out of the runner's reach.
    assert (directory / "instance.json").stat().st_uid == 0
    assert directory.stat().st_uid == 0
    assert (directory / "runner.log").stat().st_uid == 0
    # The runner's user passes through to its work/, but lists nothing.
    assert (mode(shared_root), mode(directory)) == (0o711, 0o711)
    await provider.delete("runner-1")
    assert not directory.exists()


async def test_pools_sharing_a_work_root_share_the_cap_but_not_their_runners(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    ours = LocalProvider(make_settings(capacity=1))
    theirs = LocalProvider(make_settings(capacity=1, pool="other-pool"))
    await ours.create(spec())
    pid = (await report_of(work_root))["pid"]
    assert await theirs.list() == []
    assert await theirs.get("runner-1") is None
    await theirs.delete("runner-1")  # not its pool's: never touched
    assert alive(pid)
    with pytest.raises(ProviderError, match="capacity"):
        await theirs.create(
            InstanceSpec(runner_name="runner-2", pool="other-pool", jitconfig=SECRET)
        )
    roomier = LocalProvider(make_settings(capacity=2, pool="other-pool"))
    with pytest.raises(ProviderError, match="another controller or pool"):
        await roomier.create(
            InstanceSpec(runner_name="runner-1", pool="other-pool", jitconfig=SECRET)
        )
    assert [instance.id for instance in await ours.list()] == ["runner-1"]
    await ours.delete("runner-1")
    assert not alive(pid)


async def test_a_start_refused_with_a_value_error_leaves_nothing(
    make_settings: Callable[..., LocalSettings], work_root: Path
) -> None:
    provider = LocalProvider(make_settings(env={"BROKEN": "a\0b"}))
    with pytest.raises(ProviderError, match="embedded null byte") as refused:
        await provider.create(spec())
    assert SECRET not in str(refused.value)
    assert not (work_root / "runner-1").exists()
    assert await provider.list() == []
