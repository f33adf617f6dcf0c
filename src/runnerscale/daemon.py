"""Assembling the daemon from a configuration: the implementations behind each protocol.

:class:`Daemon` owns the store, the GitHub client, one backend per pool, the controller and the
HTTP server, and starts and stops them in order. ``runnerscale run`` and ``runnerscale demo``
both use it; only here do the configuration's types meet the controller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.exc import SQLAlchemyError

from runnerscale.clock import Clock, SystemClock
from runnerscale.config.paths import mask_url, url_secrets
from runnerscale.config.schema import AppConfig, Config, GitHubConfig, PoolConfig
from runnerscale.control import ControlError, Listeners, open_listeners
from runnerscale.controller.loops import DAEMON_COALESCE, Controller
from runnerscale.github.client import AppCredentials, GitHubClient
from runnerscale.github.scaleset import ScaleSetClient
from runnerscale.github.weburl import target_web_url
from runnerscale.heap import HeapKeeper
from runnerscale.hostlabels import HostFacts, HostLabelError, expand_labels
from runnerscale.instance_access import InstanceAccess
from runnerscale.instancemeta import InstanceRegistry
from runnerscale.metrics import Metrics
from runnerscale.model import ARCH_LABELS, AUTO_LABEL, Target, normalize_labels
from runnerscale.protocols import GitHubError, Provider, ProviderError
from runnerscale.providers.registry import BackendContext, UnknownBackendError, backend
from runnerscale.scaleset_api import ScaleSetAPI
from runnerscale.server import DaemonHTTP
from runnerscale.store import SqlStore, StateVersionError, open_store
from runnerscale.store.deployment import choose_controller_id
from runnerscale.store.leadership import open_leadership
from runnerscale.succession import Succession
from runnerscale.wiring import apply_settings, build_controller, pool_runtime, scale_set_clients

log = logging.getLogger("runnerscale")


class StartupError(Exception):
    """The daemon cannot start; the message says what to fix."""


class HostUnknownError(StartupError):
    """A pool's host cannot be asked for its labels now (its Docker engine is away)."""


def store_url(config: Config) -> str:
    """The SQLAlchemy URL of the configured state (SQLite paths are absolute in the config)."""
    path = config.sqlite_path
    if path is not None:
        return f"sqlite:///{path}"
    return config.state


