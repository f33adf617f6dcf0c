"""The provider conformance suite: what every backend must hold, run against each backend.

The contract is :class:`runnerscale.protocols.Provider` (garm's small one, see
:mod:`runnerscale.providers`). Each property below is one test of :class:`ProviderConformance`:

- ``create``, ``get``, ``list`` and ``delete`` do what they say, and ``delete`` leaves nothing;
- deleting what is already gone succeeds: twice, a name never created, an instance removed
  behind the provider's back, two deletions of one instance at once;
- an instance that ended by itself stays listed (not running) until it is deleted, so the
  janitor can reap it;
- a restart loses nothing: a new provider object over the same backend state lists the
  instances the old one made, running, and can remove them (the old one was closed, and
  closing left them running);
- every instance is tagged with the controller id, the pool and the runner name: in the
  provider's answers, in the backend's own inventory, and by behaviour (a provider of another
  controller or of another pool over the same backend state neither sees nor touches them);
- no secret on a command line or in a log: the JIT config is in no ``/proc/*/cmdline`` while
  the runners run, in no log record (captured at DEBUG, libraries included), no instance
  ``detail`` or ``repr`` and no error text, failures included; credentials in runnerscale's
  own environment (``GITHUB_TOKEN``, ...) reach neither the command line nor the environment
  of any process the backend starts;
- concurrent creates (through one provider object and through two) give distinct instances,
  all listed;
- a create that fails half-way leaves nothing: for every failure the backend offers (a
  command that cannot start, an image that is missing, a failure after the folder or
  container was made or the process started, ...), ``create`` raises
  :class:`~runnerscale.protocols.ProviderError`, no folder, container or process
  remains, and the same runner can be created right after;
- a leftover of an interrupted create is listed and removed by delete: for every point where a
  ``kill -9`` in the middle of a create leaves something half-made (a folder without its
  record, a container never started, ...), a new provider lists it as ``incomplete``, not
  running, with its runner's name and the time it was made (the janitor's grace counts from
  it), ``get`` finds it, ``delete`` removes all of it, and the same runner can be created
  right after.

How a backend runs it (SSH, EC2, external programs: the same way). One fixture, ``backend``,
yields a :class:`BackendUnderTest` of the backend's own: it starts whatever the backend needs
(a daemon, a server, a fake cloud), knows how to make providers over one shared backend state,
reads the backend's inventory without the provider, and removes everything afterwards. Its
providers start runners the way production does (the same entrypoint, the same way of handing
over the JIT config), with a runner that keeps running until it is stopped, as one waiting for
its job does. Optional hooks: :meth:`BackendUnderTest.booted` when ``create`` returns before
the runner's own command runs, :meth:`BackendUnderTest.restart` when a restart is more than a
new provider object. A test module then subclasses :class:`ProviderConformance` so that
pytest collects the suite there::

    # tests/providers/test_conformance_ssh.py
    from tests.providers.conformance import BackendUnderTest, Breakage, ProviderConformance

    class SshBackend(BackendUnderTest):
        def provider(self, *, pool=None, controller_id=None): ...
        async def tags(self, instance_id): ...
        async def leftovers(self): ...
        async def end(self, instance_id): ...
        async def vanish(self, instance_id): ...
        def breakages(self): ...
        def interruptions(self): ...

    @pytest.fixture
    async def backend(sshd) -> AsyncIterator[SshBackend]:
        made = SshBackend(sshd)
        yield made
        await made.remove_everything()  # the backend's own clean-up: leave no trace

    class TestSshConformance(ProviderConformance):
        pass

A property a backend is known not to hold is listed in its ``known_failures`` (test name ->
the exact reason) and is then marked ``xfail(strict=True)``: fixing the backend turns the
test into a failure until the entry is removed.

Each :class:`BackendUnderTest` gets a fresh controller id, runner names and JIT config of its
own (random), so tests never see each other's instances, and a secret found anywhere is this
test's. The secret properties read ``/proc`` of the host the tests run on (a backend whose
runners run elsewhere, such as SSH hosts or VMs, scans where they run in its ``booted`` or
adds a property of its own); reading other users' ``/proc/<pid>/environ`` needs root, as the
suite runs. Timings are never asserted; waits have generous timeouts.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from runnerscale.model import Instance, InstanceSpec
from runnerscale.protocols import Provider, ProviderError
from tests.processes import processes_showing

__all__ = [
    "CREDENTIAL_VARIABLES",
    "LINGERING_RUNNER",
    "BackendUnderTest",
    "Breakage",
    "Interruption",
    "ProviderConformance",
    "processes_showing",
]

#: Set (to unique values) in runnerscale's environment by the credentials property; none may
#: reach a process the backend starts. The daemon's real credentials travel in such variables.
CREDENTIAL_VARIABLES = (
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "RUNNERSCALE_GITHUB_TOKEN",
    "RUNNERSCALE_APP_PRIVATE_KEY",
    "WEBHOOK_SECRET",
    "AWS_SECRET_ACCESS_KEY",
)
#: How long the suite waits for a backend to do something (never asserted as a timing).
PATIENCE = 60.0
#: Tags every instance carries, as :meth:`BackendUnderTest.tags` reports them.
TAG_KEYS = ("controller", "pool", "runner")
#: A runner for a backend under test (``python -c LINGERING_RUNNER``): it keeps running while
#: it has its JIT config, as one waiting for its job does, and exits at once without it.
LINGERING_RUNNER = (
    "import os, sys, time\n"
    "if not os.environ.get('ACTIONS_RUNNER_INPUT_JITCONFIG'):\n"
    "    sys.exit('no JIT config')\n"
    "while True:\n"
    "    time.sleep(1)\n"
)


@dataclass(frozen=True)
class Breakage:
    """One way to make ``create`` fail part-way, through the backend's own seams."""

    #: What fails, and after which step: shown when the property does not hold.
    what: str
    #: Arms the failure (patching a seam with the given monkeypatch, or making a provider with
    #: settings that fail) and returns the provider whose next ``create`` must fail. The patch
    #: is undone before the suite looks at what is left.
    arm: Callable[[pytest.MonkeyPatch], Provider]


