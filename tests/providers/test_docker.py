"""The Docker backend against a real Docker engine (a dockerd of the session's own).

Containers here run the test runner image (``tests/docker_engine.py``) with a command of the
test's own, so no GitHub is needed: the end-to-end tests (``tests/e2e/test_docker.py``) run
the image's real entrypoint and the stand-in runner against the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import docker
import docker.errors
import pytest

from runnerscale.model import Instance, InstanceSpec
from runnerscale.protocols import ProviderError
from runnerscale.providers.docker.provider import (
    JITCONFIG_ENV,
    LABEL_CONTROLLER,
    LABEL_POOL,
    LABEL_RUNNER,
    DockerProvider,
    DockerSettings,
)
from tests.docker_engine import Engine, remove_labelled

pytestmark = pytest.mark.timeout(180)

SECRET = "jit-config-secret-value-0123456789"
SLEEP = ["sh", "-c", "echo started {runner_name}; exec sleep 600"]


def spec(name: str = "rs-test-1", pool: str = "pool-a") -> InstanceSpec:
    return InstanceSpec(runner_name=name, pool=pool, jitconfig=SECRET, labels=("self-hosted",))


@pytest.fixture
def engine_client(docker_engine: Engine) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=docker_engine.url, version="auto")
    yield client
    remove_labelled(client)
    for volume in client.volumes.list(filters={"label": LABEL_CONTROLLER}):
        volume.remove(force=True)
    client.close()


@pytest.fixture
def make_provider(
    docker_engine: Engine, runner_image: str, engine_client: docker.DockerClient
) -> Callable[..., DockerProvider]:
    """Providers are closed by the tests (closing is async); containers are removed by
    ``engine_client`` whatever happens."""

    def make(**overrides: Any) -> DockerProvider:
        settings = DockerSettings(
            pool="pool-a",
            image=runner_image,
            host=docker_engine.url,
            command=tuple(SLEEP),
            network="none",
            stop_grace=2.0,
            controller_id="rs-test",
            pull="never",
        )
        return DockerProvider(replace(settings, **overrides))

    return make


@pytest.fixture
async def provider(
    make_provider: Callable[..., DockerProvider],
) -> AsyncIterator[DockerProvider]:
    made = make_provider()
    yield made
    await made.close()


def derive_image(client: docker.DockerClient, image: str, reference: str, change: str) -> None:
    """Make ``reference``: ``image`` with one Dockerfile instruction applied (``USER root``)."""
    base = client.containers.create(image, entrypoint=["true"], network_mode="none")
    try:
        repository, tag = reference.rsplit(":", 1)
        base.commit(repository=repository, tag=tag, changes=[change])
    finally:
        base.remove(force=True)


async def wait_for_instance(
    provider: DockerProvider, name: str, check: Callable[[Instance], bool], timeout: float = 30
) -> Instance:
    async with asyncio.timeout(timeout):
        while True:
            instance = await provider.get(name)
            if instance is not None and check(instance):
                return instance
            await asyncio.sleep(0.1)


async def test_create_applies_limits_user_labels_and_environment(
    make_provider: Callable[..., DockerProvider], engine_client: docker.DockerClient
) -> None:
    provider = make_provider(
        cpus=0.5,
        memory=64 * 1024**2,
        pids_limit=64,
        read_only=True,
        work_tmpfs="/home/runner/_work",
        tmpfs_size=16 * 1024**2,
        volumes={"rs-test-cache": "/home/runner/.cache"},
        labels={"team": "ci"},
        env={"EXTRA": "yes"},
    )
    try:
        instance = await provider.create(spec())
        assert instance.running
        assert instance.id == instance.runner_name == "rs-test-1"
        container = engine_client.containers.get("rs-test-1")
        host = container.attrs["HostConfig"]
        assert host["NanoCpus"] == 500_000_000
        assert host["Memory"] == 64 * 1024**2
        assert host["MemorySwap"] == 64 * 1024**2
        assert host["PidsLimit"] == 64
        assert host["ReadonlyRootfs"] is True
        assert host["Init"] is True
        assert host["SecurityOpt"] == ["no-new-privileges:true"]
        assert host["NetworkMode"] == "none"
        assert host["Tmpfs"]["/home/runner/_work"].endswith(f"size={16 * 1024**2}")
        assert [m["Source"] for m in host["Mounts"]] == ["rs-test-cache"]
        labels = container.labels
        assert labels[LABEL_CONTROLLER] == "rs-test"
        assert labels[LABEL_POOL] == "pool-a"
        assert labels[LABEL_RUNNER] == "rs-test-1"
        assert labels["team"] == "ci"
        env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
        assert env[JITCONFIG_ENV] == SECRET
        assert env["RUNNERSCALE_RUNNER_NAME"] == "rs-test-1"
        assert env["EXTRA"] == "yes"
        # The image's non-root user, as the kernel sees it inside the container.
        assert container.exec_run(["id", "-u"]).output.decode().strip() == "1001"
        # The tmpfs work directory is writable, the root filesystem is not.
        assert container.exec_run(["touch", "/home/runner/_work/x"]).exit_code == 0
        assert container.exec_run(["touch", "/home/runner/x"]).exit_code != 0
        # The cache volume exists with runnerscale's labels and outlives the runner.
        assert engine_client.volumes.get("rs-test-cache").attrs["Labels"][LABEL_POOL] == "pool-a"
    finally:
        await provider.delete("rs-test-1")
        await provider.close()
    with pytest.raises(docker.errors.NotFound):
        engine_client.containers.get("rs-test-1")
    assert engine_client.volumes.get("rs-test-cache")


async def test_list_get_delete_and_delete_again(provider: DockerProvider) -> None:
    await provider.create(spec("rs-test-a"))
    await provider.create(spec("rs-test-b"))
    listed = sorted(instance.runner_name for instance in await provider.list())
    assert listed == ["rs-test-a", "rs-test-b"]
    got = await provider.get("rs-test-a")
    assert got is not None
    assert got.running
    assert got.pool == "pool-a"
    assert got.created_at > 0
    await provider.delete("rs-test-a")
    await provider.delete("rs-test-a")  # already gone: success
    await provider.delete("never-existed")
    await provider.delete("../bad name")  # cannot be a container: nothing to do
    assert await provider.get("rs-test-a") is None
    assert [i.runner_name for i in await provider.list()] == ["rs-test-b"]
    await provider.delete("rs-test-b")
    assert await provider.list() == []


async def test_a_restarted_daemon_adopts_its_containers_and_ignores_others(
    make_provider: Callable[..., DockerProvider], engine_client: docker.DockerClient
) -> None:
    first = make_provider()
    await first.create(spec("rs-adopt-1"))
    await first.close()
    other_pool = make_provider(pool="pool-b")
    await other_pool.create(spec("rs-other-pool", pool="pool-b"))
    other_controller = make_provider(controller_id="someone-else")
    await other_controller.create(spec("rs-not-ours"))

    second = make_provider()  # a new daemon: nothing in memory
    try:
        assert [i.runner_name for i in await second.list()] == ["rs-adopt-1"]
        assert await second.get("rs-not-ours") is None
        await second.delete("rs-not-ours")  # not ours: never touched
        assert engine_client.containers.get("rs-not-ours").status == "running"
        with pytest.raises(ProviderError, match="not this controller's"):
            await second.create(spec("rs-not-ours"))
        await second.delete("rs-adopt-1")
        assert await second.list() == []
    finally:
        for made, name in ((other_pool, "rs-other-pool"), (other_controller, "rs-not-ours")):
            await made.delete(name)
            await made.close()
        await second.close()


async def test_an_exited_container_reports_its_code_and_last_lines_once(
    make_provider: Callable[..., DockerProvider], caplog: pytest.LogCaptureFixture
) -> None:
    provider = make_provider(
        command=("sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line $i; done; exit 3")
    )
    try:
        await provider.create(spec("rs-exit"))
        instance = await wait_for_instance(provider, "rs-exit", lambda i: not i.running)
        assert instance.exit_code == 3
        assert "with code 3" in instance.detail
        assert "line 12" in instance.detail
        assert "line 2\n" not in instance.detail  # only the last lines
        with caplog.at_level(logging.INFO, logger="runnerscale"):
            await provider.delete("rs-exit")
        # Its end was told through the instance's detail (which the controller, or the janitor
        # for an instance nobody knew, logs); removing it does not log the lines again.
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert not [m for m in warnings if "line 12" in m], warnings
        assert await provider.get("rs-exit") is None
        assert SECRET not in caplog.text
    finally:
        await provider.close()


async def test_out_of_memory_is_reported(make_provider: Callable[..., DockerProvider]) -> None:
    provider = make_provider(
        memory=8 * 1024**2,
        command=("python3", "-c", "x = bytearray(256 * 1024 * 1024); print(len(x))"),
    )
    try:
        await provider.create(spec("rs-oom"))
        instance = await wait_for_instance(provider, "rs-oom", lambda i: not i.running)
        assert instance.exit_code == 137
        assert "out of memory" in instance.detail
    finally:
        await provider.delete("rs-oom")
        await provider.close()


async def test_delete_stops_a_running_container_with_sigterm(
    make_provider: Callable[..., DockerProvider], engine_client: docker.DockerClient
) -> None:
    # Exits 0 on SIGTERM at once, like the runner image's entrypoint.
    provider = make_provider(
        command=(
            "python3",
            "-c",
            "import signal, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: exit(0))\n"
            "print('ready', flush=True)\ntime.sleep(600)",
        ),
        stop_grace=30.0,
    )
    try:
        await provider.create(spec("rs-term"))
        container = engine_client.containers.get("rs-term")
        async with asyncio.timeout(30):
            while b"ready" not in container.logs():
                await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await provider.delete("rs-term")
        assert loop.time() - started < 20  # SIGTERM, not the 30 s grace and SIGKILL
        assert await provider.get("rs-term") is None
    finally:
        await provider.close()


async def test_a_container_created_but_never_started_is_reported_and_replaced(
    provider: DockerProvider, engine_client: docker.DockerClient, runner_image: str
) -> None:
    # What a crash between `create` and `start` leaves behind.
    engine_client.containers.create(
        runner_image,
        entrypoint=SLEEP,
        name="rs-stale",
        labels={LABEL_CONTROLLER: "rs-test", LABEL_POOL: "pool-a", LABEL_RUNNER: "rs-stale"},
        network_mode="none",
    )
    instance = await provider.get("rs-stale")
    assert instance is not None
    assert not instance.running
    assert "never started" in instance.detail
    again = await provider.create(spec("rs-stale"))
    assert again.running
    await provider.delete("rs-stale")


async def test_a_missing_image_names_the_image_and_the_pool(
    make_provider: Callable[..., DockerProvider],
) -> None:
    never = make_provider(image="runnerscale-missing:1")
    with pytest.raises(ProviderError) as caught:
        await never.create(spec())
    message = str(caught.value)
    assert "'pool-a'" in message
    assert "'runnerscale-missing:1'" in message
    assert "is not on the Docker engine" in message
    assert SECRET not in message
    pulling = make_provider(image="runnerscale-missing:1", pull="missing")
    with pytest.raises(ProviderError, match="pulling it failed") as caught:
        await pulling.create(spec())
    assert SECRET not in str(caught.value)
    await never.close()
    await pulling.close()
    assert await never.list() == []  # nothing was left half-created


async def test_an_image_that_runs_as_root_is_refused_unless_root_is_asked_for(
    make_provider: Callable[..., DockerProvider],
    engine_client: docker.DockerClient,
    runner_image: str,
) -> None:
    derive_image(engine_client, runner_image, "runnerscale-test-root:1", "USER root")
    refused = make_provider(image="runnerscale-test-root:1")
    with pytest.raises(ProviderError, match="runs as root") as caught:
        await refused.create(spec("rs-root"))
    assert "docker.user" in str(caught.value)
    allowed = make_provider(image="runnerscale-test-root:1", user="root")
    try:
        await allowed.create(spec("rs-root"))
        container = engine_client.containers.get("rs-root")
        assert container.exec_run(["id", "-u"]).output.decode().strip() == "0"
    finally:
        await allowed.delete("rs-root")
        await allowed.close()
        await refused.close()
        engine_client.images.remove("runnerscale-test-root:1", force=True)


async def test_an_explicit_user_is_applied(
    make_provider: Callable[..., DockerProvider], engine_client: docker.DockerClient
) -> None:
    provider = make_provider(user="4321:4321")
    try:
        await provider.create(spec("rs-user"))
        container = engine_client.containers.get("rs-user")
        assert container.exec_run(["id", "-u"]).output.decode().strip() == "4321"
    finally:
        await provider.delete("rs-user")
        await provider.close()


async def test_engine_errors_name_the_pool_and_never_the_jit_config(
    make_provider: Callable[..., DockerProvider],
) -> None:
    bad_network = make_provider(network="no-such-network")
    with pytest.raises(ProviderError) as caught:
        await bad_network.create(spec("rs-net"))
    message = str(caught.value)
    assert "'pool-a'" in message
    assert "no-such-network" in message
    assert SECRET not in message
    assert await bad_network.get("rs-net") is None  # removed after the failed start
    await bad_network.close()


async def test_an_unreachable_engine_is_a_provider_error(
    make_provider: Callable[..., DockerProvider],
) -> None:
    away = make_provider(host="unix:///nonexistent/docker.sock")
    for call in (away.create(spec()), away.list()):
        with pytest.raises(ProviderError) as caught:
            await call
        assert "'pool-a'" in str(caught.value)
        assert "unix:///nonexistent/docker.sock" in str(caught.value)
    with pytest.raises(ProviderError):
        away.engine_facts()
    await away.close()


async def test_engine_facts(provider: DockerProvider) -> None:
    facts = await asyncio.to_thread(provider.engine_facts)
    assert facts.architecture
    assert facts.server_version


def test_settings_are_checked() -> None:
    base = DockerSettings(pool="p", image="img:1")
    for overrides, message in (
        ({"image": " "}, "docker.image is empty"),
        ({"pull": "sometimes"}, "docker.pull"),
        ({"labels": {"io.runnerscale.pool": "x"}}, "runnerscale's own"),
        ({"stop_grace": -1.0}, "stop_grace"),
    ):
        with pytest.raises(ProviderError, match=message):
            DockerProvider(replace(base, **overrides))


def test_repr_names_the_pool_and_engine_only() -> None:
    provider = DockerProvider(DockerSettings(pool="p", image="img:1", host="tcp://h:2376"))
    assert repr(provider) == "DockerProvider(pool='p', engine='tcp://h:2376')"


async def test_an_image_removed_after_use_is_checked_again(
    make_provider: Callable[..., DockerProvider],
    engine_client: docker.DockerClient,
    runner_image: str,
) -> None:
    engine_client.images.get(runner_image).tag("runnerscale-test-copy", "1")
    provider = make_provider(image="runnerscale-test-copy:1")
    try:
        await provider.create(spec("rs-copy-1"))
        await provider.delete("rs-copy-1")
        engine_client.images.remove("runnerscale-test-copy:1")
        with pytest.raises(ProviderError, match="runnerscale-test-copy:1"):
            await provider.create(spec("rs-copy-2"))
        with pytest.raises(ProviderError, match="is not on the Docker engine"):
            await provider.create(spec("rs-copy-2"))
        engine_client.images.get(runner_image).tag("runnerscale-test-copy", "1")
        assert (await provider.create(spec("rs-copy-2"))).running
        await provider.delete("rs-copy-2")
    finally:
        await provider.close()
        with contextlib.suppress(docker.errors.ImageNotFound):
            engine_client.images.remove("runnerscale-test-copy:1")


async def test_removing_a_runner_removes_its_anonymous_volumes_and_keeps_the_cache_volume(
    make_provider: Callable[..., DockerProvider],
    engine_client: docker.DockerClient,
    runner_image: str,
) -> None:
    # An image that declares a VOLUME gives every container an anonymous volume of its own,
    # which `docker rm -f` without `-v` leaves behind: one more on the engine per runner.
    derive_image(engine_client, runner_image, "runnerscale-test-volume:1", "VOLUME /data")
    before = {volume.name for volume in engine_client.volumes.list()}
    provider = make_provider(
        image="runnerscale-test-volume:1", volumes={"rs-test-keep": "/home/runner/.cache"}
    )
    exits = make_provider(image="runnerscale-test-volume:1", command=("sh", "-c", "exit 3"))
    try:
        await provider.create(spec("rs-vol-running"))
        await exits.create(spec("rs-vol-exited"))
        await wait_for_instance(exits, "rs-vol-exited", lambda i: not i.running)
        # What a crash between `create` and `start` leaves, replaced by the next create.
        engine_client.containers.create(
            "runnerscale-test-volume:1",
            entrypoint=SLEEP,
            name="rs-vol-stale",
            labels={LABEL_CONTROLLER: "rs-test", LABEL_POOL: "pool-a"},
            network_mode="none",
        )
        await provider.create(spec("rs-vol-stale"))
        made = {v.name for v in engine_client.volumes.list()} - before - {"rs-test-keep"}
        assert len(made) >= 3  # one for each runner's container
        await provider.delete("rs-vol-running")
        await exits.delete("rs-vol-exited")
        await provider.delete("rs-vol-stale")
        assert {v.name for v in engine_client.volumes.list()} - before == {"rs-test-keep"}
    finally:
        await provider.close()
        await exits.close()
        remove_labelled(engine_client)
        engine_client.images.remove("runnerscale-test-volume:1", force=True)
