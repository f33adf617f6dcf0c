"""Webhook deliveries committed in groups by a writer thread, and reconciles coalesced.

The writer: nobody is answered before its delivery is committed, a group gathers what arrives
over a few turns of the event loop (a bounded number), whatever is queued while a commit runs
goes into the next one (one transaction), and a store error reaches every route of the group.
Coalescing: a kicked reconcile waits a multiple of the last one's length, never more than a
fraction of ``reconcile_interval``, and a kick is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence

import pytest

from runnerscale.controller.deliveries import GATHER_TURNS, DeliveryWriter
from runnerscale.controller.loops import COALESCE_CAP
from runnerscale.model import JobState
from runnerscale.protocols import Delivery, ObservedJob, Taken
from runnerscale.store.memory import MemoryStore
from tests.controller.conftest import Rig


class FixedClock:
    def now(self) -> float:
        return 1_700_000_000.0

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("the writer never sleeps")


class GatedStore(MemoryStore):
    """Holds its first commit until released, and records each group it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.groups: list[list[str | None]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail = False

    def take_deliveries(self, batch: Sequence[Delivery], now: float) -> list[Taken]:
        self.groups.append([delivery.id for delivery in batch])
        self.entered.set()
        self.release.wait(10)
        if self.fail:
            raise RuntimeError("the disk is full")
        return super().take_deliveries(batch, now)


def queued(job_id: int) -> Delivery:
    job = ObservedJob(
        id=job_id, repo="acme/app", labels=("linux",), state=JobState.QUEUED, created_at=1.0
    )
    return Delivery(f"guid-{job_id}", job)


async def test_without_its_thread_the_writer_writes_at_once() -> None:
    store = MemoryStore()
    writer = DeliveryWriter(store, FixedClock())
    taken = await writer.take(queued(1))
    assert taken.new
    assert taken.after is not None
    assert store.get_job(1) is not None
    assert (writer.commits, writer.written) == (1, 1)


async def test_what_queues_during_a_commit_is_the_next_group() -> None:
    store = GatedStore()
    writer = DeliveryWriter(store, FixedClock())
    writer.start()
    try:
        first = asyncio.ensure_future(writer.take(queued(1)))
        await asyncio.to_thread(store.entered.wait, 10)
        rest = [asyncio.ensure_future(writer.take(queued(n))) for n in range(2, 12)]
        await asyncio.sleep(0)
        assert not first.done()  # not answered before its commit
        store.release.set()
        results = await asyncio.gather(first, *rest)
    finally:
        await writer.stop()
    assert all(taken.new for taken in results)
    assert store.groups == [["guid-1"], [f"guid-{n}" for n in range(2, 12)]]
    assert [job.id for job in store.jobs()] == list(range(1, 12))
    assert not writer.threaded


async def _take_after(writer: DeliveryWriter, job_id: int, turns: int) -> Taken:
    """``take`` once the event loop has turned ``turns`` times."""
    for _ in range(turns):
        await asyncio.sleep(0)
    return await writer.take(queued(job_id))


async def test_deliveries_arriving_over_a_few_turns_of_the_loop_are_one_group() -> None:
    store = GatedStore()
    store.release.set()
    writer = DeliveryWriter(store, FixedClock())
    writer.start()
    try:
        results = await asyncio.gather(*(_take_after(writer, n, n) for n in range(1, 6)))
    finally:
        await writer.stop()
    assert all(taken.new for taken in results)
    assert store.groups == [[f"guid-{n}" for n in range(1, 6)]]


async def test_a_group_waits_a_bounded_number_of_turns_for_more() -> None:
    store = GatedStore()
    store.release.set()
    writer = DeliveryWriter(store, FixedClock())
    writer.start()
    arrivals = 4 * GATHER_TURNS
    try:
        results = await asyncio.gather(*(_take_after(writer, n, n) for n in range(arrivals)))
    finally:
        await writer.stop()
    assert all(taken.new for taken in results)
    # A steady trickle does not hold the first group back for ever (later groups also take
    # what arrived while the one before was being committed).
    assert len(store.groups) > 1
    assert len(store.groups[0]) <= GATHER_TURNS + 1
    assert [guid for group in store.groups for guid in group] == [
        f"guid-{n}" for n in range(arrivals)
    ]


async def test_a_store_error_reaches_every_delivery_of_the_group() -> None:
    store = GatedStore()
    store.fail = True
    store.release.set()
    writer = DeliveryWriter(store, FixedClock())
    writer.start()
    try:
        results = await asyncio.gather(
            *(writer.take(queued(n)) for n in (1, 2)), return_exceptions=True
        )
    finally:
        await writer.stop()
    assert all(isinstance(result, RuntimeError) for result in results)
    assert store.jobs() == []


async def test_stopping_writes_what_is_queued_first() -> None:
    store = GatedStore()
    writer = DeliveryWriter(store, FixedClock())
    writer.start()
    waiting = [asyncio.ensure_future(writer.take(queued(n))) for n in (1, 2, 3)]
    await asyncio.sleep(0)
    await asyncio.to_thread(store.entered.wait, 10)
    store.release.set()
    await writer.stop()
    assert [taken.new for taken in await asyncio.gather(*waiting)] == [True, True, True]


# ---------------------------------------------------------------------------- coalescing


def test_coalescing_is_off_unless_the_daemon_turns_it_on(world: Rig) -> None:
    controller = world.controller
    now = controller.clock.now()
    assert controller.coalescing_wait(now, 0.1) == 0.0
    controller.settings.reconcile_coalesce = 9.0
    assert controller.coalescing_wait(now, 0.1) == pytest.approx(0.9)
    assert controller.coalescing_wait(now - 0.5, 0.1) == pytest.approx(0.4)
    assert controller.coalescing_wait(now - 2.0, 0.1) == 0.0


def test_the_coalescing_wait_is_capped_at_a_fraction_of_the_interval(world: Rig) -> None:
    controller = world.controller
    controller.settings.reconcile_coalesce = 9.0
    controller.settings.reconcile_interval = 5.0
    now = controller.clock.now()
    # A reconcile that took a minute does not hold the next one back for nine.
    assert controller.coalescing_wait(now, 60.0) == pytest.approx(COALESCE_CAP * 5.0)


async def test_a_kick_during_the_wait_or_the_step_is_never_lost(world: Rig) -> None:
    """Kicks while it waits are served by the coming step; one during a step runs another."""
    controller = world.controller
    controller.settings.reconcile_coalesce = 9.0
    controller.settings.reconcile_interval = 1000.0  # only kicks wake it
    steps: list[float] = []

    async def step() -> None:
        steps.append(controller.clock.now())
        if len(steps) == 2:
            controller.kick()  # during the step: another must follow

    async def settle() -> None:
        for _ in range(50):
            await asyncio.sleep(0)

    task = asyncio.create_task(controller._forever("reconcile", step, "reconcile_interval"))
    try:
        await settle()
        assert len(steps) == 1
        controller.kick()
        controller.kick()  # two kicks, one step (and the one it kicks itself)
        await settle()
        assert len(steps) == 3
        await settle()
        assert len(steps) == 3  # then it waits for the next kick
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
