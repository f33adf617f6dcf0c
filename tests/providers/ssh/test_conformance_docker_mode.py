"""The provider conformance suite (``tests/providers/conformance.py``) against the SSH backend
in docker mode: the node is the loopback OpenSSH server (``tests/sshd.py``), logged into as
root, and its engine is the session's Docker engine (``tests/docker_engine.py``), whose socket
the provider forwards over the SSH connection to the Docker backend's provider. The image is
the Docker conformance suite's (its ``run.sh`` keeps running until it is stopped), with no
``command``: the image's real entrypoint takes the JIT config from the environment. The
backend's state is read on the engine as the Docker suite reads it (its ``DockerBackend``), by
the container's name: the instance id without its node.

Also here, beyond the suite: two nodes that reach one engine (the same server under two
names) each see only their own containers, labelled with their node.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from runnerscale.model import InstanceSpec
from runnerscale.providers.ssh.containers import LABEL_NODE
from runnerscale.providers.ssh.provider import SshProvider
from runnerscale.providers.ssh.settings import SshConfig
from tests.docker_engine import Engine
from tests.providers.conformance import Breakage, Interruption, ProviderConformance
from tests.providers.interrupt import create_killed_after
from tests.providers.ssh.support import SshBackendParts, ssh_config
from tests.providers.test_conformance_docker import (
    DockerBackend,
    conformance_image,
    docker_breakages,
)
from tests.sshd import SshServer, known_hosts_line

__all__ = ["conformance_image"]

pytestmark = [pytest.mark.ssh, pytest.mark.docker, pytest.mark.timeout(240)]


class SshDockerBackend(SshBackendParts, DockerBackend):
    def __init__(
        self,
        server: SshServer,
        engine: Engine,
        image: str,
        client: docker.DockerClient,
        folder: Path,
    ) -> None:
        super().__init__(engine, image, client)
        self.folder = folder
        self.config = ssh_config(
            [server],
            folder,
            user="root",
            mode="docker",
            image=image,
            docker_socket=engine.url.removeprefix("unix://"),
            container={"network": "none", "pull": "never"},
        )

    def changed(self, image: str | None = None, network: str | None = None) -> SshConfig:
        container = self.config.container
        if network is not None:
            container = container.model_copy(update={"network": network})
        return self.config.model_copy(
            update={"image": image or self.config.image, "container": container}
        )

    def _container(self, name: str) -> Container | None:
        return super()._container(name.rpartition("/")[2])  # (an instance id names its node)

    def breakages(self) -> Sequence[Breakage]:
        return docker_breakages(
            lambda **changes: SshProvider(self.changed(**changes), self.context())
        )

    def interruptions(self) -> Sequence[Interruption]:
        async def created_not_started(spec: InstanceSpec) -> None:
            factory = functools.partial(SshProvider, self.config, self.context())
            await create_killed_after("container", factory, spec)

        return [
            Interruption(
                "kill -9 between creating the container and starting it", created_not_started
            )
        ]


@pytest.fixture
async def backend(
    ssh_server: SshServer, docker_engine: Engine, conformance_image: str, tmp_path: Path
) -> AsyncIterator[SshDockerBackend]:
    client = docker.DockerClient(base_url=docker_engine.url, version="auto")
    made = SshDockerBackend(ssh_server, docker_engine, conformance_image, client, tmp_path)
    try:
        yield made
    finally:
        await asyncio.to_thread(made.remove_everything)
        client.close()


class TestSshDockerConformance(ProviderConformance):
    pass


async def test_nodes_sharing_an_engine_see_only_their_own_containers(
    backend: SshDockerBackend, ssh_server: SshServer, tmp_path: Path
) -> None:
    # The same server under a second name: a second node, with the same engine.
    second = f"localhost:{ssh_server.port}"
    known = tmp_path / "known_hosts"
    public = known.read_text().split(maxsplit=1)[1].strip()
    known.write_text(known.read_text() + known_hosts_line("localhost", ssh_server.port, public))
    hosts = [*backend.config.hosts, backend.config.hosts[0].model_copy(update={"address": second})]
    made = SshProvider(backend.config.model_copy(update={"hosts": hosts}), backend.context())
    try:
        instances = [await made.create(backend.spec(number)) for number in (1, 2)]
        nodes = sorted(instance.id.rpartition("/")[0] for instance in instances)
        assert nodes == sorted([ssh_server.address, second])
        for instance in instances:
            container = backend._container(instance.id)
            assert container is not None
            assert container.labels[LABEL_NODE] == instance.id.rpartition("/")[0]
        listed = await made.list()
        assert sorted(instance.id for instance in listed) == sorted(i.id for i in instances)
        # A provider over the first node alone neither lists nor touches the second's.
        alone = backend.provider()
        try:
            (own,) = await alone.list()
            assert own.id.startswith(f"{ssh_server.address}/")
            other = next(i for i in instances if i.id != own.id)
            await alone.delete(f"{ssh_server.address}/{other.runner_name}")
            assert backend._container(other.id) is not None
        finally:
            await alone.close()
        for instance in instances:
            await made.delete(instance.id)
        assert await made.list() == []
    finally:
        await made.close()
    assert await backend.leftovers() == []
