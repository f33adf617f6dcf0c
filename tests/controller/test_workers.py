"""Each pool acts in a worker task of its own: a pool whose backend takes a minute to create a
runner (an EC2 instance, an SSH host) holds up no other pool. On the virtual clock: the slow
create sleeps 60 virtual seconds, and the tests check what happened before it returned."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runnerscale.clock import VirtualClock
from runnerscale.controller.actions import Events, PoolRuntime
from runnerscale.controller.loops import Controller
from runnerscale.controller.workers import CREATE_CONCURRENCY
from runnerscale.model import JobState, PoolSpec, RunnerState, Target, normalize_labels
from runnerscale.protocols import ObservedJob
from runnerscale.store import open_store
from tests.controller.conftest import CREATE_TIMEOUT, REPO_A, REPO_B, MakeRig, Rig
from tests.controller.fakes import FakeGitHub, FakeProvider, Journal, RecordingStore

SLOW_CREATE = 60.0
FAST_LABELS = ("self-hosted", "linux", "x64")
SLOW_LABELS = ("self-hosted", "linux", "arm64")


async def settle() -> None:
    """Let every task run until all of them wait (on the virtual clock or an event)."""
    for _ in range(100):
        await asyncio.sleep(0)


@dataclass
class TwoPools:
    clock: VirtualClock
    journal: Journal
    github: FakeGitHub
    fast: FakeProvider
    slow: FakeProvider
    store: RecordingStore
    controller: Controller

    def job(self, job_id: int, labels: tuple[str, ...], state: JobState) -> ObservedJob:
        return ObservedJob(
            id=job_id,
            repo=REPO_A.name,
            labels=labels,
            state=state,
            created_at=self.clock.now(),
        )

    def queue(self, job_id: int, labels: tuple[str, ...]) -> None:
        """A job is queued in GitHub and its webhook arrives."""
        self.controller.submit(self.github.put_job(self.job(job_id, labels, JobState.QUEUED)))

    def states(self, pool: str) -> list[RunnerState]:
        return [runner.state for runner in self.store.runners(pool=pool)]


@pytest.fixture
async def pools(tmp_path: Path) -> AsyncIterator[TwoPools]:
    clock = VirtualClock()
    journal = Journal()
    github = FakeGitHub(journal=journal)
    fast = FakeProvider(pool="fast", journal=journal)
    slow = FakeProvider(pool="slow", journal=journal)
    slow.create_wait = lambda: clock.sleep(SLOW_CREATE)
    store = RecordingStore(open_store(f"sqlite:///{tmp_path}/state.db"), journal)

    def runtime(name: str, labels: tuple[str, ...], provider: FakeProvider) -> PoolRuntime:
        spec = PoolSpec(name=name, labels=normalize_labels(labels), max_runners=4)
        return PoolRuntime(spec=spec, provider=provider, labels=labels, prefix=f"rs-{name}-")

    controller = Controller(
        store,
        github,
        clock,
        pools=[runtime("slow", SLOW_LABELS, slow), runtime("fast", FAST_LABELS, fast)],
        targets=[REPO_A],
        events=Events(),
    )
    world = TwoPools(clock, journal, github, fast, slow, store, controller)
    await controller.start()
    await settle()
    yield world
    await controller.stop()
    store.close()


async def test_a_slow_pool_does_not_hold_up_another(pools: TwoPools) -> None:
    start = pools.clock.now()
    pools.queue(1, SLOW_LABELS)
    await settle()
    assert pools.states("slow") == [RunnerState.CREATING]  # its backend is at it for a minute

    # The other pool serves its jobs meanwhile, at once, as if the slow one were not there.
    pools.queue(2, FAST_LABELS)
    await settle()
    assert pools.clock.now() == start
    assert pools.states("fast") == [RunnerState.BOOTING]
    (fast,) = pools.store.runners(pool="fast")

    # Its runner comes online, runs the job, finishes and is reaped; a second job comes and
    # gets a runner too, all before the slow pool's first creation returns.
    pools.github.set_runner(fast.name, online=True, busy=True)
    pools.controller.submit(
        pools.github.update_job(2, state=JobState.IN_PROGRESS, runner_name=fast.name)
    )
    await settle()
    pools.clock.advance(10)
    await settle()
    pools.github.deregister(fast.name)
    pools.controller.submit(
        pools.github.update_job(2, state=JobState.COMPLETED, conclusion="success")
    )
    pools.queue(3, FAST_LABELS)
    await settle()
    assert pools.store.get_runner(fast.name).state is RunnerState.GONE  # type: ignore[union-attr]
    assert pools.states("fast") == [RunnerState.GONE, RunnerState.BOOTING]
    assert pools.states("slow") == [RunnerState.CREATING]
    assert len(pools.fast.specs) == 2
    assert pools.slow.instances == {}

    # The minute passes: the slow pool's runner is started, as decided.
    pools.clock.advance(SLOW_CREATE - 10)
    await settle()
    assert pools.states("slow") == [RunnerState.BOOTING]
    (slow,) = pools.store.runners(pool="slow")
    store_writes = [op for who, op, name in pools.journal if who == "store" and name == slow.name]
    assert store_writes == ["pending", "creating", "booting"]
    assert len(pools.slow.specs) == 1  # nothing was created twice while it took its time


async def test_one_slow_create_holds_up_no_other_create_of_its_pool(pools: TwoPools) -> None:
    """Within a pool too, each runner is created in a task of its own (eight at once)."""
    pools.queue(1, SLOW_LABELS)
    await settle()
    pools.clock.advance(SLOW_CREATE / 2)
    pools.queue(2, SLOW_LABELS)
    await settle()
    assert pools.states("slow") == [RunnerState.CREATING, RunnerState.CREATING]
    pools.clock.advance(SLOW_CREATE / 2)
    await settle()
    assert pools.states("slow") == [RunnerState.BOOTING, RunnerState.CREATING]
    pools.clock.advance(SLOW_CREATE / 2)
    await settle()
    assert pools.states("slow") == [RunnerState.BOOTING, RunnerState.BOOTING]


async def test_the_reconcile_writes_creations_before_the_worker_acts(world: Rig) -> None:
    """The decision is written first (``pending`` rows, on the scaler's target): a second
    decision before the worker acts counts them and creates nothing more."""
    await world.queue(1)
    decision = world.controller.decide_once()
    assert decision.pools["linux"].create_on == (REPO_A.key,)
    (pending,) = world.runners()
    assert pending.state is RunnerState.PENDING
    assert pending.target == REPO_A.key
    assert world.journal.ops("github") == []  # nothing asked of GitHub yet

    world.controller.decide_once()
    assert len(world.runners()) == 1
    await world.reconcile()
    assert world.states() == {pending.name: RunnerState.BOOTING}


async def test_a_runner_that_takes_a_job_after_the_decision_is_not_removed(world: Rig) -> None:
    name = await world.idle_runner()
    world.clock.advance(world.spec.idle_timeout)
    decision = world.controller.decide_once()
    assert decision.pools["linux"].remove == (name,)

    # Before the worker acts, GitHub gives the runner a job.
    await world.deliver(world.job(5, JobState.IN_PROGRESS, runner_name=name))
    world.journal.clear()
    await world.controller.workers["linux"].converge()
    assert world.runner(name).state is RunnerState.BUSY
    assert world.journal.ops(subject=name) == []  # not even asked: GitHub is not bothered


async def test_a_pending_runner_given_up_on_while_waiting_for_a_slot_is_not_started(
    make_world: MakeRig,
) -> None:
    world = make_world(max_runners=CREATE_CONCURRENCY + 1)
    world.provider.create_wait = lambda: world.clock.sleep(SLOW_CREATE)
    await world.deliver(*(world.job(job_id) for job_id in range(CREATE_CONCURRENCY + 1)))
    reconcile = asyncio.create_task(world.reconcile())
    await settle()
    *started, waiting = world.runners()
    assert {runner.state for runner in started} == {RunnerState.CREATING}
    assert waiting.state is RunnerState.PENDING  # all eight slots are taken

    assert await world.controller.scale_down(runner_name=waiting.name) == [waiting.name]
    world.clock.advance(SLOW_CREATE)
    await reconcile
    assert world.runner(waiting.name).state is RunnerState.GONE
    assert world.journal.ops(subject=waiting.name) == ["pending", "deleting", "gone"]
    assert {runner.state for runner in world.runners()} == {
        RunnerState.BOOTING,
        RunnerState.GONE,
    }


async def test_a_pool_creates_at_most_its_create_concurrency_at_once(make_world: MakeRig) -> None:
    world = make_world(max_runners=5, create_concurrency=2)
    world.provider.create_wait = lambda: world.clock.sleep(SLOW_CREATE)
    await world.deliver(*(world.job(job_id) for job_id in range(5)))
    reconcile = asyncio.create_task(world.reconcile())
    await settle()
    states = sorted(runner.state for runner in world.runners())
    assert states.count(RunnerState.CREATING) == 2
    assert states.count(RunnerState.PENDING) == 3
    world.clock.advance(SLOW_CREATE)
    await settle()
    world.clock.advance(SLOW_CREATE)
    await settle()
    world.clock.advance(SLOW_CREATE)
    await reconcile
    assert {runner.state for runner in world.runners()} == {RunnerState.BOOTING}


async def test_a_reloaded_create_concurrency_applies_to_the_next_creations(
    make_world: MakeRig,
) -> None:
    world = make_world(max_runners=4, create_concurrency=1)
    world.pool.create_concurrency = 3  # what a reload does
    world.provider.create_wait = lambda: world.clock.sleep(SLOW_CREATE)
    await world.deliver(*(world.job(job_id) for job_id in range(4)))
    reconcile = asyncio.create_task(world.reconcile())
    await settle()
    states = [runner.state for runner in world.runners()]
    assert states.count(RunnerState.CREATING) == 3
    for _ in range(2):
        world.clock.advance(SLOW_CREATE)
        await settle()
    await reconcile
    assert {runner.state for runner in world.runners()} == {RunnerState.BOOTING}


#: A registration budget spent until its window resets ten minutes away: five create timeouts.
BUDGET_RESET = 600.0


def states_at(world: Rig, target: Target) -> list[RunnerState]:
    return sorted(runner.state for runner in world.runners() if runner.target == target.key)


async def test_a_runner_waiting_for_its_registration_budget_holds_no_slot_and_never_times_out(
    make_world: MakeRig,
) -> None:
    """Registrations at REPO_A wait ten minutes for their budget (the client's count says it
    is spent); REPO_B's credential has budget left. The pool has one creation slot: REPO_B's
    runners are created meanwhile, new decisions included, while REPO_A's stay ``pending``,
    and the janitor, sweeping all along, gives up on none of them. (Before, the first REPO_A
    runner took the slot and waited in its registration, holding up every other creation of
    the pool, and the janitor removed it after the create timeout.)"""
    world = make_world(max_runners=4, targets=(REPO_A, REPO_B), create_concurrency=1)
    reset = world.clock.now() + BUDGET_RESET
    world.github.spend_registrations(REPO_A, world.clock, reset)
    await world.deliver(world.job(1), world.job(2), world.job(3, repo=REPO_B.name))
    reconcile = asyncio.create_task(world.reconcile())
    await settle()
    held = {runner.name for runner in world.runners() if runner.target == REPO_A.key}
    assert len(held) == 2
    assert states_at(world, REPO_B) == [RunnerState.BOOTING]
    assert {world.runner(name).state for name in held} == {RunnerState.PENDING}

    # The decisions go on: a job at REPO_B gets its runner at once.
    await world.deliver(world.job(4, repo=REPO_B.name))
    await world.controller.reconcile_step()  # the daemon's decision (its status too)
    world.controller.workers["linux"].dispatch()  # what the worker's task does when woken
    await settle()
    assert states_at(world, REPO_B) == [RunnerState.BOOTING, RunnerState.BOOTING]
    assert world.controller.actions.waiting == dict.fromkeys(held, "registration_budget")
    (status,) = world.controller.status.pools
    assert status.waiting == {"registration_budget": 2, "create_slot": 0}
    for runner in world.runners(RunnerState.BOOTING):
        world.github.set_runner(runner.name, online=True)
    await world.poll()  # online: no boot timeout for them in the sweeps below

    while world.clock.now() + 30 < reset:
        world.clock.advance(30)
        await world.sweep()
        assert {world.runner(name).state for name in held} == {RunnerState.PENDING}
    assert world.controller.janitor.cleaned == {}
    assert world.journal.ops("github", subject=next(iter(held))) == []  # nothing sent

    # The window resets: they are created, each with its whole create timeout.
    world.clock.advance(reset - world.clock.now())
    await reconcile
    assert {world.runner(name).state for name in held} == {RunnerState.BOOTING}
    assert world.controller.actions.waiting == {}
    assert world.controller.janitor.cleaned == {}
    assert not [event for event in world.events if event[0] in ("cleaned", "error")]


async def test_a_runner_removed_while_it_waits_for_the_budget_is_never_registered(
    world: Rig,
) -> None:
    world.github.spend_registrations(REPO_A, world.clock, world.clock.now() + BUDGET_RESET)
    await world.queue(1)
    reconcile = asyncio.create_task(world.reconcile())
    await settle()
    (runner,) = world.runners()
    assert world.controller.actions.waiting == {runner.name: "registration_budget"}
    assert await world.controller.scale_down(runner_name=runner.name) == [runner.name]
    assert world.controller.workers["linux"].waiting()["registration_budget"] == 0

    world.clock.advance(BUDGET_RESET)
    await reconcile
    assert world.runner(runner.name).state is RunnerState.GONE
    assert world.journal.ops(subject=runner.name) == ["pending", "deleting", "gone"]
    assert world.controller.actions.waiting == {}


async def test_a_pending_runner_no_worker_holds_any_more_times_out(world: Rig) -> None:
    """The create timeout spares only the runners a worker holds back: once its worker
    stopped (its task ended), a ``pending`` runner times out from the decision as before."""
    world.github.spend_registrations(REPO_A, world.clock, world.clock.now() + BUDGET_RESET)
    await world.queue(1)
    reconcile = asyncio.create_task(world.reconcile())
    await settle()
    (runner,) = world.runners()
    world.clock.advance(CREATE_TIMEOUT)
    await world.sweep()
    assert world.runner(runner.name).state is RunnerState.PENDING  # held back: spared

    await world.controller.workers["linux"].stop()
    await reconcile
    assert world.controller.actions.waiting == {}
    await world.sweep()
    assert world.runner(runner.name).state is RunnerState.GONE
    assert world.controller.janitor.cleaned == {"create_timeout": 1}
