"""The Docker backend: every runner is a container on a Docker engine, local or remote.

Why it looks the way it does:

*The engine is the inventory.* Every container carries labels naming the controller, the pool,
the runner and its creation time (``io.runnerscale.*``). ``list()`` asks the engine for the
containers with this controller's and this pool's labels, so a restarted daemon finds what it
started (and the janitor removes what it does not know); nothing is remembered in memory. The
container's name is the runner's name, which is also the instance id: it is unique (the store
enforces it, and so does the engine), stable across restarts, and makes ``get`` and ``delete``
a direct lookup. A container with that name but without this controller's label is never
touched.

*The JIT config travels in the environment*, never on a command line: it is set as
``ACTIONS_RUNNER_INPUT_JITCONFIG``, where the official runner reads it (see
:mod:`runnerscale.providers.command`), next to ``RUNNERSCALE_RUNNER_NAME`` and
``RUNNERSCALE_POOL``. The runner image's entrypoint (``images/runner``) takes it out of the
environment before its extension scripts run and gives it back to ``run.sh`` alone, in
``run.sh``'s environment; a container's processes are processes of the engine's host, so their
command lines are readable by every user there. A ``command`` given in the configuration
replaces the image's entrypoint and command and may use ``{runner_name}`` and ``{pool}`` (and
``{jitconfig}``, which puts the secret on the command line: ``config validate`` warns). Whoever
can reach the engine sees the container's environment (``docker inspect``), but that access is
root on the host anyway. The JIT config never appears in a log line, an error message or
``repr``: Docker's error texts are scrubbed of it before they are raised.

*Isolation by default.* Containers run as the image's user, and an image whose user is root is
refused unless the pool says ``user: root`` explicitly; ``no-new-privileges`` is set; Docker's
init process (``--init``) reaps the job's zombies and forwards ``docker stop``'s SIGTERM. CPU,
memory and process limits, a read-only root filesystem, a tmpfs work directory, named cache
volumes (shared by every runner of the pool, created with the controller's labels), GPUs and
devices are per pool.

*A container that exits stays until it is reaped.* The controller learns from ``list()`` that a
runner's container exited (with its code, whether the kernel killed it for memory, and its last
log lines when it failed) and removes it; removal logs those last lines at warning level when
the exit was a failure, so they are in runnerscale's log after the container is gone.
``delete`` stops a running container with SIGTERM (the runner cancels its job cleanly) and
SIGKILL after ``stop_grace``; deleting what is already gone is success. Every removal takes the
container's anonymous volumes with it (an image's ``VOLUME``: one per container, which would
pile up on the engine otherwise); the pool's named volumes stay.

*Crash leftovers are listed.* A create makes the container (with its labels), then starts it. A
``kill -9`` of the daemon in between leaves a container that was created but never started:
``list()`` reports it as an ``incomplete`` :class:`~runnerscale.model.Instance` (not running,
made at its ``created`` label), unless this provider is creating it right now, so the janitor
removes it once no runner claims it and the create timeout has passed, and ``delete`` removes
it like any other. The tests stop a create after each step (``container``, ``started``:
:mod:`runnerscale.providers.pause`) and kill it there. A container that started is a runner's
instance however the create ended: it is adopted or, with no live runner, removed.

*The engine may be away.* The client connects on first use, not at start: an engine that is
down, or an image that is missing, fails that pool's creations with a message naming the pool,
the engine and the cause (so the controller marks that pool unhealthy and backs off), while
other pools carry on. The Docker SDK is synchronous; every call runs in a worker thread so the
event loop never waits on the engine.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.constants
import docker.errors
import docker.tls
import docker.types
import docker.utils
import requests.exceptions
from docker.models.containers import Container

from runnerscale.model import Instance, InstanceSpec
from runnerscale.protocols import ProviderError
from runnerscale.providers.command import JITCONFIG_ENV, JITCONFIG_PLACEHOLDER, fill_placeholders
from runnerscale.providers.containers import ContainerOptions
from runnerscale.providers.pause import pause_after

__all__ = [
    "JITCONFIG_ENV",
    "LABEL_CONTROLLER",
    "LABEL_CREATED",
    "LABEL_POOL",
    "LABEL_PREFIX",
    "LABEL_RUNNER",
    "DockerProvider",
    "DockerSettings",
    "EngineFacts",
]

# The package's name, as before it was a package: log lines and filters keep naming it.
log = logging.getLogger("runnerscale.providers.docker")

LABEL_PREFIX = "io.runnerscale."
LABEL_CONTROLLER = LABEL_PREFIX + "controller"
LABEL_POOL = LABEL_PREFIX + "pool"
LABEL_RUNNER = LABEL_PREFIX + "runner"
LABEL_CREATED = LABEL_PREFIX + "created"
#: Lines of a failed container's log reported in ``Instance.detail`` and logged on removal.
DETAIL_LINES = 10
DETAIL_CHARS = 2000
#: Seconds a single Engine API call may take (image pulls excepted).
API_TIMEOUT = 60
PULL_TIMEOUT = 900
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ROOT_USERS = ("", "root", "0", "0:0", "root:root")


@dataclass(frozen=True)
class DockerSettings:
    """Configuration of the Docker backend (the ``docker:`` section of a pool)."""

    pool: str
    image: str
    #: Engine URL (``unix:///var/run/docker.sock``, ``tcp://host:2376``, ``ssh://user@host``);
    #: None: the environment's (``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``).
    host: str | None = None
    #: TLS for ``tcp://`` engines: CA certificate, client certificate and key (PEM files).
    tls_ca_cert: str | None = None
    tls_client_cert: str | None = None
    tls_client_key: str | None = None
    #: Replaces the image's entrypoint and command; may contain {runner_name} and {pool} (and
    #: {jitconfig}: on the command line, warned about).
    command: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cpus: float | None = None
    memory: int | None = None  # bytes
    pids_limit: int | None = None
    #: None: the image's user, which must not be root. "root" allows root explicitly.
    user: str | None = None
    #: "none", "bridge", "host" or a named network.
    network: str = "bridge"
    read_only: bool = False
    #: Mount a tmpfs at this path (the runner's work directory), of at most ``tmpfs_size``.
    work_tmpfs: str | None = None
    tmpfs_size: int | None = None
    #: Named volume -> mount path, mounted into every runner of the pool (caches).
    volumes: Mapping[str, str] = field(default_factory=dict)
    #: Extra container labels.
    labels: Mapping[str, str] = field(default_factory=dict)
    #: "all" or a number of NVIDIA GPUs to pass through (needs the NVIDIA container toolkit).
    gpus: str | None = None
    #: Host devices to pass through (/dev/kfd, /dev/dri, ...).
    devices: tuple[str, ...] = ()
    #: An OCI runtime other than the engine's default (runsc, sysbox-runc, nvidia, ...).
    runtime: str | None = None
    #: "missing" (pull when absent), "always" or "never".
    pull: str = "missing"
    no_new_privileges: bool = True
    stop_grace: float = 10.0
    controller_id: str = "runnerscale"
    #: More labels that say whose a container is, next to the controller's and the pool's:
    #: set on every container, and a container without them is not this provider's (the ssh
    #: backend's node, when several nodes' providers share one engine). May be runnerscale's.
    owner_labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: ContainerOptions, **rest: Any) -> DockerSettings:
        """The settings of a pool whose containers are made with ``options`` (a ``docker:``
        block, or the ssh backend's ``container:`` block), the rest given by name."""
        made = options.model_dump(include=set(ContainerOptions.model_fields))
        made["devices"] = tuple(options.devices)
        return cls(**made, **rest)

    @property
    def owner(self) -> dict[str, str]:
        """The labels a container of this provider carries: controller, pool and the owner
        labels."""
        return {
            **self.owner_labels,
            LABEL_CONTROLLER: self.controller_id,
            LABEL_POOL: self.pool,
        }


@dataclass(frozen=True)
class EngineFacts:
    """What the engine says about its host (for host-aware labels)."""

    architecture: str  # as the engine reports it: x86_64, aarch64, ...
    runtimes: frozenset[str]
    server_version: str


class DockerProvider:
    """Runs runners as containers. See the module docstring for the design."""

    def __init__(self, settings: DockerSettings) -> None:
        pool = settings.pool
        if not settings.image.strip():
            raise ProviderError(f"pool {pool!r}: docker.image is empty")
        if settings.pull not in ("missing", "always", "never"):
            raise ProviderError(f"pool {pool!r}: docker.pull must be missing, always or never")
        if settings.stop_grace < 0:
            raise ProviderError(f"pool {pool!r}: docker.stop_grace must not be negative")
        for key in settings.labels:
            if key.startswith(LABEL_PREFIX):
                raise ProviderError(
                    f"pool {pool!r}: docker.labels must not set {key!r}: labels starting "
                    f"with {LABEL_PREFIX} are runnerscale's own"
                )
        self.settings = settings
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        #: Names being created right now: their containers exist before they are started.
        self._creating: set[str] = set()
        #: Image references already checked (present, user not root unless allowed).
        self._checked_images: set[str] = set()

    def __repr__(self) -> str:
        return f"DockerProvider(pool={self.settings.pool!r}, engine={self.engine!r})"

    @property
    def engine(self) -> str:
        """The engine's address, for messages."""
        return self.settings.host or "the engine of DOCKER_HOST (or the local socket)"

    # -- the Provider protocol

    async def create(self, spec: InstanceSpec) -> Instance:
        if not _NAME.fullmatch(spec.runner_name):
            raise ProviderError(
                f"pool {spec.pool!r}: runner name {spec.runner_name!r} is not usable as a "
                "container name (letters, digits, '.', '_' and '-', starting with a letter "
                "or digit)"
            )
        self._creating.add(spec.runner_name)
        try:
            return await asyncio.to_thread(self._create, spec)
        finally:
            self._creating.discard(spec.runner_name)

    async def delete(self, instance_id: str) -> None:
        if not _NAME.fullmatch(instance_id):
            return  # no container can have this name: nothing to delete
        await asyncio.to_thread(self._delete, instance_id)

    async def get(self, instance_id: str) -> Instance | None:
        if not _NAME.fullmatch(instance_id):
            return None
        return await asyncio.to_thread(self._get, instance_id)

    async def list(self) -> builtins.list[Instance]:
        return await asyncio.to_thread(self._list)

    async def close(self) -> None:
        """Close the client. Containers keep running: the next daemon adopts them."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)

    # -- facts about the engine's host

    def engine_facts(self) -> EngineFacts:
        """Ask the engine about its host (blocking: call it at start, or in a thread)."""
        with self._errors("cannot ask the engine about its host"):
            info = self._engine().info()
        return EngineFacts(
            architecture=str(info.get("Architecture", "")),
            runtimes=frozenset(info.get("Runtimes") or {}),
            server_version=str(info.get("ServerVersion", "")),
        )

    # -- the client

    def _engine(self) -> docker.DockerClient:
        with self._client_lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> docker.DockerClient:
        settings = self.settings
        kwargs: dict[str, Any]
        if settings.host is None:
            kwargs = dict(docker.utils.kwargs_from_env())
            if str(kwargs.get("base_url", "")).startswith("ssh://"):
                kwargs["use_ssh_client"] = True
        else:
            kwargs = {"base_url": settings.host}
            if settings.tls_ca_cert or settings.tls_client_cert:
                client_cert = None
                if settings.tls_client_cert and settings.tls_client_key:
                    client_cert = (settings.tls_client_cert, settings.tls_client_key)
                kwargs["tls"] = docker.tls.TLSConfig(
                    client_cert=client_cert,
                    ca_cert=settings.tls_ca_cert,
                    verify=settings.tls_ca_cert or True,
                )
            if settings.host.startswith("ssh://"):
                kwargs["use_ssh_client"] = True  # the system's ssh (and its config), no paramiko
        kwargs.update(timeout=API_TIMEOUT, max_pool_size=32)
        try:
            version = self._negotiate_version(kwargs)
            client = docker.DockerClient(**kwargs, version=version)
            if "tls" in kwargs:
                # Verify the engine with the configured CA only: requests would otherwise take
                # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment instead.
                client.api.trust_env = False
            return client
        except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
            raise ProviderError(
                f"pool {settings.pool!r}: cannot reach the Docker engine at {self.engine}: "
                f"{_reason(error)}"
            ) from None

    @staticmethod
    def _negotiate_version(kwargs: Mapping[str, Any]) -> str:
        """The newest API version both the SDK and the engine speak (engines from Debian's
        20.10 to today's answer). Asked with a client of our own, closed whatever happens:
        the SDK's ``version="auto"`` leaks its connection when the engine is away."""
        url = str(kwargs.get("base_url") or docker.constants.DEFAULT_UNIX_SOCKET)
        if url.startswith(("unix://", "http+unix://")):
            path = url.split("://", 1)[1]
            if not os.path.exists(path):
                # (Asking anyway would leak the SDK's socket: it does not close a failed one.)
                raise docker.errors.DockerException(f"there is no socket at {path}")
        probe = docker.APIClient(**kwargs, version=docker.constants.MINIMUM_DOCKER_API_VERSION)
        probe.trust_env = "tls" not in kwargs
        try:
            server = str(probe.version(api_version=False)["ApiVersion"])
        finally:
            probe.close()
        ours = docker.constants.DEFAULT_DOCKER_API_VERSION
        return server if docker.utils.version_lt(server, ours) else ours

    @contextlib.contextmanager
    def _errors(self, doing: str, secret: str | None = None) -> Any:
        """Turn the SDK's exceptions into ProviderError naming the pool and the engine."""
        try:
            yield
        except ProviderError:
            raise
        except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
            reason = _reason(error)
            if secret:
                reason = reason.replace(secret, "***")
            raise ProviderError(
                f"pool {self.settings.pool!r}: {doing} (engine {self.engine}): {reason}"
            ) from None

    # -- inspection

    def _owned(self, container: Container) -> bool:
        labels = container.labels or {}
        return all(labels.get(key) == value for key, value in self.settings.owner.items())

    def _find(self, name: str) -> Container | None:
        try:
            container = self._engine().containers.get(name)
        except docker.errors.NotFound:
            return None
        return container if self._owned(container) else None

    def _instance(self, container: Container) -> Instance:
        labels = container.labels or {}
        state: dict[str, Any] = container.attrs.get("State") or {}
        status = str(state.get("Status", container.status))
        name = str(labels.get(LABEL_RUNNER) or container.name or container.id)
        running = status in ("running", "restarting", "paused") or (
            status == "created" and name in self._creating
        )
        exit_code: int | None = None
        incomplete = status == "created" and not running
        if status == "running":
            detail = f"container {container.short_id} running"
        elif status == "created" and running:
            detail = f"container {container.short_id} starting"
        elif incomplete:
            detail = (
                f"incomplete: container {container.short_id} was created but never started "
                "(a create was interrupted)"
            )
        else:
            exit_code = int(state.get("ExitCode", 0))
            detail = f"container {container.short_id} {status} with code {exit_code}"
            if state.get("OOMKilled"):
                detail += " (killed: out of memory)"
            if state.get("Error"):
                detail += f" ({state['Error']})"
            if exit_code != 0:
                lines = self._last_lines(container)
                if lines:
                    detail += f"; last lines of its log:\n{lines}"
        try:
            created_at = float(labels.get(LABEL_CREATED, "0"))
        except ValueError:
            created_at = 0.0
        return Instance(
            id=str(container.name),
            runner_name=name,
            pool=self.settings.pool,
            running=running,
            exit_code=None if running else exit_code,
            created_at=created_at,
            detail=detail,
            incomplete=incomplete,
        )

    def _last_lines(self, container: Container) -> str:
        with contextlib.suppress(docker.errors.DockerException):
            raw: bytes = container.logs(tail=DETAIL_LINES, timestamps=False)
            return raw.decode(errors="replace").rstrip("\n")[-DETAIL_CHARS:]
        return ""

    def _list(self) -> builtins.list[Instance]:
        settings = self.settings
        with self._errors("cannot list containers"):
            containers = self._engine().containers.list(
                all=True,
                ignore_removed=True,  # one removed between listing and inspecting is no error
                filters={"label": [f"{key}={value}" for key, value in settings.owner.items()]},
            )
            return [self._instance(container) for container in containers]

    def _get(self, name: str) -> Instance | None:
        with self._errors(f"cannot inspect container {name}"):
            container = self._find(name)
            return None if container is None else self._instance(container)

    # -- create

    def _create(self, spec: InstanceSpec) -> Instance:
        settings = self.settings
        with self._errors(f"cannot start runner {spec.runner_name}", secret=spec.jitconfig):
            client = self._engine()
            self._ensure_image(client)
            self._ensure_volumes(client)
            self._clear_stale(client, spec.runner_name)
            created_at = time.time()
            try:
                container = self._create_container(client, spec, created_at)
                pause_after("container")
                container.start()
                pause_after("started")
                container.reload()
            except Exception as error:
                if isinstance(error, docker.errors.ImageNotFound):
                    # Removed since it was checked: check (and pull) again next time.
                    self._checked_images.discard(settings.image)
                # Whatever failed, even an answer lost after the engine made or started the
                # container (a timeout, a dropped connection), nothing of it may stay behind.
                self._discard(spec.runner_name, created_at)
                raise
            log.info(
                "started runner %s (pool %s) in container %s",
                spec.runner_name,
                spec.pool,
                container.short_id,
            )
            return self._instance(container)

    def _discard(self, name: str, created_at: float) -> None:
        """Best effort: remove the container a failed creation made, told apart from any
        other of that name (a concurrent creation's) by its creation label."""
        with contextlib.suppress(
            docker.errors.DockerException, requests.exceptions.RequestException
        ):
            container = self._find(name)
            if (
                container is not None
                and (container.labels or {}).get(LABEL_CREATED) == f"{created_at:.3f}"
            ):
                container.remove(force=True, v=True)

    def _create_container(
        self, client: docker.DockerClient, spec: InstanceSpec, created_at: float
    ) -> Container:
        settings = self.settings
        return client.containers.create(
            settings.image,
            entrypoint=self._command(spec),
            name=spec.runner_name,
            environment=self._environment(spec),
            labels={
                **settings.labels,
                **settings.owner,
                LABEL_RUNNER: spec.runner_name,
                LABEL_CREATED: f"{created_at:.3f}",
            },
            detach=True,
            stdin_open=False,
            tty=False,
            init=True,
            **self._host_options(),
        )

    def _ensure_image(self, client: docker.DockerClient) -> None:
        settings = self.settings
        image = settings.image
        if image in self._checked_images and settings.pull != "always":
            return
        found = None
        if settings.pull != "always":
            with contextlib.suppress(docker.errors.ImageNotFound):
                found = client.images.get(image)
        if found is None:
            if settings.pull == "never":
                raise ProviderError(
                    f"pool {settings.pool!r}: image {image!r} is not on the Docker engine at "
                    f"{self.engine}: build or load it there (docker build / docker load), or "
                    "set docker.pull: missing to pull it"
                )
            found = self._pull(client, image)
        user = str((found.attrs.get("Config") or {}).get("User") or "")
        if settings.user is None and user.strip() in _ROOT_USERS:
            raise ProviderError(
                f"pool {settings.pool!r}: image {image!r} runs as root, and runners run as a "
                "non-root user by default: set docker.user to a user of the image (for "
                "example '1001:1001'), or docker.user: root to allow root explicitly"
            )
        self._checked_images.add(image)

    def _pull(self, client: docker.DockerClient, image: str) -> Any:
        log.info("pool %s: pulling image %s", self.settings.pool, image)
        try:
            client.api.timeout = PULL_TIMEOUT
            # The SDK splits the reference (registry:port/name:tag, name@sha256:...) itself.
            return client.images.pull(image)
        except docker.errors.DockerException as error:
            raise ProviderError(
                f"pool {self.settings.pool!r}: image {image!r} is not on the Docker engine at "
                f"{self.engine} and pulling it failed: {_reason(error)}; build or load it "
                "there, or check the image name and the engine's registry access"
            ) from None
        finally:
            client.api.timeout = API_TIMEOUT

    def _ensure_volumes(self, client: docker.DockerClient) -> None:
        for name in self.settings.volumes:
            try:
                client.volumes.get(name)
            except docker.errors.NotFound:
                client.volumes.create(
                    name,
                    labels={
                        LABEL_CONTROLLER: self.settings.controller_id,
                        LABEL_POOL: self.settings.pool,
                    },
                )

    def _clear_stale(self, client: docker.DockerClient, name: str) -> None:
        """A container of the same name is left over: reuse the name only if it is ours and
        not running (a creation interrupted between create and start)."""
        try:
            existing = client.containers.get(name)
        except docker.errors.NotFound:
            return
        if not self._owned(existing):
            raise ProviderError(
                f"pool {self.settings.pool!r}: a container named {name} already exists and is "
                "not this controller's; not touching it"
            )
        if existing.status in ("running", "restarting", "paused"):
            raise ProviderError(
                f"pool {self.settings.pool!r}: runner {name} already runs in container "
                f"{existing.short_id}"
            )
        existing.remove(force=True, v=True)

    def _command(self, spec: InstanceSpec) -> builtins.list[str] | None:
        if self.settings.command is None:
            return None
        values = {
            "{runner_name}": spec.runner_name,
            "{pool}": spec.pool,
            JITCONFIG_PLACEHOLDER: spec.jitconfig,
        }
        return fill_placeholders(self.settings.command, values)

    def _environment(self, spec: InstanceSpec) -> dict[str, str]:
        return {
            **self.settings.env,
            "RUNNERSCALE_RUNNER_NAME": spec.runner_name,
            "RUNNERSCALE_POOL": spec.pool,
            JITCONFIG_ENV: spec.jitconfig,
        }

    def _host_options(self) -> dict[str, Any]:
        settings = self.settings
        options: dict[str, Any] = {
            "network_mode": settings.network,
            "read_only": settings.read_only,
            "user": None if settings.user in (None, "root") else settings.user,
        }
        if settings.user == "root":
            options["user"] = "0:0"
        if settings.no_new_privileges:
            options["security_opt"] = ["no-new-privileges:true"]
        if settings.cpus is not None:
            options["nano_cpus"] = round(settings.cpus * 1e9)
        if settings.memory is not None:
            options["mem_limit"] = settings.memory
            options["memswap_limit"] = settings.memory  # no swap beyond the limit
        if settings.pids_limit is not None:
            options["pids_limit"] = settings.pids_limit
        if settings.work_tmpfs is not None:
            tmpfs_options = "rw,exec,nosuid,nodev,mode=1777"
            if settings.tmpfs_size is not None:
                tmpfs_options += f",size={settings.tmpfs_size}"
            options["tmpfs"] = {settings.work_tmpfs: tmpfs_options}
        if settings.volumes:
            options["mounts"] = [
                docker.types.Mount(target=path, source=name, type="volume")
                for name, path in settings.volumes.items()
            ]
        if settings.gpus is not None:
            count = -1 if settings.gpus == "all" else int(settings.gpus)
            options["device_requests"] = [
                docker.types.DeviceRequest(count=count, capabilities=[["gpu"]])
            ]
        if settings.devices:
            options["devices"] = [f"{path}:{path}:rwm" for path in settings.devices]
        if settings.runtime is not None:
            options["runtime"] = settings.runtime
        return options

    # -- delete

    def _delete(self, name: str) -> None:
        with self._errors(f"cannot remove container {name}"):
            container = self._find(name)
            if container is None:
                return  # gone already (or never ours): success
            state: dict[str, Any] = container.attrs.get("State") or {}
            if state.get("Status") in ("running", "restarting", "paused"):
                log.info("stopping runner %s (container %s)", name, container.short_id)
                with contextlib.suppress(docker.errors.NotFound):
                    container.stop(timeout=round(self.settings.stop_grace))
            # A container that failed by itself was reported with its last log lines from
            # list()'s detail (by the controller, or the janitor for one nobody knew).
            try:
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as error:
                if not _removal_in_progress(error):
                    raise
                return  # another caller is removing it right now: that removal completes it
            log.info("removed runner %s (container %s)", name, container.short_id)


def _removal_in_progress(error: docker.errors.APIError) -> bool:
    return error.status_code == 409 and "in progress" in _reason(error)


def _reason(error: BaseException) -> str:
    """A short cause: the engine's own explanation when it gave one."""
    if isinstance(error, docker.errors.APIError) and error.explanation:
        explanation = error.explanation
        return (
            explanation.decode(errors="replace")
            if isinstance(explanation, bytes)
            else str(explanation)
        )
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:500] if text else type(error).__name__
