"""Staying inside GitHub's rate limits: the budget, adaptive polling and pauses.

Why this module exists
----------------------
GitHub gives each credential an hourly budget per resource (``core``, ``graphql``, ``search``,
...) and reports it on every response in ``x-ratelimit-*`` headers. An autoscaler that polls
as a safety net can spend that budget on re-reading lists and then have nothing left for what
matters: creating and deleting runners. It can also make things worse when GitHub pushes back,
by retrying in a tight loop and earning secondary limits. Everything that keeps runnerscale
polite lives here, as pure logic on an injected clock, so the production client, the poll loop
and the simulation all share one tested set of rules:

* :class:`ApiBudget` keeps the last word of GitHub on each resource (a :class:`Bucket`) plus our
  own call counts; the metrics and ``runnerscale status`` read it.
* :data:`OPERATION_RESOURCES` says which resource each call will be charged to *before* it is
  sent (registering runners has a resource of its own, :data:`REGISTRATION`), and
  :meth:`ApiBudget.learn` corrects that from GitHub's answers, so a resource's pause holds
  only its own calls and what registering runners spends never stretches polling.
* :func:`polling` marks the calls a poll makes (the poll loop's step runs inside it), and
  :attr:`ApiBudget.polled` counts only those: a poll's cost is polling's own calls, never the
  creations, deletions and janitor sweeps that happen between two polls (under a fault storm
  those multiplied and stretched polling into starvation).
* :meth:`ApiBudget.poll_interval` stretches the poll interval when polling every ``base``
  seconds would eat into the reserve before the window resets, and goes back to ``base`` once
  the window has reset. Webhooks keep the fast path working meanwhile; polling is only the
  safety net, so it is what gives way.
* :meth:`ApiBudget.pause_from` turns a 403/429 that says "wait" (``retry-after``, or a spent
  budget with ``x-ratelimit-reset``) into a pause of the resource, and
  :meth:`ApiBudget.wait_if_paused`, called before every request on that resource, makes each
  affected call wait instead of hammering GitHub.
* Registering runners is paced by its own budget: each registration counts its unit as it is
  sent (:data:`SPENT_AS_SENT`), and once none is left by that count, the next ones wait for
  the window's reset (:meth:`ApiBudget.spent_wait`) rather than being refused one by one.
  A ramp then runs at the registration budget's pace, and only registrations wait: polls and
  decisions go on. :meth:`ApiBudget.wait_before` says how long a call sent now would wait:
  the controller waits for it before it begins a runner's creation, so the wait holds no
  creation slot and runs no create timeout.
Elsewhere, because a piece made for the job exists there: other failures are backed off by
the controller's loops (``Controller.failure_delay``: exponential, with jitter), and requests
in flight are capped by githubkit's throttler (``client.MAX_CONCURRENT_REQUESTS``).

Nothing here sleeps on the wall clock or reads ``time`` directly except as a default: the clock
(``Callable[[], float]`` returning epoch seconds) and the async sleeper are injected, so the
simulation's virtual clock drives the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import asdict, dataclass, replace
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any

Now = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

#: The resource GitHub reports when it names none, and the one polling spends.
CORE = "core"
#: GitHub's resource for registering runners: JIT configurations, registration and remove
#: tokens (10,000 an hour per credential in GitHub's published example).
REGISTRATION = "actions_runner_registration"
#: The resource each operation (the client's names, as in
#: ``runnerscale_github_api_calls_total``) is charged to, known before the call is sent so that
#: it waits only for its own resource's pause; every operation not listed is charged to
#: :data:`CORE`. An assumption: GitHub does not document which operations count against
#: ``actions_runner_registration``. The simulator
#: makes the same one (``runnerscale.fakegithub.ratelimit.RUNNER_REGISTRATION_OPERATIONS``, by REST
#: operation id), the in-process simulation charges by this table, and
#: :meth:`ApiBudget.learn` replaces an entry when GitHub's answers name another resource. The
#: tokens are not asked for today (runners register with JIT configurations).
OPERATION_RESOURCES: Mapping[str, str] = MappingProxyType(
    {
        "generate-jitconfig": REGISTRATION,
        "create-registration-token": REGISTRATION,
        "create-remove-token": REGISTRATION,
    }
)
#: Resources whose every call is charged, whatever it answers (writes only: registering
#: runners), so a call's unit is counted as spent when it is sent (:meth:`ApiBudget.count`):
#: a ramp's concurrent creations stop where the budget ends and wait for its reset
#: (:meth:`ApiBudget.wait_if_paused`), instead of each earning a refusal (a failed runner and
#: its pool's backoff). ``core`` is left to GitHub's answers: its 304s are free, and polling
#: is paced by :meth:`ApiBudget.poll_interval`.
SPENT_AS_SENT: frozenset[str] = frozenset({REGISTRATION})
#: The credentials of :class:`Budgets` besides installations (``installation ID``).
TOKEN_CREDENTIAL = "token"  # noqa: S105 - a name, not a secret
APP_CREDENTIAL = "app"
#: Share of a bucket's limit that polling never touches: kept for creating/deleting runners.
DEFAULT_RESERVE = 0.10
#: The longest a stretched poll interval gets (seconds).
DEFAULT_MAX_INTERVAL = 15 * 60.0
#: Seconds past a window's reset before polling at full speed again (clocks differ a little).
RESET_MARGIN = 2.0
#: Longest pause any single answer can impose (a garbage ``retry-after`` must not stop us for
#: good): a full rate-limit window plus a margin.
MAX_PAUSE = 3600.0 + 300.0
#: Pause when GitHub answers 429 (or a 403 whose message names a rate limit) without saying
#: how long: GitHub's documentation asks for at least a minute.
DEFAULT_PAUSE = 60.0


#: Whether the calls of the running task belong to a poll (see :func:`polling`).
_POLLING: ContextVar[bool] = ContextVar("runnerscale_polling", default=False)


@contextlib.contextmanager
def polling() -> Iterator[None]:
    """Calls made inside (in this task and the tasks it starts) are polling's: they, and only
    they, make up what a poll costs (:attr:`ApiBudget.polled`)."""
    token = _POLLING.set(True)
    try:
        yield
    finally:
        _POLLING.reset(token)


@dataclass
class Bucket:
    """GitHub's last word on one rate-limit resource (``reset`` in epoch seconds)."""

    limit: int = 0
    remaining: int = 0
    used: int = 0
    reset: float = 0.0


