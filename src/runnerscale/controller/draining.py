"""Instances that must take no new job: a spot interruption notice, a rebalance recommendation.

A backend lists such an instance with ``Instance.draining`` set, saying why. Its runner must
not take a job it could not finish:

* while it is not busy (booting, idle) it is removed at once, by the ordinary removal
  (:meth:`~runnerscale.controller.actions.Actions.remove_runner`, reason ``interrupted``):
  deleted in GitHub first, so it takes no job meanwhile; GitHub's 422 "busy" means it took
  one just now, and it stays to run it;
* a busy one is left to finish its job. If the instance dies under it, the job is lost like
  any other (the poll or the janitor records the loss, and ``rerun_lost_jobs`` re-runs it);
* until it is gone, the scaler does not count it as free (``PoolSpec.draining``, which
  :meth:`PoolRuntime.spec_at` fills from :attr:`PoolRuntime.draining`), so a queued job gets
  another runner.

Why at the poll loop's backend listing, and nowhere else: that listing is the controller's
view of the instances, taken every ``poll_interval`` whether GitHub is polled or not, and a
notice gives minutes, not hours (two, for an EC2 spot instance taken back). Each instance's
draining is said once in the log, when it is first seen. Why it drains comes from outside
(an instance may tag itself): it is written through :func:`~runnerscale.logs.untrusted`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from runnerscale.controller.actions import Actions, PoolRuntime
from runnerscale.logs import untrusted
from runnerscale.model import Instance, RunnerState

log = logging.getLogger("runnerscale.controller")

#: The states a runner is removed in when its instance drains: it has no job yet.
REMOVED_WHILE = (RunnerState.BOOTING, RunnerState.IDLE)


async def drain(actions: Actions, pool: PoolRuntime, instances: Iterable[Instance]) -> None:
    """Take the pool's listing: remember which runners' instances drain (for the scaler and
    the status), say each new one, and remove those that have no job."""
    draining = {
        instance.runner_name: (instance.id, instance.draining)
        for instance in instances
        if instance.running and instance.draining is not None
    }
    runners = {
        runner.name: runner
        for runner in actions.store.runners(pool=pool.name)
        if runner.name in draining and runner.state.live
    }
    for name, (instance_id, why) in draining.items():
        runner = runners.get(name)
        if name in pool.draining or runner is None:
            continue  # said before, or no runner of ours (the janitor removes the orphan)
        log.warning(
            "pool %s: the instance %s of runner %s drains (%s): %s",
            pool.name,
            instance_id,
            name,
            untrusted(why),
            "it finishes its job and takes no other"
            if runner.state is RunnerState.BUSY
            else "it takes no job and is removed",
        )
    pool.draining = {name: why for name, (_, why) in draining.items() if name in runners}
    for runner in runners.values():
        if runner.state in REMOVED_WHILE:
            why = untrusted(pool.draining[runner.name])
            await actions.remove_runner(runner, f"its instance drains ({why})", "interrupted")
