"""The API budget as the production client lives it, against the simulator over HTTP:
secondary limits pause every call, a low budget stretches the poll interval, registering
runners is charged (and paused) apart from polling, and no more than a few dozen requests are
ever in flight."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from runnerscale.controller.loops import Status
from runnerscale.fakegithub.faults import FaultPlan, RateLimitFaults
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.github.budget import CORE, REGISTRATION, RESET_MARGIN, resource_of
from runnerscale.github.client import MAX_CONCURRENT_REQUESTS, GitHubClient
from runnerscale.metrics import Metrics
from runnerscale.model import Target
from runnerscale.protocols import GitHubError, WaitedCall
from runnerscale.statusview import github_lines
from tests.virtual_time import SkipAhead, virtual_clock

TOKEN = "ghp_budget_test_token"
REPO = Target("repo", "acme/app")
OPERATION = "actions/list-self-hosted-runners-for-repo"


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(SimulatorOptions(tokens=(TOKEN,))) as server:
        server.simulator.world.ensure_repo("acme/app")
        yield server


async def test_a_secondary_limit_pauses_every_call_for_retry_after() -> None:
    # The simulator and the client on one virtual clock, which the client's pause moves on.
    clock = virtual_clock()
    async with SimulatorServer(SimulatorOptions(tokens=(TOKEN,)), clock) as simulator:
        simulator.simulator.world.ensure_repo("acme/app")
        sleep = SkipAhead(clock)
        slept = sleep.waits
        client = GitHubClient(simulator.url, TOKEN, clock=clock.now, sleep=sleep)
        simulator.simulator.set_faults(
            FaultPlan(rate_limit=RateLimitFaults(secondary_for=1.5, retry_after=2, status=429))
        )
        with pytest.raises(GitHubError) as caught:
            await client.list_runners(REPO)
        assert caught.value.retry_after == 2
        # Three callers at once: each waits out the pause instead of asking again.
        results = await asyncio.gather(*(client.list_runners(REPO) for _ in range(3)))
        assert results == [[], [], []]
        assert slept
        assert all(1.0 <= seconds <= 2.0 for seconds in slept)
        statuses = simulator.simulator.stats.statuses[OPERATION]
        assert statuses[429] == 1  # nothing was sent while paused
        assert client.budget.report()["paused"] == {}  # over


async def test_the_poll_interval_stretches_when_the_budget_runs_low(
    simulator: SimulatorServer,
) -> None:
    simulator.simulator.set_faults(FaultPlan(rate_limit=RateLimitFaults(limit=60)))
    client = GitHubClient(simulator.url, TOKEN)
    assert client.poll_interval(15.0) == 15.0  # nothing known yet
    with client.polling():
        for _ in range(5):
            await client.list_runners(Target("repo", "acme/app"))
            client._etags.clear()  # every read is charged (no 304s)
    # 5 calls per "poll", 55 left for the rest of the hour: every 15 s would spend them fast.
    stretched = client.poll_interval(15.0)
    assert stretched > 15.0 * 10
    assert client.budget.stretched
    assert client.budget.report()["poll_stretched"] is True
    bucket = client.budget.resources["core"]
    assert (bucket.limit, bucket.remaining) == (60, 55)


@pytest.mark.slow
async def test_only_polling_calls_make_up_what_a_poll_costs(simulator: SimulatorServer) -> None:
    """Issue 12's fault storm: every core call since the last poll (runner deletions, the
    janitor's lists) was charged to polling, and the poll interval stretched to minutes while
    most of the budget was left. Calls outside ``polling()`` now leave the interval alone."""
    simulator.simulator.set_faults(FaultPlan(rate_limit=RateLimitFaults(limit=1000)))
    client = GitHubClient(simulator.url, TOKEN)
    with client.polling():
        await client.list_runners(REPO)  # the poll: one call
    assert client.poll_interval(15.0) == 15.0
    # Between two polls: deletions (404s, still charged) and a janitor's lists, 60 calls.
    for runner_id in range(30):
        await client.delete_runner(REPO, 1000 + runner_id)
        client._etags.clear()  # every read is charged (no 304s)
        await client.list_runners(REPO)
    client._etags.clear()
    with client.polling():
        await client.list_runners(REPO)
    assert client.budget.resources["core"].remaining == 1000 - 62
    # The poll cost one call of the ~840 spendable for the rest of the hour: no stretch
    # (counted as before, the poll would have cost 61 and waited over four minutes).
    assert client.poll_interval(15.0) == 15.0
    assert not client.budget.stretched
    assert client.budget.polled() == {"token": 2}


async def test_not_modified_answers_are_not_charged(simulator: SimulatorServer) -> None:
    client = GitHubClient(simulator.url, TOKEN)
    for _ in range(4):
        await client.list_runners(REPO)
    assert client.budget.not_modified == 3
    assert client.budget.resources["core"].used == 1
    assert client.poll_interval(15.0) == 15.0


LABELS = ("self-hosted", "linux")


async def test_jit_configs_are_charged_to_the_registration_resource(
    simulator: SimulatorServer,
) -> None:
    client = GitHubClient(simulator.url, TOKEN)
    for index in range(3):
        await client.generate_jitconfig(REPO, f"rs-budget-{index}", LABELS)
    await client.list_runners(REPO)
    resources = client.budget.resources
    assert set(resources) == {CORE, REGISTRATION}
    registration = resources[REGISTRATION]
    assert (registration.limit, registration.used) == (10000, 3)
    assert resources[CORE].used == 1
    assert client.budget.charged_by_resource() == {CORE: 1, REGISTRATION: 3}
    # The simulator charged every call where the client's table expected it to.
    learned = client.budget.of("token").learned
    assert learned == {"generate-jitconfig": REGISTRATION, "list-runners": CORE}
    assert all(resource_of(operation) == named for operation, named in learned.items())
    # The simulator's own overview agrees, and lists the resource.
    async with httpx.AsyncClient(headers={"Authorization": f"token {TOKEN}"}) as http:
        overview = (await http.get(f"{simulator.url}/rate_limit")).json()
    assert overview["resources"][REGISTRATION]["used"] == 3
    # Status and metrics show it, per resource.
    lines = github_lines(client.budget.report(), simulator.clock.now())
    assert f"GitHub {REGISTRATION}: 3 used, 9997 of 10000 remaining" in lines
    metrics = Metrics(lambda: Status(pools=[]), lambda: client.budget).render().decode()
    assert (
        f'runnerscale_github_rate_limit_used{{credential="token",resource="{REGISTRATION}"}} 3.0'
        in metrics
    )
    charged = f'{{credential="token",resource="{REGISTRATION}"}} 3.0'
    assert f"runnerscale_github_charged_calls_total{charged}" in metrics


async def test_a_spent_registration_budget_holds_jit_configs_not_polls(
    simulator: SimulatorServer,
) -> None:
    world = simulator.simulator
    identity = world.auth.identify(f"token {TOKEN}").identity
    bucket = world.rate_limits.bucket(identity, REGISTRATION, world.clock.now())
    bucket.used = bucket.limit
    now = [world.clock.now()]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        # Waiting out the pause: the window resets meanwhile.
        slept.append(seconds)
        now[0] += seconds
        bucket.used = 0
        await asyncio.sleep(0)

    client = GitHubClient(simulator.url, TOKEN, clock=lambda: now[0], sleep=sleep)
    with pytest.raises(GitHubError) as caught:
        await client.generate_jitconfig(REPO, "rs-held", LABELS)
    assert caught.value.status == 403
    budget = client.budget.of("token")
    assert budget.pause_remaining(REGISTRATION) > 3000  # until the window resets
    assert budget.pause_remaining(CORE) == 0.0
    # Polling goes on, without waiting.
    assert [runner.name for runner in await client.list_runners(REPO)] == []
    assert client.poll_interval(15.0) == 15.0
    assert slept == []
    # The next JIT config waits for the reset, then registers.
    await client.generate_jitconfig(REPO, "rs-after", LABELS)
    assert len(slept) == 1
    assert slept[0] > 3000


class CountingTransport(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.in_flight = 0
        self.peak = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.02)  # keep requests overlapping
            return await self.inner.handle_async_request(request)
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        """githubkit closes its transport after every call; this one outlives them."""

    async def close_for_good(self) -> None:
        await self.inner.aclose()


async def test_at_most_a_few_dozen_requests_are_in_flight(simulator: SimulatorServer) -> None:
    transport = CountingTransport()
    client = GitHubClient(simulator.url, TOKEN, transport=transport)
    await asyncio.gather(*(client.get_job("acme/app", 1) for _ in range(100)))
    assert transport.peak == MAX_CONCURRENT_REQUESTS
    await transport.close_for_good()


def limit_registrations(simulator: SimulatorServer, limit: int, window: float) -> None:
    """The simulator's repository, and a registration budget of ``limit`` a ``window``."""
    simulator.simulator.world.ensure_repo("acme/app")
    simulator.simulator.set_faults(
        FaultPlan(
            rate_limit=RateLimitFaults(limits={REGISTRATION: limit}, windows={REGISTRATION: window})
        )
    )


