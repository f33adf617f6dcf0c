"""The ``docker:`` block of a pool: the Docker backend's settings (validated with the file).

No Docker SDK here: a configuration validates on a host without the ``docker`` extra.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from runnerscale.config.base import Advice
from runnerscale.config.paths import ConfigPath
from runnerscale.config.problems import fail
from runnerscale.providers.containers import ContainerEnv, ContainerOptions, ImageRef
from runnerscale.providers.settings import (
    StopGrace,
    jitconfig_on_command_line,
    reject_unquoted_placeholders,
)

__all__ = ["DockerConfig"]

_DOCKER_HOST_SCHEMES = ("unix", "tcp", "ssh", "http", "https", "npipe")


class DockerConfig(ContainerOptions):
    """The ``docker`` backend: each runner is a container on a Docker engine (the container's
    options are :class:`~runnerscale.providers.containers.ContainerOptions`, shared with the
    ssh backend)."""

    image: ImageRef
    host: str | None = Field(
        default=None,
        description="The engine: unix:///var/run/docker.sock, tcp://HOST:2376 or "
        "ssh://USER@HOST (default: $DOCKER_HOST, else the local socket).",
    )
    tls_ca_cert: ConfigPath | None = Field(
        default=None, description="tcp:// engines: the CA certificate (PEM) to verify it with."
    )
    tls_client_cert: ConfigPath | None = Field(
        default=None, description="tcp:// engines: the client certificate (PEM)."
    )
    tls_client_key: ConfigPath | None = Field(
        default=None, description="tcp:// engines: the client certificate's key (PEM)."
    )
    command: list[str] | None = Field(
        default=None,
        description="Replaces the image's entrypoint and command (default: the image's "
        "entrypoint). The runner gets its JIT config in the environment variable "
        "ACTIONS_RUNNER_INPUT_JITCONFIG, where the official runner reads it. May contain "
        '{runner_name} and {pool}; "{jitconfig}" still works but puts the secret on the '
        "command line (warned).",
    )
    env: ContainerEnv = Field(default_factory=dict)
    stop_grace: StopGrace = 10.0

    @field_validator("command", mode="before")
    @classmethod
    def _command_quoted(cls, value: Any) -> Any:
        return reject_unquoted_placeholders(value)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.partition("://")[0].lower() if "://" in value else ""
        if scheme not in _DOCKER_HOST_SCHEMES:
            raise fail(
                "is not a Docker engine address",
                "write unix:///var/run/docker.sock, tcp://HOST:2376 or ssh://USER@HOST",
            )
        return value

    def advice(self) -> list[Advice]:
        return jitconfig_on_command_line(self.command)

    @model_validator(mode="after")
    def _consistent(self) -> DockerConfig:
        if (self.tls_client_cert is None) != (self.tls_client_key is None):
            raise fail(
                "needs both tls_client_cert and tls_client_key",
                "give both files, or neither",
                at=("tls_client_key" if self.tls_client_key is None else "tls_client_cert",),
                echo=False,
            )
        return self
