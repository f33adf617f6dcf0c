"""The Docker backend: every runner is a container on a Docker engine, local or remote.

The package holds all of it: the pool's ``docker:`` settings (:mod:`.settings`, no SDK), the
provider (:mod:`.provider`, the only module importing the Docker SDK, an optional extra: its
docstring says why it works the way it does), and :data:`BACKEND`, the entry registered in the
``runnerscale.providers`` entry-point group. This module imports the provider only when a pool
is built, so a configuration naming ``docker`` validates on a host without the SDK.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runnerscale.hostlabels import HostFacts, container_host_facts
from runnerscale.protocols import Provider, ProviderError
from runnerscale.providers.docker.settings import DockerConfig
from runnerscale.providers.registry import Backend, BackendContext

if TYPE_CHECKING:
    from runnerscale.providers.docker.provider import DockerProvider

__all__ = ["BACKEND", "DockerConfig"]


def build(settings: DockerConfig, context: BackendContext) -> Provider:
    """The pool's provider (imports the Docker SDK)."""
    try:
        from runnerscale.providers.docker.provider import (  # noqa: PLC0415 - an optional extra
            DockerProvider,
            DockerSettings,
        )
    except ImportError:
        raise ProviderError(
            f"pool {context.pool}: the docker backend needs the docker package: "
            "pip install 'runnerscale[docker]'"
        ) from None

    def text(path: Path | None) -> str | None:
        return None if path is None else str(path)

    return DockerProvider(
        DockerSettings.from_options(
            settings,
            pool=context.pool,
            image=settings.image,
            host=settings.host,
            tls_ca_cert=text(settings.tls_ca_cert),
            tls_client_cert=text(settings.tls_client_cert),
            tls_client_key=text(settings.tls_client_key),
            command=None if settings.command is None else tuple(settings.command),
            env=dict(settings.env),
            stop_grace=settings.stop_grace,
            controller_id=context.controller_id,
        )
    )


def host_facts(settings: DockerConfig, provider: Provider) -> HostFacts:
    """The engine's host: its architecture (asked once, blocking), and the accelerators the
    pool passes through."""
    engine: DockerProvider = provider  # type: ignore[assignment]  # what build() made
    try:
        facts = engine.engine_facts()
    except ProviderError as error:
        raise ProviderError(
            f"{error}; the pool's labels need the engine's architecture (they name "
            "'auto' or an architecture): start the engine, or write the labels out"
        ) from None
    return container_host_facts(
        facts.architecture, gpus=settings.gpus is not None, devices=settings.devices
    )


BACKEND = Backend(
    settings=DockerConfig,
    build=build,
    description="Settings of the Docker backend (provider: docker).",
    host_facts=host_facts,
    example="{image: runnerscale-runner:2.328.0}",
    order=1,
)
