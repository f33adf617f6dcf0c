"""The controller's side effects: creating and removing runners, state first.

Creating a runner is three steps, each recorded before it is taken, so a crash between any two
is repaired on start (see :func:`Actions.recover`):

1. ``pending``: the runner's name is in the store; nothing exists elsewhere.
2. ``creating``: GitHub registered it (a JIT config was issued); the backend is asked for an
   instance.
3. ``booting``: the instance exists; GitHub will show the runner online when it connects.

Removing is the reverse and starts with ``deleting``: first the runner is deleted in GitHub
(a 422 means it took a job meanwhile, and it is kept), then its instance is removed. Deleting
what is already gone counts as success everywhere, so a removal can be retried until it is done.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from runnerscale.controller.observe import apply_runner_list, move
from runnerscale.controller.protocols import (
    Clock,
    DeleteOutcome,
    GitHubAPI,
    GitHubError,
    Provider,
    ProviderError,
    Store,
)
from runnerscale.model import InstanceSpec, JobState, PoolSpec, Runner, RunnerState, Target

log = logging.getLogger("runnerscale.controller")

#: Backoff after a failed creation: base * 2^(failures-1), capped.
BACKOFF_BASE = 5.0
BACKOFF_CAP = 300.0


@dataclass
class PoolRuntime:
    """A pool as the controller runs it: its limits, its backend, its failure backoff."""

    spec: PoolSpec
    provider: Provider
    #: Labels as written in the config (registered with GitHub as given).
    labels: tuple[str, ...]
    prefix: str
    consecutive_failures: int = 0
    backoff_until: float = 0.0
    healthy: bool = True
    last_error: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def failed(self, now: float, error: str) -> None:
        """Back off; several runners failing in the same cycle count as one failure."""
        self.healthy = False
        self.last_error = error
        if now < self.backoff_until:
            return
        self.consecutive_failures += 1
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (self.consecutive_failures - 1))
        self.backoff_until = now + delay

    def succeeded(self) -> None:
        self.consecutive_failures = 0
        self.backoff_until = 0.0
        self.healthy = True
        self.last_error = None


@dataclass
class Events:
    """Hooks for metrics; every callable gets the pool name and a short kind."""

    scaled: Callable[[str, str], None] = lambda pool, operation: None
    error: Callable[[str, str], None] = lambda pool, kind: None
    cleaned: Callable[[str, str], None] = lambda pool, kind: None


@dataclass
class Actions:
    store: Store
    github: GitHubAPI
    clock: Clock
    targets: dict[str, Target]
    pools: dict[str, PoolRuntime]
    events: Events = field(default_factory=Events)
    #: The unique part of runner names (the simulation passes a seeded one).
    suffix: Callable[[], str] = field(default=lambda: secrets.token_hex(4))

    def new_name(self, pool: PoolRuntime) -> str:
        return f"{pool.prefix}{self.suffix()}"

    async def create_runner(self, pool: PoolRuntime, target: Target) -> Runner | None:
        """Register a JIT runner and start its instance. None when it failed (backoff set)."""
        now = self.clock.now()
        runner = Runner(
            name=self.new_name(pool),
            pool=pool.name,
            target=target.key,
            state=RunnerState.PENDING,
            created_at=now,
            state_since=now,
        )
        self.store.add_runner(runner)
        try:
            jit = await self.github.generate_jitconfig(target, runner.name, pool.labels)
        except GitHubError as error:
            self._creation_failed(pool, runner, f"GitHub refused the JIT config: {error}")
            return None
        runner.github_id = jit.runner_id
        runner.attempts += 1
        move(self.store, runner, RunnerState.CREATING, self.clock.now(), "registered with GitHub")
        spec = InstanceSpec(
            runner_name=runner.name, pool=pool.name, jitconfig=jit.encoded, labels=pool.labels
        )
        try:
            instance = await pool.provider.create(spec)
        except ProviderError as error:
            self._creation_failed(pool, runner, f"backend could not start it: {error}")
            await self._unregister(runner)
            return None
        runner.instance_id = instance.id
        move(self.store, runner, RunnerState.BOOTING, self.clock.now(), "instance started")
        # The pool counts as working again once a runner comes online (not merely started:
        # runners that crash at start must keep backing off).
        self.events.scaled(pool.name, "create")
        return runner

    def _creation_failed(self, pool: PoolRuntime, runner: Runner, error: str) -> None:
        log.warning("pool %s: creating %s failed: %s", pool.name, runner.name, error)
        pool.failed(self.clock.now(), error)
        runner.last_error = error
        move(self.store, runner, RunnerState.FAILED, self.clock.now(), error)
        self.events.error(pool.name, "create")

    async def _unregister(self, runner: Runner) -> DeleteOutcome | None:
        """Delete the runner's GitHub registration; None when GitHub could not be asked."""
        if runner.github_id is None:
            return DeleteOutcome.GONE
        target = self.targets.get(runner.target)
        if target is None:
            return DeleteOutcome.GONE
        try:
            return await self.github.delete_runner(target, runner.github_id)
        except GitHubError as error:
            log.warning("runner %s: deleting it in GitHub failed: %s", runner.name, error)
            self.events.error(runner.pool, "delete")
            return None

    async def remove_runner(self, runner: Runner, why: str) -> bool:
        """Take a runner out of service; False when GitHub says it is busy (it is kept)."""
        previous = runner.state
        move(self.store, runner, RunnerState.DELETING, self.clock.now(), why)
        if previous is RunnerState.FINISHED and self._job_completed(runner):
            # GitHub removes a just-in-time runner itself once its job is done: no call. If
            # it has not yet, the janitor's orphan sweep deletes the leftover registration.
            return await self.remove_instance(runner)
        outcome = await self._unregister(runner)
        if outcome is None:
            return False  # retried by the janitor while the runner stays ``deleting``
        if outcome is DeleteOutcome.BUSY:
            if previous is RunnerState.FINISHED or (
                previous is RunnerState.DELETING and not await self._instance_runs(runner)
            ):
                # Its instance is gone but GitHub still holds the job (until GitHub notices
                # the runner is lost): stay ``deleting``, retried by the janitor.
                return False
            move(self.store, runner, RunnerState.BUSY, self.clock.now(), "GitHub: still busy")
            return False
        return await self.remove_instance(runner)

    def _job_completed(self, runner: Runner) -> bool:
        if runner.job_id is None:
            return False
        job = self.store.get_job(runner.job_id)
        return job is not None and job.state is JobState.COMPLETED

    async def _instance_runs(self, runner: Runner) -> bool:
        """Whether the runner's instance still runs (when the backend cannot say: yes)."""
        pool = self.pools.get(runner.pool)
        if runner.instance_id is None or pool is None:
            return False
        try:
            instance = await pool.provider.get(runner.instance_id)
        except ProviderError:
            return True
        return instance is not None and instance.running

    async def remove_instance(self, runner: Runner) -> bool:
        pool = self.pools.get(runner.pool)
        if runner.instance_id is not None and pool is not None:
            try:
                await pool.provider.delete(runner.instance_id)
            except ProviderError as error:
                log.warning("runner %s: removing its instance failed: %s", runner.name, error)
                self.events.error(runner.pool, "delete")
                return False
        move(self.store, runner, RunnerState.GONE, self.clock.now(), "removed")
        self.events.scaled(runner.pool, "delete")
        return True

    async def refresh_runner_lists(self, keys: Iterable[str]) -> list[GitHubError]:
        """Read GitHub's runner lists of these targets and apply them; runners seen online for
        the first time mark their pool as working. Every target is tried; the errors are
        returned."""
        errors: list[GitHubError] = []
        now = self.clock.now()
        for key in sorted(set(keys)):
            target = self.targets.get(key)
            if target is None:
                continue
            try:
                listed = await self.github.list_runners(target)
            except GitHubError as error:
                log.warning("runners of %s: %s", target.name, error)
                errors.append(error)
                continue
            for runner in apply_runner_list(self.store, key, listed, now):
                self.came_online(runner.name)
        return errors

    def came_online(self, runner_name: str) -> None:
        """A runner of ours connected to GitHub: its pool works (ends its failure backoff)."""
        runner = self.store.get_runner(runner_name)
        pool = self.pools.get(runner.pool) if runner is not None else None
        if pool is None:
            return
        if not pool.healthy:
            log.info("pool %s: runner %s came online: the pool works again", pool.name, runner_name)
        pool.succeeded()

    async def recover(self) -> None:
        """Repair what a crash left between a state write and its side effect."""
        for runner in self.store.runners(states=[RunnerState.PENDING, RunnerState.CREATING]):
            pool = self.pools.get(runner.pool)
            instance = None
            if pool is not None:
                instance = next(
                    (i for i in await pool.provider.list() if i.runner_name == runner.name), None
                )
            if runner.state is RunnerState.CREATING and instance is not None:
                runner.instance_id = instance.id
                move(self.store, runner, RunnerState.BOOTING, self.clock.now(), "adopted")
                continue
            # Its JIT config is lost with the crash: undo the registration, if any.
            await self.remove_runner(runner, "interrupted while being created")
