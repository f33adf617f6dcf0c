"""A controller wired to fakes at our own boundaries, a real SQLite file and a virtual clock.

``Rig`` (a test rig over fakes, not the simulated GitHub's ``World``) holds one controller with
one pool (``linux``) and one or more targets. Tests call the controller's steps directly
(``reconcile``, ``poll``, ``sweep``) and move time with ``clock.advance``; no loop task is
started, so nothing is left running. ``restart`` opens the
same database file again under a new controller, as a restarted daemon would, while GitHub and
the backend (the fakes) keep what they hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runnerscale.clock import VirtualClock
from runnerscale.controller.actions import Events, PoolRuntime
from runnerscale.controller.janitor import JanitorSettings
from runnerscale.controller.loops import Controller, ControllerSettings
from runnerscale.model import (
    CREATE_CONCURRENCY,
    JobState,
    PoolSpec,
    Runner,
    RunnerState,
    Target,
    normalize_labels,
)
from runnerscale.protocols import DeleteOutcome, ObservedJob
from runnerscale.store import SqlStore, open_store
from tests.controller.fakes import (
    FakeFleet,
    FakeGitHub,
    FakeNode,
    FakeProvider,
    Journal,
    OnlineAwareProvider,
    RecordingStore,
    SweepingProvider,
)

REPO_A = Target("repo", "acme/app")
REPO_B = Target("repo", "acme/lib")
#: The pool's labels as written in the config (registered with GitHub as given).
POOL_LABELS = ("self-hosted", "Linux", "x64")
PREFIX = "rs-linux-"
JOB_LABELS = ("self-hosted", "linux")

IDLE_TIMEOUT = 60.0
BOOT_TIMEOUT = 300.0
CREATE_TIMEOUT = 120.0
QUEUED_RECHECK = 120.0


@dataclass
class Rig:
    path: Path
    clock: VirtualClock
    journal: Journal
    github: FakeGitHub
    provider: FakeProvider
    spec: PoolSpec
    targets: list[Target]
    #: The pool's ``rerun_lost_jobs``.
    rerun_lost_jobs: bool = False
    #: The pool's ``create_concurrency``.
    create_concurrency: int = CREATE_CONCURRENCY
    stores: list[SqlStore] = field(default_factory=list)
    #: What the controller reported to its metric hooks: (hook, pool, kind).
    events: list[tuple[str, str, str]] = field(default_factory=list)
    controller: Controller = field(init=False)

    def __post_init__(self) -> None:
        self.controller = self._new_controller()

    def _new_controller(self) -> Controller:
        store = RecordingStore(open_store(f"sqlite:///{self.path}"), self.journal)
        self.stores.append(store)
        settings = ControllerSettings(
            queued_recheck=QUEUED_RECHECK,
            janitor=JanitorSettings(create_timeout=CREATE_TIMEOUT, delete_timeout=120.0),
        )
        pool = PoolRuntime(
            spec=self.spec,
            provider=self.provider,
            labels=POOL_LABELS,
            prefix=PREFIX,
            rerun_lost_jobs=self.rerun_lost_jobs,
            create_concurrency=self.create_concurrency,
        )
        events = Events(
            scaled=lambda pool, kind: self.events.append(("scaled", pool, kind)),
            error=lambda pool, kind: self.events.append(("error", pool, kind)),
            cleaned=lambda pool, kind: self.events.append(("cleaned", pool, kind)),
            rerun=lambda pool: self.events.append(("rerun", pool, "")),
        )
        return Controller(
            store,
            self.github,
            self.clock,
            pools=[pool],
            targets=self.targets,
            settings=settings,
            events=events,
        )

    def restart(self) -> Controller:
        """A new daemon on the same database; the old one is gone (its store left open, as
        after a kill -9)."""
        self.controller = self._new_controller()
        return self.controller

    def close(self) -> None:
        for store in self.stores:
            store.close()

    # -- shortcuts

    @property
    def store(self) -> SqlStore:
        return self.stores[-1]

    @property
    def pool(self) -> PoolRuntime:
        return self.controller.pools["linux"]

    def runner(self, name: str) -> Runner:
        runner = self.store.get_runner(name)
        assert runner is not None, f"no runner {name}"
        return runner

    def runners(self, *states: RunnerState) -> list[Runner]:
        return self.store.runners(states=list(states) if states else None)

    def states(self) -> dict[str, RunnerState]:
        return {runner.name: runner.state for runner in self.runners()}

    def job(
        self,
        job_id: int,
        state: JobState = JobState.QUEUED,
        *,
        labels: tuple[str, ...] = JOB_LABELS,
        repo: str = REPO_A.name,
        runner_name: str | None = None,
    ) -> ObservedJob:
        """A job as GitHub reports it, created now."""
        now = self.clock.now()
        return ObservedJob(
            id=job_id,
            repo=repo,
            labels=labels,
            state=state,
            created_at=now,
            run_id=job_id * 10,
            name=f"job-{job_id}",
            started_at=now if state in (JobState.IN_PROGRESS, JobState.COMPLETED) else None,
            completed_at=now if state is JobState.COMPLETED else None,
            runner_name=runner_name,
            conclusion="success" if state is JobState.COMPLETED else None,
        )

    async def deliver(self, *observed: ObservedJob) -> None:
        """Webhook deliveries, as the HTTP server hands them over (folded in at once while the
        loops do not run), then one pass of the events loop when they do."""
        for one in observed:
            self.controller.submit(one)
        if self.controller.running:
            await self.controller._drain_inbox()

    async def queue(
        self, job_id: int, *, labels: tuple[str, ...] = JOB_LABELS, repo: str = REPO_A.name
    ) -> ObservedJob:
        """A job is queued in GitHub and its webhook arrives."""
        observed = self.github.put_job(self.job(job_id, labels=labels, repo=repo))
        await self.deliver(observed)
        return observed

    async def reconcile(self) -> None:
        await self.controller.reconcile_once()

    async def poll(self) -> None:
        await self.controller.poll_once()

    async def sweep(self) -> None:
        await self.controller.janitor.sweep()

    async def booting_runner(self) -> str:
        """A runner started by hand (no demand), now booting."""
        (name,) = await self.controller.scale_up("linux", 1)
        assert self.runner(name).state is RunnerState.BOOTING
        return name

    async def idle_runner(self) -> str:
        name = await self.booting_runner()
        self.github.set_runner(name, online=True)
        await self.poll()
        assert self.runner(name).state is RunnerState.IDLE
        return name

    async def busy_runner(self) -> str:
        name = await self.idle_runner()
        self.github.set_runner(name, online=True, busy=True)
        await self.poll()
        assert self.runner(name).state is RunnerState.BUSY
        return name

    async def dead_runner_github_holds_busy(self) -> str:
        """A busy runner whose instance died while GitHub still holds its job: its removal
        is refused (422), so it stays ``deleting``, retried sweep after sweep."""
        name = await self.busy_runner()
        self.github.delete_outcomes[name] = DeleteOutcome.BUSY  # GitHub still holds its job
        self.provider.exit(name, code=137, detail="killed")
        await self.poll()
        await self.reconcile()  # GitHub still shows it busy (it has not noticed the loss yet)
        assert self.runner(name).state is RunnerState.DELETING
        return name


MakeRig = Callable[..., Rig]


async def settle() -> None:
    """Let every task run until all of them wait (on the virtual clock or the inbox)."""
    for _ in range(100):
        await asyncio.sleep(0)


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[MakeRig]:
    worlds: list[Rig] = []

    def make(
        *,
        max_runners: int = 3,
        min_idle: int = 0,
        targets: tuple[Target, ...] = (REPO_A,),
        rerun_lost_jobs: bool = False,
        nodes: Sequence[FakeNode] | None = None,
        budget_per_day: float | None = None,
        online_aware: bool = False,
        removes_all: bool = False,
        create_concurrency: int = CREATE_CONCURRENCY,
    ) -> Rig:
        """``nodes``: the pool's backend is a placing one over these hosts (a FakeFleet).
        ``budget_per_day``: the pool's ``budget.per_day``. ``online_aware``: its backend
        wants to hear of runners coming online (an OnlineAwareProvider). ``removes_all``: its
        backend removes all it holds in one call (a SweepingProvider: ``RemovesAll``)."""
        journal = Journal()
        spec = PoolSpec(
            name="linux",
            labels=normalize_labels(POOL_LABELS),
            max_runners=max_runners,
            min_idle=min_idle,
            idle_timeout=IDLE_TIMEOUT,
            boot_timeout=BOOT_TIMEOUT,
            budget_per_day=budget_per_day,
        )
        world = Rig(
            path=tmp_path / f"world{len(worlds)}" / "state.db",
            clock=VirtualClock(),
            journal=journal,
            github=FakeGitHub(journal=journal),
            provider=(
                FakeFleet(pool="linux", journal=journal, nodes=list(nodes))
                if nodes is not None
                else OnlineAwareProvider(pool="linux", journal=journal)
                if online_aware
                else SweepingProvider(pool="linux", journal=journal)
                if removes_all
                else FakeProvider(pool="linux", journal=journal)
            ),
            spec=spec,
            targets=list(targets),
            rerun_lost_jobs=rerun_lost_jobs,
            create_concurrency=create_concurrency,
        )
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        world.close()


@pytest.fixture
def world(make_world: MakeRig) -> Rig:
    return make_world()
