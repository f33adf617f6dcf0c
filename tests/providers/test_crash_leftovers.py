"""A create killed with ``kill -9`` after each of its steps, on the real local and Docker
backends: the restarted daemon adopts what runs, and its janitor removes what never will once
the create timeout has passed, touching nothing else.

The create runs in a process of its own and is killed right after the step
(:mod:`tests.providers.interrupt`). The restart is a new provider over the same backend state,
with :meth:`Actions.recover` and the :class:`Janitor` over a store that holds the runner as the
killed daemon left it: ``creating``, written before the backend was asked. The janitor's clock
is virtual and set from the leftover's own creation time, so the grace is exact and nothing
waits for it. Around it: runners of another controller and of another pool over the same
backend state, and a create of another deployment still in flight, all left alone.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from runnerscale.clock import VirtualClock
from runnerscale.controller.actions import Actions, PoolRuntime
from runnerscale.controller.janitor import Janitor, JanitorSettings
from runnerscale.model import PoolSpec, Runner, RunnerState
from runnerscale.protocols import Provider, Store
from runnerscale.providers.docker.provider import DockerProvider
from runnerscale.providers.local import LocalProvider
from runnerscale.store.memory import MemoryStore
from tests.controller.fakes import FakeGitHub
from tests.docker_engine import Engine
from tests.providers.conformance import BackendUnderTest, closing
from tests.providers.interrupt import create_killed_after, create_paused_after
from tests.providers.test_conformance_docker import conformance_image, docker_backend
from tests.providers.test_conformance_local import LocalBackend

__all__ = ["conformance_image"]  # the session's image fixture, for the Docker cases

#: ``timeouts.create``: no leftover younger than this is touched.
GRACE = 120.0


@dataclass(frozen=True)
class Step:
    name: str
    #: What a kill -9 right after it leaves: something that never runs (True), or a running
    #: instance the restarted daemon adopts (False).
    leftover: bool


LOCAL_STEPS = [
    Step("folder", leftover=True),  # a folder without its record
    Step("record", leftover=True),  # a record without a process
    Step("process", leftover=False),  # a process whose pid is not recorded: found, adopted
    Step("recorded", leftover=False),  # all done but the answer
]
DOCKER_STEPS = [
    Step("container", leftover=True),  # created, never started
    Step("started", leftover=False),  # running, the answer lost
]


def restarted(
    backend: BackendUnderTest, provider: Provider, store: Store, clock: VirtualClock
) -> tuple[Actions, Janitor]:
    """The controller's recovery and janitor of a restarted daemon, over the backend's pool."""
    pool = PoolRuntime(
        PoolSpec(backend.pool, frozenset({"self-hosted"}), max_runners=4),
        provider,
        labels=("self-hosted",),
        prefix=backend.name_prefix,
    )
    actions = Actions(store, FakeGitHub(), clock, targets={}, pools={backend.pool: pool})
    return actions, Janitor(actions, JanitorSettings(create_timeout=GRACE))


@dataclass(frozen=True)
class InFlight:
    """A create of another deployment, standing still after ``step`` while the janitor works."""

    factory: Callable[[], Provider]
    step: str


async def killed_create_is_swept(
    backend: BackendUnderTest, factory: Callable[[], Provider], step: Step, in_flight: InFlight
) -> None:
    spec = backend.spec(1)
    other_controller = backend.provider(controller_id=f"{backend.controller_id}-other")
    other_pool_name = f"{backend.pool}-other"
    other_pool = backend.provider(pool=other_pool_name)
    foreign = in_flight.factory()
    provider = backend.provider()  # the restarted daemon's
    async with closing(other_controller, other_pool, foreign, provider):
        bystanders = [
            (other_controller, await other_controller.create(backend.spec(2))),
            (other_pool, await other_pool.create(replace(backend.spec(3), pool=other_pool_name))),
        ]
        store = MemoryStore()
        now = time.time()
        store.add_runner(
            Runner(spec.runner_name, backend.pool, "repo:acme/app", RunnerState.CREATING, now, now)
        )
        await create_killed_after(step.name, factory, spec)

        clock = VirtualClock(start=time.time())
        actions, janitor = restarted(backend, provider, store, clock)
        async with create_paused_after(in_flight.step, in_flight.factory, backend.spec(4)):
            await actions.recover()
            (left,) = [i for i in await provider.list() if i.runner_name == spec.runner_name]
            runner = store.get_runner(spec.runner_name)
            assert runner is not None
            if step.leftover:
                assert left.incomplete, left
                assert not left.running
                assert left.created_at is not None
                assert runner.state is RunnerState.GONE  # not adopted: it runs no runner
                clock.advance(left.created_at + GRACE - 1 - clock.now())
                await janitor.sweep()
                assert await provider.get(left.id) is not None  # a create may still be at it
                clock.advance(1)
                await janitor.sweep()
                assert await provider.get(left.id) is None
                assert janitor.cleaned == {"interrupted_create": 1}
            else:
                assert left.running, left
                assert not left.incomplete
                assert runner.state is RunnerState.BOOTING  # adopted
                assert runner.instance_id == left.id
                clock.advance(GRACE)
                await janitor.sweep()
                assert janitor.cleaned == {}
                await provider.delete(left.id)
        # Killed only now: what it made was there all along, and is still.
        assert await foreign.get(backend.name(4)) is not None
        await foreign.delete(backend.name(4))
        for owner, instance in bystanders:
            still = await owner.get(instance.id)
            assert still is not None
            assert still.running
            await owner.delete(instance.id)
    assert await backend.leftovers() == []


@pytest.fixture
def local_backend(tmp_path: Path) -> LocalBackend:
    return LocalBackend(tmp_path.resolve() / "runners")


@pytest.mark.parametrize("step", LOCAL_STEPS, ids=[step.name for step in LOCAL_STEPS])
async def test_a_local_create_killed_after_each_step(
    local_backend: LocalBackend, tmp_path: Path, step: Step
) -> None:
    backend = local_backend
    # Another pool's create in flight: in a folder of its own, as the daemon lays pools out (a
    # create holds its work_root's lock to the end, so none is ever seen half-way in ours).
    elsewhere = backend.settings(pool="elsewhere", work_root=tmp_path / "elsewhere")
    try:
        await killed_create_is_swept(
            backend,
            functools.partial(LocalProvider, backend.settings()),
            step,
            InFlight(functools.partial(LocalProvider, elsewhere), "folder"),
        )
    finally:
        backend.remove_everything()


async def test_an_empty_runner_folder_without_a_record_is_removed_after_the_grace(
    local_backend: LocalBackend,
) -> None:
    # The finding: after a kill -9 between a runner folder's creation and its record, the empty
    # folder stayed forever, since nothing looked at a folder without a record.
    backend = local_backend
    folder = backend.root / backend.name(1)
    folder.mkdir(parents=True)
    clock = VirtualClock(start=folder.stat().st_mtime)
    _, janitor = restarted(backend, backend.provider(), MemoryStore(), clock)

    clock.advance(GRACE - 1)
    await janitor.sweep()
    assert folder.is_dir()

    clock.advance(1)
    await janitor.sweep()
    assert not folder.exists()
    assert janitor.cleaned == {"interrupted_create": 1}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("step", DOCKER_STEPS, ids=[step.name for step in DOCKER_STEPS])
async def test_a_docker_create_killed_after_each_step(
    docker_engine: Engine, conformance_image: str, step: Step
) -> None:
    async with docker_backend(docker_engine, conformance_image) as backend:
        other = backend.settings(controller_id=f"{backend.controller_id}-elsewhere")
        await killed_create_is_swept(
            backend,
            functools.partial(DockerProvider, backend.settings()),
            step,
            InFlight(functools.partial(DockerProvider, other), "container"),
        )