@dataclass(frozen=True)
class Interruption:
    """One point where a create can be cut short (the daemon killed there), leaving something
    half-made."""

    #: Where the create is interrupted, and what that leaves: shown when the property fails.
    what: str
    #: Leaves what a create of the spec interrupted there leaves: for a backend whose creates
    #: run in the daemon's process, a real SIGKILL of a process creating it
    #: (:func:`tests.providers.interrupt.create_killed_after`).
    make: Callable[[InstanceSpec], Awaitable[None]]


class BackendUnderTest(abc.ABC):
    """A backend as the suite sees it: how to make providers over one backend state, and how
    to look at (and meddle with) that state without them."""

    #: The pool of the providers :meth:`provider` makes by default.
    pool: str = "conformance"
    #: How many creations the concurrency property runs at once.
    concurrency: int = 4
    #: Properties this backend is known not to hold: test name -> the exact reason. Each is
    #: marked ``xfail(strict=True)``.
    known_failures: ClassVar[Mapping[str, str]] = {}

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        #: The controller id of every provider the suite makes (unless it asks for another).
        self.controller_id = f"rsc-{tag}"
        self.name_prefix = f"rsc-{tag}"
        #: The JIT config of every spec: unique, so finding it anywhere means a leak.
        self.secret = f"JITSECRET-{uuid.uuid4().hex}{uuid.uuid4().hex}"

    def name(self, number: int) -> str:
        """The name of the suite's runner ``number`` (unique to this backend under test)."""
        return f"{self.name_prefix}-{number}"

    def spec(self, number: int) -> InstanceSpec:
        return InstanceSpec(
            runner_name=self.name(number),
            pool=self.pool,
            jitconfig=self.secret,
            labels=("self-hosted", "conformance"),
        )

    @abc.abstractmethod
    def provider(self, *, pool: str | None = None, controller_id: str | None = None) -> Provider:
        """A new provider object over this backend's state (the same folder, engine, account),
        for ``pool`` and ``controller_id`` (default: :attr:`pool`, :attr:`controller_id`)."""

    async def restart(self, provider: Provider) -> Provider:
        """What a restart of runnerscale does to the backend: the old provider is closed, a new
        one (nothing in memory) is made over the same state."""
        await provider.close()
        return self.provider()

    async def booted(self, instance_id: str) -> None:  # noqa: B027 - optional
        """Wait until the runner of a created instance is up (its own command runs), so what
        its processes expose can be inspected. By default ``create`` returns only then."""

    @abc.abstractmethod
    async def tags(self, instance_id: str) -> Mapping[str, str] | None:
        """The instance's tags as the backend itself holds them (labels, a record, metadata),
        read without the provider: a mapping with :data:`TAG_KEYS`, None when it holds no
        such instance."""

    @abc.abstractmethod
    async def leftovers(self) -> list[str]:
        """Everything of this backend under test the backend still holds (folders, containers,
        processes, machines, any pool), described for a failure message; [] when nothing."""

    @abc.abstractmethod
    async def end(self, instance_id: str) -> None:
        """Make the instance's runner stop by itself (it crashed, or finished its job), behind
        the provider's back; what holds it (folder, container) stays."""

    @abc.abstractmethod
    async def vanish(self, instance_id: str) -> None:
        """Remove the instance completely behind the provider's back (an operator did)."""

    @abc.abstractmethod
    def breakages(self) -> Sequence[Breakage]:
        """Ways to make ``create`` fail part-way, at least one after the backend began to make
        something (a folder, a container, a process)."""

    @abc.abstractmethod
    def interruptions(self) -> Sequence[Interruption]:
        """The points where an interrupted create leaves something half-made (at least one:
        every create that makes something before it is done has one)."""


