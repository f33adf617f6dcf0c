"""Assembling the daemon from a configuration: the implementations behind each protocol.

:class:`Daemon` owns the store, the GitHub client, one backend per pool, the controller and the
HTTP server, and starts and stops them in order. ``runnerscale run`` and ``runnerscale demo``
both use it; only here do the configuration's types meet the controller's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runnerscale.clock import Clock, SystemClock
from runnerscale.config import Config, DockerConfig, PoolConfig
from runnerscale.controller.actions import PoolRuntime
from runnerscale.controller.janitor import JanitorSettings
from runnerscale.controller.loops import Controller, ControllerSettings
from runnerscale.controller.protocols import Provider, ProviderError
from runnerscale.github.client import GitHubClient
from runnerscale.hostlabels import (
    HostFacts,
    HostLabelError,
    container_host_facts,
    detect_local_host,
    expand_labels,
)
from runnerscale.httpserve import LoopbackServer
from runnerscale.metrics import Metrics
from runnerscale.model import ARCH_LABELS, AUTO_LABEL, PoolSpec
from runnerscale.providers.local import LocalProvider, LocalSettings
from runnerscale.server import DaemonHTTP
from runnerscale.store import SqlStore, open_store

log = logging.getLogger("runnerscale")


class StartupError(Exception):
    """The daemon cannot start; the message says what to fix."""


def store_url(config: Config) -> str:
    """The SQLAlchemy URL of the configured state (SQLite paths are absolute in the config)."""
    path = config.sqlite_path
    if path is not None:
        return f"sqlite:///{path}"
    return config.state


def build_provider(config: Config, pool: PoolConfig, controller_id: str) -> Provider:
    """The backend of one pool. A backend's module (and its SDK) is imported only when a pool
    uses it, so a Docker-less host never needs the docker package."""
    if pool.provider == "local" and pool.local is not None:
        local = pool.local
        return LocalProvider(
            LocalSettings(
                command=tuple(local.command),
                env=dict(local.env),
                work_root=config.local_work_root(pool) / pool.name,
                capacity=local.effective_capacity,
                user=local.user,
                stop_grace=local.stop_grace,
                controller_id=controller_id,
                pool=pool.name,
            )
        )
    if pool.provider == "docker" and pool.docker is not None:
        return _docker_provider(pool, pool.docker, controller_id)
    raise StartupError(f"pool {pool.name}: provider {pool.provider!r} is not available")


def _docker_provider(pool: PoolConfig, docker: DockerConfig, controller_id: str) -> Provider:
    try:
        from runnerscale.providers.docker import (  # noqa: PLC0415 - an optional extra
            DockerProvider,
            DockerSettings,
        )
    except ImportError:
        raise StartupError(
            f"pool {pool.name}: the docker backend needs the docker package: "
            "pip install 'runnerscale[docker]'"
        ) from None

    def text(path: Path | None) -> str | None:
        return None if path is None else str(path)

    try:
        return DockerProvider(
            DockerSettings(
                pool=pool.name,
                image=docker.image,
                host=docker.host,
                tls_ca_cert=text(docker.tls_ca_cert),
                tls_client_cert=text(docker.tls_client_cert),
                tls_client_key=text(docker.tls_client_key),
                command=None if docker.command is None else tuple(docker.command),
                env=dict(docker.env),
                cpus=docker.cpus,
                memory=docker.memory,
                pids_limit=docker.pids_limit,
                user=docker.user,
                network=docker.network,
                read_only=docker.read_only,
                work_tmpfs=docker.work_tmpfs,
                tmpfs_size=docker.tmpfs_size,
                volumes=dict(docker.volumes),
                labels=dict(docker.labels),
                gpus=docker.gpus,
                devices=tuple(docker.devices),
                runtime=docker.runtime,
                pull=docker.pull,
                no_new_privileges=docker.no_new_privileges,
                stop_grace=docker.stop_grace,
                controller_id=controller_id,
            )
        )
    except ProviderError as error:
        raise StartupError(str(error)) from None


def host_facts(pool: PoolConfig, provider: Provider) -> HostFacts:
    """What ``auto`` stands for in this pool: its backend host's architecture and the
    accelerators its runners get. Asks a Docker engine (blocking, once, at start)."""
    if pool.docker is not None:
        facts_of = getattr(provider, "engine_facts", None)
        if facts_of is None:
            raise StartupError(f"pool {pool.name}: its backend cannot describe its host")
        try:
            engine = facts_of()
        except ProviderError as error:
            raise StartupError(
                f"{error}; the pool's labels need the engine's architecture (they name "
                "'auto' or an architecture): start the engine, or write the labels out"
            ) from None
        return container_host_facts(
            engine.architecture,
            gpus=pool.docker.gpus is not None,
            devices=pool.docker.devices,
        )
    return detect_local_host()


def _names_host(pool: PoolConfig) -> bool:
    labels = {label.strip().lower() for label in pool.labels}
    return AUTO_LABEL in labels or bool(labels & ARCH_LABELS)


def resolve_host_labels(
    config: Config, providers: Mapping[str, Provider], known: dict[str, HostFacts]
) -> Config:
    """The configuration with each pool's ``auto`` replaced by its host's labels, and checked
    against the host's architecture. ``known`` caches facts per pool (filled in here) so a
    reload does not ask the hosts again."""
    pools = []
    for pool in config.pools:
        if not _names_host(pool) or (pool.name not in providers and pool.name not in known):
            pools.append(pool)  # (a pool added by a reload is not started: no host to ask)
            continue
        if pool.name not in known:
            known[pool.name] = host_facts(pool, providers[pool.name])
        try:
            labels = expand_labels(pool.labels, known[pool.name], pool=pool.name)
        except HostLabelError as error:
            raise StartupError(str(error)) from None
        if list(labels) != pool.labels:
            log.info("pool %s: labels %s", pool.name, ", ".join(labels))
        pools.append(pool.model_copy(update={"labels": list(labels)}))
    return config.model_copy(update={"pools": pools})


def pool_runtime(
    config: Config, pool: PoolConfig, spec: PoolSpec, provider: Provider
) -> PoolRuntime:
    cap = spec.max_runners
    if pool.local is not None:
        # A local pool cannot run more runners than its host's capacity allows.
        cap = min(cap, pool.local.effective_capacity)
    capped = PoolSpec(
        name=spec.name,
        labels=spec.labels,
        max_runners=cap,
        min_idle=min(spec.min_idle, cap),
        idle_timeout=spec.idle_timeout,
        boot_timeout=spec.boot_timeout,
        order=spec.order,
    )
    return PoolRuntime(
        spec=capped, provider=provider, labels=tuple(pool.labels), prefix=pool.runner_prefix
    )


@dataclass
class Daemon:
    config: Config
    clock: Clock
    store: SqlStore
    github: GitHubClient
    controller: Controller
    metrics: Metrics
    http: LoopbackServer
    #: What ``auto`` stood for, per pool (kept for reloads).
    host_facts: dict[str, HostFacts] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        config: Config,
        *,
        clock: Clock | None = None,
        controller_id: str = "runnerscale",
        port: int | None = None,
    ) -> Daemon:
        clock = clock or SystemClock()
        github_config = config.github
        if github_config.token is None:
            raise StartupError(
                "GitHub App authentication is not available in this version: "
                "set github.token to a personal access token"
            )
        store = open_store(store_url(config))
        verify: bool | str = True
        if github_config.ca_bundle is not None:
            verify = str(github_config.ca_bundle)
        github = GitHubClient(
            github_config.api_url, github_config.token.get_secret_value(), verify=verify
        )
        providers = {
            pool.name: build_provider(config, pool, controller_id) for pool in config.pools
        }
        facts: dict[str, HostFacts] = {}
        config = resolve_host_labels(config, providers, facts)
        specs = config.pool_specs()
        pools = [
            pool_runtime(config, pool, spec, providers[pool.name])
            for pool, spec in zip(config.pools, specs, strict=True)
        ]
        holder: dict[str, Controller] = {}
        metrics = Metrics(lambda: holder["controller"].status, lambda: github.budget)
        settings = ControllerSettings(
            poll_interval=config.poll_interval,
            janitor_interval=config.timeouts.janitor_interval,
            queued_recheck=config.timeouts.queued_recheck,
            janitor=JanitorSettings(
                create_timeout=config.timeouts.create, delete_timeout=config.timeouts.delete
            ),
        )
        controller = Controller(
            store,
            github,
            clock,
            pools=pools,
            targets=config.to_targets(),
            settings=settings,
            events=metrics.events(),
            on_job_started=metrics.job_started,
        )
        holder["controller"] = controller
        secret = github_config.webhook_secret
        http = DaemonHTTP(
            controller,
            store,
            metrics,
            secret.get_secret_value() if secret is not None else None,
            github.budget,
        )
        server = LoopbackServer(
            http.app(), config.server.host, config.server.port if port is None else port
        )
        return cls(config, clock, store, github, controller, metrics, server, facts)

    @property
    def url(self) -> str:
        return self.http.url

    async def start(self) -> None:
        if self.config.github.webhook_secret is None:
            log.warning("no github.webhook_secret: webhooks are refused, polling alone finds jobs")
        await self.http.start()
        await self.controller.start()
        log.info(
            "runnerscale listening on %s (%d pools, %d targets)",
            self.url,
            len(self.controller.pools),
            len(self.controller.targets),
        )

    async def stop(self) -> None:
        """Stop serving and deciding. Runners keep running; the next start adopts them."""
        await self.controller.stop()
        await self.http.stop()
        for pool in self.controller.pools.values():
            await pool.provider.close()
        await self.github.close()
        self.store.close()

    def reload(self, config: Config) -> list[str]:
        """Apply a new configuration's pool limits (SIGHUP). Returns what changed.

        Limits, labels and timeouts of existing pools change in place; adding or removing
        pools, targets, credentials or the backend needs a restart (said in the result).
        Raises :class:`StartupError`, changing nothing, when new labels contradict a pool's
        host.
        """
        providers = {name: pool.provider for name, pool in self.controller.pools.items()}
        config = resolve_host_labels(config, providers, self.host_facts)  # may refuse
        changes: list[str] = []
        old_names = [pool.name for pool in self.config.pools]
        new_names = [pool.name for pool in config.pools]
        if old_names != new_names:
            changes.append("pools were added or removed: restart runnerscale to apply that")
        for pool_config, spec in zip(config.pools, config.pool_specs(), strict=True):
            runtime = self.controller.pools.get(pool_config.name)
            if runtime is None:
                continue
            before = next(p for p in self.config.pools if p.name == pool_config.name)
            if (before.provider, before.local, before.docker) != (
                pool_config.provider,
                pool_config.local,
                pool_config.docker,
            ):
                changes.append(
                    f"pool {pool_config.name}: backend settings changed: restart runnerscale to "
                    "apply them (runners keep running and are adopted)"
                )
            updated = pool_runtime(config, pool_config, spec, runtime.provider)
            if updated.spec != runtime.spec:
                changes.append(f"pool {pool_config.name}: limits updated")
                runtime.spec = updated.spec
            runtime.labels = updated.labels
        settings = self.controller.settings
        settings.poll_interval = config.poll_interval
        settings.janitor_interval = config.timeouts.janitor_interval
        settings.queued_recheck = config.timeouts.queued_recheck
        settings.janitor.create_timeout = config.timeouts.create
        settings.janitor.delete_timeout = config.timeouts.delete
        self.config = config
        return changes