async def test_registrations_beyond_the_budget_wait_for_its_reset_instead_of_failing() -> None:
    clock = virtual_clock()
    async with SimulatorServer(SimulatorOptions(tokens=(TOKEN,)), clock) as simulator:
        limit_registrations(simulator, 3, 60)
        statuses = simulator.simulator.stats.statuses["actions/generate-runner-jitconfig-for-repo"]
        # Time moves only when the test says: the waits sleep on the virtual clock.
        client = GitHubClient(simulator.url, TOKEN, clock=clock.now, sleep=clock.sleep)
        began = clock.now()
        await client.generate_jitconfig(REPO, "rs-first", LABELS)  # the budget is known
        names = [f"rs-ramp-{index}" for index in range(4)]
        ramp = asyncio.gather(*(client.generate_jitconfig(REPO, name, LABELS) for name in names))
        budget = client.budget.of("token")
        for _ in range(500):  # two go at once, two wait for the reset
            if statuses[201] == 3 and budget.held[REGISTRATION] == 2:
                break
            await asyncio.sleep(0.01)
        assert dict(statuses) == {201: 3}  # none was sent to be refused
        assert budget.held[REGISTRATION] == 2
        assert budget.spent_wait(REGISTRATION) == 60 + RESET_MARGIN
        # Polling does not wait for it.
        assert [runner.name for runner in await client.list_runners(REPO)] == [
            "rs-first",
            "rs-ramp-0",
            "rs-ramp-1",
        ]
        clock.advance(began + 60 + RESET_MARGIN - clock.now())
        await ramp
        assert dict(statuses) == {201: 5}


