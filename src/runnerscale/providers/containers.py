"""The options of a runner container, shared by every backend that runs its runners as
containers on a Docker engine: the ``docker`` backend (its whole block) and the ``ssh``
backend in docker mode (its ``container:`` block).

Why apart: the two blocks must accept, check and document these options the same way, and
backends do not import each other, so the one definition lives here with the other settings
pieces backends share (:mod:`runnerscale.providers.settings`). No Docker SDK here: a
configuration validates on a host without the ``docker`` extra.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import AfterValidator, Field, field_validator, model_validator

from runnerscale.config.base import ConfigModel
from runnerscale.config.problems import fail
from runnerscale.config.units import ByteSize
from runnerscale.providers.settings import RunnerEnv

__all__ = ["ContainerEnv", "ContainerOptions", "ImageRef"]

_NETWORK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VOLUME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]+$")


def _check_image(value: str) -> str:
    if not value.strip() or any(char.isspace() for char in value):
        raise fail("is not an image reference", "write it like runnerscale-runner:2.328.0")
    return value


def _check_reserved_env(value: dict[str, str]) -> dict[str, str]:
    for name in value:
        if name.upper().startswith("RUNNERSCALE_"):
            raise fail(
                f"{name!r} is reserved: runnerscale sets RUNNERSCALE_* variables itself",
                "use another name",
                at=(name,),
                echo=False,
            )
    return value


#: A runner image reference (``runnerscale-runner:2.328.0``).
ImageRef: TypeAlias = Annotated[
    str,
    AfterValidator(_check_image),
    Field(description="The runner image, e.g. runnerscale-runner:2.328.0 (see images/runner)."),
]
#: A container runner's extra environment: ``RunnerEnv`` without runnerscale's own names.
ContainerEnv: TypeAlias = Annotated[RunnerEnv, AfterValidator(_check_reserved_env)]


class ContainerOptions(ConfigModel):
    """How a runner's container is made: its limits, user, network, mounts and labels."""

    cpus: float | None = Field(default=None, gt=0, description="CPUs a runner may use (1.5).")
    memory: ByteSize | None = Field(
        default=None, description="Memory a runner may use (4g); no swap beyond it."
    )
    pids_limit: int | None = Field(
        default=None, ge=16, description="At most this many processes in a runner."
    )
    user: str | None = Field(
        default=None,
        description="USER or UID:GID to run as (default: the image's user, which must not "
        "be root; write root to allow root).",
    )
    network: str = Field(
        default="bridge", description="none, bridge, host, or the name of a network."
    )
    read_only: bool = Field(default=False, description="Make the root filesystem read-only.")
    work_tmpfs: str | None = Field(
        default=None,
        description="Mount a tmpfs at this path, e.g. /home/runner/_work (the work directory).",
    )
    tmpfs_size: ByteSize | None = Field(
        default=None, description="The tmpfs's size limit (with work_tmpfs)."
    )
    volumes: dict[str, str] = Field(
        default_factory=dict,
        description="Named volumes (caches) mounted into every runner of the pool: "
        "{go-cache: /home/runner/go/pkg/mod}.",
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Extra container labels.")
    gpus: str | None = Field(
        default=None,
        description="NVIDIA GPUs to pass through: all or a number (needs the NVIDIA "
        "container toolkit on the host).",
    )
    devices: list[str] = Field(
        default_factory=list, description="Host devices to pass through (/dev/kfd, /dev/dri)."
    )
    runtime: str | None = Field(
        default=None, description="An OCI runtime other than the default (runsc, sysbox-runc)."
    )
    pull: Literal["missing", "always", "never"] = Field(
        default="missing", description="Pull the image when missing (default), always, or never."
    )
    no_new_privileges: bool = Field(
        default=True, description="Forbid privilege gain (setuid, sudo) inside runners."
    )

    @field_validator("user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or any(c.isspace() for c in value)):
            raise fail("is not a user", "write a user name, UID or UID:GID (or root)")
        return value

    @field_validator("network")
    @classmethod
    def _network(cls, value: str) -> str:
        if not _NETWORK_RE.match(value):
            raise fail("is not a network name", "use none, bridge, host or a network's name")
        return value

    @field_validator("work_tmpfs")
    @classmethod
    def _tmpfs(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or value == "/"):
            raise fail(
                "is not an absolute path inside the container",
                "write the work directory, e.g. /home/runner/_work",
            )
        return value

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            if not _VOLUME_RE.match(name):
                raise fail(
                    f"{name!r} is not a volume name",
                    "use letters, digits, '_', '.' and '-' (at least two characters); bind "
                    "mounts of host paths are not offered: runners must not share the host",
                    at=(name,),
                    echo=False,
                )
            if not path.startswith("/") or path == "/":
                raise fail(
                    f"mount path {path!r} is not an absolute path inside the container",
                    "write where the volume goes, e.g. /home/runner/.cache",
                    at=(name,),
                    echo=False,
                )
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.startswith("io.runnerscale."):
                raise fail(
                    f"{key!r} is reserved: io.runnerscale.* labels are runnerscale's own",
                    "use another label key",
                    at=(key,),
                    echo=False,
                )
        return value

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and not (value == "all" or (value.isdigit() and int(value) > 0)):
            raise fail("is not all or a number of GPUs", "write gpus: all, or gpus: 1")
        return value

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: list[str]) -> list[str]:
        for index, path in enumerate(value):
            if not path.startswith("/dev/"):
                raise fail(f"{path!r} is not a device path", "write it like /dev/kfd", at=(index,))
        return value

    @model_validator(mode="after")
    def _tmpfs_size_needs_tmpfs(self) -> ContainerOptions:
        if self.tmpfs_size is not None and self.work_tmpfs is None:
            raise fail(
                "applies only with work_tmpfs",
                "add work_tmpfs: /home/runner/_work, or remove tmpfs_size",
                at=("tmpfs_size",),
                echo=False,
            )
        return self