def _finite(value: str | None) -> float | None:
    """A finite number from a header, or None when absent or garbage."""
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _int(value: str | None) -> int | None:
    """A non-negative count from a header, or None when absent or garbage."""
    number = _finite(value)
    return None if number is None else max(0, int(number))


def _epoch(value: str | None) -> float | None:
    number = _finite(value)
    return number if number is not None and number >= 0 else None


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


def resource_of(operation: str) -> str:
    """The resource :data:`OPERATION_RESOURCES` assumes ``operation`` is charged to."""
    return OPERATION_RESOURCES.get(operation, CORE)


def answer_resource(headers: Mapping[str, str]) -> str | None:
    """The resource an answer was charged to (``x-ratelimit-resource``), None if it names none."""
    return _lower(headers).get("x-ratelimit-resource", "").strip().lower() or None


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """``retry-after`` as seconds from ``now``: delta-seconds or an HTTP date; None if garbage."""
    if value is None:
        return None
    seconds = _epoch(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


class ApiBudget:
    """What GitHub said about each rate-limit resource, our call counts, polling and pauses.

    ``resources``, ``calls``, ``not_modified`` and :meth:`charged_by_resource` are read by the
    metrics and the status API.
    """

    def __init__(
        self,
        clock: Now = time.time,
        sleep: Sleep = asyncio.sleep,
        *,
        reserve: float = DEFAULT_RESERVE,
        max_interval: float = DEFAULT_MAX_INTERVAL,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.reserve = reserve
        self.max_interval = max_interval
        self.resources: dict[str, Bucket] = {}
        self.calls: Counter[str] = Counter()
        #: Calls made while polling (:func:`polling`) that counted against the budget (304s
        #: excepted): what polling has cost so far.
        self.polled = 0
        self.not_modified = 0
        #: The 304s by operation (free, so not charged to the operation's resource).
        self.not_modified_calls: Counter[str] = Counter()
        #: What GitHub's answers said an operation is charged to (see :meth:`learn`).
        self.learned: dict[str, str] = {}
        #: Pauses by resource: epoch seconds until which calls on it wait.
        self.pauses: dict[str, float] = {}
        #: Pauses imposed by GitHub, by resource.
        self.paused: Counter[str] = Counter()
        #: For a resource of :data:`SPENT_AS_SENT`: its window (reset) and what is left of it
        #: by our own count (GitHub's last word less the calls sent since).
        self._left: dict[str, tuple[float, int]] = {}
        #: Waits for a budget spent by our own count, by resource (:meth:`spent_wait`).
        self.held: Counter[str] = Counter()
        #: The last interval :meth:`poll_interval` returned, and its ratio to ``base``.
        self.interval = 0.0
        self.factor = 1.0

    # ------------------------------------------------------------------ the budget

    def record(self, headers: Mapping[str, str], now: float | None = None) -> Bucket | None:
        """Fold one response's ``x-ratelimit-*`` headers into its resource's bucket.

        Answers without ``x-ratelimit-remaining`` (or with garbage there) change nothing; other
        garbage fields fall back to what can be derived. Answers of one window (same ``reset``)
        can arrive out of order when requests run concurrently, so within a window the lowest
        ``remaining`` wins; a new window replaces the bucket. A garbage ``x-ratelimit-reset``
        keeps the known window if it is still running at ``now`` (default: the clock), else
        0 (unknown: polling ignores the bucket). Returns the updated bucket.
        """
        lowered = _lower(headers)
        remaining = _int(lowered.get("x-ratelimit-remaining"))
        if remaining is None:
            return None
        resource = answer_resource(lowered) or CORE
        used = _int(lowered.get("x-ratelimit-used"))
        limit = _int(lowered.get("x-ratelimit-limit"))
        if limit is None:
            limit = remaining + (used or 0)
        if used is None:
            used = max(0, limit - remaining)
        previous = self.resources.get(resource)
        reset = _epoch(lowered.get("x-ratelimit-reset"))
        if reset is None:  # garbage: assume the window we know, if it is still running
            now = self._clock() if now is None else now
            reset = previous.reset if previous is not None and previous.reset > now else 0.0
        bucket = Bucket(limit=limit, remaining=remaining, used=used, reset=reset)
        if previous is not None and reset > 0 and previous.reset == reset:
            bucket.remaining = min(previous.remaining, remaining)
            bucket.used = max(previous.used, used)
        self.resources[resource] = bucket
        return bucket

    def resource_for(self, operation: str) -> str:
        """The resource a call of ``operation`` will be charged to: what GitHub's answers said
        (:meth:`learn`), else what :data:`OPERATION_RESOURCES` assumes."""
        return self.learned.get(operation) or resource_of(operation)

    def learn(self, operation: str, headers: Mapping[str, str]) -> str:
        """Take the resource an answer to ``operation`` names as where its calls go (GitHub
        may charge differently than assumed: an older GitHub Enterprise Server charges runner
        registration to ``core``); returns the operation's resource from now on."""
        named = answer_resource(headers)
        if named is not None:
            self.learned[operation] = named
        return self.resource_for(operation)

    def count(self, operation: str) -> None:
        """One call of ``operation`` made (count it before sending: failures cost too)."""
        self.calls[operation] += 1
        if _POLLING.get():
            self.polled += 1
        resource = self.resource_for(operation)
        if resource in SPENT_AS_SENT:
            left = self.left(resource)
            bucket = self.resources.get(resource)
            if left is not None and bucket is not None:
                self._left[resource] = (bucket.reset, left - 1)

    def left(self, resource: str, now: float | None = None) -> int | None:
        """What is left of ``resource``'s budget in its running window: GitHub's last word,
        less the calls sent since on a resource of :data:`SPENT_AS_SENT` (their answers may
        not be back yet). None when no window is known to be running. A window runs until
        :data:`RESET_MARGIN` past its reset: ``x-ratelimit-reset`` is whole seconds and GitHub's
        clock is not ours, so a spent window's last moments are waited out, not spent on
        calls GitHub would refuse."""
        bucket = self.resources.get(resource)
        now = self._clock() if now is None else now
        if bucket is None or bucket.reset + RESET_MARGIN <= now:
            return None
        reset, left = self._left.get(resource, (bucket.reset, bucket.remaining))
        return min(left, bucket.remaining) if reset == bucket.reset else bucket.remaining

    def spent_wait(self, resource: str, now: float | None = None) -> float:
        """Seconds a call on ``resource`` (of :data:`SPENT_AS_SENT`) waits because our own
        count says its budget is spent: until the window resets, plus :data:`RESET_MARGIN`
        (``x-ratelimit-reset`` is whole seconds, and GitHub's clock is not ours). 0.0 when
        something is left, when no window is known, or for another resource."""
        if resource not in SPENT_AS_SENT:
            return 0.0
        now = self._clock() if now is None else now
        left = self.left(resource, now)
        if left is None or left > 0:
            return 0.0
        return self.resources[resource].reset + RESET_MARGIN - now

    def count_not_modified(self, operation: str) -> None:
        """One conditional request of ``operation`` answered 304: it cost nothing."""
        self.not_modified += 1
        self.not_modified_calls[operation] += 1
        if _POLLING.get():
            self.polled -= 1

    def charged_by_resource(self) -> dict[str, int]:
        """Calls that counted against each resource (every call but the 304s), each
        operation's calls under the resource it is charged to."""
        charged: Counter[str] = Counter()
        for operation, count in self.calls.items():
            charged[self.resource_for(operation)] += count
        for operation, count in self.not_modified_calls.items():
            charged[self.resource_for(operation)] -= count
        return {name: max(0, count) for name, count in sorted(charged.items())}

    def charged(self, resource: str = CORE) -> int:
        """Calls charged to ``resource`` (default: core, what polling spends). The poll loop
        takes the difference across one poll as ``calls_per_poll``: registering runners is
        charged elsewhere and does not stretch polling."""
        return self.charged_by_resource().get(resource, 0)

    def snapshot(self) -> dict[str, Bucket]:
        """A copy of every bucket, for metrics and status."""
        return {name: replace(bucket) for name, bucket in self.resources.items()}

    def report(self) -> dict[str, Any]:
        """The status API's ``github`` section (JSON-ready)."""
        now = self._clock()
        return {
            "rate_limit": {name: asdict(b) for name, b in sorted(self.resources.items())},
            "calls": sum(self.calls.values()),
            "charged": self.charged_by_resource(),
            "not_modified": self.not_modified,
            "poll_interval": self.interval,
            "poll_stretched": self.stretched,
            "paused": {name: until for name, until in sorted(self.pauses.items()) if until > now},
        }

    # ------------------------------------------------------------------ adaptive polling

    @property
    def stretched(self) -> bool:
        """Whether the last :meth:`poll_interval` was longer than its ``base``."""
        return self.factor > 1.0

    def poll_interval(
        self,
        base: float,
        calls_per_poll: float,
        *,
        resource: str = CORE,
        now: float | None = None,
    ) -> float:
        """Seconds until the next poll, given that one poll costs ``calls_per_poll`` calls.

        With the resource's bucket (``limit``, ``remaining``, ``reset``) and ``window = reset -
        now``::

            spendable = remaining - reserve * limit        # the reserve is for runners
            needed    = window * calls_per_poll / spendable  # spacing that lasts till reset
            interval  = max(base, min(needed, window + RESET_MARGIN, max_interval))

        (``needed`` is infinite when nothing is spendable, 0 when a poll costs nothing.) So the
        interval is ``base`` while polling every ``base`` seconds fits in what is spendable;
        otherwise it is stretched just enough to last until the reset, but never past the reset
        (a fresh window is coming) and never beyond ``max_interval``. It never drops below
        ``base`` and never exceeds ``max(base, max_interval)``, and it does not grow when
        ``remaining`` grows. Without a bucket, or once its reset has passed, it is ``base``;
        a new window (``remaining`` back up) brings it back to ``base`` by the same formula.
        Records :attr:`interval`, :attr:`factor` and :attr:`stretched`.
        """
        if not base > 0:
            raise ValueError(f"base poll interval must be positive, got {base}")
        now = self._clock() if now is None else now
        interval = base
        bucket = self.resources.get(resource)
        if bucket is not None and bucket.reset > now:
            window = bucket.reset - now
            spendable = bucket.remaining - self.reserve * bucket.limit
            if not calls_per_poll > 0:
                needed = 0.0
            elif spendable <= 0:
                needed = math.inf
            else:
                needed = window * calls_per_poll / spendable
            interval = max(base, min(needed, window + RESET_MARGIN, self.max_interval))
        self.interval = interval
        self.factor = interval / base
        return interval

    # ------------------------------------------------------------------ pauses

    def pause_from(
        self,
        status: int,
        headers: Mapping[str, str],
        resource: str | None = None,
        *,
        message: str = "",
        now: float | None = None,
    ) -> float:
        """Pause ``resource`` when a 403/429 tells us to wait; returns the pause in seconds
        (0.0: not a rate-limit answer, nothing paused).

        * ``retry-after`` (secondary limits): that many seconds (or until that HTTP date);
        * ``x-ratelimit-remaining: 0``: until ``x-ratelimit-reset`` (at least 1 s);
        * a 429, or a 403 whose ``message`` mentions a rate limit, saying neither: 60 s.

        ``resource`` defaults to the answer's ``x-ratelimit-resource``, else ``core``. Only
        calls on that resource wait (:meth:`wait_if_paused`). Pauses only ever extend, never
        shorten, and are capped at :data:`MAX_PAUSE`.
        """
        if status not in (403, 429):
            return 0.0
        now = self._clock() if now is None else now
        lowered = _lower(headers)
        resource = resource or answer_resource(lowered) or CORE
        seconds = retry_after_seconds(lowered.get("retry-after"), now)
        if seconds is None and _int(lowered.get("x-ratelimit-remaining")) == 0:
            reset = _epoch(lowered.get("x-ratelimit-reset"))
            seconds = max(1.0, reset - now) if reset is not None else DEFAULT_PAUSE
        if seconds is None and (status == 429 or "rate limit" in message.lower()):
            seconds = DEFAULT_PAUSE
        if seconds is None:
            return 0.0
        seconds = min(seconds, MAX_PAUSE)
        self.pauses[resource] = max(self.pauses.get(resource, 0.0), now + seconds)
        self.paused[resource] += 1
        return seconds

    def paused_until(self, resource: str = CORE) -> float:
        """Epoch seconds until which calls on ``resource`` wait (0.0: never paused)."""
        return self.pauses.get(resource, 0.0)

    def pause_remaining(self, resource: str = CORE, now: float | None = None) -> float:
        """Seconds calls on ``resource`` still have to wait (0.0 when not paused)."""
        now = self._clock() if now is None else now
        return max(0.0, self.paused_until(resource) - now)

    def wait_before(self, resource: str = CORE, now: float | None = None) -> float:
        """Seconds a call on ``resource`` sent now would wait in :meth:`wait_if_paused` (its
        pause, or its budget spent by our own count); 0.0: it would be sent at once. The
        controller asks it before it starts creating a runner, so that a registration waits
        for the budget before it takes one of its pool's creation slots."""
        now = self._clock() if now is None else now
        return max(self.pause_remaining(resource, now), self.spent_wait(resource, now))

    async def wait_if_paused(self, resource: str = CORE) -> float:
        """Sleep while ``resource`` is paused (a pause extended meanwhile is waited out too),
        or while its budget is spent by our own count (:meth:`spent_wait`: registering
        runners waits for the reset instead of being refused). Call it before every request,
        and :meth:`count` right after it returns. Returns the seconds waited (by the injected
        clock)."""
        waited = 0.0
        while (seconds := self.wait_before(resource)) > 0:
            if self.spent_wait(resource) > self.pause_remaining(resource):
                self.held[resource] += 1
            await self._sleep(seconds)
            waited += seconds
        return waited


class Budgets:
    """One :class:`ApiBudget` per credential, and the view over all of them.

    GitHub keeps a budget per credential: a personal access token, the App itself (its JWT
    calls), and each App installation (per organisation or account) has its own 5,000 an hour
    and its own secondary limits. Mixing them would show whichever answered last and stretch or
    pause every installation for one's sake. Credentials are named ``token``, ``app`` and
    ``installation ID``; the metrics label them so (none is a secret).
    """

    def __init__(self, new: Callable[[], ApiBudget] = ApiBudget) -> None:
        #: Makes a credential's budget (with the clock and sleeper to use).
        self._new = new
        self.by_credential: dict[str, ApiBudget] = {}
        #: Calls to GitHub's Actions service (runner scale sets), by operation: not REST
        #: calls, not charged to a rate-limit resource GitHub reports, so counted apart.
        self.actions_service_calls: Counter[str] = Counter()
        #: The last interval :meth:`poll_interval` returned, and its ratio to ``base``.
        self.interval = 0.0
        self.factor = 1.0

    def of(self, credential: str) -> ApiBudget:
        """The budget of ``credential`` (made on first use)."""
        budget = self.by_credential.get(credential)
        if budget is None:
            budget = self.by_credential[credential] = self._new()
        return budget

    @property
    def calls(self) -> Counter[str]:
        """Calls made by operation, every credential together."""
        return sum((b.calls for b in self.by_credential.values()), Counter())

    @property
    def not_modified(self) -> int:
        return sum(b.not_modified for b in self.by_credential.values())

    def charged(self, resource: str = CORE) -> dict[str, int]:
        """Calls charged to ``resource`` so far (default: core, what polling spends), per
        credential (the poll loop takes differences)."""
        return {name: b.charged(resource) for name, b in self.by_credential.items()}

    def polled(self) -> dict[str, int]:
        """What polling has cost so far (:attr:`ApiBudget.polled`), per credential (the poll
        loop takes differences)."""
        return {name: b.polled for name, b in self.by_credential.items()}

    def charged_by_resource(self) -> dict[str, int]:
        """Calls charged so far per resource, every credential together."""
        total: Counter[str] = Counter()
        for budget in self.by_credential.values():
            total.update(budget.charged_by_resource())
        return dict(sorted(total.items()))

    @property
    def resources(self) -> dict[str, Bucket]:
        """Per resource, the bucket of the credential with the least left of its limit (the
        one that runs out first); the whole picture is :attr:`by_credential`."""
        tightest: dict[str, Bucket] = {}
        for budget in self.by_credential.values():
            for name, bucket in budget.resources.items():
                known = tightest.get(name)
                if known is None or _share_left(bucket) < _share_left(known):
                    tightest[name] = bucket
        return {name: replace(bucket) for name, bucket in tightest.items()}

    @property
    def stretched(self) -> bool:
        return self.factor > 1.0

    def poll_interval(self, base: float, spent: Mapping[str, float]) -> float:
        """The longest of each credential's :meth:`ApiBudget.poll_interval` for what a poll
        cost it (``spent``): polling must last until the reset for every one of them."""
        intervals = [self.of(name).poll_interval(base, cost) for name, cost in spent.items()]
        self.interval = max([base, *intervals])
        self.factor = self.interval / base
        return self.interval

    def report(self) -> dict[str, Any]:
        """The status API's ``github`` section (JSON-ready): ``rate_limit`` per resource (the
        tightest credential's), ``credentials`` with each one's buckets, and the totals."""
        reports = {name: b.report() for name, b in sorted(self.by_credential.items())}
        return {
            "rate_limit": {name: asdict(b) for name, b in sorted(self.resources.items())},
            "credentials": {name: report["rate_limit"] for name, report in reports.items()},
            "calls": sum(report["calls"] for report in reports.values()),
            "actions_service_calls": sum(self.actions_service_calls.values()),
            "charged": self.charged_by_resource(),
            "not_modified": self.not_modified,
            "poll_interval": self.interval,
            "poll_stretched": self.stretched,
            "paused": {
                f"{resource} ({name})": until
                for name, report in reports.items()
                for resource, until in report["paused"].items()
            },
        }


def _share_left(bucket: Bucket) -> float:
    return bucket.remaining / bucket.limit if bucket.limit > 0 else 1.0
