"""Telling a backend that a runner came online (:class:`~runnerscale.protocols.OnlineAware`).

Why a module of its own: the hook is optional, best effort and slow (the EC2 backend deletes
an SSM parameter, a network call in a worker thread), and the places that learn a runner
connected (a ``workflow_job`` observation, GitHub's runner list, a create that returned after
its runner was already at work) are on the controller's hot paths. So deciding is apart from
doing: :meth:`OnlineNotices.notify` decides, synchronously and cheaply, whether this
runner's backend is to be told (it implements the hook, the instance id is known, and it was
not told before), and starts a task that does the telling; nothing waits for that task but
:meth:`OnlineNotices.settle` (tests, the simulation) and :meth:`OnlineNotices.stop` (the
daemon stopping). A failure is logged and dropped: whatever the hook cleans up, the backend
also cleans up without it (the EC2 backend's sweep).

*At most once per runner*: the callers may say a runner connected more than once (GitHub's
runner list shows a runner online while its create has not returned yet, then again), so the
runners told are remembered, the most recent :data:`REMEMBERED` of them: a runner is online
for the first time only while it is new.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict

from runnerscale.protocols import OnlineAware, Provider, ProviderError

log = logging.getLogger("runnerscale.controller")

__all__ = ["REMEMBERED", "OnlineNotices"]

#: How many runners told are remembered (far more than come online between two polls).
REMEMBERED = 4096


class OnlineNotices:
    """Tells the backends that implement the hook which runners came online."""

    def __init__(self) -> None:
        self._told: OrderedDict[str, None] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def notify(
        self, provider: Provider, pool: str, runner: str, instance_id: str | None
    ) -> asyncio.Task[None] | None:
        """Decide whether ``provider`` is to hear that ``runner`` (on ``instance_id``) is
        online, and if so start telling it; the task, or None when there is nothing to do."""
        if instance_id is None or not isinstance(provider, OnlineAware):
            return None  # (a runner online before its create returned: told when it does)
        if runner in self._told:
            return None
        self._told[runner] = None
        while len(self._told) > REMEMBERED:
            self._told.popitem(last=False)
        task = asyncio.create_task(
            self._tell(provider, pool, runner, instance_id), name=f"pool {pool}: {runner} online"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _tell(self, provider: OnlineAware, pool: str, runner: str, instance_id: str) -> None:
        try:
            await provider.runner_online(instance_id)
        except ProviderError as error:
            log.warning(
                "pool %s: runner %s is online, but its backend could not act on it: %s "
                "(its own cleanup takes care of it later)",
                pool,
                runner,
                error,
            )
        except Exception:
            log.exception("pool %s: runner %s: the backend's online hook failed", pool, runner)

    @property
    def pending(self) -> int:
        """Tasks still telling a backend."""
        return len(self._tasks)

    async def settle(self) -> None:
        """Wait until every backend told so far has been told."""
        while self._tasks:
            await asyncio.gather(*self._tasks)

    async def stop(self) -> None:
        """Give up the telling still under way (the daemon stops)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