# -- helpers


def exception_text(error: BaseException) -> str:
    """What a ``log.exception`` of ``error`` would print (the chain as Python shows it)."""
    return "".join(traceback.format_exception(error))


async def wait_for(
    provider: Provider, instance_id: str, check: Callable[[Instance], bool]
) -> Instance:
    """The instance once ``check`` holds for it (it must stay known meanwhile)."""
    async with asyncio.timeout(PATIENCE):
        while True:
            instance = await provider.get(instance_id)
            assert instance is not None, f"{instance_id} disappeared"
            if check(instance):
                return instance
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def closing(*providers: Provider) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for provider in providers:
            await provider.close()


def assert_describes(instance: Instance, backend: BackendUnderTest, number: int) -> None:
    """The provider's account of one of the suite's instances names its runner and pool."""
    assert instance.runner_name == backend.name(number)
    assert instance.pool == backend.pool
    assert instance.id


# -- the suite


class ProviderConformance:
    """The suite. Subclass it in a test module that has a ``backend`` fixture (see the module
    docstring); pytest collects the tests below there."""

    @pytest.fixture(autouse=True)
    def _known_failures(self, request: pytest.FixtureRequest, backend: BackendUnderTest) -> None:
        name = request.node.originalname
        reason = backend.known_failures.get(name)
        if reason is not None:
            request.applymarker(pytest.mark.xfail(strict=True, reason=reason))

    async def test_create_get_list_delete(self, backend: BackendUnderTest) -> None:
        provider = backend.provider()
        async with closing(provider):
            created = await provider.create(backend.spec(1))
            assert_describes(created, backend, 1)
            assert created.running
            assert created.exit_code is None

            got = await provider.get(created.id)
            assert got is not None
            assert_describes(got, backend, 1)
            assert got.id == created.id
            assert got.running

            [listed] = await provider.list()
            assert listed.id == created.id
            assert_describes(listed, backend, 1)
            assert listed.running

            assert await provider.get(backend.name(99)) is None  # never created

            await provider.delete(created.id)
            assert await provider.get(created.id) is None
            assert await provider.list() == []
        assert await backend.leftovers() == []

    async def test_deleting_what_is_gone_succeeds(self, backend: BackendUnderTest) -> None:
        provider = backend.provider()
        async with closing(provider):
            first = await provider.create(backend.spec(1))
            second = await provider.create(backend.spec(2))
            third = await provider.create(backend.spec(3))

            await provider.delete(first.id)
            await provider.delete(first.id)  # already gone
            await provider.delete(backend.name(99))  # never existed

            await backend.vanish(second.id)  # removed behind the provider's back
            assert await provider.get(second.id) is None
            await provider.delete(second.id)

            # Two deletions at once (the controller and the janitor): both succeed.
            await asyncio.gather(provider.delete(third.id), provider.delete(third.id))

            assert await provider.list() == []
        assert await backend.leftovers() == []

    async def test_an_instance_that_ended_stays_listed_until_deleted(
        self, backend: BackendUnderTest
    ) -> None:
        provider = backend.provider()
        async with closing(provider):
            created = await provider.create(backend.spec(1))
            await backend.booted(created.id)
            await backend.end(created.id)
            ended = await wait_for(provider, created.id, lambda instance: not instance.running)
            assert_describes(ended, backend, 1)
            [listed] = await provider.list()
            assert listed.id == created.id
            assert not listed.running
            await provider.delete(created.id)
            assert await provider.list() == []
        assert await backend.leftovers() == []

    async def test_a_restarted_provider_adopts_what_the_old_one_made(
        self, backend: BackendUnderTest
    ) -> None:
        old = backend.provider()
        made = [await old.create(backend.spec(number)) for number in (1, 2)]
        new = await backend.restart(old)  # closes the old one: its runners keep running
        async with closing(new):
            listed = {instance.id: instance for instance in await new.list()}
            assert set(listed) == {instance.id for instance in made}
            for number, instance in enumerate(made, 1):
                assert_describes(listed[instance.id], backend, number)
                assert listed[instance.id].running
                got = await new.get(instance.id)
                assert got is not None
                assert got.running
            for instance in made:
                await new.delete(instance.id)
            assert await new.list() == []
        assert await backend.leftovers() == []

    async def test_every_instance_is_tagged_with_controller_pool_and_runner(
        self, backend: BackendUnderTest
    ) -> None:
        provider = backend.provider()
        other_controller = backend.provider(controller_id=f"{backend.controller_id}-other")
        other_pool = backend.provider(pool=f"{backend.pool}-other")
        async with closing(provider, other_controller, other_pool):
            created = [await provider.create(backend.spec(number)) for number in (1, 2)]
            for number, instance in enumerate(created, 1):
                assert await backend.tags(instance.id) == {
                    "controller": backend.controller_id,
                    "pool": backend.pool,
                    "runner": backend.name(number),
                }
                got = await provider.get(instance.id)
                assert got is not None
                assert_describes(got, backend, number)
            listed = {instance.runner_name: instance for instance in await provider.list()}
            assert set(listed) == {backend.name(1), backend.name(2)}
            assert {instance.pool for instance in listed.values()} == {backend.pool}

            # Found by those tags, not by memory: another controller, or another pool, over
            # the same backend state neither sees them nor touches them.
            for other in (other_controller, other_pool):
                assert await other.list() == []
                for instance in created:
                    assert await other.get(instance.id) is None
                    await other.delete(instance.id)
            for instance in created:
                still = await provider.get(instance.id)
                assert still is not None
                assert still.running
                await provider.delete(instance.id)
        assert await backend.leftovers() == []

    async def test_no_secret_on_a_command_line(self, backend: BackendUnderTest) -> None:
        provider = backend.provider()
        async with closing(provider):
            created = [await provider.create(backend.spec(number)) for number in (1, 2)]
            for instance in created:
                await backend.booted(instance.id)
            showing = processes_showing([backend.secret])
            for instance in created:
                await provider.delete(instance.id)
        assert showing == [], "the JIT config is on these command lines"

    async def test_runnerscale_credentials_never_reach_a_runner(
        self, backend: BackendUnderTest, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        canaries = {
            name: f"canary-{name.lower()}-{uuid.uuid4().hex}" for name in CREDENTIAL_VARIABLES
        }
        for name, value in canaries.items():
            monkeypatch.setenv(name, value)
        provider = backend.provider()
        async with closing(provider):
            created = await provider.create(backend.spec(1))
            await backend.booted(created.id)
            showing = processes_showing(canaries.values(), environ=True)
            await provider.delete(created.id)
        assert showing == [], "runnerscale's credentials reached these processes"

    async def test_no_secret_in_a_log_record_or_an_error(
        self, backend: BackendUnderTest, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)  # every logger, libraries (HTTP clients, SDKs) too
        texts: list[tuple[str, str]] = []  # (where, text)

        def seen(where: str, *items: Any) -> None:
            texts.extend((where, item if isinstance(item, str) else repr(item)) for item in items)

        provider = backend.provider()
        async with closing(provider):
            created = await provider.create(backend.spec(1))
            seen("create", created, created.detail)
            await backend.booted(created.id)
            for instance in await provider.list():
                seen("list", instance, instance.detail)
            await backend.end(created.id)
            ended = await wait_for(provider, created.id, lambda instance: not instance.running)
            seen("an ended instance", ended, ended.detail)  # its detail quotes the runner's log
            await provider.delete(created.id)
            await provider.delete(created.id)
            for number, breakage in enumerate(backend.breakages(), 10):
                with pytest.MonkeyPatch.context() as patch:
                    broken = breakage.arm(patch)
                    async with closing(broken):
                        try:
                            await broken.create(backend.spec(number))
                        except Exception as error:  # any error text counts
                            seen(f"the error of: {breakage.what}", exception_text(error))
                        else:
                            await provider.delete(backend.name(number))
        for record in caplog.records:
            seen(f"log record of {record.name}", record.getMessage())
            if record.exc_info:
                seen(
                    f"log record of {record.name}",
                    "".join(traceback.format_exception(*record.exc_info)),
                )
        leaks = [where for where, text in texts if backend.secret in text]
        assert leaks == [], "the JIT config is in these texts"
        assert await backend.leftovers() == []

    async def test_concurrent_creates_are_distinct_and_all_listed(
        self, backend: BackendUnderTest
    ) -> None:
        count = backend.concurrency
        # Through one provider object, and through two (two daemons over one backend).
        providers = [backend.provider(), backend.provider()]
        async with closing(*providers):
            made = await asyncio.gather(
                *(
                    providers[number % 2].create(backend.spec(number))
                    for number in range(1, count + 1)
                )
            )
            assert len({instance.id for instance in made}) == count
            assert sorted(instance.runner_name for instance in made) == sorted(
                backend.name(number) for number in range(1, count + 1)
            )
            for provider in providers:
                listed = {instance.id: instance for instance in await provider.list()}
                assert set(listed) == {instance.id for instance in made}
                assert all(instance.running for instance in listed.values())
            for instance in made:
                tags = await backend.tags(instance.id)
                assert tags is not None
                assert tags["runner"] == instance.runner_name
            await asyncio.gather(*(providers[0].delete(instance.id) for instance in made))
            assert await providers[1].list() == []
        assert await backend.leftovers() == []

    async def test_a_create_that_fails_half_way_leaves_nothing(
        self, backend: BackendUnderTest
    ) -> None:
        breakages = backend.breakages()
        assert breakages, "a backend offers at least one way to break a create part-way"
        failures = []
        for number, breakage in enumerate(breakages, 1):
            spec = backend.spec(number)
            before = set(await backend.leftovers())
            with pytest.MonkeyPatch.context() as patch:
                broken = breakage.arm(patch)
                async with closing(broken):
                    try:
                        instance = await broken.create(spec)
                    except ProviderError:
                        pass
                    except Exception as error:  # reported below
                        failures.append(
                            f"{breakage.what}: raised {type(error).__name__}, not ProviderError"
                        )
                    else:
                        failures.append(f"{breakage.what}: create succeeded ({instance.id})")
            left = sorted(set(await backend.leftovers()) - before)
            if left:
                failures.append(f"{breakage.what}: left {left}")
                continue
            provider = backend.provider()
            async with closing(provider):
                listed = [instance.runner_name for instance in await provider.list()]
                if spec.runner_name in listed or await provider.get(spec.runner_name) is not None:
                    failures.append(f"{breakage.what}: the provider still knows the instance")
                # The name is not spoilt: the same runner can be created right after.
                instance = await provider.create(spec)
                assert instance.running
                await provider.delete(instance.id)
        assert not failures, "\n".join(failures)
        assert await backend.leftovers() == []

    async def test_a_leftover_of_an_interrupted_create_is_listed_and_removed_by_delete(
        self, backend: BackendUnderTest
    ) -> None:
        interruptions = backend.interruptions()
        assert interruptions, "a backend names where an interrupted create leaves something"
        failures = []
        for number, interruption in enumerate(interruptions, 1):
            spec = backend.spec(number)
            await interruption.make(spec)
            assert await backend.leftovers(), f"{interruption.what}: left nothing to test"
            provider = backend.provider()  # a new daemon's: the interrupted one died with it
            async with closing(provider):
                listed = [i for i in await provider.list() if i.runner_name == spec.runner_name]
                if len(listed) != 1:
                    failures.append(f"{interruption.what}: listed {listed}")
                    continue
                (leftover,) = listed
                if not (
                    leftover.incomplete
                    and not leftover.running
                    and leftover.exit_code is None
                    and leftover.created_at is not None
                    and leftover.pool == backend.pool
                ):
                    failures.append(f"{interruption.what}: listed as {leftover}")
                if await provider.get(leftover.id) != leftover:
                    failures.append(f"{interruption.what}: get differs from list")
                await provider.delete(leftover.id)
                if await provider.get(leftover.id) is not None or await provider.list():
                    failures.append(f"{interruption.what}: still known after delete")
                left = await backend.leftovers()
                if left:
                    failures.append(f"{interruption.what}: delete left {left}")
                    continue
                instance = await provider.create(spec)  # the name is not spoilt
                assert instance.running
                await provider.delete(instance.id)
        assert not failures, "\n".join(failures)
        assert await backend.leftovers() == []
