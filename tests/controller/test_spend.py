"""What a pool's instances cost, counted listing by listing (``controller/spend.py``), and the
budget that holds a pool's launches back until the next UTC day (issue 15)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from runnerscale.controller.loops import ScaleUpRefusedError
from runnerscale.controller.spend import SpendBook, key
from runnerscale.metrics import Metrics
from runnerscale.model import DAY, Instance, RunnerState
from runnerscale.store.memory import MemoryStore
from tests.controller.conftest import REPO_A, MakeRig, Rig, settle

#: 2026-01-01 00:00 UTC, where the virtual clock starts.
MIDNIGHT = 1_767_225_600.0
#: A dollar every thousand seconds.
PRICE = 3.6


def instance(
    name: str,
    price: float | None = PRICE,
    *,
    running: bool = True,
    created_at: float | None = None,
) -> Instance:
    return Instance(
        id=f"i-{name}",
        runner_name=name,
        pool="ec2",
        running=running,
        created_at=created_at,
        price_per_hour=price,
    )


# ---------------------------------------------------------------------- the book


def test_each_running_priced_instance_costs_its_price_for_the_time_between_listings() -> None:
    book = SpendBook(MemoryStore())
    book.count("ec2", [instance("a")], MIDNIGHT + 100)  # the first listing: nothing before it
    assert book.total("ec2") == 0.0
    book.count(
        "ec2",
        [
            instance("a"),
            instance("b", created_at=MIDNIGHT + 400),  # made since the last listing
            instance("free", None),
            instance("ended", running=False),
        ],
        MIDNIGHT + 600,
    )
    assert book.total("ec2") == pytest.approx(0.5 + 0.2)
    assert book.today("ec2", MIDNIGHT + 600) == pytest.approx(0.7)


def test_an_instance_made_before_the_first_listing_counts_from_when_it_was_made() -> None:
    book = SpendBook(MemoryStore())
    book.count("ec2", [instance("adopted", created_at=MIDNIGHT + 100)], MIDNIGHT + 1100)
    assert book.total("ec2") == pytest.approx(1.0)


def test_time_across_midnight_counts_only_after_it_for_the_new_day() -> None:
    book = SpendBook(MemoryStore())
    evening = MIDNIGHT + DAY - 300
    book.count("ec2", [instance("a")], evening)
    book.count("ec2", [instance("a")], evening + 200)
    assert book.today("ec2", evening + 200) == pytest.approx(0.2)
    book.count("ec2", [instance("a")], MIDNIGHT + DAY + 400)
    assert book.total("ec2") == pytest.approx(0.2 + 0.5)
    assert book.today("ec2", MIDNIGHT + DAY + 400) == pytest.approx(0.4)
    # A day with no listing yet has spent nothing.
    assert book.today("ec2", MIDNIGHT + 2 * DAY + 5) == 0.0


def test_a_new_book_on_the_same_store_goes_on_from_the_last_listing() -> None:
    """A restart (or a new leader) loses nothing of today's spend, and counts the time the
    instances ran meanwhile from where the last listing stopped."""
    store = MemoryStore()
    SpendBook(store).count("ec2", [instance("a")], MIDNIGHT + 100)
    SpendBook(store).count("ec2", [instance("a")], MIDNIGHT + 600)
    after = SpendBook(store)
    assert after.today("ec2", MIDNIGHT + 700) == pytest.approx(0.5)
    after.count("ec2", [instance("a")], MIDNIGHT + 900)
    assert after.total("ec2") == pytest.approx(0.8)


def test_a_pool_that_never_had_a_price_writes_nothing() -> None:
    store = MemoryStore()
    SpendBook(store).count("local", [instance("a", None)], MIDNIGHT)
    assert store.get_value(key("local")) is None


def test_an_unreadable_account_is_said_and_started_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    store.set_value(key("ec2"), '{"day": "x"}')
    with caplog.at_level(logging.WARNING, logger="runnerscale"):
        assert SpendBook(store).total("ec2") == 0.0
    assert "pool ec2: its stored spend is unreadable: counting from zero" in caplog.text


# ---------------------------------------------------------------------- the controller


@pytest.fixture
def world(make_world: MakeRig) -> Rig:
    rig = make_world(max_runners=5, budget_per_day=1.0)
    rig.provider.price = PRICE
    rig.clock.advance(23 * 3600 - 1000)  # 22:43:20 UTC
    return rig


async def spend(world: Rig, seconds: float) -> None:
    """Time passes; the poll lists the instances (and counts them)."""
    world.clock.advance(seconds)
    await world.poll()


async def test_a_reached_budget_holds_launches_back_until_the_next_utc_day(world: Rig) -> None:
    await world.queue(1)
    await world.reconcile()
    (first,) = world.runners(RunnerState.BOOTING)
    await world.poll()
    await spend(world, 600)
    await world.reconcile()
    status = world.controller.status.pools[0]
    assert (status.spend_today, status.budget_per_day) == (pytest.approx(0.6), 1.0)

    await spend(world, 400)  # 23:00 UTC: $1.00 spent today, the budget
    await world.queue(2)
    await world.reconcile()
    assert [r.name for r in world.runners(RunnerState.BOOTING)] == [first.name]  # kept
    status = world.controller.status.pools[0]
    assert (status.queued, status.held_back, status.held_back_by) == (2, 1, "budget")
    assert status.reason.endswith(
        "held back by the budget: $1.00 spent today of $1.00 a day, until 00:00 UTC (in 1h 00m)"
    )
    assert [job.id for job in world.controller.status.queued] == [1, 2]
    with pytest.raises(ScaleUpRefusedError, match=r"budget of \$1.00 a day is reached"):
        await world.controller.scale_up("linux", 1)

    # Past midnight: a new day, a new budget (its first seconds are today's spend).
    await spend(world, 3600 + 10)
    assert world.controller.spend.today("linux", world.clock.now()) == pytest.approx(0.01)
    await world.reconcile()
    assert len(world.runners(RunnerState.BOOTING)) == 2
    status = world.controller.status.pools[0]
    assert (status.held_back, status.held_back_by) == (0, "")
    assert status.cost_total == pytest.approx(1.0 + 3.61)


async def test_a_restart_keeps_todays_spend(world: Rig) -> None:
    await world.controller.scale_up("linux", 1)
    await world.poll()
    await spend(world, 1000)
    world.restart()
    await world.reconcile()
    assert world.controller.status.pools[0].spend_today == pytest.approx(1.0)
    await world.queue(1)  # the booting runner takes this one
    await world.queue(2)
    await world.reconcile()
    assert world.controller.status.pools[0].held_back_by == "budget"
    # The new daemon counts on from its predecessor's last listing.
    await spend(world, 100)
    assert world.controller.spend.today("linux", world.clock.now()) == pytest.approx(1.1)


async def test_the_figures_reach_the_metrics(world: Rig) -> None:
    metrics = Metrics(lambda: world.controller.status, lambda: None, pools=["linux"])
    await world.controller.scale_up("linux", 1)
    await world.poll()
    await spend(world, 1500)
    await world.queue(1)  # the booting runner takes this one
    await world.queue(2)
    await world.reconcile()
    text = metrics.render().decode()
    assert 'runnerscale_pool_cost_dollars_total{pool="linux"} 1.5' in text
    assert 'runnerscale_pool_spend_today_dollars{pool="linux"} 1.5' in text
    assert 'runnerscale_pool_budget_per_day_dollars{pool="linux"} 1.0' in text
    assert 'runnerscale_pool_held_back_runners{pool="linux",reason="budget"} 1.0' in text
    assert 'runnerscale_pool_held_back_runners{pool="linux",reason="failure_backoff"} 0.0' in text


async def test_a_runner_waiting_for_the_registration_budget_costs_from_its_creations_start(
    make_world: MakeRig,
) -> None:
    """A busy runner runs all along; a second one, decided on for a queued job, waits ten
    minutes for GitHub's registration budget, is then created and boots for 100 s. The pool's
    spend (what its budget reads) and ``runnerscale_runner_seconds_total`` charge the second
    one only from its creation's start: the spend because it lists instances (a waiting
    runner has none), the runner-seconds because they leave the waiting runners out of
    booting (before, its wait was charged as 600 s of booting)."""
    world = make_world(max_runners=5, budget_per_day=100.0)
    world.provider.price = PRICE
    world.provider.made_at = world.clock.now
    metrics = Metrics(lambda: world.controller.status, lambda: None, pools=["linux"])
    world.controller.actions.events = metrics.events()
    await world.busy_runner()
    await world.controller.reconcile_step()  # the status the runner-seconds count from
    reset = world.clock.now() + 600
    world.github.spend_registrations(REPO_A, world.clock, reset)
    await world.queue(1)  # taken for the busy runner's job
    await world.queue(2)
    reconcile = asyncio.create_task(world.reconcile())
    await settle()
    (waiting,) = world.runners(RunnerState.PENDING)
    assert world.controller.actions.waiting == {waiting.name: "registration_budget"}
    for _ in range(20):  # ten minutes of waiting, polled and reconciled all along
        world.clock.advance(30)
        await world.poll()
        await world.controller.reconcile_step()
    await reconcile  # the window reset: its creation begins now
    assert world.runner(waiting.name).state is RunnerState.BOOTING
    assert world.controller.spend.total("linux") == pytest.approx(0.6)  # the busy one's

    await spend(world, 100)
    await world.controller.reconcile_step()
    assert world.controller.spend.total("linux") == pytest.approx(0.7 + 0.1)
    text = metrics.render().decode()
    assert 'runnerscale_runner_seconds_total{pool="linux",state="busy"} 700.0' in text
    assert 'runnerscale_runner_seconds_total{pool="linux",state="booting"} 100.0' in text
