"""The daemon's heap keeping: what survives a collection is frozen, given back in full every
``release_every``, and everything is given back when it stops (runnerscale.heap)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from runnerscale.heap import HeapKeeper


@pytest.fixture(autouse=True)
def _nothing_frozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_settling_freezes_what_survived_and_a_release_collects_a_frozen_cycle() -> None:
    now = [0.0]
    keeper = HeapKeeper(settle_every=60, release_every=3600, timer=lambda: now[0])
    cycle = Cycle()
    alive = weakref.ref(cycle)
    keeper.settle()
    assert gc.get_freeze_count() > 0
    assert (keeper.settled, keeper.released) == (1, 0)

    # The cycle dies while frozen: the collector does not see it, a settle keeps it...
    del cycle
    now[0] = 60
    keeper.settle()
    assert keeper.released == 0
    assert alive() is not None
    # ...until the release, an hour after the last, gives it back and collects it.
    now[0] = 3600
    keeper.settle()
    assert keeper.released == 1
    assert alive() is None


def test_a_stepping_caller_settles_when_due_and_gives_everything_back() -> None:
    now = [0.0]
    keeper = HeapKeeper(settle_every=10, first_after=2, timer=lambda: now[0])
    assert not keeper.settle_when_due()
    now[0] = 2
    assert keeper.settle_when_due()
    assert gc.get_freeze_count() > 0
    now[0] = 11
    assert not keeper.settle_when_due()  # ten seconds after the last settling, not before
    now[0] = 12
    assert keeper.settle_when_due()
    assert keeper.settled == 2
    keeper.give_back()
    assert gc.get_freeze_count() == 0


async def test_the_task_settles_on_schedule_and_stopping_gives_everything_back() -> None:
    keeper = HeapKeeper(settle_every=0.01, release_every=3600, first_after=0)
    keeper.start()
    while keeper.settled < 2:
        await asyncio.sleep(0.01)
    assert gc.get_freeze_count() > 0
    await keeper.stop()
    assert gc.get_freeze_count() == 0
    await keeper.stop()  # twice: harmless


async def test_stopping_collects_what_died_while_frozen() -> None:
    """Its finalizer runs at the stop, not in whatever the process runs next."""
    keeper = HeapKeeper(settle_every=60, release_every=3600, first_after=0)
    cycle = Cycle()
    alive = weakref.ref(cycle)
    keeper.settle()
    del cycle
    gc.collect()
    assert alive() is not None  # frozen: out of the collector's reach
    await keeper.stop()
    assert alive() is None


@pytest.mark.parametrize(
    ("settle_every", "release_every", "first_after"),
    [(0, 3600, 0), (60, 30, 0), (60, 3600, -1)],
)
def test_nonsense_schedules_are_refused(
    settle_every: float, release_every: float, first_after: float
) -> None:
    with pytest.raises(ValueError, match="heap settling needs"):
        HeapKeeper(settle_every=settle_every, release_every=release_every, first_after=first_after)
