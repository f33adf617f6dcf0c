"""The ``ssh:`` block of a pool: the SSH backend's settings (validated with the file).

Why these checks here: a pool of nodes fails in ways a file can already show (no image in
docker mode, one node written twice, zero slots), and each is cheaper to fix before the daemon
starts than after it has connected to the first node. The container options of docker mode are
the Docker backend's own (:class:`~runnerscale.providers.containers.ContainerOptions`), so the
two backends take them alike. No asyncssh here: a configuration validates without the ``ssh``
extra.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from runnerscale.config.base import Advice, ConfigModel
from runnerscale.config.paths import ConfigPath
from runnerscale.config.problems import fail
from runnerscale.config.units import PositiveDuration
from runnerscale.model import labels_beyond, normalize_labels
from runnerscale.providers.containers import ContainerEnv, ContainerOptions, ImageRef
from runnerscale.providers.settings import (
    StopGrace,
    jitconfig_on_command_line,
    reject_unquoted_placeholders,
)
from runnerscale.providers.ssh.address import NodeAddress

__all__ = ["DEFAULT_PROCESS_COMMAND", "SshConfig", "SshHost"]

#: Where the official runner's tarball puts its entry point (process mode's default command).
DEFAULT_PROCESS_COMMAND = ("/opt/actions-runner/run.sh",)


class SshHost(ConfigModel):
    """One node of the pool."""

    address: str = Field(
        description="The node's sshd: node1.example.net, 10.0.0.12:2222 or [2001:db8::1]:2222."
    )
    slots: int | None = Field(
        default=None, ge=1, description="Runners it may hold at once (default: its CPU count)."
    )
    labels: list[str] = Field(
        default_factory=list,
        description="Its own labels beyond the pool's: jobs that ask for one of them land only "
        "on nodes that have it (deploy).",
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            NodeAddress.parse(value)
        except ValueError as error:
            raise fail(
                str(error), "write the node's address like node1.example.net or 10.0.0.12:2222"
            ) from None
        return value.strip()

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        for index, label in enumerate(value):
            if not label.strip() or any(c.isspace() or c == "," for c in label.strip()):
                raise fail(
                    f"{label!r} is not a label",
                    "write one word per label, e.g. labels: [deploy, gpu]",
                    at=(index,),
                    echo=False,
                )
        return sorted(normalize_labels(value))

    @property
    def node(self) -> NodeAddress:
        """The parsed address."""
        return NodeAddress.parse(self.address)


class SshConfig(ConfigModel):
    """The ``ssh`` backend: the pool's runners on hosts reached over SSH."""

    user: str = Field(description="The user runnerscale logs in as on every node (runner).")
    key_file: ConfigPath | None = Field(
        default=None,
        description="The private key to log in with (default: the SSH agent, $SSH_AUTH_SOCK, "
        "and ~/.ssh's keys).",
    )
    known_hosts: ConfigPath = Field(
        description="The nodes' host keys (ssh-keyscan writes them): every connection is "
        "verified against it, and a changed key is refused."
    )
    accept_new_host_keys: bool = Field(
        default=False,
        description="Trust a node not yet in known_hosts on first connection and add it "
        "there (a changed key is still refused).",
    )
    mode: Literal["docker", "process"] = Field(
        default="docker",
        description="docker: a container per runner on the node's Docker engine; process: the "
        "runner command in a fresh folder, as the SSH user.",
    )
    image: ImageRef | None = Field(
        default=None,
        description="docker mode: the runner image on the nodes (images/runner, built there by "
        "runnerscale hosts bootstrap).",
    )
    command: list[str] | None = Field(
        default=None,
        description="process mode: the runner's command on the node (default: "
        "[/opt/actions-runner/run.sh]); docker mode: replaces the image's entrypoint. The "
        "runner gets its JIT config in the environment variable ACTIONS_RUNNER_INPUT_JITCONFIG. "
        "May contain {runner_name} and {pool}.",
    )
    hosts: list[SshHost] = Field(min_length=1, description="The nodes.")
    placement: Literal["spread", "pack"] = Field(
        default="spread",
        description="spread: the node with the fewest runners per slot; pack: fill the nodes "
        "in the order written.",
    )
    connect_timeout: PositiveDuration = Field(
        default=10.0, description="How long a node may take to accept a connection."
    )
    keepalive_interval: PositiveDuration = Field(
        default=15.0,
        description="How often an idle connection is probed; three unanswered probes mark the "
        "node unreachable.",
    )
    command_timeout: PositiveDuration = Field(
        default=60.0, description="How long one command on a node may take."
    )
    health_interval: PositiveDuration = Field(
        default=5.0,
        description="How often each node is checked (a round trip): a node that fails a check "
        "is marked down, its slots stop counting and jobs go to the others, until a check "
        "succeeds again.",
    )
    work_dir: str = Field(
        default="~/runnerscale",
        description="process mode: where runner folders go on the node (~ is the SSH user's home).",
    )
    docker_socket: str = Field(
        default="/var/run/docker.sock", description="docker mode: the node's engine socket."
    )
    container: ContainerOptions = Field(
        default_factory=ContainerOptions,
        description="docker mode: the runner containers' options, as the docker backend's "
        "(cpus, memory, pids_limit, work_tmpfs, volumes, labels, network, ...).",
    )
    env: ContainerEnv = Field(default_factory=dict)
    stop_grace: StopGrace = 10.0

    @field_validator("command", mode="before")
    @classmethod
    def _command_quoted(cls, value: Any) -> Any:
        return reject_unquoted_placeholders(value)

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not value[0].strip()):
            raise fail("is empty", "write the runner's command, e.g. [/opt/actions-runner/run.sh]")
        return value

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        if not value.strip() or value.startswith("-") or any(c.isspace() for c in value):
            raise fail("is not a user name", "write the nodes' runner user, e.g. user: runner")
        return value

    @field_validator("work_dir")
    @classmethod
    def _work_dir(cls, value: str) -> str:
        if not (value.startswith("/") or value == "~" or value.startswith("~/")) or value == "/":
            raise fail(
                "is not an absolute path or a path under ~",
                "write where runner folders go on the nodes, e.g. ~/runnerscale or "
                "/srv/runnerscale",
            )
        return value.rstrip("/") if value != "/" else value

    @field_validator("docker_socket")
    @classmethod
    def _docker_socket(cls, value: str) -> str:
        if not value.startswith("/") or value == "/":
            raise fail(
                "is not an absolute path of a socket on the node",
                "write the engine's socket, e.g. /var/run/docker.sock",
            )
        return value

    @field_validator("hosts")
    @classmethod
    def _unique(cls, value: list[SshHost]) -> list[SshHost]:
        seen: dict[NodeAddress, int] = {}
        for index, host in enumerate(value):
            first = seen.setdefault(host.node, index)
            if first != index:
                raise fail(
                    f"{host.address!r} is the same node as hosts[{first}] "
                    f"({value[first].address!r})",
                    "list every node once; give it more slots instead",
                    at=(index, "address"),
                    echo=False,
                )
        return value

    @model_validator(mode="after")
    def _mode(self) -> SshConfig:
        if self.mode == "docker" and self.image is None:
            raise fail(
                "is required in docker mode",
                "add image: runnerscale-runner:latest (runnerscale hosts bootstrap builds it on "
                "the nodes), or set mode: process",
                at=("image",),
                echo=False,
            )
        return self

    @property
    def runner_command(self) -> tuple[str, ...] | None:
        """The command runners run: process mode's (its default when not written), or docker
        mode's entrypoint override (None: the image's)."""
        if self.command is not None:
            return tuple(self.command)
        return DEFAULT_PROCESS_COMMAND if self.mode == "process" else None

    @property
    def nodes(self) -> tuple[NodeAddress, ...]:
        """Every node's parsed address, in the order written."""
        return tuple(host.node for host in self.hosts)

    def labels_advice(self, pool_labels: Iterable[str]) -> list[Advice]:
        """A host label the pool has already (the block's own :meth:`advice` cannot see the
        pool's labels: the registry's ``pool_advice`` hook hands them here). Every runner of
        the pool has it, so it sets the node apart from none: placement ignores it, and the
        node takes the pool's plain runners like a node without it."""
        found = []
        for index, host in enumerate(self.hosts):
            repeated = sorted(set(host.labels) - labels_beyond(host.labels, pool_labels))
            if repeated:
                said = ", ".join(repeated)
                found.append(
                    Advice(
                        f"{said} {'is' if len(repeated) == 1 else 'are'} among the pool's labels "
                        "already: every runner of the pool has them, so they set this node "
                        "apart from none (placement ignores them)",
                        f"remove {said} from this host's labels; a host's labels are those only "
                        "its jobs ask for (deploy)",
                        at=("hosts", index, "labels"),
                    )
                )
        return found

    def advice(self) -> list[Advice]:
        found = jitconfig_on_command_line(self.command)
        if self.mode == "process":
            unused = [
                key
                for key in ("image", "container", "docker_socket")
                if key in self.model_fields_set
            ]
            found += [
                Advice(
                    "is not used in process mode",
                    f"remove {key}, or set mode: docker",
                    at=(key,),
                )
                for key in unused
            ]
        elif "work_dir" in self.model_fields_set:
            found.append(
                Advice(
                    "is not used in docker mode",
                    "remove work_dir, or set mode: process",
                    at=("work_dir",),
                )
            )
        return found