async def test_the_wait_for_the_registration_budget_is_asked_before_a_registration() -> None:
    """What the controller's pool worker asks before it begins a runner's creation: the
    client's own wait, without sending anything."""
    clock = virtual_clock()
    async with SimulatorServer(SimulatorOptions(tokens=(TOKEN,)), clock) as simulator:
        limit_registrations(simulator, 2, 600)
        client = GitHubClient(simulator.url, TOKEN, clock=clock.now, sleep=clock.sleep)
        assert client.registration_wait(REPO) == 0.0
        await client.registration_ready(REPO)
        assert client.budget.by_credential == {}  # asking made no budget, sent nothing
        began = clock.now()
        for index in range(2):
            await client.generate_jitconfig(REPO, f"rs-ask-{index}", LABELS)
        assert client.registration_wait(REPO) == began + 600 + RESET_MARGIN - clock.now()
        budget = client.budget.of("token")
        waiting = asyncio.ensure_future(client.registration_ready(REPO))
        await asyncio.sleep(0)
        assert budget.held[REGISTRATION] == 1
        assert not waiting.done()
        clock.advance(began + 600 + RESET_MARGIN - clock.now())
        await waiting
        assert client.registration_wait(REPO) == 0.0
        requests = simulator.simulator.stats.requests
        assert requests["actions/generate-runner-jitconfig-for-repo"] == 2


async def test_the_wait_of_a_paused_core_call_is_asked_without_sending_it() -> None:
    """What the controller's loops ask before a call they must not wait for (a job's
    re-read, a runner list, a delete): the pause a secondary limit took on ``core``, and
    none for registrations, whose resource is apart."""
    clock = virtual_clock()
    async with SimulatorServer(SimulatorOptions(tokens=(TOKEN,)), clock) as simulator:
        simulator.simulator.world.ensure_repo("acme/app")
        client = GitHubClient(simulator.url, TOKEN, clock=clock.now, sleep=clock.sleep)
        assert client.call_wait("get-job", REPO) == 0.0  # nothing known yet: no wait
        simulator.simulator.set_faults(
            FaultPlan(rate_limit=RateLimitFaults(secondary_for=100, retry_after=90, status=429))
        )
        with pytest.raises(GitHubError):
            await client.list_runners(REPO)
        requests = dict(simulator.simulator.stats.requests)
        operations: tuple[WaitedCall, ...] = ("get-job", "list-runners", "delete-runner")
        for operation in operations:
            assert client.call_wait(operation, REPO) == 90
        assert client.registration_wait(REPO) == 0.0
        assert dict(simulator.simulator.stats.requests) == requests  # asking sent nothing
        clock.advance(90)
        assert client.call_wait("list-runners", REPO) == 0.0
