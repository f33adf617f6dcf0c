"""The external backend through the real contract: runnerscale runs the shell test providers
under ``bin/`` (real processes, a clean environment, stdin and stdout), and the instance
side's credentials are an in-memory InstanceAccess (our own boundary)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from runnerscale.model import Instance, InstanceSpec
from runnerscale.protocols import GitHubError, ProviderError, RemovesAll
from runnerscale.providers.external import contract
from runnerscale.providers.external.provider import GARM_REAP_SLACK, TOOLS_TTL
from tests.logcapture import daemon_log
from tests.providers.external.support import (
    BIN,
    CALLBACK_URL,
    DOWNLOAD,
    ENVIRON,
    METADATA_URL,
    Rig,
    group_alive,
)

JITCONFIG = "eyJqaXQiOiJzZWNyZXQtaml0LWNvbmZpZyJ9"
#: The bootstrap keys whose values come from the pool, its settings and the runner.
FROM_THE_POOL = (
    "name",
    "tools",
    "repo_url",
    "callback-url",
    "metadata-url",
    "instance-token",
    "extra_specs",
    "github-runner-group",
    "arch",
    "os_type",
    "flavor",
    "image",
    "pool_id",
    "proxy_config",
)


def spec(name: str = "lxd-r1", pool: str = "lxd") -> InstanceSpec:
    return InstanceSpec(runner_name=name, pool=pool, jitconfig=JITCONFIG, labels=("x64",))


def command_line(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


@pytest.fixture
def working(tmp_path: Path) -> Rig:
    return Rig(tmp_path, "working")


async def remove_everything(rig: Rig) -> None:
    """Leave no stand-in running after a test."""
    for pool in ("lxd", "other"):
        provider = rig.provider(pool=pool)
        for instance in await provider.list():
            await provider.delete(instance.id)


@pytest.mark.parametrize("version", ["v0.1.0", "v0.1.1"])
async def test_create_hands_the_provider_exactly_the_contract(working: Rig, version: str) -> None:
    provider = working.provider(interface_version=version, extra_specs={"disk_gb": 20})
    try:
        instance = await provider.create(spec())
        (call,) = working.calls("CreateInstance")
        identity = provider.identity
        expected_env = {
            "GARM_COMMAND": "CreateInstance",
            "GARM_CONTROLLER_ID": contract.controller_uuid("ctl-test"),
            "GARM_PROVIDER_CONFIG_FILE": str(working.config_file),
            "GARM_INTERFACE_VERSION": version,
            "GARM_POOL_ID": identity.pool_id,
            "http_proxy": "http://proxy.invalid:3128",
        }
        if version == "v0.1.1":
            expected_env["GARM_POOL_EXTRASPECS"] = base64.b64encode(b'{"disk_gb":20}').decode()
        assert call.env == expected_env  # nothing else of the daemon's environment
        grant = working.access.grants["lxd-r1"]
        # What the pool and the runner give; the constants are the contract's tests'.
        document = call.document
        assert {key: document[key] for key in FROM_THE_POOL} == {
            "name": "lxd-r1",
            "tools": [DOWNLOAD],
            "repo_url": "https://github.com/acme/app",
            "callback-url": CALLBACK_URL,
            "metadata-url": METADATA_URL,
            "instance-token": grant.token,
            "extra_specs": {"disk_gb": 20},
            "github-runner-group": "ci",
            "arch": "amd64",
            "os_type": "linux",
            "flavor": "default",
            "image": "ubuntu:24.04",
            "pool_id": identity.pool_id,
            "proxy_config": {
                "http_proxy": "http://proxy.invalid:3128",
                "https_proxy": "",
                "no_proxy": "",
            },
        }
        assert (document["jit_config_enabled"], document["labels"]) == (True, None)
        assert JITCONFIG.encode() not in call.stdin  # the instance fetches it from the daemon
        assert working.access.jitconfigs["lxd-r1"] == JITCONFIG
        assert working.access.lifetimes["lxd-r1"] == 300.0 + 600.0 + GARM_REAP_SLACK
        assert instance == Instance(
            id="lxd-r1",
            runner_name="lxd-r1",
            pool="lxd",
            running=True,
            detail="standin 1.0; 127.0.0.1 (private)",
        )
        assert working.events == [("command", "ok")]
    finally:
        await remove_everything(working)


async def test_configured_prefixes_pass_and_garm_names_never_do(working: Rig) -> None:
    environ = {**ENVIRON, "GARM_COMMAND": "RemoveAllInstances", "GARM_POOL_ID": "forged"}
    provider = working.provider(environ=environ, environment_variables=["LXD_", "PATH"])
    assert await provider.list() == []
    (call,) = working.calls("ListInstances")
    assert call.env["GARM_COMMAND"] == "ListInstances"
    assert call.env["GARM_POOL_ID"] == provider.identity.pool_id
    assert {name for name in call.env if not name.startswith("GARM_")} == {
        "PATH",
        "LXD_SOCKET",
        "http_proxy",
    }


async def test_the_instance_lifecycle_get_list_delete(working: Rig) -> None:
    provider = working.provider()
    try:
        await provider.create(spec("lxd-r1"))
        await provider.create(spec("lxd-r2"))
        assert sorted(i.runner_name for i in await provider.list()) == ["lxd-r1", "lxd-r2"]
        found = await provider.get("lxd-r1")
        assert found is not None
        assert found.running

        await provider.delete("lxd-r1")
        assert await provider.get("lxd-r1") is None  # exit 30: not found
        assert [i.runner_name for i in await provider.list()] == ["lxd-r2"]
        assert "lxd-r1" in working.access.revoked
        assert "lxd-r1" not in working.access.grants
        await provider.delete("lxd-r1")  # gone already: success
        delete = working.calls("DeleteInstance")[0]
        assert delete.env["GARM_INSTANCE_ID"] == "lxd-r1"
        assert delete.stdin == b""
        assert "GARM_POOL_ID" not in delete.env  # v0.1.0 gives the pool id to create and list only
    finally:
        await remove_everything(working)


async def test_stop_and_start(working: Rig) -> None:
    provider = working.provider()
    try:
        await provider.create(spec())
        await provider.stop("lxd-r1")
        stopped = await provider.get("lxd-r1")
        assert stopped is not None
        assert not stopped.running
        assert "status stopped" in stopped.detail
        await provider.start("lxd-r1")
        started = await provider.get("lxd-r1")
        assert started is not None
        assert started.running
        assert [c.env["GARM_COMMAND"] for c in working.calls()][1:4:2] == [
            "StopInstance",
            "StartInstance",
        ]
    finally:
        await remove_everything(working)


async def test_a_restarted_daemon_finds_its_instances_and_only_them(working: Rig) -> None:
    try:
        await working.provider().create(spec("lxd-r1"))
        await working.provider(pool="other").create(spec("other-r1", pool="other"))
        # A new provider object, as after a restart: the same ids, so ListInstances finds it.
        again = await working.provider().list()
        assert [(i.id, i.pool, i.running) for i in again] == [("lxd-r1", "lxd", True)]
        assert await working.provider(controller_id="another-daemon").list() == []
    finally:
        await remove_everything(working)


async def test_a_failed_boot_report_shows_as_stopped(working: Rig) -> None:
    provider = working.provider()
    try:
        await provider.create(spec())
        working.access.say("lxd-r1", "failed", "cannot download the runner")
        (instance,) = await provider.list()
        assert not instance.running
        assert "the instance reported failure: cannot download the runner" in instance.detail
    finally:
        await remove_everything(working)


async def test_a_failing_provider_is_a_provider_error_and_its_create_is_undone(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, "failing")
    provider = rig.provider()
    with pytest.raises(ProviderError) as raised:
        await provider.create(spec())
    message = str(raised.value)
    assert message.startswith(f"pool 'lxd': provider {BIN / 'failing'} CreateInstance failed")
    assert "exit code 1" in message
    assert "stderr: failed to run command: cannot reach the hypervisor" in message
    assert "stdout: partial output" in message
    # garm's clean-up: DeleteInstance by the instance's name, and the grant is revoked.
    (delete,) = rig.calls("DeleteInstance")
    assert delete.env["GARM_INSTANCE_ID"] == "lxd-r1"
    assert rig.access.revoked == ["lxd-r1"]
    assert rig.events == [("command", "failed"), ("command", "failed")]


async def test_exit_30_is_not_found(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "failing", EXIT_CODE="30")
    provider = rig.provider()
    await provider.delete("lxd-r1")  # gone: success
    assert await provider.get("lxd-r1") is None
    with pytest.raises(ProviderError, match="ListInstances failed with exit code 30"):
        await provider.list()


async def test_get_failing_otherwise_is_an_error(tmp_path: Path) -> None:
    provider = Rig(tmp_path, "failing", EXIT_CODE="2").provider()
    with pytest.raises(ProviderError, match="GetInstance failed with exit code 2"):
        await provider.get("lxd-r1")


async def test_the_instance_token_never_shows(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "failing", ECHO_STDIN="1")
    provider = rig.provider()
    with daemon_log() as log, pytest.raises(ProviderError) as raised:
        await provider.create(spec())
    token = rig.calls("CreateInstance")[0].document["instance-token"]
    assert token.startswith("itok-")
    message = str(raised.value)
    assert '"instance-token":"***"' in message  # the provider echoed it: cut out
    assert token not in message
    assert JITCONFIG not in message
    assert token not in log.getvalue()
    assert token not in repr(raised.value)
    assert token not in repr(provider.__dict__)


async def test_a_hanging_provider_is_killed_with_its_whole_group(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "hanging")
    provider = rig.provider(timeout="1s")
    with pytest.raises(ProviderError) as raised:
        await provider.list()
    assert str(raised.value) == (
        f"pool 'lxd': provider {BIN / 'hanging'} ListInstances timed out after 1s and was "
        "killed; stderr: working on it"
    )
    pid = int((rig.state / "hanging.pid").read_text())
    assert group_alive(pid) == []  # it ignored SIGTERM; SIGKILL took it and its sleeps
    assert rig.events == [("command", "timeout")]


@pytest.mark.slow
async def test_a_create_that_times_out_is_cleaned_up(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "hanging")
    provider = rig.provider(timeout="1s")
    with pytest.raises(ProviderError, match="CreateInstance timed out after 1s"):
        await provider.create(spec())
    assert [c.command for c in rig.calls()] == ["CreateInstance", "DeleteInstance"]
    assert rig.access.revoked == ["lxd-r1"]
    assert group_alive(int((rig.state / "hanging.pid").read_text())) == []


@pytest.mark.parametrize(
    ("mode", "command", "what"),
    [
        ("text", "CreateInstance", "output is not JSON"),
        ("empty", "CreateInstance", "output is empty, expected JSON"),
        ("bad_status", "CreateInstance", "invalid status 'pending_create'"),
        ("no_provider_id", "GetInstance", "missing provider_id"),
        ("object", "ListInstances", "expected a JSON array, got dict"),
        ("huge", "ListInstances", "output is not JSON"),
    ],
)
async def test_garbage_output_names_the_provider_the_command_and_the_fault(
    tmp_path: Path, mode: str, command: str, what: str
) -> None:
    rig = Rig(tmp_path, "garbage", MODE=mode)
    provider = rig.provider()
    calls = {
        "CreateInstance": lambda: provider.create(spec()),
        "GetInstance": lambda: provider.get("lxd-r1"),
        "ListInstances": provider.list,
    }
    with pytest.raises(ProviderError) as raised:
        await calls[command]()
    message = str(raised.value)
    assert message.startswith(
        f"pool 'lxd': provider {BIN / 'garbage'} {command} printed what the contract does "
        f"not allow: {what}"
    )
    assert len(message) < 3000  # the end of the output, not all of it
    assert ("command", "invalid_output") in rig.events


async def test_create_returning_status_error_is_deleted_and_fails(working: Rig) -> None:
    working.configure(CREATE_STATUS="error")
    provider = working.provider()
    with pytest.raises(ProviderError) as raised:
        await provider.create(spec())
    assert "CreateInstance returned status error for lxd-r1: quota exceeded" in str(raised.value)
    assert [c.command for c in working.calls()] == ["CreateInstance", "DeleteInstance"]
    assert list(working.instance_dirs()) == []  # the half-made instance, deleted by name
    assert working.access.revoked == ["lxd-r1"]


async def test_remove_all_with_v010_deletes_the_pools_instances_one_by_one(
    working: Rig,
) -> None:
    provider = working.provider()
    assert isinstance(provider, RemovesAll)
    try:
        await provider.create(spec("lxd-r1"))
        await provider.create(spec("lxd-r2"))
        await working.provider(pool="other").create(spec("other-r1", pool="other"))
        await provider.remove_all()
        assert await provider.list() == []
        assert [i.runner_name for i in await working.provider(pool="other").list()] == ["other-r1"]
        # v0.1.0's RemoveAllInstances names no pool: it would take the other pool's too.
        assert working.calls("RemoveAllInstances") == []
    finally:
        await provider.close()
        await remove_everything(working)


async def test_remove_all_with_v010_runs_remove_all_instances_for_the_only_pool(
    working: Rig,
) -> None:
    """The issue's case: one pool on the provider, so v0.1.0's controller-wide command removes
    that pool's instances only. Once another pool's provider is closed, the pool is alone."""
    provider = working.provider()
    other = working.provider(pool="other")
    try:
        await provider.create(spec("lxd-r1"))
        await other.close()
        await provider.remove_all()
        assert await provider.list() == []
        (call,) = working.calls("RemoveAllInstances")
        assert "GARM_POOL_ID" not in call.env
        assert call.env["GARM_CONTROLLER_ID"] == provider.identity.controller_id
    finally:
        await provider.close()
        await remove_everything(working)


async def test_remove_all_with_v011_also_runs_remove_all_instances(working: Rig) -> None:
    provider = working.provider(interface_version="v0.1.1")
    try:
        await provider.create(spec("lxd-r1"))
        await provider.remove_all()
        assert await provider.list() == []
        (call,) = working.calls("RemoveAllInstances")
        assert call.env["GARM_POOL_ID"] == provider.identity.pool_id
        assert "GARM_INSTANCE_ID" not in call.env
    finally:
        await remove_everything(working)


async def test_runner_downloads_are_cached_and_outlive_githubs_failures(working: Rig) -> None:
    now = [0.0]
    asked: list[int] = []

    async def downloads() -> list[dict[str, str]]:
        asked.append(1)
        if len(asked) > 1:
            raise GitHubError("GitHub answered 502")
        return [dict(DOWNLOAD)]

    provider = working.provider(downloads=downloads, monotonic=lambda: now[0])
    try:
        await provider.create(spec("lxd-r1"))
        await provider.create(spec("lxd-r2"))
        assert len(asked) == 1  # cached
        now[0] = TOOLS_TTL + 1
        await provider.create(spec("lxd-r3"))  # GitHub fails: the cached answer serves
        assert len(asked) == 2
        assert working.calls("CreateInstance")[-1].document["tools"] == [DOWNLOAD]
    finally:
        await remove_everything(working)


async def test_no_runner_downloads_and_github_failing_is_a_provider_error(
    working: Rig,
) -> None:
    async def downloads() -> list[dict[str, str]]:
        raise GitHubError("GitHub answered 502")

    provider = working.provider(downloads=downloads)
    with pytest.raises(ProviderError, match="cannot ask GitHub for the runner downloads"):
        await provider.create(spec())
    assert working.calls() == []
    assert working.access.grants == {}


async def test_the_bootstrap_arch_follows_the_labels_or_the_setting(working: Rig) -> None:
    try:
        await working.provider(labels=frozenset({"arm64"})).create(spec("lxd-r1"))
        await working.provider(arch="i386").create(spec("lxd-r2"))
        first, second = working.calls("CreateInstance")
        assert (first.document["arch"], second.document["arch"]) == ("arm64", "i386")
    finally:
        await remove_everything(working)


async def test_the_stand_ins_command_line_holds_no_secret(working: Rig) -> None:
    provider = working.provider()
    try:
        await provider.create(spec())
        token = working.access.grants["lxd-r1"].token
        (directory,) = working.instance_dirs()
        pid = int((directory / "pid").read_text())
        cmdline = command_line(pid)
        assert token.encode() not in cmdline
        assert JITCONFIG.encode() not in cmdline
        assert json.loads((directory / "bootstrap.json").read_text())["name"] == "lxd-r1"
    finally:
        await remove_everything(working)


async def test_an_instance_named_otherwise_is_undone_and_refused(tmp_path: Path) -> None:
    program = tmp_path / "renaming"
    program.write_text(
        "#!/bin/bash\n"
        'if [ "$GARM_COMMAND" = CreateInstance ]; then\n'
        '    echo \'{"provider_id": "vm-7", "name": "vm-7", "status": "running"}\'\n'
        "fi\n"
        'echo "$GARM_COMMAND $GARM_INSTANCE_ID" >> "${GARM_PROVIDER_CONFIG_FILE%/*}/log"\n'
    )
    program.chmod(0o755)
    rig = Rig(tmp_path, "renaming")
    rig.executable = program
    with pytest.raises(ProviderError) as raised:
        await rig.provider().create(spec())
    assert "CreateInstance named the instance 'vm-7', not 'lxd-r1'" in str(raised.value)
    assert (tmp_path / "log").read_text().splitlines()[-1] == "DeleteInstance vm-7"
    assert rig.access.revoked == ["lxd-r1"]
