"""The ec2 runner AMI's boot script (images/ec2/boot.sh), run with bash on this host.

Real parts: the aws CLI (on PATH), moto in server mode on loopback (EC2 and SSM:
``tests/moto_server.py``), the script's own curl calls. Stand-ins: the instance metadata
service (:mod:`tests.fake_imds`, on loopback: the script's RUNNERSCALE_IMDS_URL, and the aws
CLI's AWS_EC2_METADATA_SERVICE_ENDPOINT, so the CLI takes the instance role's credentials from
it as on an instance), and the official runner: a ``run.sh`` that records how it was started,
then waits for the test to let it go. As root (CI), the runner runs as ``nobody``, so the drop
of privileges is real too.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runnerscale.providers.ec2 import tags
from tests.fake_imds import FakeIMDS, InstanceView, rebalance_notice, spot_notice
from tests.moto_server import Ec2Setup

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

BOOT = Path(__file__).resolve().parents[2] / "images" / "ec2" / "boot.sh"
PREFIX = "/runnerscale/jit"
SECRET = "eyJydW5uZXIiOiJlYzItc2VjcmV0LWppdC1jb25maWcifQ-9a8b7c6d"
JITCONFIG_ENV = "ACTIONS_RUNNER_INPUT_JITCONFIG"
AWS = shutil.which("aws")

# The stand-in for the official run.sh: records its environment (0600, as the runner user),
# arguments, user and directory, drops the secret from its environment as the official runner
# does, says it started, and waits for $here/release, whose content is its exit code (or, should
# the test end first, until its folder is gone).
RUN_SH = """\
#!/usr/bin/env bash
set -eu
here=$(cd "$(dirname "$0")" && pwd)
umask > "$here/record/umask"
umask 077
env > "$here/record/env"
printf '%s\\n' "$#" "$@" > "$here/record/args"
id -u > "$here/record/uid"
pwd > "$here/record/cwd"
echo "$$" > "$here/record/pid"
unset ACTIONS_RUNNER_INPUT_JITCONFIG
trap 'echo term > "$here/record/got-term"; exit 143' TERM
echo started > "$here/record/started"
while [ ! -e "$here/release" ] && [ -d "$here/record" ]; do sleep 0.05; done
exit "$(cat "$here/release")"
"""


@dataclass
class Instance:
    """One instance in moto, as the daemon launched it (tags, no parameter yet), and its IMDS."""

    setup: Ec2Setup
    view: InstanceView
    imds: FakeIMDS

    @property
    def id(self) -> str:
        return self.view.instance_id

    @property
    def parameter(self) -> str:
        return f"{PREFIX}/{self.id}"

    def put_parameter(self, value: str = SECRET) -> None:
        self.setup.ssm.put_parameter(Name=self.parameter, Value=value, Type="SecureString")

    def parameter_exists(self) -> bool:
        found = self.setup.ssm.get_parameters(Names=[self.parameter])
        return bool(found["Parameters"])

    def tags(self) -> dict[str, str]:
        described = self.setup.ec2.describe_tags(
            Filters=[{"Name": "resource-id", "Values": [self.id]}]
        )
        return {tag["Key"]: tag["Value"] for tag in described["Tags"]}


@pytest.fixture
def instance(ec2_setup: Ec2Setup) -> Iterator[Instance]:
    """Launched from the launch template with the tags the provider gives; its metadata shows
    them."""
    launch_tags = {
        tags.CONTROLLER: "rs-test",
        tags.POOL: "ec2-x64",
        tags.RUNNER: "rs-ec2-x64-1",
        tags.SSM_PREFIX: PREFIX,
    }
    launched = ec2_setup.ec2.run_instances(
        LaunchTemplate={"LaunchTemplateName": ec2_setup.launch_template_name},
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [{"Key": key, "Value": value} for key, value in launch_tags.items()],
            }
        ],
    )["Instances"][0]
    view = InstanceView(
        instance_id=launched["InstanceId"],
        region=ec2_setup.region,
        tags={tag["Key"]: tag["Value"] for tag in launched["Tags"]},
    )
    with FakeIMDS(view) as imds:
        yield Instance(ec2_setup, view, imds)


@dataclass
class Layout:
    """The runner's folder (run.sh, record/) and the script's temporary folder."""

    home: Path
    tmp: Path
    user: str

    @property
    def record(self) -> Path:
        return self.home / "record"

    def read(self, name: str) -> str:
        return (self.record / name).read_text()

    def started(self) -> bool:
        return (self.record / "started").exists()

    def release(self, code: int = 0) -> None:
        (self.home / "release").write_text(str(code))


@pytest.fixture
def layout() -> Iterator[Layout]:
    # Outside pytest's tmp_path, which only root may enter: the runner user must reach run.sh.
    home = Path(tempfile.mkdtemp(prefix="rs-ec2-runner-"))
    tmp = Path(tempfile.mkdtemp(prefix="rs-ec2-boot-tmp-"))
    home.chmod(0o755)
    run_sh = home / "run.sh"
    run_sh.write_text(RUN_SH)
    run_sh.chmod(0o755)
    user = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    (home / "record").mkdir(mode=0o700)
    entry = pwd.getpwnam(user)
    os.chown(home / "record", entry.pw_uid, entry.pw_gid)
    try:
        yield Layout(home, tmp, user)
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


def boot_env(instance: Instance, layout: Layout, **extra: str) -> dict[str, str]:
    """The unit's environment: no AWS credentials (they come from IMDS), moto as the endpoint."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "RUNNERSCALE_", "ACTIONS_RUNNER_"))
    }
    env.update(
        HOME=str(layout.tmp),
        TMPDIR=str(layout.tmp),
        AWS_CONFIG_FILE=str(layout.tmp / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(layout.tmp / "no-aws-credentials"),
        AWS_ENDPOINT_URL=instance.setup.server.url,
        RUNNER_HOME=str(layout.home),
        RUNNERSCALE_RUNNER_USER=layout.user,
        RUNNERSCALE_IMDS_URL=instance.imds.url,
        RUNNERSCALE_NOTICE_INTERVAL="0.2",
    )
    env.update(extra)
    return env


@pytest.fixture
def start() -> Iterator[Callable[[dict[str, str]], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def _start(env: dict[str, str]) -> subprocess.Popen[str]:
        assert AWS is not None, "the aws CLI is not on PATH (pip install awscli)"
        process = subprocess.Popen(
            ["bash", str(BOOT)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, runner included: see below
        )
        started.append(process)
        return process

    yield _start
    for process in started:
        # A test that failed midway leaves the runner waiting: end the script and everything it
        # started, which would otherwise hold the output pipes open.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def finish(process: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str]:
    _out, err = process.communicate(timeout=timeout)
    return process.returncode, err


def runner_running(
    instance: Instance, layout: Layout, start: Callable[[dict[str, str]], subprocess.Popen[str]]
) -> subprocess.Popen[str]:
    """The parameter written, the script started, and its runner running."""
    instance.put_parameter()
    process = start(boot_env(instance, layout))
    wait_until(layout.started, "the runner started")
    return process


def command_lines_with(secret: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            data = cmdline.read_bytes()
        except OSError:
            continue  # ended meanwhile
        if secret.encode() in data:
            found.append(data.replace(b"\0", b" ").decode(errors="replace"))
    return found


def environments_with(secret: str) -> set[int]:
    """The processes whose environment holds ``secret`` (of those this user may read)."""
    found = set()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            data = environ.read_bytes()
        except OSError:
            continue
        if secret.encode() in data:
            found.add(int(environ.parent.name))
    return found


def readable_files_with(
    secret: str, *roots: Path, recursive: bool = True, since: float = 0.0
) -> list[str]:
    """Files in ``roots`` changed since ``since`` that hold ``secret`` and that a user but their
    owner may read."""
    found = []
    for root in roots:
        for path in root.rglob("*") if recursive else root.iterdir():
            try:
                mode = path.stat()
                if not path.is_file() or mode.st_mode & 0o077 == 0 or mode.st_mtime < since:
                    continue
                if secret.encode() in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue
    return found


def test_the_runner_gets_the_jit_config_in_its_environment_only_and_the_parameter_goes(
    instance: Instance, layout: Layout, start: Callable[[dict[str, str]], subprocess.Popen[str]]
) -> None:
    began = time.time()
    process = start(boot_env(instance, layout))
    # The daemon writes the parameter after the launch: the script waits for it.
    time.sleep(0.5)
    instance.put_parameter()
    wait_until(layout.started, "the runner started")

    # While the runner runs: the secret is on no command line, in the environment of run.sh
    # alone (as the runner user), and in no file another user may read.
    assert command_lines_with(SECRET) == []
    runner_pid = int(layout.read("pid"))
    if os.geteuid() == 0:
        assert environments_with(SECRET) == {runner_pid}
    assert readable_files_with(SECRET, layout.home, layout.tmp) == []  # and the script's TMPDIR
    assert (
        readable_files_with(SECRET, Path("/tmp"), Path("/dev/shm"), recursive=False, since=began)
        == []
    )
    assert not instance.parameter_exists()

    layout.release(0)
    code, err = finish(process)
    assert code == 0, err
    assert SECRET not in err
    env = dict(line.split("=", 1) for line in layout.read("env").splitlines() if "=" in line)
    assert env[JITCONFIG_ENV] == SECRET
    assert layout.read("args") == "0\n"  # nothing on run.sh's command line
    assert int(layout.read("uid")) == pwd.getpwnam(layout.user).pw_uid
    assert layout.read("cwd").strip() == str(layout.home)
    assert layout.read("umask") == "0022\n"  # the script's own 077 is not the jobs'
    assert (layout.record / "env").stat().st_mode & 0o077 == 0
    for key, value in [
        ("RUNNERSCALE_RUNNER_NAME", "rs-ec2-x64-1"),
        ("RUNNERSCALE_POOL", "ec2-x64"),
        ("RUNNER_MANUALLY_TRAP_SIG", "1"),
        ("USER", layout.user),
    ]:
        assert env[key] == value
    assert not any(key.startswith("AWS_ACCESS") for key in env)  # the role's, from IMDS
    assert f"instance {instance.id} in {instance.view.region}: reading {instance.parameter}" in err
    assert f"read and deleted {instance.parameter}" in err
    assert "starting runner rs-ec2-x64-1 of pool ec2-x64" in err
    assert "runner exited with code 0" in err
    # IMDSv2 only: every GET came with a session token.
    assert instance.view.refused == []
    assert "PUT /latest/api/token" in instance.view.requests
    assert "GET /latest/meta-data/iam/security-credentials/" in instance.view.requests
    assert tags.INTERRUPTION not in instance.tags()


def test_the_runners_exit_code_is_the_scripts(
    instance: Instance, layout: Layout, start: Callable[[dict[str, str]], subprocess.Popen[str]]
) -> None:
    process = runner_running(instance, layout, start)
    layout.release(7)
    code, err = finish(process)
    assert code == 7
    assert "runner exited with code 7" in err


def test_a_spot_notice_tags_the_instance_once_after_a_rebalance_recommendation(
    instance: Instance, layout: Layout, start: Callable[[dict[str, str]], subprocess.Popen[str]]
) -> None:
    process = runner_running(instance, layout, start)
    assert tags.INTERRUPTION not in instance.tags()

    instance.view.rebalance = rebalance_notice()
    wait_until(
        lambda: instance.tags().get(tags.INTERRUPTION) == "rebalance", "tagged for the rebalance"
    )
    instance.view.spot_action = spot_notice()
    wait_until(
        lambda: instance.tags().get(tags.INTERRUPTION) == "spot-interruption",
        "tagged for the spot interruption",
    )
    time.sleep(1)  # five more rounds of the watcher, had it not stopped
    layout.release(0)
    code, err = finish(process)
    assert code == 0, err
    assert err.count(f"tagging {instance.id} {tags.INTERRUPTION}=rebalance") == 1
    assert err.count(f"tagging {instance.id} {tags.INTERRUPTION}=spot-interruption") == 1
    assert {"rebalance", "spot-interruption"} == set(tags.INTERRUPTION_KINDS)


def test_a_stop_while_the_runner_runs_is_passed_to_it_and_exits_0(
    instance: Instance, layout: Layout, start: Callable[[dict[str, str]], subprocess.Popen[str]]
) -> None:
    process = runner_running(instance, layout, start)
    process.send_signal(signal.SIGTERM)
    code, err = finish(process)
    assert code == 0, err
    assert layout.read("got-term") == "term\n"
    assert "runner stopped (exit code 143)" in err


def test_without_a_parameter_it_gives_up_with_exit_4_and_says_where_to_look(
    instance: Instance, layout: Layout, start: Callable[[dict[str, str]], subprocess.Popen[str]]
) -> None:
    process = start(boot_env(instance, layout, RUNNERSCALE_PARAMETER_TIMEOUT="0"))
    code, err = finish(process)
    assert code == 4, err
    assert f"{instance.parameter} is not readable yet:" in err
    assert "ParameterNotFound" in err
    assert f"gave up on {instance.parameter} after 0s" in err
    assert "images/ec2/iam/instance-policy.json" in err
    assert not layout.started()


def test_the_prefix_comes_from_the_instance_tag_or_the_environment(
    instance: Instance, layout: Layout, start: Callable[[dict[str, str]], subprocess.Popen[str]]
) -> None:
    assert instance.view.tags is not None
    instance.view.tags[tags.SSM_PREFIX] = "/team-a/jit"
    process = start(boot_env(instance, layout, RUNNERSCALE_PARAMETER_TIMEOUT="0"))
    _code, err = finish(process)
    assert f"reading /team-a/jit/{instance.id}" in err

    instance.view.tags = None  # tags not allowed in the metadata: the default prefix
    process = start(boot_env(instance, layout, RUNNERSCALE_PARAMETER_TIMEOUT="0"))
    _code, err = finish(process)
    assert f"reading /runnerscale/jit/{instance.id}" in err

    process = start(
        boot_env(instance, layout, RUNNERSCALE_PARAMETER_TIMEOUT="0", RUNNERSCALE_SSM_PREFIX="/b/")
    )
    code, err = finish(process)
    assert code == 2
    assert "the SSM parameter prefix '/b/' is not an absolute parameter path" in err


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("RUNNERSCALE_RUNNER_USER", "no-such-user-rs", "there is no user 'no-such-user-rs'"),
        ("RUNNERSCALE_RUNNER_USER", "root", "which is root: jobs must not run as root"),
        ("RUNNER_HOME", "/nonexistent/runner", "/nonexistent/runner/run.sh is missing"),
        ("RUNNERSCALE_PARAMETER_TIMEOUT", "ten", "give a whole number of seconds"),
    ],
)
def test_a_bad_setting_exits_2_and_names_it(
    instance: Instance,
    layout: Layout,
    start: Callable[[dict[str, str]], subprocess.Popen[str]],
    setting: str,
    value: str,
    message: str,
) -> None:
    process = start(boot_env(instance, layout, **{setting: value}))
    code, err = finish(process)
    assert code == 2, err
    assert message in err
    assert instance.view.requests == []  # before anything else
