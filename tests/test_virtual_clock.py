"""The virtual clock: time moves only when told to, and sleepers wake in time order."""

from __future__ import annotations

import asyncio

import pytest

from runnerscale.clock import Clock, VirtualClock

START = 1_000.0


async def settle() -> None:
    """Let every task that can run, run, until all of them wait again."""
    for _ in range(5):
        await asyncio.sleep(0)


async def sleeper(
    clock: VirtualClock, name: str, seconds: float, woke: list[tuple[str, float]]
) -> None:
    await clock.sleep(seconds)
    woke.append((name, clock.now()))


def start_sleepers(
    clock: VirtualClock, delays: dict[str, float], woke: list[tuple[str, float]]
) -> list[asyncio.Task[None]]:
    return [
        asyncio.create_task(sleeper(clock, name, seconds, woke), name=f"sleeper-{name}")
        for name, seconds in delays.items()
    ]


def test_a_virtual_clock_is_a_clock() -> None:
    assert isinstance(VirtualClock(), Clock)


def test_time_starts_where_asked_and_stands_still() -> None:
    clock = VirtualClock(START)
    assert clock.now() == START
    assert clock.now() == START
    assert VirtualClock().now() == 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param([5.0], START + 5, id="one-step"),
        pytest.param([1.5, 2.5, 6.0], START + 10, id="several-steps"),
        pytest.param([0.0], START, id="zero"),
        pytest.param([5.0, -3.0], START + 5, id="negative-is-ignored"),
    ],
)
def test_advance_moves_time_forward_only(steps: list[float], expected: float) -> None:
    clock = VirtualClock(START)
    for step in steps:
        clock.advance(step)
    assert clock.now() == expected


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        pytest.param([START + 10], START + 10, id="forward"),
        pytest.param([START + 10, START + 4], START + 10, id="never-backwards"),
        pytest.param([START - 100], START, id="before-the-start"),
        pytest.param([START + 10, START + 10, START + 25], START + 25, id="same-then-forward"),
    ],
)
def test_set_jumps_forward_and_never_backwards(targets: list[float], expected: float) -> None:
    clock = VirtualClock(START)
    for target in targets:
        clock.set(target)
    assert clock.now() == expected


def test_advance_to_the_next_wakeup_with_nobody_asleep_does_nothing() -> None:
    clock = VirtualClock(START)
    assert clock.next_wakeup() is None
    clock.advance()
    assert clock.now() == START


async def test_sleepers_wake_in_time_order_as_time_advances() -> None:
    clock = VirtualClock(START)
    woke: list[tuple[str, float]] = []
    tasks = start_sleepers(clock, {"c": 30.0, "a": 10.0, "d": 40.0, "b": 20.0}, woke)
    await settle()
    assert woke == []
    assert clock.next_wakeup() == START + 10

    clock.advance(15)  # past "a" only
    await settle()
    assert woke == [("a", START + 15)]

    clock.advance(15)  # exactly at "c": "b" and "c" are both due
    await settle()
    assert woke == [("a", START + 15), ("b", START + 30), ("c", START + 30)]
    assert clock.next_wakeup() == START + 40

    clock.advance(100)
    await asyncio.gather(*tasks)
    assert [name for name, _ in woke] == ["a", "b", "c", "d"]
    assert clock.next_wakeup() is None


async def test_one_big_step_releases_due_sleepers_earliest_first() -> None:
    clock = VirtualClock(START)
    woke: list[tuple[str, float]] = []
    tasks = start_sleepers(clock, {"late": 3.0, "early": 1.0, "middle": 2.0}, woke)
    await settle()
    clock.advance(10)
    await asyncio.gather(*tasks)
    assert [name for name, _ in woke] == ["early", "middle", "late"]


async def test_sleepers_due_at_the_same_time_wake_in_the_order_they_slept() -> None:
    clock = VirtualClock(START)
    woke: list[tuple[str, float]] = []
    tasks = start_sleepers(clock, dict.fromkeys("qwerty", 5.0), woke)
    await settle()
    clock.advance()
    await asyncio.gather(*tasks)
    assert [name for name, _ in woke] == list("qwerty")
    assert {at for _, at in woke} == {START + 5}


async def test_advance_none_jumps_to_each_next_wakeup() -> None:
    clock = VirtualClock(START)
    woke: list[tuple[str, float]] = []
    tasks = start_sleepers(clock, {"a": 7.0, "b": 2.0, "c": 4.5}, woke)
    await settle()
    for expected in ("b", "c", "a"):
        clock.advance()
        await settle()
        assert woke[-1][0] == expected
    await asyncio.gather(*tasks)
    assert woke == [("b", START + 2), ("c", START + 4.5), ("a", START + 7)]
    clock.advance()  # nobody left: time stays
    assert clock.now() == START + 7


async def test_a_sleeper_that_sleeps_again_wakes_again_later() -> None:
    clock = VirtualClock(START)
    ticks: list[float] = []

    async def ticker() -> None:
        for _ in range(3):
            await clock.sleep(10)
            ticks.append(clock.now())

    task = asyncio.create_task(ticker(), name="ticker")
    await settle()
    while not task.done():
        clock.advance()
        await settle()
    await task
    assert ticks == [START + 10, START + 20, START + 30]


async def test_a_cancelled_sleeper_does_not_block_next_wakeup() -> None:
    clock = VirtualClock(START)
    woke: list[tuple[str, float]] = []
    doomed, survivor = start_sleepers(clock, {"doomed": 1.0, "survivor": 9.0}, woke)
    await settle()
    assert clock.next_wakeup() == START + 1
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert clock.next_wakeup() == START + 9
    clock.advance()
    await survivor
    assert woke == [("survivor", START + 9)]


async def test_a_cancelled_sleeper_is_skipped_when_time_passes_it() -> None:
    clock = VirtualClock(START)
    woke: list[tuple[str, float]] = []
    doomed, survivor = start_sleepers(clock, {"doomed": 1.0, "survivor": 2.0}, woke)
    await settle()
    doomed.cancel()
    clock.advance(5)  # passes both wake-up times without touching next_wakeup first
    await survivor
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert woke == [("survivor", START + 5)]
    assert clock.next_wakeup() is None


async def test_set_releases_the_sleepers_it_passes() -> None:
    clock = VirtualClock(START)
    woke: list[tuple[str, float]] = []
    tasks = start_sleepers(clock, {"due": 5.0, "later": 50.0}, woke)
    await settle()
    clock.set(START + 20)
    await settle()
    assert woke == [("due", START + 20)]
    clock.set(START)  # backwards: ignored, nothing released
    await settle()
    assert clock.now() == START + 20
    assert woke == [("due", START + 20)]
    clock.set(START + 50)
    await asyncio.gather(*tasks)
    assert woke[-1] == ("later", START + 50)


@pytest.mark.parametrize("seconds", [0.0, -1.0])
async def test_a_sleep_of_no_time_returns_without_advancing(seconds: float) -> None:
    clock = VirtualClock(START)
    await clock.sleep(seconds)
    assert clock.now() == START
    assert clock.next_wakeup() is None
