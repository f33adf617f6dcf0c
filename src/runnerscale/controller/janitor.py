"""The janitor: no state stays stuck, nothing is leaked.

Every state that waits on the outside world has a deadline, and the janitor acts when it
passes: a runner that never comes online within its pool's ``boot_timeout`` is removed, a
creation that hangs is undone, a removal that failed is retried, a finished runner is reaped.
It also compares the three inventories and removes what only one of them holds: GitHub runners
carrying a pool's name prefix that runnerscale does not track, and backend instances whose
runner is unknown or already gone. Each clean-up is counted by kind. A runner whose instance
vanished while it was busy lost its job: that is recorded (:mod:`runnerscale.controller.reruns`).

The create timeout (``timeouts.create``) is for a runner *being created*: ``creating``, and
``pending`` once its pool's worker has begun its creation (it took a slot and asks GitHub for
its JIT config: ``state_since`` is set then). A ``pending`` runner its worker holds back
before that, waiting for GitHub's registration budget to reset or for a free creation slot
(:attr:`Actions.waiting <runnerscale.controller.actions.Actions.waiting>`), is not being
created: it never times out, however long the wait (a registration window may reset an hour
away), and it is counted in the status instead. Every other ``pending`` row times out from
its ``state_since`` as before: one no worker holds (its worker stopped or its task failed,
or its pool is not one this daemon runs), so no row stays ``pending`` for good.

A crash in the middle of a create leaves something the create never finished (a runner folder
without its record, a container never started): backends list it as ``incomplete``. Such a
leftover is removed like any orphan, but only once it is older than the create timeout
(``timeouts.create``): one that young may be a create still in flight (another daemon's, or a
slow one of ours the janitor already gave up on), and deleting it under that create would race
it. Nothing else waits: a finished instance of no live runner is removed at once.

The janitor reads runners, then acts on them one by one with awaits in between, so what it read
may be stale by the time it acts (the runner came online, was reaped by its pool's worker, or
finished being created). Its writes are compare-and-set transitions from the state it read: a
runner that moved meanwhile is left alone, and not counted.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from functools import partial

from runnerscale.controller.actions import Actions, CleanupKind, pool_by_runner_name
from runnerscale.controller.bounded import Timeouts
from runnerscale.controller.observe import REGISTERED, move
from runnerscale.controller.reruns import record_loss
from runnerscale.model import Instance, Runner, RunnerState
from runnerscale.protocols import GitHubError, ProviderError

log = logging.getLogger("runnerscale.janitor")

#: Rows of finished history kept in the store.
KEEP_HISTORY_SECONDS = 7 * 24 * 3600.0
#: Seconds a backend may take to list a new instance (EC2's listing is eventually
#: consistent): a runner that got its instance more recently is not taken for lost when the
#: listing misses it.
LISTING_LAG = 10.0


def _lag(runner: Runner) -> float:
    """How long before a listing a runner must have been in its state for the listing to
    show its instance: :data:`LISTING_LAG` for a booting one (its create has just returned),
    nothing for one that came online since."""
    return LISTING_LAG if runner.state is RunnerState.BOOTING else 0.0


@dataclass
class JanitorSettings(Timeouts):
    """Its timeouts (which bound the controller's calls too: ``Actions.timeouts`` is this
    object) and how often it searches GitHub."""

    #: How often GitHub's runner lists are searched for registrations nobody tracks.
    github_orphan_interval: float = 600.0


class Janitor:
    def __init__(self, actions: Actions, settings: JanitorSettings | None = None) -> None:
        self.actions = actions
        self.settings = settings or JanitorSettings()
        self.cleaned: Counter[str] = Counter()
        self._next_orphan_sweep = 0.0
        #: Runners whose removal was said to be overdue, with the ``state_since`` of that
        #: ``deleting`` (a later removal of the same runner is another).
        self._overdue: dict[str, float] = {}

    def _count(self, pool: str, kind: CleanupKind) -> None:
        self.cleaned[kind] += 1
        self.actions.events.cleaned(pool, kind)

    async def sweep(self) -> None:
        await self.expire_stuck_runners()
        now = self.actions.clock.now()
        if now >= self._next_orphan_sweep:
            # GitHub's runner lists change with every runner: read them only now and then.
            self._next_orphan_sweep = now + self.settings.github_orphan_interval
            if not await self.remove_github_orphans():
                self._next_orphan_sweep = now  # a rate limit held some of it: next sweep
        await self.remove_instance_orphans()
        now = self.actions.clock.now()
        self.actions.store.prune_runners(now - KEEP_HISTORY_SECONDS)
        self.actions.store.prune_jobs(now - KEEP_HISTORY_SECONDS)

    async def _refresh_timed_out_boots(self) -> frozenset[str]:
        """Before a booting runner is given up on, ask GitHub whether it came online after
        all (between GitHub polls, that may not have been seen yet). Returns the targets
        whose list a rate limit holds: their runners are not given up on in this sweep."""
        actions = self.actions
        now = actions.clock.now()
        targets = {
            runner.target
            for runner in actions.store.runners(states=[RunnerState.BOOTING])
            if runner.pool in actions.pools
            and now - runner.state_since >= actions.pools[runner.pool].spec.boot_timeout
        }
        await actions.refresh_runner_lists(targets)  # (skips those a rate limit holds)
        return frozenset(key for key in targets if actions.rate_limited("list-runners", key))

    async def expire_stuck_runners(self) -> None:
        """Act on each runner past its state's deadline. No step waits for GitHub's rate
        limit: a call it would wait for is left for a later sweep (``wait_for_github``)."""
        actions = self.actions
        held = await self._refresh_timed_out_boots()
        now = actions.clock.now()
        for runner in actions.store.runners(
            states=[
                RunnerState.PENDING,
                RunnerState.BOOTING,
                RunnerState.CREATING,
                RunnerState.DELETING,
                RunnerState.FINISHED,
            ]
        ):
            pool = actions.pools.get(runner.pool)
            waited = now - runner.state_since
            if (
                runner.state is RunnerState.BOOTING
                and pool
                and waited >= pool.spec.boot_timeout
                and runner.target not in held
            ):
                await actions.remove_runner(
                    runner,
                    f"did not come online within {pool.spec.boot_timeout:.0f}s",
                    "boot_timeout",
                    claimed=partial(self._count, runner.pool, "boot_timeout"),
                    wait_for_github=False,
                )
            elif (
                runner.state in (RunnerState.PENDING, RunnerState.CREATING)
                and waited >= self.settings.create_timeout
                and runner.name not in actions.waiting
            ):
                await actions.remove_runner(
                    runner,
                    "creation did not finish in time",
                    "create_timeout",
                    claimed=partial(self._count, runner.pool, "create_timeout"),
                    wait_for_github=False,
                )
            elif runner.state is RunnerState.DELETING:
                if waited >= self.settings.delete_timeout:
                    self._overdue_removal(runner, waited)
                began = actions.removing.get(runner.name)
                # A removal under way is left to its call, unless that has taken too long.
                if began is None or now - began >= self.settings.delete_timeout:
                    await actions.remove_runner(
                        runner, "retrying removal", None, wait_for_github=False
                    )
            elif runner.state is RunnerState.FINISHED:
                await actions.remove_runner(
                    runner, "reaping a finished runner", "job_done", wait_for_github=False
                )
        self._overdue_ended()

    def _overdue_removal(self, runner: Runner, waited: float) -> None:
        """Warn once per removal that it is overdue, not at every sweep that retries it (one
        held by a spent rate limit waits for its window's reset, up to an hour)."""
        if self._overdue.get(runner.name) == runner.state_since:
            return
        self._overdue[runner.name] = runner.state_since
        log.warning(
            "runner %s: removal pending for %.0fs (retried at every sweep until it is done)",
            runner.name,
            waited,
        )

    def _overdue_ended(self) -> None:
        """Say how long each overdue removal took once its runner is no longer in that
        ``deleting`` (gone, or busy again), and forget it."""
        for name, since in list(self._overdue.items()):
            runner = self.actions.store.get_runner(name)
            if runner is None:
                del self._overdue[name]  # its row was pruned
            elif runner.state is not RunnerState.DELETING or runner.state_since != since:
                del self._overdue[name]
                log.info(
                    "runner %s: overdue removal ended after %.0fs: %s",
                    name,
                    runner.state_since - since,
                    runner.state,
                )

    async def remove_github_orphans(self) -> bool:
        """GitHub runners with a pool's prefix that runnerscale does not hold live. False when
        a rate limit held a list or a delete (not sent: the sweep would wait for it, up to an
        hour), so that the next sweep tries again."""
        actions = self.actions
        complete = True
        for target in actions.targets.values():
            if actions.rate_limited("list-runners", target.key):
                log.debug("janitor: runners of %s not listed: a rate limit holds it", target.name)
                complete = False
                continue
            try:
                listed = await actions.github.list_runners(target)
            except GitHubError as error:
                log.warning("janitor: cannot list runners of %s: %s", target.name, error)
                continue
            for seen in listed:
                pool = pool_by_runner_name(actions.pools.values(), seen.name)
                if pool is None or seen.busy:
                    continue
                known = actions.store.get_runner(seen.name)
                if known is not None and known.state.live:
                    continue
                registrar = actions.registrar(pool.name)
                if registrar.unregister_wait(target) > 0:
                    complete = False
                    continue
                log.info(
                    "janitor: %s is registered in GitHub but not tracked: deleting it", seen.name
                )
                try:
                    await registrar.unregister(target, seen.id)
                except GitHubError as error:
                    log.warning("janitor: deleting orphan %s failed: %s", seen.name, error)
                    continue
                self._count(pool.name, "github_orphan")
        return complete

    async def remove_instance_orphans(self) -> None:
        """Backend instances whose runner is unknown or already gone."""
        actions = self.actions
        for pool in actions.pools.values():
            listed_at = actions.clock.now()
            try:
                instances = await actions.list_instances(pool)
            except ProviderError as error:
                log.warning("janitor: cannot list instances of pool %s: %s", pool.name, error)
                continue
            held = {instance.runner_name for instance in instances}
            for runner in actions.store.runners(pool=pool.name, states=list(REGISTERED)):
                busy = runner.state is RunnerState.BUSY
                why = "its instance disappeared from the backend"
                if (
                    runner.instance_id is not None
                    and runner.name not in held
                    # Not a runner whose instance the listing may not show yet: one that
                    # changed after the listing began (its create returned meanwhile), or
                    # that got its instance a moment before (EC2 lists one seconds late).
                    and runner.state_since <= listed_at - _lag(runner)
                    and move(actions.store, runner, RunnerState.FINISHED, actions.clock.now(), why)
                ):
                    self._count(pool.name, "instance_lost")
                    if busy:
                        record_loss(actions.store, runner, why, actions.clock.now())
            for instance in instances:
                kind = self._orphan(instance, actions.store.get_runner(instance.runner_name))
                if kind is None:
                    continue
                try:
                    await actions.delete_instance(pool, instance.id)
                except ProviderError as error:
                    log.warning("janitor: removing instance %s failed: %s", instance.id, error)
                    continue
                self._count(pool.name, kind)

    def _orphan(self, instance: Instance, known: Runner | None) -> CleanupKind | None:
        """Why an instance is to be removed now (the clean-up kind; said in the log), or None
        when it stays: its runner is live, or it may be a create still in flight."""
        if known is not None and known.state.live:
            return None
        if instance.incomplete:
            if not self._past_grace(instance):
                return None
            log.info(
                "janitor: instance %s (%s) has no live runner, %s: removing it",
                instance.id,
                instance.runner_name,
                instance.detail,
            )
            return "interrupted_create"
        if known is None and not instance.running and instance.exit_code not in (0, None):
            # Nobody reported this one's end: say how it ended (its last log lines).
            log.warning(
                "janitor: instance %s (%s) of no runner we know failed: %s; removing it",
                instance.id,
                instance.runner_name,
                instance.detail,
            )
        else:
            log.info(
                "janitor: instance %s (%s) has no live runner: removing it",
                instance.id,
                instance.runner_name,
            )
        return "instance_orphan"

    def _past_grace(self, instance: Instance) -> bool:
        """Whether a leftover of an interrupted create is older than any create in flight
        can be (a leftover whose age is unknown is)."""
        if instance.created_at is None:
            return True
        return self.actions.clock.now() - instance.created_at >= self.settings.create_timeout