def instance_id() -> str:
    """This daemon's id among its deployment's daemons, as status and the logs show it: its
    host and process, and a few random digits (two daemons in one process stay apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


def pool_target(config: Config, pool: PoolConfig) -> Target:
    """Where a pool's runners register: its scale set's target, else the first target."""
    return config.scale_set_target(pool)


def downloads_target(targets: list[Target], target: Target) -> Target | None:
    """Whose runner downloads list stands for ``target``'s: its own, or for an enterprise
    (GitHub lists none) the first repo or org target; None when there is none."""
    if target.kind != "enterprise":
        return target
    return next((other for other in targets if other.kind != "enterprise"), None)


def runner_downloads(
    github: GitHubClient, targets: list[Target], target: Target
) -> Callable[[], Awaitable[list[dict[str, str]]]]:
    """What a backend awaits for the runner downloads of ``target`` (GitHub asked then)."""
    source = downloads_target(targets, target)

    async def downloads() -> list[dict[str, str]]:
        if source is None:
            raise GitHubError(
                f"GitHub lists runner downloads for repositories and organisations only, and "
                f"{target.key} is an enterprise: add one of its organisations as a target "
                "(targets: - org: NAME)"
            )
        return await github.runner_downloads(source)

    return downloads


def _instance_context(
    context: BackendContext,
    config: Config,
    pool: PoolConfig,
    instances: InstanceAccess,
    github: GitHubClient | None,
) -> BackendContext:
    """The context's fields for backends whose instances boot by the daemon's endpoints."""
    target = pool_target(config, pool)
    return replace(
        context,
        instance_access=instances,
        boot_timeout=pool.boot_timeout,
        target_url=target_web_url(config.github.api_url, target),
        runner_group=target.runner_group or "",
        runner_downloads=None
        if github is None
        else runner_downloads(github, config.to_targets(), target),
    )


def build_provider(
    config: Config,
    pool: PoolConfig,
    controller_id: str,
    record: Callable[[str, str], None] | None = None,
    *,
    instances: InstanceAccess | None = None,
    github: GitHubClient | None = None,
) -> Provider:
    """The backend of one pool, built by the installed backend the pool names (the
    ``runnerscale.providers`` entry points). A backend imports its SDK only when it builds a
    provider, so a Docker-less host never needs the docker package. ``record``: where the
    backend counts its own events (the daemon's metrics; none: nowhere). ``instances``: the
    daemon's per-instance tokens (with ``github``, for the runner downloads), for backends
    whose instances fetch their JIT config from the daemon."""
    try:
        entry = backend(pool.provider)
    except UnknownBackendError as error:
        raise StartupError(f"pool {pool.name}: {error}") from None
    context = BackendContext(
        pool=pool.name,
        controller_id=controller_id,
        state_dir=config.state_dir,
        labels=normalize_labels(pool.labels) - {AUTO_LABEL},
        boot_timeout=pool.boot_timeout,
    )
    if record is not None:
        context = replace(context, record=record)
    if instances is not None:
        context = _instance_context(context, config, pool, instances, github)
    try:
        return entry.build(pool.settings, context)
    except ProviderError as error:
        raise StartupError(str(error)) from None


def declared_backend_events(config: Config) -> dict[str, Mapping[str, tuple[str, ...]]]:
    """The events each pool's backend declares it counts (their series start at zero); a
    pool naming no installed backend has none (:func:`build_provider` refuses it)."""
    declared = {}
    for pool in config.pools:
        with contextlib.suppress(UnknownBackendError):
            declared[pool.name] = backend(pool.provider).events
    return declared


def github_client(
    config: Config, clock: Clock, on_secret: Callable[[str], None] | None = None
) -> GitHubClient:
    """The GitHub client of the configured credentials: a token, or a GitHub App (whose key
    is read and checked here, so a bad key stops the start with a clear message)."""
    github = config.github
    verify: bool | str = True if github.ca_bundle is None else str(github.ca_bundle)
    common: dict[str, Any] = {
        "verify": verify,
        "clock": clock.now,
        "sleep": clock.sleep,
        "on_secret": on_secret,
    }
    try:
        return _github_client(github, common)
    except ValueError as error:  # the CA bundle
        raise StartupError(str(error)) from None


def _github_client(github: GitHubConfig, common: dict[str, Any]) -> GitHubClient:
    if github.token is not None:
        return GitHubClient(github.api_url, github.token.get_secret_value(), **common)
    assert github.app is not None
    app = AppCredentials(
        app_id=github.app.id,
        private_key=app_private_key(github.app),
        installation_id=github.app.installation_id,
    )
    return GitHubClient(github.api_url, app=app, **common)


def scale_set_apis(config: Config, github: GitHubClient, clock: Clock) -> dict[str, ScaleSetAPI]:
    """The Actions-service client of each scale-set pool, by pool name: one per target a
    scale set lives at, over the daemon's GitHub client (its credentials start the
    authentication chain). Empty without scale-set pools."""
    return scale_set_clients(config, lambda target: ScaleSetClient(github, target, clock=clock))


def app_private_key(app: AppConfig) -> str:
    """The App's private key (PEM), from the config or its file; it must be an RSA key."""
    if app.private_key is not None:
        pem = app.private_key.get_secret_value()
        where = "github.app.private_key"
    else:
        assert app.private_key_file is not None
        where = f"github.app.private_key_file ({app.private_key_file})"
        try:
            pem = app.private_key_file.read_text()
        except OSError as error:
            raise StartupError(
                f"cannot read {where}: {error.strerror}: give the path of the App's .pem file "
                "(downloaded from the App's settings, Private keys)"
            ) from None
        except UnicodeDecodeError:
            raise StartupError(f"{where} is not a PEM text file") from None
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise StartupError(
            f"{where} is not a readable PEM private key: use the .pem file GitHub generated "
            "for the App (unencrypted, BEGIN RSA PRIVATE KEY ... END RSA PRIVATE KEY)"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise StartupError(
            f"{where} is not an RSA key: GitHub Apps sign with RS256, so use the App's own .pem"
        )
    return pem


def host_facts(pool: PoolConfig, provider: Provider) -> HostFacts:
    """What ``auto`` stands for in this pool: its backend host's architecture and the
    accelerators its runners get, as the pool's backend tells (a Docker engine is asked,
    blocking, once, at start)."""
    describe = backend(pool.provider).host_facts
    if describe is None:
        raise StartupError(f"pool {pool.name}: its backend cannot describe its host")
    try:
        return describe(pool.settings, provider)
    except ProviderError as error:
        raise HostUnknownError(str(error)) from None


def _names_host(pool: PoolConfig) -> bool:
    labels = {label.strip().lower() for label in pool.labels}
    return AUTO_LABEL in labels or bool(labels & ARCH_LABELS)


def resolve_host_labels(
    config: Config,
    providers: Mapping[str, Provider],
    known: dict[str, HostFacts],
    waiting: dict[str, str] | None = None,
) -> Config:
    """The configuration with each pool's ``auto`` replaced by its host's labels, and checked
    against the host's architecture. ``known`` caches facts per pool (filled in here) so a
    reload does not ask the hosts again. A pool whose host cannot be asked now is left as it
    is and named in ``waiting`` with the reason (without ``waiting``, that stops the start)."""
    pools = []
    for pool in config.pools:
        if not _names_host(pool) or (pool.name not in providers and pool.name not in known):
            pools.append(pool)  # (a pool added by a reload is not started: no host to ask)
            continue
        if pool.name not in known:
            try:
                known[pool.name] = host_facts(pool, providers[pool.name])
            except HostUnknownError as error:
                if waiting is None:
                    raise
                waiting[pool.name] = str(error)
                pools.append(pool)
                continue
            if waiting is not None:
                waiting.pop(pool.name, None)
        try:
            labels = expand_labels(pool.labels, known[pool.name], pool=pool.name)
        except HostLabelError as error:
            raise StartupError(str(error)) from None
        if list(labels) != pool.labels:
            log.info("pool %s: labels %s", pool.name, ", ".join(labels))
        pools.append(pool.model_copy(update={"labels": list(labels)}))
    return config.model_copy(update={"pools": pools})


@dataclass
class Daemon:
    config: Config
    clock: Clock
    store: SqlStore
    github: GitHubClient
    controller: Controller
    metrics: Metrics
    #: The public listener (webhook, metrics, health) and the control API's.
    http: Listeners
    #: Leads (runs the controller) or stands by for another daemon on the same state.
    succession: Succession
    #: What ``auto`` stood for, per pool (kept for reloads).
    host_facts: dict[str, HostFacts] = field(default_factory=dict)
    #: Pools whose host labels are not known yet (their engine is away), and why.
    waiting: dict[str, str] = field(default_factory=dict)
    #: The Actions-service client of each scale-set pool (closed on stopping).
    scale_sets: dict[str, ScaleSetAPI] = field(default_factory=dict)
    #: The per-instance tokens of backends whose instances boot by the daemon's endpoints.
    instances: InstanceRegistry | None = None
    #: Keeps the cyclic collector off settled objects (:mod:`runnerscale.heap`).
    heap: HeapKeeper = field(default_factory=HeapKeeper)
    _host_task: asyncio.Task[None] | None = None

    @classmethod
    def build(
        cls,
        config: Config,
        *,
        clock: Clock | None = None,
        controller_id: str | None = None,
        port: int | None = None,
        on_secret: Callable[[str], None] | None = None,
    ) -> Daemon:
        """``on_secret`` learns every credential obtained while running (installation
        tokens), for the log redactor. ``controller_id`` (tests, the demo) overrides the
        deployment's, which is kept in the state (:mod:`runnerscale.store.deployment`)."""
        clock = clock or SystemClock()
        github_config = config.github
        github = github_client(config, clock, on_secret)
        url = store_url(config)
        try:
            store = open_store(url)
        except StateVersionError as error:
            raise StartupError(f"cannot use the state {mask_url(config.state)}: {error}") from None
        except (SQLAlchemyError, OSError) as error:
            said = str(error)
            for password in url_secrets(config.state):
                said = said.replace(password, "***")
            raise StartupError(
                f"cannot open the state database {mask_url(config.state)}: {said}"
            ) from None
        if controller_id is None:
            controller_id = choose_controller_id(store, config.controller_id)
        holder: dict[str, Controller] = {}
        metrics = Metrics(
            lambda: holder["controller"].status,
            lambda: github.budget,
            pools=[pool.name for pool in config.pools],
            backend_events=declared_backend_events(config),
            scale_sets=any(pool.scale_set is not None for pool in config.pools),
        )
        # One registry of instance tokens for the daemon; its URLs are known once the
        # listener is bound (below), before any backend grants (at create, after start).
        instances = InstanceRegistry(clock)
        providers = {
            pool.name: build_provider(
                config,
                pool,
                controller_id,
                metrics.backend_recorder(pool.name),
                instances=instances,
                github=github,
            )
            for pool in config.pools
        }
        facts: dict[str, HostFacts] = {}
        waiting: dict[str, str] = {}
        config = resolve_host_labels(config, providers, facts, waiting)
        for name, reason in waiting.items():
            log.warning(
                "%s. Pool %s takes no jobs until its engine answers (asked again every %gs)",
                reason,
                name,
                config.timeouts.janitor_interval,
            )
        scale_sets = scale_set_apis(config, github, clock)
        controller = build_controller(
            config,
            store=store,
            github=github,
            clock=clock,
            providers=providers,
            waiting=waiting,
            events=metrics.events(),
            on_job_started=metrics.job_started,
            poll_pacer=github,
            scale_sets=scale_sets,
            owner=controller_id,
        )
        holder["controller"] = controller
        # Reconciles coalesce on the wall clock: a burst of deliveries costs a few, not one each.
        controller.settings.reconcile_coalesce = DAEMON_COALESCE
        for runtime in controller.pools.values():
            if runtime.capped_by is not None:
                log.warning("pool %s: max_runners %s", runtime.name, runtime.capped_by)
        succession = Succession(
            open_leadership(url, instance_id()),
            controller,
            clock,
            controller_id=controller_id,
            on_lead=store.resync,
        )
        secret = github_config.webhook_secret
        http = DaemonHTTP(
            controller,
            store,
            metrics,
            secret.get_secret_value() if secret is not None else None,
            budget=github.budget,
            role=succession.role,
            instances=instances,
        )
        try:
            server = open_listeners(http, config, port, on_secret)
        except ControlError as error:
            store.close()
            raise StartupError(str(error)) from None
        return cls(
            config,
            clock,
            store,
            github,
            controller,
            metrics,
            server,
            succession,
            facts,
            waiting,
            scale_sets,
            instances,
        )

    @property
    def url(self) -> str:
        return self.http.url

    async def start(self) -> None:
        if self.config.github.webhook_secret is None:
            log.warning("no github.webhook_secret: webhooks are refused, polling alone finds jobs")
        await self.check_access()
        await self.http.start()
        # Webhook deliveries are committed in groups by a thread of their own from now on
        # (started once the listener is: a start that fails leaves no thread behind).
        self.controller.deliveries.start()
        # Leads at once when no other daemon does; else stands by (webhooks go to the store).
        await self.succession.start()
        if self.waiting:
            self._host_task = asyncio.create_task(self._await_hosts(), name="hosts")
        self.heap.start()
        log.info(
            "runnerscale listening on %s (%d pools, %d targets)",
            self.url,
            len(self.controller.pools),
            len(self.controller.targets),
        )

    async def check_access(self) -> None:
        """Refuse to start when the credentials visibly lack a permission a target needs
        (GitHub unreachable: said, and the start goes on; the loops retry)."""
        try:
            problems = await self.github.check_access(self.config.to_targets())
        except GitHubError as error:
            if error.status in (401, 403, 404):
                # Bad credentials, or a target they cannot see: nothing would work.
                problems = [str(error)]
            else:
                log.warning("cannot check the GitHub credentials' permissions now: %s", error)
                return
        if problems:
            await self._close_scale_sets()
            await self.github.close()
            self.store.close()
            raise StartupError("\n".join(problems))

    async def stop(self, *, remove_runners: bool = False) -> None:
        """Stop serving and deciding. Runners keep running; the next start adopts them.

        ``remove_runners`` (the demo's, whose runners must end with it) stops and removes
        every runner of every pool once the loops have stopped, so none is started after."""
        await self.heap.stop()
        if self._host_task is not None:
            self._host_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._host_task
        await self.succession.stop()  # the loops first, then the lead: nobody acts twice
        await self.http.stop()
        await self.controller.deliveries.stop()  # what is queued is written first
        if remove_runners:
            await self._remove_runners()
        for pool in self.controller.pools.values():
            await pool.provider.close()
        await self._close_scale_sets()
        await self.github.close()
        self.store.close()

    async def _close_scale_sets(self) -> None:
        """Close the Actions-service clients (the listeners closed their sessions as the
        loops stopped)."""
        for client in {id(api): api for api in self.scale_sets.values()}.values():
            await client.close()

    async def _remove_runners(self) -> None:
        """Stop and remove every instance of every pool's backend, busy or not. A create that
        was in flight when the loops stopped finishes first (a backend lists it once made),
        hence the few rounds."""
        for _ in range(3):
            found = [
                (pool.provider, instance)
                for pool in self.controller.pools.values()
                for instance in await pool.provider.list()
            ]
            if not found:
                return
            results = await asyncio.gather(
                *(provider.delete(instance.id) for provider, instance in found),
                return_exceptions=True,
            )
            for (_, instance), result in zip(found, results, strict=True):
                if isinstance(result, Exception):
                    log.error("cannot remove runner %s: %s", instance.runner_name, result)

    async def _await_hosts(self) -> None:
        """Ask the hosts of waiting pools again, every janitor interval, until each answers."""
        while self.waiting:
            await self.clock.sleep(self.config.timeouts.janitor_interval)
            for name in list(self.waiting):
                await self._ask_host(name)

    async def _ask_host(self, name: str) -> None:
        runtime = self.controller.pools[name]
        index, pool = next((i, p) for i, p in enumerate(self.config.pools) if p.name == name)
        try:
            facts = await asyncio.to_thread(host_facts, pool, runtime.provider)
        except HostUnknownError as error:
            self.waiting[name] = runtime.last_error = str(error)
            return
        try:
            labels = expand_labels(pool.labels, facts, pool=name)
        except HostLabelError as error:
            # Its host is not what its labels say: that needs the configuration fixed (a
            # reload or a restart); the pool keeps taking no jobs meanwhile.
            del self.waiting[name]
            runtime.last_error = str(error)
            log.error("pool %s: %s", name, error)
            return
        self.host_facts[name] = facts
        resolved = pool.model_copy(update={"labels": list(labels)})
        pools = list(self.config.pools)
        pools[index] = resolved
        self.config = self.config.model_copy(update={"pools": pools})
        updated = pool_runtime(resolved, self.config.pool_spec(index), runtime.provider)
        runtime.spec = updated.spec
        runtime.labels = updated.labels
        runtime.succeeded()
        runtime.last_error = None
        del self.waiting[name]
        log.info("pool %s: its engine answered: labels %s; it takes jobs", name, ", ".join(labels))
        self.controller.kick()

    def reload(self, config: Config) -> list[str]:
        """Apply a new configuration's pool limits (SIGHUP). Returns what changed.

        Limits (``min_idle``'s warm windows too, ``budget``), labels, timeouts and
        ``rerun_lost_jobs`` of existing pools change in place;
        adding or removing pools, targets, credentials or the backend needs a restart (said in
        the result).
        Raises :class:`StartupError`, changing nothing, when new labels contradict a pool's
        host.
        """
        providers = {name: pool.provider for name, pool in self.controller.pools.items()}
        # May refuse; a pool whose engine is still away stays waiting.
        config = resolve_host_labels(config, providers, self.host_facts, self.waiting)
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
            if (before.provider, before.settings) != (pool_config.provider, pool_config.settings):
                changes.append(
                    f"pool {pool_config.name}: backend settings changed: restart runnerscale to "
                    "apply them (runners keep running and are adopted)"
                )
            updated = pool_runtime(
                pool_config, spec, runtime.provider, self.waiting.get(pool_config.name)
            )
            if (updated.spec, updated.warm) != (runtime.spec, runtime.warm):
                changes.append(f"pool {pool_config.name}: limits updated")
                if updated.spec.ready and not runtime.spec.ready:
                    runtime.succeeded()  # its labels are known now
                    runtime.last_error = None
                runtime.spec = updated.spec
                runtime.warm = updated.warm  # (warm windows: the next decision asks them)
            if before.scale_set != pool_config.scale_set:
                changes.append(
                    f"pool {pool_config.name}: its scale set changed: restart runnerscale to "
                    "apply that"
                )
            runtime.labels = updated.labels
            runtime.capped_by = updated.capped_by
            if updated.rerun_lost_jobs != runtime.rerun_lost_jobs:
                changes.append(f"pool {pool_config.name}: rerun_lost_jobs updated")
                runtime.rerun_lost_jobs = updated.rerun_lost_jobs
            if updated.create_concurrency != runtime.create_concurrency:
                changes.append(f"pool {pool_config.name}: create_concurrency updated")
                runtime.create_concurrency = updated.create_concurrency
        apply_settings(self.controller.settings, config)
        self.config = config
        return changes
