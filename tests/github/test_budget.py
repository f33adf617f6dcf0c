"""The rate-limit budget, adaptive polling and pauses."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runnerscale.controller.loops import Status
from runnerscale.github.budget import (
    CORE,
    MAX_PAUSE,
    OPERATION_RESOURCES,
    REGISTRATION,
    RESET_MARGIN,
    ApiBudget,
    Bucket,
    Budgets,
    resource_of,
    retry_after_seconds,
)
from runnerscale.metrics import Metrics
from runnerscale.statusview import github_lines

T0 = 1_700_000_000.0


class FakeClock:
    """Epoch seconds that move only when told to, or when someone sleeps."""

    def __init__(self, now: float = T0) -> None:
        self.t = now
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


def headers(
    remaining: int | str,
    *,
    limit: int | str = 5000,
    used: int | str | None = None,
    reset: float | str = T0 + 3600,
    resource: str | None = None,
) -> dict[str, str]:
    out = {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-reset": str(reset),
    }
    if used is not None:
        out["x-ratelimit-used"] = str(used)
    if resource is not None:
        out["x-ratelimit-resource"] = resource
    return out


def budget_at(clock: FakeClock, **kwargs: float) -> ApiBudget:
    return ApiBudget(clock.now, clock.sleep, **kwargs)


# ---------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("given_headers", "expected"),
    [
        pytest.param(
            {
                "x-ratelimit-limit": "5000",
                "x-ratelimit-remaining": "4990",
                "x-ratelimit-used": "10",
                "x-ratelimit-reset": "1700003600",
                "x-ratelimit-resource": "core",
            },
            {"core": Bucket(5000, 4990, 10, 1700003600.0)},
            id="complete",
        ),
        pytest.param(
            {
                "X-RateLimit-Limit": "5000",
                "X-RateLimit-Remaining": "12",
                "X-RateLimit-Used": "4988",
                "X-RateLimit-Reset": "1700003600",
                "X-RateLimit-Resource": "GraphQL",
            },
            {"graphql": Bucket(5000, 12, 4988, 1700003600.0)},
            id="mixed-case",
        ),
        pytest.param(
            {"x-ratelimit-remaining": "7", "x-ratelimit-limit": "10"},
            {"core": Bucket(10, 7, 3, 0.0)},
            id="no-resource-is-core-used-derived",
        ),
        pytest.param({"content-type": "application/json"}, {}, id="no-ratelimit-headers"),
        pytest.param({"x-ratelimit-limit": "5000"}, {}, id="no-remaining"),
        pytest.param({"x-ratelimit-remaining": "lots"}, {}, id="garbage-remaining"),
        pytest.param({"x-ratelimit-remaining": "nan"}, {}, id="nan-remaining"),
        pytest.param({"x-ratelimit-remaining": "inf"}, {}, id="inf-remaining"),
        pytest.param(
            {
                "x-ratelimit-remaining": "30",
                "x-ratelimit-limit": "many",
                "x-ratelimit-used": "20",
                "x-ratelimit-reset": "soon",
            },
            {"core": Bucket(50, 30, 20, 0.0)},
            id="garbage-limit-and-reset",
        ),
        pytest.param(
            {"x-ratelimit-remaining": "-3", "x-ratelimit-limit": "60", "x-ratelimit-used": "x"},
            {"core": Bucket(60, 0, 60, 0.0)},
            id="negative-remaining-clamped",
        ),
        pytest.param(
            {"x-ratelimit-remaining": " 42.0 ", "x-ratelimit-limit": "60"},
            {"core": Bucket(60, 42, 18, 0.0)},
            id="float-and-spaces",
        ),
    ],
)
def test_record_parses_headers(given_headers: dict[str, str], expected: dict[str, Bucket]) -> None:
    budget = ApiBudget(lambda: T0)
    budget.record(given_headers)
    assert budget.snapshot() == expected
    assert budget.resources == expected  # the field metrics.py and server.py read


def test_record_takes_httpx_headers_and_keeps_resources_apart() -> None:
    budget = ApiBudget(lambda: T0)
    budget.record(httpx.Headers(headers(4000, resource="core")))
    budget.record(httpx.Headers(headers(25, limit=30, resource="search")))
    snapshot = budget.snapshot()
    assert snapshot["core"].remaining == 4000
    assert snapshot["search"] == Bucket(30, 25, 5, T0 + 3600)
    snapshot["core"].remaining = 0  # a copy: the budget is untouched
    assert budget.resources["core"].remaining == 4000
    assert asdict(budget.resources["search"]) == {
        "limit": 30,
        "remaining": 25,
        "used": 5,
        "reset": T0 + 3600,
    }


def test_out_of_order_answers_of_one_window_keep_the_lowest_remaining() -> None:
    budget = ApiBudget(lambda: T0)
    budget.record(headers(100, used=4900))
    budget.record(headers(105, used=4895))  # a slower, older answer of the same window
    assert budget.resources["core"] == Bucket(5000, 100, 4900, T0 + 3600)
    budget.record(headers(4999, used=1, reset=T0 + 7200))  # a new window replaces it
    assert budget.resources["core"] == Bucket(5000, 4999, 1, T0 + 7200)


def test_garbage_reset_keeps_the_running_window_only() -> None:
    budget = ApiBudget(lambda: T0)
    budget.record(headers(100))
    budget.record(headers(90, reset="soon"))
    assert budget.resources["core"].reset == T0 + 3600
    budget.record(headers(80, reset="soon"), now=T0 + 4000)  # that window is over
    assert budget.resources["core"].reset == 0.0


def test_counters() -> None:
    budget = ApiBudget(lambda: T0)
    for operation in ("list-runners", "list-runners", "get-job"):
        budget.count(operation)
    budget.count_not_modified("list-runners")
    budget.count("generate-jitconfig")
    assert budget.calls == {"list-runners": 2, "get-job": 1, "generate-jitconfig": 1}
    assert budget.not_modified == 1
    assert budget.charged() == 2
    assert budget.charged(REGISTRATION) == 1
    report = budget.report()
    assert report["calls"] == 4
    assert report["charged"] == {CORE: 2, REGISTRATION: 1}
    assert report["not_modified"] == 1


# ---------------------------------------------------------------------- adaptive polling


@pytest.mark.parametrize(
    ("remaining", "window", "calls_per_poll", "expected"),
    [
        # 4500 spendable for 3600 s; polling every 15 s with 10 calls needs 2400: fits.
        (5000, 3600, 10, 15.0),
        # 1500 spendable (2000 - 500 reserve); 10 calls every 15 s needs 2400: stretch to
        # 3600 * 10 / 1500 = 24 s.
        (2000, 3600, 10, 24.0),
        # 50 spendable: 3600 * 10 / 50 = 720 s.
        (550, 3600, 10, 720.0),
        # 10 spendable: 3600 s needed, capped at 15 minutes.
        (510, 3600, 10, 900.0),
        # Only the reserve is left: wait, but never past the reset.
        (500, 600, 10, 600.0 + RESET_MARGIN),
        (0, 60, 10, 60.0 + RESET_MARGIN),
        # Budget spent, but the reset is sooner than base: base.
        (0, 5, 10, 15.0),
        # A poll that cost nothing (all 304s) never stretches.
        (0, 3600, 0, 15.0),
    ],
)
def test_poll_interval_table(
    remaining: int, window: float, calls_per_poll: float, expected: float
) -> None:
    clock = FakeClock()
    budget = budget_at(clock)
    budget.record(headers(remaining, reset=T0 + window))
    assert budget.poll_interval(15.0, calls_per_poll) == pytest.approx(expected)
    assert budget.stretched is (expected > 15.0)
    assert budget.factor == pytest.approx(expected / 15.0)


def test_poll_interval_without_a_bucket_is_base() -> None:
    budget = ApiBudget(lambda: T0)
    assert budget.poll_interval(15.0, 100) == 15.0
    assert not budget.stretched
    with pytest.raises(ValueError, match="positive"):
        budget.poll_interval(0.0, 1)


def test_polling_stretches_when_low_and_recovers_after_the_reset() -> None:
    clock = FakeClock()
    budget = budget_at(clock)
    budget.record(headers(600, reset=T0 + 3600))
    stretched = budget.poll_interval(15.0, 10)
    assert stretched == pytest.approx(360.0)  # 3600 * 10 / (600 - 500)
    assert budget.stretched
    assert budget.report()["poll_stretched"] is True

    clock.t = T0 + 3600 + 1  # the window reset; no answer seen since
    assert budget.poll_interval(15.0, 10) == 15.0
    assert not budget.stretched

    clock.t = T0 + 100  # or an answer of the new window shows the budget back up
    budget.record(headers(600, reset=T0 + 3600))
    assert budget.poll_interval(15.0, 10) > 15.0
    budget.record(headers(4990, reset=T0 + 3700))
    assert budget.poll_interval(15.0, 10) == 15.0
    assert budget.factor == 1.0


def test_poll_interval_reads_the_resource_it_is_told() -> None:
    budget = ApiBudget(lambda: T0)
    budget.record(headers(5, limit=5000, resource="graphql"))
    assert budget.poll_interval(15.0, 10) == 15.0
    assert budget.poll_interval(15.0, 10, resource="graphql") > 15.0


@given(
    base=st.floats(min_value=0.5, max_value=1200.0),
    calls_per_poll=st.floats(min_value=0.0, max_value=500.0),
    limit=st.integers(min_value=0, max_value=20_000),
    remaining=st.integers(min_value=0, max_value=20_000),
    more=st.integers(min_value=0, max_value=20_000),
    window=st.floats(min_value=-100.0, max_value=4000.0),
)
def test_poll_interval_properties(
    base: float, calls_per_poll: float, limit: int, remaining: int, more: int, window: float
) -> None:
    def interval(left: int) -> float:
        budget = ApiBudget(lambda: T0)
        budget.record(headers(left, limit=limit, reset=T0 + window))
        return budget.poll_interval(base, calls_per_poll)

    low, high = interval(remaining), interval(remaining + more)
    cap = max(base, 900.0)
    assert base <= low <= cap
    assert base <= high <= cap
    assert high <= low  # more budget never means slower polling


# ---------------------------------------------------------------------- pauses


@pytest.mark.parametrize(
    ("status", "given_headers", "message", "expected"),
    [
        (403, {"retry-after": "30"}, "", 30.0),
        (429, {"Retry-After": "7"}, "", 7.0),
        (429, {"retry-after": "Tue, 14 Nov 2023 22:15:00 GMT"}, "", 100.0),  # T0 + 100
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(T0 + 1234)}, "", 1234.0),
        (429, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(T0 - 5)}, "", 1.0),
        (403, {"x-ratelimit-remaining": "0"}, "", 60.0),
        (429, {}, "", 60.0),
        (403, {}, "You have exceeded a secondary rate limit", 60.0),
        (403, {"retry-after": "1e12"}, "", MAX_PAUSE),
        # Not rate limits: a permission problem, other statuses.
        (403, {}, "Resource not accessible by integration", 0.0),
        (403, {"x-ratelimit-remaining": "12"}, "", 0.0),
        (500, {"retry-after": "30"}, "", 0.0),
        (404, {}, "", 0.0),
    ],
)
def test_pause_from(
    status: int, given_headers: dict[str, str], message: str, expected: float
) -> None:
    budget = ApiBudget(lambda: T0)
    seconds = budget.pause_from(status, given_headers, "core", message=message)
    assert seconds == pytest.approx(expected)
    assert budget.paused_until("core") == (pytest.approx(T0 + expected) if expected else 0.0)


def test_retry_after_garbage() -> None:
    assert retry_after_seconds(None, T0) is None
    assert retry_after_seconds("whenever", T0) is None
    assert retry_after_seconds("-5", T0) is None
    assert retry_after_seconds("12", T0) == 12.0


def test_pauses_extend_never_shorten_and_stay_per_resource() -> None:
    budget = ApiBudget(lambda: T0)
    budget.pause_from(403, {"retry-after": "60"}, "core")
    budget.pause_from(403, {"retry-after": "10"}, "core")
    assert budget.paused_until("core") == T0 + 60
    assert budget.paused_until("search") == 0.0
    budget.pause_from(429, {"retry-after": "5", "x-ratelimit-resource": "search"})
    assert budget.paused_until("search") == T0 + 5
    assert budget.pause_remaining("core", now=T0 + 50) == 10.0
    assert budget.paused == {"core": 2, "search": 1}
    assert budget.report()["paused"] == {"core": T0 + 60, "search": T0 + 5}


async def test_every_call_waits_out_the_pause() -> None:
    clock = FakeClock()
    budget = budget_at(clock)
    assert await budget.wait_if_paused("core") == 0.0
    assert clock.sleeps == []

    budget.pause_from(403, {"retry-after": "30"}, "core")
    waited = await asyncio.gather(*(budget.wait_if_paused("core") for _ in range(5)))
    assert clock.t >= T0 + 30
    assert waited[0] == 30.0
    assert all(w >= 0 for w in waited)
    assert await budget.wait_if_paused("search") == 0.0


async def test_a_pause_extended_while_waiting_is_waited_out() -> None:
    clock = FakeClock()
    budget = budget_at(clock)
    budget.pause_from(429, {"retry-after": "10"}, "core")
    real_sleep = clock.sleep

    async def sleep_and_get_pushed_back(seconds: float) -> None:
        await real_sleep(seconds)
        if len(clock.sleeps) == 1:
            budget.pause_from(429, {"retry-after": "20"}, "core")

    budget._sleep = sleep_and_get_pushed_back
    assert await budget.wait_if_paused("core") == 30.0
    assert clock.sleeps == [10.0, 20.0]


# -- one budget per credential


def test_credentials_keep_budgets_of_their_own() -> None:
    clock = FakeClock()
    budgets = Budgets(lambda: ApiBudget(clock.now, clock.sleep))
    budgets.of("installation 1").record(headers(4000, used=1000))
    budgets.of("installation 2").record(headers(100, used=4900))
    assert budgets.of("installation 1").resources["core"].remaining == 4000
    # The summary per resource is the credential that runs out first.
    assert budgets.resources["core"].remaining == 100
    report = budgets.report()
    assert report["rate_limit"]["core"]["remaining"] == 100
    assert report["credentials"]["installation 1"]["core"]["remaining"] == 4000


def test_the_poll_interval_lasts_for_every_credential() -> None:
    clock = FakeClock()
    budgets = Budgets(lambda: ApiBudget(clock.now, clock.sleep))
    budgets.of("installation 1").record(headers(4000))
    budgets.of("installation 2").record(headers(600))  # 100 spendable above the reserve
    # A poll costs each 10 calls: the first could poll every 15 s, the second cannot.
    interval = budgets.poll_interval(15.0, {"installation 1": 10, "installation 2": 10})
    assert interval == pytest.approx(3600 * 10 / 100)
    assert budgets.stretched
    assert budgets.poll_interval(15.0, {"installation 1": 10}) == 15.0  # 2 spent nothing


async def test_a_pause_holds_only_its_credential() -> None:
    clock = FakeClock()
    budgets = Budgets(lambda: ApiBudget(clock.now, clock.sleep))
    assert budgets.of("installation 1").pause_from(429, {"retry-after": "30"}) == 30.0
    assert await budgets.of("installation 2").wait_if_paused() == 0.0
    assert await budgets.of("installation 1").wait_if_paused() == 30.0
    assert budgets.report()["paused"] == {}  # over once waited out


# -- the runner-registration resource


def test_registering_runners_is_charged_to_a_resource_of_its_own() -> None:
    # GitHub does not document it: the table is an assumption, shared with the simulator.
    assert resource_of("generate-jitconfig") == REGISTRATION == "actions_runner_registration"
    assert set(OPERATION_RESOURCES.values()) == {REGISTRATION}
    assert resource_of("list-runners") == resource_of("delete-runner") == CORE
    budget = ApiBudget(lambda: T0)
    assert budget.resource_for("generate-jitconfig") == REGISTRATION


def test_an_answer_naming_another_resource_is_learned() -> None:
    budget = ApiBudget(lambda: T0)
    budget.count("generate-jitconfig")
    # An answer without the header (rate limiting off) teaches nothing.
    assert budget.learn("generate-jitconfig", {"x-ratelimit-remaining": "1"}) == REGISTRATION
    # A GitHub that charges registration to core says so: those calls count for polling.
    assert budget.learn("generate-jitconfig", headers(4000, resource="core")) == CORE
    assert budget.resource_for("generate-jitconfig") == CORE
    assert budget.charged_by_resource() == {CORE: 1}


def test_registering_runners_does_not_stretch_polling() -> None:
    clock = FakeClock()
    budgets = Budgets(lambda: ApiBudget(clock.now, clock.sleep))
    budget = budgets.of("token")
    budget.record(headers(600))  # core: 100 spendable above the reserve
    budget.record(headers(9000, limit=10000, resource=REGISTRATION))
    for _ in range(200):
        budget.count("generate-jitconfig")
    budget.count("list-runners")
    # One poll cost core a single call: 3600 * 1 / 100 = 36 s, not the JIT configs' 200.
    assert budgets.charged() == {"token": 1}
    assert budgets.charged(REGISTRATION) == {"token": 200}
    assert budgets.poll_interval(15.0, budgets.charged()) == pytest.approx(36.0)
    # Nor does a spent registration budget: polling reads only core.
    budget.record(headers(0, limit=10000, resource=REGISTRATION))
    assert budgets.poll_interval(15.0, {"token": 0}) == 15.0
    report = budgets.report()
    assert report["charged"] == {CORE: 1, REGISTRATION: 200}
    assert report["rate_limit"][REGISTRATION]["limit"] == 10000


async def test_a_registration_pause_holds_jit_configs_but_not_polls() -> None:
    clock = FakeClock()
    budgets = Budgets(lambda: ApiBudget(clock.now, clock.sleep))
    budget = budgets.of("token")
    answer = {"retry-after": "30", "x-ratelimit-resource": REGISTRATION}
    resource = budget.learn("generate-jitconfig", answer)
    assert budget.pause_from(403, answer, resource, message="rate limit") == 30.0
    assert budget.paused_until(CORE) == 0.0
    assert await budget.wait_if_paused(budget.resource_for("list-runners")) == 0.0
    assert clock.sleeps == []
    assert budgets.report()["paused"] == {f"{REGISTRATION} (token)": T0 + 30}
    assert await budget.wait_if_paused(budget.resource_for("generate-jitconfig")) == 30.0
    assert clock.sleeps == [30.0]


async def test_a_core_pause_does_not_hold_jit_configs_unless_github_says_so() -> None:
    clock = FakeClock()
    budget = budget_at(clock)
    spent = headers(0, reset=T0 + 600, resource=CORE)
    assert budget.pause_from(403, spent, budget.learn("list-runners", spent)) == 600.0
    assert await budget.wait_if_paused(budget.resource_for("generate-jitconfig")) == 0.0
    # GitHub answers a JIT config on core: from then on it waits for core's pause.
    budget.learn("generate-jitconfig", headers(0, reset=T0 + 600, resource=CORE))
    assert await budget.wait_if_paused(budget.resource_for("generate-jitconfig")) == 600.0


def test_status_and_metrics_show_each_resource_and_its_pause() -> None:
    clock = FakeClock()
    budgets = Budgets(lambda: ApiBudget(clock.now, clock.sleep))
    budget = budgets.of("token")
    budget.record(headers(4990, used=10))
    budget.record(headers(9998, limit=10000, used=2, resource=REGISTRATION))
    budget.count("generate-jitconfig")
    budget.pause_from(429, {"retry-after": "30"}, REGISTRATION)
    lines = github_lines(budgets.report(), clock.now() + 10)
    assert lines == [
        f"GitHub {REGISTRATION}: 2 used, 9998 of 10000 remaining",
        "GitHub core: 10 used, 4990 of 5000 remaining",
        f"GitHub {REGISTRATION} (token): paused for 20s more (GitHub asked to slow down)",
    ]
    metrics = Metrics(lambda: Status(pools=[]), lambda: budgets).render().decode()
    for family, value in (
        ("rate_limit_remaining", 9998),
        ("rate_limit_used", 2),
        ("charged_calls_total", 1),
        ("paused_seconds", 30),
    ):
        line = f'runnerscale_github_{family}{{credential="token",resource="{REGISTRATION}"}}'
        assert f"{line} {value:.1f}" in metrics


# -- registrations paced by their own budget (counted as sent)


async def test_registrations_wait_for_the_reset_once_our_count_spends_the_budget() -> None:
    clock = FakeClock()
    budget = budget_at(clock)
    budget.record(headers(3, limit=10, reset=T0 + 60, resource=REGISTRATION))
    for _ in range(3):  # sent: their answers are not back yet
        assert await budget.wait_if_paused(REGISTRATION) == 0.0
        budget.count("generate-jitconfig")
    assert budget.left(REGISTRATION) == 0
    assert budget.spent_wait(REGISTRATION) == 60 + RESET_MARGIN
    # An answer to one of them gives nothing back; the status shows GitHub's word.
    budget.record(headers(2, limit=10, reset=T0 + 60, resource=REGISTRATION))
    assert budget.left(REGISTRATION) == 0
    assert budget.resources[REGISTRATION].remaining == 2
    assert await budget.wait_if_paused(REGISTRATION) == 60 + RESET_MARGIN
    assert clock.sleeps == [60 + RESET_MARGIN]
    assert budget.held[REGISTRATION] == 1
    # The window is over: nothing is known of the next one until GitHub answers.
    assert budget.left(REGISTRATION) is None
    assert await budget.wait_if_paused(REGISTRATION) == 0.0
    budget.count("generate-jitconfig")
    budget.record(headers(9, limit=10, reset=T0 + 120, resource=REGISTRATION))
    assert budget.left(REGISTRATION) == 9


async def test_a_spent_window_is_waited_out_past_its_reset_second() -> None:
    """``x-ratelimit-reset`` is whole seconds (the window may end later within that second)
    and GitHub's clock is not ours: a call sent at the reset second, with the budget spent by
    our count, would be refused (seen: registrations failed with a 403 under load)."""
    clock = FakeClock()
    budget = budget_at(clock)
    budget.record(headers(1, limit=10, reset=T0 + 60, resource=REGISTRATION))
    budget.count("generate-jitconfig")
    clock.t = T0 + 60.5  # past the reset second: GitHub may not have reset yet
    assert budget.left(REGISTRATION) == 0
    assert budget.spent_wait(REGISTRATION) == pytest.approx(RESET_MARGIN - 0.5)
    clock.t = T0 + 60 + RESET_MARGIN
    assert budget.left(REGISTRATION) is None  # over: the next calls go
    assert budget.spent_wait(REGISTRATION) == 0.0


def test_the_wait_before_a_call_is_the_longer_of_its_pause_and_its_spent_budget() -> None:
    """What the controller asks before it begins a creation (its registration would wait)."""
    clock = FakeClock()
    budget = budget_at(clock)
    assert budget.wait_before(REGISTRATION) == 0.0  # nothing known: it goes
    budget.record(headers(1, limit=10, reset=T0 + 600, resource=REGISTRATION))
    assert budget.wait_before(REGISTRATION) == 0.0
    budget.count("generate-jitconfig")
    assert budget.wait_before(REGISTRATION) == 600 + RESET_MARGIN
    assert budget.wait_before(CORE) == 0.0  # only registrations wait
    budget.pause_from(429, {"retry-after": "900"}, REGISTRATION)
    assert budget.wait_before(REGISTRATION) == 900.0
    assert budget.held == {}  # asking is not waiting
    clock.t = T0 + 901
    assert budget.wait_before(REGISTRATION) == 0.0


async def test_a_spent_registration_budget_holds_nothing_else() -> None:
    clock = FakeClock()
    budget = budget_at(clock)
    budget.record(headers(0, limit=10, reset=T0 + 60, resource=REGISTRATION))
    budget.record(headers(1, reset=T0 + 60))
    for _ in range(3):  # core is left to GitHub's answers (its 304s are free)
        budget.count("list-runners")
    assert budget.spent_wait(CORE) == 0.0
    assert await budget.wait_if_paused(budget.resource_for("list-runners")) == 0.0
    assert clock.sleeps == []
    # A GitHub that charges registrations to core: they are not counted apart either.
    budget.learn("generate-jitconfig", headers(4000, resource=CORE))
    assert await budget.wait_if_paused(budget.resource_for("generate-jitconfig")) == 0.0


def test_registrations_count_from_the_lowest_word_of_the_window() -> None:
    budget = ApiBudget(lambda: T0)
    assert budget.left(REGISTRATION) is None  # nothing known: the first calls go
    budget.count("generate-jitconfig")
    budget.record(headers(5, limit=10, reset=T0 + 60, resource=REGISTRATION))
    budget.count("generate-jitconfig")
    budget.count("generate-jitconfig")
    assert budget.left(REGISTRATION) == 3
    # Another client of the same credential spent more: GitHub's lower word wins.
    budget.record(headers(1, limit=10, reset=T0 + 60, resource=REGISTRATION))
    assert budget.left(REGISTRATION) == 1
