"""The provider conformance suite (``conformance.py``) against the Docker backend.

It runs on the session's own engine (``tests/docker_engine.py``, as ``test_docker.py`` does)
with the backend's production path: no ``command``, so the runner image's real entrypoint
takes the JIT config from ``ACTIONS_RUNNER_INPUT_JITCONFIG`` and starts ``run.sh`` with it in
its environment. The image is the test runner image with a ``run.sh`` that, like the official
one, keeps running until it is stopped (the stand-in runner would exit at once: there is no
GitHub here), and exits at once when the JIT config did not reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import tarfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import docker
import docker.errors
import pytest
import requests.exceptions
from docker.models.containers import Container, ContainerCollection

from runnerscale.model import InstanceSpec
from runnerscale.protocols import Provider
from runnerscale.providers.docker.provider import (
    LABEL_CONTROLLER,
    LABEL_POOL,
    LABEL_RUNNER,
    DockerProvider,
    DockerSettings,
)
from tests.docker_engine import RUNNER_UID, Engine
from tests.providers.conformance import (
    BackendUnderTest,
    Breakage,
    Interruption,
    ProviderConformance,
)
from tests.providers.interrupt import create_killed_after

pytestmark = pytest.mark.timeout(180)

BOOTED = "run.sh: started"
RUN_SH = f"""\
#!/bin/sh
# The official run.sh for the conformance tests: it keeps running with the JIT config the
# entrypoint gave it, as run.sh and Runner.Listener do, until it is stopped.
[ -n "$ACTIONS_RUNNER_INPUT_JITCONFIG" ] || {{ echo "run.sh: no JIT config"; exit 2; }}
echo "{BOOTED}"
trap 'exit 0' TERM INT
while :; do sleep 1 & wait $!; done
"""


@pytest.fixture(scope="session")
def conformance_image(docker_engine: Engine, runner_image: str) -> Iterator[str]:
    """The test runner image with the lingering ``run.sh`` above."""
    client = docker.DockerClient(base_url=docker_engine.url, version="auto")
    repository, tag = "runnerscale-test-conformance", runner_image.rsplit(":", 1)[1]
    content = RUN_SH.encode()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo("run.sh")
        info.size, info.mode, info.uid, info.gid = len(content), 0o755, RUNNER_UID, RUNNER_UID
        tar.addfile(info, io.BytesIO(content))
    base = client.containers.create(runner_image, network_mode="none")  # never started
    try:
        base.put_archive("/home/runner", archive.getvalue())
        base.commit(repository=repository, tag=tag)
    finally:
        base.remove(force=True)
    try:
        yield f"{repository}:{tag}"
    finally:
        with contextlib.suppress(docker.errors.DockerException):
            client.images.remove(f"{repository}:{tag}", force=True)
        client.close()


def docker_breakages(make: Callable[..., Provider]) -> list[Breakage]:
    """The ways a create of the Docker backend's provider fails part-way; ``make(**changes)``
    is a provider with those ``DockerSettings`` changed (``image``, ``network``), made the way
    the backend under test makes it (the ssh backend's docker mode wraps it)."""

    def missing_image(patch: pytest.MonkeyPatch) -> Provider:
        return make(image="runnerscale-missing:1")

    def refused_start(patch: pytest.MonkeyPatch) -> Provider:
        return make(network="rs-no-such-network")

    def lost_answer(cls: type, method: str, error: Exception) -> Any:
        """``cls.method`` does its work on the engine, then its answer is lost."""
        real = getattr(cls, method)

        def lost(*args: Any, **kwargs: Any) -> Any:
            real(*args, **kwargs)
            raise error

        return lost

    def create_answer_lost(patch: pytest.MonkeyPatch) -> Provider:
        timeout = requests.exceptions.ReadTimeout("injected: no answer to create in time")
        patch.setattr(
            ContainerCollection, "create", lost_answer(ContainerCollection, "create", timeout)
        )
        return make()

    def start_answer_lost(patch: pytest.MonkeyPatch) -> Provider:
        timeout = requests.exceptions.ReadTimeout("injected: no answer to start in time")
        patch.setattr(Container, "start", lost_answer(Container, "start", timeout))
        return make()

    def inspect_fails(patch: pytest.MonkeyPatch) -> Provider:
        error = docker.errors.APIError("injected: the engine failed to inspect it")
        patch.setattr(Container, "reload", lost_answer(Container, "reload", error))
        return make()

    return [
        Breakage("the image is not on the engine (pull: never)", missing_image),
        Breakage("the engine refuses to start it (after the container was made)", refused_start),
        Breakage("the answer to create is lost (the container was made)", create_answer_lost),
        Breakage("the answer to start is lost (the container runs)", start_answer_lost),
        Breakage("inspecting it fails (after the container started)", inspect_fails),
    ]


class DockerBackend(BackendUnderTest):
    def __init__(self, engine: Engine, image: str, client: docker.DockerClient) -> None:
        super().__init__()
        self.client = client
        self.base = DockerSettings(
            pool=self.pool,
            image=image,
            host=engine.url,
            network="none",
            stop_grace=5.0,
            controller_id=self.controller_id,
            pull="never",
        )

    def settings(self, **overrides: Any) -> DockerSettings:
        return replace(self.base, **overrides)

    def provider(self, *, pool: str | None = None, controller_id: str | None = None) -> Provider:
        return DockerProvider(
            self.settings(pool=pool or self.pool, controller_id=controller_id or self.controller_id)
        )

    def _container(self, name: str) -> Container | None:
        try:
            return self.client.containers.get(name)
        except docker.errors.NotFound:
            return None

    def _ours(self) -> list[Container]:
        return self.client.containers.list(
            all=True,
            ignore_removed=True,
            filters={"label": f"{LABEL_CONTROLLER}={self.controller_id}"},
        )

    async def booted(self, instance_id: str) -> None:
        container = self._container(instance_id)
        assert container is not None
        async with asyncio.timeout(60):
            while BOOTED.encode() not in await asyncio.to_thread(container.logs):
                await asyncio.sleep(0.05)

    async def tags(self, instance_id: str) -> Mapping[str, str] | None:
        container = await asyncio.to_thread(self._container, instance_id)
        if container is None:
            return None
        labels = container.labels
        return {
            "controller": labels.get(LABEL_CONTROLLER, ""),
            "pool": labels.get(LABEL_POOL, ""),
            "runner": labels.get(LABEL_RUNNER, ""),
        }

    async def leftovers(self) -> list[str]:
        return [
            f"container {container.name} ({container.status})"
            for container in await asyncio.to_thread(self._ours)
        ]

    async def end(self, instance_id: str) -> None:
        container = self._container(instance_id)
        assert container is not None
        await asyncio.to_thread(container.kill)

    async def vanish(self, instance_id: str) -> None:
        container = self._container(instance_id)
        assert container is not None
        await asyncio.to_thread(container.remove, force=True)

    def breakages(self) -> Sequence[Breakage]:
        return docker_breakages(lambda **changes: DockerProvider(self.settings(**changes)))

    def interruptions(self) -> Sequence[Interruption]:
        async def created_not_started(spec: InstanceSpec) -> None:
            factory = functools.partial(DockerProvider, self.settings())
            await create_killed_after("container", factory, spec)

        return [
            Interruption(
                "kill -9 between creating the container and starting it", created_not_started
            )
        ]

    def remove_everything(self) -> None:
        for container in self._ours():
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)


@contextlib.asynccontextmanager
async def docker_backend(engine: Engine, image: str) -> AsyncIterator[DockerBackend]:
    """A :class:`DockerBackend` on ``engine``, everything of it removed afterwards."""
    client = docker.DockerClient(base_url=engine.url, version="auto")
    made = DockerBackend(engine, image, client)
    try:
        yield made
    finally:
        await asyncio.to_thread(made.remove_everything)
        client.close()


@pytest.fixture
async def backend(docker_engine: Engine, conformance_image: str) -> AsyncIterator[DockerBackend]:
    async with docker_backend(docker_engine, conformance_image) as made:
        yield made


class TestDockerConformance(ProviderConformance):
    pass
