"""Calls to the outside world bounded in time, on the controller's clock.

Why: a backend call that never returns (an SSH connection that never answers, a Docker API
call stuck, a provider program that never exits) held whatever its caller held for as long as
the daemon ran: a ``create`` its pool's creation slot (after ``create_concurrency`` of them,
the pool never created again), a ``delete`` the janitor's whole sweep. The janitor gives up on
the *runner* after its timeout, but cannot end the call. So the controller bounds each such
call itself: by the timeout the janitor applies to the same step (``timeouts.create``,
``timeouts.delete``) and :data:`GRACE` more, and abandons it past that (the call is
cancelled; the caller undoes what it may have made the way it undoes a failed call).

A backend's ``list`` and ``get`` (the janitor's and the poll's inventory, startup recovery, a
removal asking whether an instance still runs) held their loop likewise: a hung listing
stopped the janitor's sweeps (timeouts, reaping, orphan sweeps) or the poll for good. They
get the delete's bound (:attr:`Timeouts.list_limit`), and one abandoned is a failed call
(:class:`~runnerscale.protocols.ProviderError`): its caller does what it does when the
backend cannot list (with no inventory, nothing is removed as an orphan).

The grace is there so that the janitor, which sweeps every ``janitor_interval`` (30 s by
default), usually gives the runner up first, in its usual way, and so that a call that
returns a little late is still undone by its caller at once (an instance made after the
timeout is deleted by the create that made it) rather than by the orphan sweeps.

The bound is measured on the controller's :class:`~runnerscale.clock.Clock` (a virtual one in
the tests and the simulation) and the call runs in its caller's task, as an unbounded one did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from runnerscale.clock import Clock

__all__ = ["GRACE", "Overdue", "Timeouts", "within"]

T = TypeVar("T")

#: Seconds a bounded call gets beyond the janitor's timeout for its step.
GRACE = 60.0


@dataclass
class Timeouts:
    """How long the outside world gets for a runner's creation and its removal (the
    configuration's ``timeouts.create`` and ``timeouts.delete``; a reload changes them in
    place)."""

    create_timeout: float = 120.0
    delete_timeout: float = 120.0

    @property
    def create_limit(self) -> float:
        """Seconds one call of a creation (the registration, the backend's ``create``) may
        take before it is abandoned."""
        return self.create_timeout + GRACE

    @property
    def delete_limit(self) -> float:
        """Seconds a backend ``delete`` may take before it is abandoned."""
        return self.delete_timeout + GRACE

    @property
    def list_limit(self) -> float:
        """Seconds a backend ``list`` or ``get`` may take before it is abandoned: a delete's
        (no setting of its own: a read of the same backend gets as long as a removal, well
        within what a healthy one needs, and under the ten minutes after which ``/healthz``
        calls the loop that waits for it stuck)."""
        return self.delete_limit


class Overdue(Exception):  # noqa: N818 - a verdict on a call, as TimeoutError is
    """A bounded call did not return in time and was abandoned (cancelled)."""


async def within(clock: Clock, seconds: float, call: Awaitable[T]) -> T:
    """Await ``call``; past ``seconds`` of ``clock``'s time it is cancelled and
    :class:`Overdue` raised. A ``TimeoutError`` of the call's own passes through as it is."""
    loop = asyncio.get_running_loop()
    bound = asyncio.timeout(None)
    waiting = True

    def expire(timer: asyncio.Future[None]) -> None:
        if waiting and not timer.cancelled():
            bound.reschedule(loop.time())  # asyncio cancels the call, and says so on exit

    timer = asyncio.ensure_future(clock.sleep(seconds))
    timer.add_done_callback(expire)
    try:
        async with bound:
            return await call
    except TimeoutError:
        if bound.expired():
            raise Overdue(f"no answer within {seconds:.0f}s: abandoned") from None
        raise
    finally:
        waiting = False
        timer.cancel()
