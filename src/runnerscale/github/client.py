"""The production GitHub client: the controller's :class:`GitHubAPI`, built on githubkit.

Three concerns live here and nowhere else:

* **Translation.** githubkit's models become runnerscale's (:class:`ObservedJob`,
  :class:`GitHubRunner`, :class:`JitConfig`); GitHub's answers become outcomes (a 404 on delete
  is "gone", a 422 is "busy").
* **Cost.** Polling re-reads the same lists every interval. Each read is a conditional request
  (``If-None-Match`` with the last ``ETag``); GitHub answers an unchanged list with a 304 that
  does not count against the rate limit, and the last parsed answer is reused. What a poll
  reads is decided by :class:`~runnerscale.github.poller.Poller` (shared with the simulation),
  over the reads this client serves (:class:`~runnerscale.github.poller.PollReader`): an
  organisation's poll reads only the repositories with news and a slice of the others, fed by
  the controller's :attr:`poll_hints`.
* **The budget.** Every response's ``x-ratelimit-*`` headers update the credential's
  :class:`~runnerscale.github.budget.ApiBudget`, which the metrics and the status API report.
  Each call waits out only the pause of the resource it is charged to (registering runners
  has a resource of its own: a pause of polling's ``core`` does not hold it up, nor the other
  way round). At most :data:`MAX_CONCURRENT_REQUESTS` requests are in flight at once, across
  every installation (GitHub's secondary-limit rules ask for that).
* **Who is asking.** A personal access token, or a GitHub App: the App authenticates as itself
  with a short-lived RS256 JWT only to find its installations, and everything else is done with
  the installation access token of the owner concerned (found through the repository,
  organisation or enterprise, or given). githubkit signs the JWT and fetches, caches and renews
  the installation tokens before they expire; each installation has a cache of its own, so a
  token GitHub refuses (401) is dropped and fetched anew once, and a second refusal is reported.
  Several installations (several organisations) live in one client.

Errors surface as :class:`GitHubError` carrying ``retry_after`` when GitHub said how long to
wait, or answered a rate limit without saying (the pause the budget took then): a poll tells a
rate limit, which ends it, from one repository's failure, which it reads past. No message ever
carries a token or a JIT configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx
import jwt
from githubkit import AppAuthStrategy, GitHub
from githubkit.cache import MemCache, MemCacheStrategy
from githubkit.exception import RequestError, RequestFailed, RequestTimeout
from githubkit.response import Response
from githubkit.throttling import LocalThrottler

from runnerscale.github.budget import (
    APP_CREDENTIAL,
    TOKEN_CREDENTIAL,
    ApiBudget,
    Budgets,
    polling,
    retry_after_seconds,
)
from runnerscale.github.poller import PER_PAGE, Poller, RunStatus
from runnerscale.github.schedule import PROBE_RUNS, ListedRepo, PollHints
from runnerscale.github.tls import tls_verify
from runnerscale.model import GitHubRunner, JobState, Target
from runnerscale.protocols import (
    DeleteOutcome,
    GitHubError,
    JitConfig,
    ObservedJob,
    PolledJobs,
    WaitedCall,
)

log = logging.getLogger("runnerscale.github")

USER_AGENT = "runnerscale"
#: Requests in flight at once, at most (GitHub: "avoid concurrent requests").
MAX_CONCURRENT_REQUESTS = 20
DEFAULT_GROUP_ID = 1
#: Answers kept for conditional requests (the least recently used go first): every polled
#: list and re-checked job of a busy organisation for a day, in a few megabytes.
ETAG_CACHE_SIZE = 20_000

T = TypeVar("T")


def _model(name: str) -> Any:
    """githubkit's response model ``name``, for the enterprise requests githubkit has no method
    for. Imported when first asked: the module that indexes every model costs about 30 ms of
    the daemon's start-up (issue 18), and only enterprise targets need these."""
    from githubkit_schemas.latest import models  # noqa: PLC0415 - see the docstring

    return getattr(models, name)


def _listed_repos(response: Response[Any, Any]) -> list[ListedRepo]:
    return [ListedRepo(repo.full_name, _epoch(repo.pushed_at)) for repo in response.parsed_data]


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _job_state(status: str) -> JobState | None:
    try:
        return JobState(status)
    except ValueError:
        return None  # "pending", "requested": not a state runnerscale acts on


def _split(repo: str) -> tuple[str, str]:
    owner, _, name = repo.partition("/")
    return owner, name


class _ClockedCache(MemCache):
    """githubkit's cache of the App's JWT and an installation's token, on the client's clock.

    githubkit keeps them for as long as it works out from the token's ``expires_at`` (less a
    minute) and would read the wall clock to see whether that time has come; this cache reads
    the client's clock instead, like everything else in runnerscale that keeps time.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._clock = clock
        self._items: dict[str, tuple[str, float]] = {}

    def expire(self) -> None:
        now = self._clock()
        self._items = {key: item for key, item in self._items.items() if item[1] >= now}

    def get(self, key: str) -> str | None:
        value, expires = self._items.get(key, (None, 0.0))
        if value is not None and expires < self._clock():
            del self._items[key]
            return None
        return value

    def set(self, key: str, value: str, ex: timedelta) -> None:
        self._items[key] = (value, self._clock() + ex.total_seconds())


class _ClockedCacheStrategy(MemCacheStrategy):
    """githubkit's in-memory cache strategy, with :class:`_ClockedCache` for the tokens."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()
        self._tokens = _ClockedCache(clock)

    def get_cache_storage(self) -> MemCache:
        return self._tokens


@dataclass(frozen=True)
class AppCredentials:
    """A GitHub App: its id, its private key (PEM, secret) and, optionally, the one
    installation to use for every target (found per owner when None)."""

    app_id: int
    private_key: str = field(repr=False)
    installation_id: int | None = None


@dataclass(frozen=True)
class Owner:
    """Whose installation a call needs: an organisation or user (``login``), found through a
    repository of theirs when ``repo`` is given, or an enterprise (``enterprise=True``)."""

    login: str
    repo: str | None = None
    enterprise: bool = False

    @property
    def key(self) -> str:
        return ("enterprise:" if self.enterprise else "") + self.login.lower()


def _owner_of(target: Target) -> Owner:
    if target.kind == "repo":
        return Owner(_split(target.name)[0], repo=target.name)
    return Owner(target.name, enterprise=target.kind == "enterprise")


#: A call to GitHub, made with the client (installation) it is given.
Call = Callable[[GitHub[Any]], Awaitable[Response[T, Any]]]


class GitHubClient:
    """:class:`~runnerscale.protocols.GitHubAPI` over githubkit (PAT or App), and the
    :class:`~runnerscale.github.poller.PollReader` its :class:`~runnerscale.github.poller.Poller`
    polls through."""

    def __init__(
        self,
        api_url: str,
        token: str | None = None,
        *,
        app: AppCredentials | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        verify: bool | str = True,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        on_secret: Callable[[str], None] | None = None,
    ) -> None:
        if (token is None) == (app is None):
            raise ValueError("give exactly one of token and app")
        self._clock = clock or time.time
        #: GitHub's budget per credential: the token, or the App and each installation.
        self.budget = Budgets(lambda: ApiBudget(self._clock, sleep or asyncio.sleep))
        self._polled_at_last_poll: dict[str, int] = {}
        #: Who the PAT's or the App's own client is, for the budget.
        self._own_credential = TOKEN_CREDENTIAL if app is None else APP_CREDENTIAL
        #: Owner.key -> the installation credential its calls are charged to.
        self._credentials: dict[str, str] = {}
        #: Told every installation token GitHub hands out (the log redactor learns them).
        self._on_secret = on_secret or (lambda secret: None)
        self._etags: OrderedDict[tuple[Any, ...], tuple[str, Any]] = OrderedDict()
        self._groups: dict[tuple[str, str], int] = {}
        self._app = app
        self._options: dict[str, Any] = {
            "base_url": api_url.rstrip("/") + "/",
            "user_agent": USER_AGENT,
            "timeout": timeout,
            "http_cache": False,
            "auto_retry": False,
            "async_transport": transport,
            # One TLS context for every call (githubkit opens an httpx client per call).
            "ssl_verify": tls_verify(verify if isinstance(verify, bool) else _ssl_context(verify)),
            # One limit across every installation's client.
            "throttler": LocalThrottler(MAX_CONCURRENT_REQUESTS),
        }
        #: The PAT's client, or the App's own (JWT) client.
        self._github: GitHub[Any] = (
            GitHub(token, **self._options_for(TOKEN_CREDENTIAL))
            if token is not None
            else GitHub(
                self._app_auth(),
                **self._options_for(APP_CREDENTIAL),
                cache_strategy=_ClockedCacheStrategy(self._clock),
            )
        )
        #: Installation clients by Owner.key, each with its own token cache.
        self._installations: dict[str, GitHub[Any]] = {}
        self._installation_ids: dict[str, int] = {}
        #: Which repositories a poll reads, and reading them, over this client's reads.
        self._poller = Poller(self, self._clock)

    @property
    def api_url(self) -> str:
        """The API base (no trailing slash), e.g. ``https://api.github.com``."""
        return str(self._options["base_url"]).rstrip("/")

    @property
    def tls_verify(self) -> Any:
        """What this client verifies GitHub's certificate with (True, or a custom CA's SSL
        context): the scale-set client's HTTP client uses the same."""
        return self._options["ssl_verify"]

    @property
    def poll_hints(self) -> Callable[[], PollHints]:
        """What the controller knows (set by the daemon): active repositories, webhooks."""
        return self._poller.hints

    @poll_hints.setter
    def poll_hints(self, hints: Callable[[], PollHints]) -> None:
        self._poller.hints = hints

    def _app_auth(self) -> AppAuthStrategy:
        assert self._app is not None
        return AppAuthStrategy(self._app.app_id, self._app.private_key)

    def _options_for(self, credential: str) -> dict[str, Any]:
        """githubkit's options for a client whose answers feed ``credential``'s budget."""

        async def on_response(response: httpx.Response) -> None:
            await self._on_response(response, credential)

        return {**self._options, "async_event_hooks": {"response": [on_response]}}

    async def _on_response(self, response: httpx.Response, credential: str) -> None:
        request = response.request
        token_fetch = request.method == "POST" and request.url.path.endswith("/access_tokens")
        # An installation client fetches its token as the App (the JWT's budget).
        self.budget.of(APP_CREDENTIAL if token_fetch else credential).record(response.headers)
        if token_fetch and response.status_code == 201:
            await response.aread()
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self._on_secret(str(response.json()["token"]))

    def polling(self) -> AbstractContextManager[None]:
        """Calls made inside are the poll's (:func:`~runnerscale.github.budget.polling`)."""
        return polling()

    def poll_interval(self, base: float) -> float:
        """How long to wait before the next poll: ``base``, stretched when a credential's
        ``core`` budget would not last until it resets at this pace. What the last poll cost
        a credential is the calls made inside :meth:`polling` since the poll before, 304s
        excepted: creating and deleting runners, and the janitor's sweeps, are not polling's
        and do not stretch it (the reserve keeps budget for them)."""
        polled = self.budget.polled()
        spent = {
            name: count - self._polled_at_last_poll.get(name, 0) for name, count in polled.items()
        }
        self._polled_at_last_poll = polled
        return self.budget.poll_interval(base, spent)

    def _credential(self, owner: Owner) -> str:
        return self._credentials.get(owner.key, self._own_credential)

    # ------------------------------------------------------------------ who is asking

    async def _client_for(self, owner: Owner) -> GitHub[Any]:
        if self._app is None:
            return self._github
        client = self._installations.get(owner.key)
        if client is None:
            installation_id = await self.installation_id(owner)
            credential = f"installation {installation_id}"
            client = GitHub(
                self._app_auth().as_installation(installation_id),
                **self._options_for(credential),
                cache_strategy=_ClockedCacheStrategy(self._clock),
            )
            self._installations[owner.key] = client
            self._credentials[owner.key] = credential
        return client

    async def installation_id(self, owner: Owner) -> int:
        """The App's installation for an owner: the configured one, or GitHub's answer."""
        assert self._app is not None
        if self._app.installation_id is not None:
            return self._app.installation_id
        if owner.key in self._installation_ids:
            return self._installation_ids[owner.key]
        apps = self._github.rest.apps
        try:
            if owner.enterprise:
                raise GitHubError(
                    f"enterprise {owner.login}: GitHub does not let a GitHub App's installation "
                    "manage enterprise runners; use a classic personal access token with the "
                    "manage_runners:enterprise scope (github.token)"
                )
            if owner.repo is not None:
                repo_owner, repo = _split(owner.repo)
                response = await self._once(
                    "get-repo-installation",
                    lambda: apps.async_get_repo_installation(repo_owner, repo),
                )
                found = int(response.parsed_data.id)
            else:
                response = await self._once(
                    "get-org-installation",
                    lambda: apps.async_get_org_installation(owner.login),
                )
                found = int(response.parsed_data.id)
        except _StatusError as error:
            if error.status == 404:
                raise GitHubError(
                    f"the GitHub App (id {self._app.app_id}) is not installed on "
                    f"{owner.repo or owner.login}: install it there (the App's page, Install "
                    "App), or set github.app.installation_id"
                ) from None
            raise
        self._installation_ids[owner.key] = found
        return found

    # ------------------------------------------------------------------ permissions

    async def check_access(self, targets: Sequence[Target]) -> list[str]:
        """What the credentials lack for the targets, in words a person can act on (empty
        when nothing is known to be missing). Checked where the API tells: an App
        installation's permissions, a classic token's scopes (``x-oauth-scopes``);
        fine-grained tokens and enterprise installations cannot be inspected."""
        if self._app is None:
            return await self._check_token_scopes(targets)
        problems: list[str] = []
        permissions: dict[int, dict[str, str]] = {}
        for target in targets:
            if target.kind == "enterprise":
                continue
            installation_id = await self.installation_id(_owner_of(target))
            if not permissions:
                permissions = await self._installation_permissions()
            granted = permissions.get(installation_id, {})
            for name, level, why in _APP_PERMISSIONS[target.kind]:
                if not _grants(granted.get(name), level):
                    problems.append(
                        f"the App's installation on {target.name} lacks the {why} permission "
                        f"({name}: {level}): add it in the App's settings (Permissions), then "
                        "approve the new permissions on the installation"
                    )
        return problems

    async def _installation_permissions(self) -> dict[int, dict[str, str]]:
        found: dict[int, dict[str, str]] = {}
        page = 1
        while True:
            response = await self._once(
                "list-installations",
                lambda page=page: self._github.rest.apps.async_list_installations(  # type: ignore[misc]
                    per_page=PER_PAGE, page=page
                ),
            )
            for installation in response.parsed_data:
                raw = installation.permissions.model_dump(exclude_none=True)
                found[int(installation.id)] = {k: str(v) for k, v in raw.items()}
            if len(response.parsed_data) < PER_PAGE:
                return found
            page += 1

    async def _check_token_scopes(self, targets: Sequence[Target]) -> list[str]:
        response = await self._once("get-rate-limit", self._github.rest.rate_limit.async_get)
        header = response.headers.get("x-oauth-scopes")
        if header is None:
            return []  # a fine-grained token: GitHub does not say what it may do
        scopes = {scope.strip() for scope in header.split(",") if scope.strip()}
        problems = []
        for target in targets:
            for needed in _TOKEN_SCOPES[target.kind]:
                if scopes & needed:
                    continue
                alternative = (
                    ""
                    if target.kind == "enterprise"
                    else ", or use a fine-grained token or a GitHub App"
                )
                problems.append(
                    f"the token lacks the {' or '.join(sorted(needed))} scope that {target.kind} "
                    f"{target.name} needs: add it to the token (its settings page){alternative}"
                )
        return problems

    # ------------------------------------------------------------------ calling GitHub

    async def _call(self, operation: str, owner: Owner, call: Call[T]) -> Response[T, Any]:
        """One call as the owner's installation (or with the token). An installation token
        GitHub refuses is dropped and fetched anew once; a second refusal is reported."""
        client = await self._client_for(owner)
        try:
            return await self._once(operation, lambda: call(client), self._credential(owner))
        except _StatusError as error:
            if error.status != 401 or self._app is None:
                raise
        self._installations.pop(owner.key, None)
        client = await self._client_for(owner)
        return await self._once(operation, lambda: call(client), self._credential(owner))

    async def _once(
        self,
        operation: str,
        call: Callable[[], Awaitable[Response[T, Any]]],
        credential: str | None = None,
    ) -> Response[T, Any]:
        """One request, charged to ``credential`` (default: the token, or the App itself) and
        to the resource of ``operation`` (as assumed, or as GitHub's answers said). A secondary
        or primary limit pauses that credential's calls on that resource until GitHub said to
        come back."""
        budget = self.budget.of(credential or self._own_credential)
        await budget.wait_if_paused(budget.resource_for(operation))
        budget.count(operation)
        try:
            response = await call()
        except RequestFailed as error:
            failure = _failure(operation, error.response.raw_response, self._clock(), app=self._app)
            raw = error.response.raw_response
            # A limit's answer names the resource it holds; others (a 401's anonymous budget)
            # may name one the operation is not charged to.
            resource = (
                budget.learn(operation, raw.headers)
                if raw.status_code in (403, 429)
                else budget.resource_for(operation)
            )
            paused = budget.pause_from(
                raw.status_code, raw.headers, resource, message=failure.github_message
            )
            if paused and failure.retry_after is None:
                # A limit that named no wait (a 429, a 403 saying "rate limit"): the pause
                # taken is its wait, so that callers know it for a rate limit.
                failure.retry_after = paused
            if paused:
                log.warning(
                    "GitHub asked to slow down: pausing API calls on %s (%s) for %.0fs",
                    resource,
                    credential or self._own_credential,
                    paused,
                )
            raise failure from None
        except RequestTimeout:
            raise GitHubError(f"{operation}: GitHub did not answer in time") from None
        except RequestError as error:
            cause = error.__cause__ or error
            if self._app is not None and isinstance(cause, _KEY_ERRORS):
                raise _key_error(operation, cause) from None
            raise GitHubError(
                f"{operation}: cannot reach GitHub ({type(cause).__name__})"
            ) from None
        except _KEY_ERRORS as error:
            if self._app is None:
                raise
            raise _key_error(operation, error) from None
        budget.learn(operation, response.headers)
        return response

    async def _conditional(
        self,
        key: tuple[Any, ...],
        operation: str,
        owner: Owner,
        call: Callable[[GitHub[Any], dict[str, str]], Awaitable[Response[Any, Any]]],
        parse: Callable[[Response[Any, Any]], T],
    ) -> T:
        """A GET that costs nothing when the answer did not change (304 with the last ETag)."""
        cached = self._etags.get(key)
        headers = {"If-None-Match": cached[0]} if cached else {}
        response = await self._call(operation, owner, lambda client: call(client, headers))
        if response.status_code == 304 and cached is not None:
            self.budget.of(self._credential(owner)).count_not_modified(operation)
            self._etags.move_to_end(key)
            result: T = cached[1]
            return result
        parsed = parse(response)
        etag = response.headers.get("etag")
        if etag:
            self._etags[key] = (etag, parsed)
            self._etags.move_to_end(key)
            while len(self._etags) > ETAG_CACHE_SIZE:
                self._etags.popitem(last=False)  # the least recently used answer
        return parsed

    async def _all_pages(
        self,
        key: tuple[Any, ...],
        operation: str,
        owner: Owner,
        fetch: Callable[[GitHub[Any], int, dict[str, str]], Awaitable[Response[Any, Any]]],
        parse: Callable[[Response[Any, Any]], tuple[int | None, list[T]]],
    ) -> list[T]:
        """Every page of a list, each read conditionally. ``parse`` gives the total count when
        the answer has one; without it, a full page means there may be another."""
        items: list[T] = []
        page = 1
        while True:
            total, batch = await self._conditional(
                (*key, page),
                operation,
                owner,
                lambda client, headers, page=page: fetch(client, page, headers),  # type: ignore[misc]
                parse,
            )
            items.extend(batch)
            more = len(batch) == PER_PAGE if total is None else len(items) < total
            if not batch or not more:
                return items
            page += 1

    # ------------------------------------------------------------------ runners

    async def _group_id(self, target: Target) -> int:
        if target.kind == "repo" or not target.runner_group:
            return DEFAULT_GROUP_ID
        key = (target.key, target.runner_group.lower())
        if key in self._groups:
            return self._groups[key]
        owner = _owner_of(target)
        if target.kind == "org":
            response = await self._call(
                "list-runner-groups",
                owner,
                lambda client: client.rest.actions.async_list_self_hosted_runner_groups_for_org(
                    target.name, per_page=PER_PAGE
                ),
            )
        else:
            response = await self._call(
                "list-runner-groups",
                owner,
                lambda client: client.arequest(
                    "GET",
                    f"/enterprises/{target.name}/actions/runner-groups",
                    params={"per_page": PER_PAGE},
                    response_model=_model("OrgsOrgActionsRunnerGroupsGetResponse200"),
                ),
            )
        for group in response.parsed_data.runner_groups:
            if group.name.lower() == target.runner_group.lower():
                self._groups[key] = int(group.id)
                return int(group.id)
        where = "organization" if target.kind == "org" else "enterprise"
        raise GitHubError(
            f"runner group {target.runner_group!r} does not exist in {where} {target.name}; "
            "create it or fix runner_group in the config"
        )

    async def generate_jitconfig(
        self, target: Target, name: str, labels: Sequence[str]
    ) -> JitConfig:
        group_id = await self._group_id(target)
        body = {"name": name, "runner_group_id": group_id, "labels": list(labels)}
        owner = _owner_of(target)

        def call(client: GitHub[Any]) -> Awaitable[Response[Any, Any]]:
            actions = client.rest.actions
            if target.kind == "repo":
                repo_owner, repo = _split(target.name)
                return actions.async_generate_runner_jitconfig_for_repo(
                    repo_owner, repo, name=name, runner_group_id=group_id, labels=list(labels)
                )
            if target.kind == "org":
                return actions.async_generate_runner_jitconfig_for_org(
                    target.name, name=name, runner_group_id=group_id, labels=list(labels)
                )
            return client.arequest(
                "POST",
                f"/enterprises/{target.name}/actions/runners/generate-jitconfig",
                json=body,
                response_model=_model("OrgsOrgActionsRunnersGenerateJitconfigPostResponse201"),
            )

        response = await self._call("generate-jitconfig", owner, call)
        data = response.parsed_data
        return JitConfig(runner_id=int(data.runner.id), encoded=data.encoded_jit_config)

    def _budget_for(self, operation: str, target: Target) -> tuple[ApiBudget, str] | None:
        """The budget a call of ``operation`` about ``target`` is charged to, and its
        resource; None while that credential has made no call (nothing is known of its
        budget yet)."""
        budget = self.budget.by_credential.get(self._credential(_owner_of(target)))
        if budget is None:
            return None
        return budget, budget.resource_for(operation)

    def _registration_budget(self, target: Target) -> tuple[ApiBudget, str] | None:
        return self._budget_for("generate-jitconfig", target)

    def _wait_for(self, operation: str, target: Target) -> float:
        """Seconds a call of ``operation`` about ``target`` sent now would wait in
        :meth:`ApiBudget.wait_if_paused` (its credential's pause, or budget spent by our own
        count); 0.0: none."""
        found = self._budget_for(operation, target)
        return 0.0 if found is None else found[0].wait_before(found[1])

    def call_wait(self, operation: WaitedCall, target: Target) -> float:
        return self._wait_for(operation, target)

    def registration_wait(self, target: Target) -> float:
        """Seconds a registration at ``target`` sent now would wait for its credential's
        registration budget (spent by our own count, or paused by GitHub); 0.0: none."""
        return self._wait_for("generate-jitconfig", target)

    async def registration_ready(self, target: Target) -> None:
        """Return once a registration at ``target`` would be sent at once: the same wait as
        the registration's own (:meth:`ApiBudget.wait_if_paused`, counted in ``held``), taken
        before the registration is begun."""
        found = self._registration_budget(target)
        if found is not None:
            await found[0].wait_if_paused(found[1])

    def learn_secret(self, secret: str) -> None:
        """Tell the log redactor a secret some other client got with these credentials (the
        scale-set client's admin and queue tokens)."""
        self._on_secret(secret)

    async def registration_token(self, target: Target) -> tuple[str, float]:
        """A runner registration token for ``target`` and when it expires (epoch seconds):
        what the scale-set client exchanges for the Actions service's admin connection."""

        def call(client: GitHub[Any]) -> Awaitable[Response[Any, Any]]:
            actions = client.rest.actions
            if target.kind == "repo":
                repo_owner, repo = _split(target.name)
                return actions.async_create_registration_token_for_repo(repo_owner, repo)
            if target.kind == "org":
                return actions.async_create_registration_token_for_org(target.name)
            return client.arequest(
                "POST",
                f"/enterprises/{target.name}/actions/runners/registration-token",
                response_model=_model("AuthenticationToken"),
            )

        response = await self._call("create-registration-token", _owner_of(target), call)
        data = response.parsed_data
        self._on_secret(data.token)
        return data.token, data.expires_at.timestamp()

    async def runner_downloads(self, target: Target) -> list[dict[str, str]]:
        """The runner application downloads GitHub offers ``target`` (a repo or an org: GitHub's
        API has no enterprise list), as GitHub's objects (``os``, ``architecture``,
        ``download_url``, ``filename``, and where given ``temp_download_token`` (a secret,
        told to the redactor) and ``sha256_checksum``)."""
        if target.kind == "enterprise":
            raise ValueError("GitHub lists runner downloads for repositories and orgs only")
        path = (
            f"/repos/{target.name}/actions/runners/downloads"
            if target.kind == "repo"
            else f"/orgs/{target.name}/actions/runners/downloads"
        )
        response = await self._call(
            "list-runner-applications",
            _owner_of(target),
            lambda client: client.arequest("GET", path),
        )
        try:
            listed = response.json()
        except ValueError:
            listed = None
        if not isinstance(listed, list):
            raise GitHubError("list-runner-applications: GitHub's answer is not a list")
        downloads = [
            {key: value for key, value in item.items() if isinstance(value, str)}
            for item in listed
            if isinstance(item, dict)
        ]
        for download in downloads:
            if download.get("temp_download_token"):
                self._on_secret(download["temp_download_token"])
        return downloads

    async def delete_runner(self, target: Target, runner_id: int) -> DeleteOutcome:
        def call(client: GitHub[Any]) -> Awaitable[Response[Any, Any]]:
            actions = client.rest.actions
            if target.kind == "repo":
                repo_owner, repo = _split(target.name)
                return actions.async_delete_self_hosted_runner_from_repo(
                    repo_owner, repo, runner_id
                )
            if target.kind == "org":
                return actions.async_delete_self_hosted_runner_from_org(target.name, runner_id)
            return client.arequest(
                "DELETE", f"/enterprises/{target.name}/actions/runners/{runner_id}"
            )

        try:
            await self._call("delete-runner", _owner_of(target), call)
        except _StatusError as error:
            if error.status == 404:
                return DeleteOutcome.GONE
            if error.status == 422:
                return DeleteOutcome.BUSY
            raise
        return DeleteOutcome.DELETED

    async def list_runners(self, target: Target) -> list[GitHubRunner]:
        def fetch(
            client: GitHub[Any], page: int, headers: dict[str, str]
        ) -> Awaitable[Response[Any, Any]]:
            actions = client.rest.actions
            if target.kind == "repo":
                repo_owner, repo = _split(target.name)
                return actions.async_list_self_hosted_runners_for_repo(
                    repo_owner, repo, per_page=PER_PAGE, page=page, headers=headers
                )
            if target.kind == "org":
                return actions.async_list_self_hosted_runners_for_org(
                    target.name, per_page=PER_PAGE, page=page, headers=headers
                )
            return client.arequest(
                "GET",
                f"/enterprises/{target.name}/actions/runners",
                params={"per_page": PER_PAGE, "page": page},
                headers=headers,
                response_model=_model("OrgsOrgActionsRunnersGetResponse200"),
            )

        return await self._all_pages(
            ("runners", target.key), "list-runners", _owner_of(target), fetch, _parse_runners
        )

    # ------------------------------------------------------------------ jobs: the poll's reads

    async def active_jobs(self, target: Target) -> PolledJobs:
        return await self._poller.active_jobs(target)

    @property
    def sees_whole_org(self) -> bool:
        return self._app is None

    async def org_repos_page(self, org: str, page: int) -> list[ListedRepo]:
        """One page of the organisation's repositories, most recently pushed first."""
        return await self._conditional(
            ("org-repos", org.lower(), page),
            "list-org-repos",
            Owner(org),
            lambda client, headers: client.rest.repos.async_list_for_org(
                org,
                sort="pushed",
                direction="desc",
                per_page=PER_PAGE,
                page=page,
                headers=headers,
            ),
            _listed_repos,
        )

    async def installation_repos(self, org: str) -> list[ListedRepo]:
        owner = Owner(org)
        return await self._all_pages(
            ("installation-repos", owner.key),
            "list-installation-repos",
            owner,
            lambda client, page, headers: (
                client.rest.apps.async_list_repos_accessible_to_installation(
                    per_page=PER_PAGE, page=page, headers=headers
                )
            ),
            lambda response: (
                response.parsed_data.total_count,
                [
                    ListedRepo(repo.full_name, _epoch(repo.pushed_at))
                    for repo in response.parsed_data.repositories
                ],
            ),
        )

    async def newest_runs(self, repo: str) -> list[tuple[int, str]]:
        owner, name = _split(repo)
        return await self._conditional(
            ("probe", repo.lower()),
            "list-workflow-runs",
            Owner(owner, repo=repo),
            lambda client, headers: client.rest.actions.async_list_workflow_runs_for_repo(
                owner, name, per_page=PROBE_RUNS, headers=headers
            ),
            lambda response: [(run.id, run.status) for run in response.parsed_data.workflow_runs],
        )

    async def runs(self, repo: str, status: RunStatus) -> list[int]:
        owner, name = _split(repo)
        return await self._all_pages(
            ("runs", repo.lower(), status),
            "list-workflow-runs",
            Owner(owner, repo=repo),
            lambda client, page, headers: client.rest.actions.async_list_workflow_runs_for_repo(
                owner, name, status=status, per_page=PER_PAGE, page=page, headers=headers
            ),
            lambda response: (
                response.parsed_data.total_count,
                [run.id for run in response.parsed_data.workflow_runs],
            ),
        )

    async def jobs_of_run(self, repo: str, run_id: int) -> list[ObservedJob]:
        owner, name = _split(repo)
        jobs = await self._all_pages(
            ("jobs", repo.lower(), run_id),
            "list-jobs-for-run",
            Owner(owner, repo=repo),
            lambda client, page, headers: client.rest.actions.async_list_jobs_for_workflow_run(
                owner, name, run_id, filter_="latest", per_page=PER_PAGE, page=page, headers=headers
            ),
            lambda response: (
                response.parsed_data.total_count,
                [_observed(repo, job) for job in response.parsed_data.jobs],
            ),
        )
        return [job for job in jobs if job is not None]

    async def get_job(self, repo: str, job_id: int) -> ObservedJob | None:
        owner, name = _split(repo)
        try:
            # Conditional: a job re-checked while it waits in the queue is a free 304.
            return await self._conditional(
                ("job", repo.lower(), job_id),
                "get-job",
                Owner(owner, repo=repo),
                lambda client, headers: client.rest.actions.async_get_job_for_workflow_run(
                    owner, name, job_id, headers=headers
                ),
                lambda response: _observed(repo, response.parsed_data),
            )
        except _StatusError as error:
            if error.status == 404:
                return None
            raise

    async def rerun_job(self, repo: str, job_id: int) -> None:
        owner, name = _split(repo)
        await self._call(
            "rerun-job",
            Owner(owner, repo=repo),
            lambda client: client.rest.actions.async_re_run_job_for_workflow_run(
                owner, name, job_id
            ),
        )

    async def job_annotations(self, repo: str, job_id: int) -> list[str]:
        owner, name = _split(repo)
        try:
            response = await self._call(
                "list-annotations",
                Owner(owner, repo=repo),
                lambda client: client.rest.checks.async_list_annotations(
                    owner, name, job_id, per_page=PER_PAGE
                ),
            )
        except _StatusError as error:
            if error.status == 404:
                return []
            raise
        return [annotation.message for annotation in response.parsed_data if annotation.message]

    async def close(self) -> None:
        """githubkit opens a client per call; nothing is held between calls."""


# ---------------------------------------------------------------------- helpers


class _StatusError(GitHubError):
    status: int

    def __init__(
        self, message: str, status: int, retry_after: float | None, github_message: str = ""
    ) -> None:
        super().__init__(message, retry_after=retry_after, status=status)
        self.github_message = github_message


def _failure(
    operation: str, response: httpx.Response, now: float, *, app: AppCredentials | None = None
) -> _StatusError:
    status = response.status_code
    headers = response.headers
    retry_after: float | None = None
    if "retry-after" in headers:
        # Seconds, or an HTTP date.
        retry_after = retry_after_seconds(headers["retry-after"], now)
    elif status in (403, 429) and headers.get("x-ratelimit-remaining") == "0":
        try:
            retry_after = max(1.0, float(headers["x-ratelimit-reset"]) - now)
        except (KeyError, ValueError):
            retry_after = 60.0
    try:
        message = str(response.json().get("message", ""))
    except ValueError:
        message = ""
    path = response.request.url.path if response.request is not None else ""
    hint = (_APP_HINTS if app is not None else _HINTS).get(status, "")
    text = f"{operation} {path}: GitHub answered {status} {message}".strip()
    return _StatusError(f"{text}{hint}", status, retry_after, message)


#: What an operator can do about the answers that mean "the configuration is wrong".
_HINTS = {
    401: " (the token is invalid or expired: check github.token)",
    403: " (the token lacks a permission, or a rate limit was hit: see the message)",
    404: (
        " (check that the repository, organization or enterprise in targets exists and that "
        "the token can see it)"
    ),
}


#: The same, when runnerscale authenticates as a GitHub App.
_APP_HINTS = {
    401: (
        " (GitHub refused the App's credentials: check github.app.id and its private key, "
        "and that the App is installed)"
    ),
    403: (
        " (the App's installation lacks a permission, or a rate limit was hit: see the "
        "message; docs/github.md lists the permissions per target)"
    ),
    404: (
        " (check that the repository, organization or enterprise in targets exists and that "
        "the App is installed on it with access to it)"
    ),
}


#: An App installation's permissions each target kind needs: (name, level, in words).
_APP_PERMISSIONS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "repo": (
        ("administration", "write", "Repository administration (self-hosted runners)"),
        ("actions", "read", "Actions (workflow runs and jobs)"),
    ),
    "org": (
        (
            "organization_self_hosted_runners",
            "write",
            "Organization self-hosted runners",
        ),
        ("actions", "read", "Actions (workflow runs and jobs)"),
    ),
}
#: A classic token's scopes each target kind needs: every group, one scope of each group.
_TOKEN_SCOPES: dict[str, tuple[frozenset[str], ...]] = {
    "repo": (frozenset({"repo"}),),
    # admin:org for the runners, repo to read the runs and jobs of private repositories.
    "org": (frozenset({"admin:org"}), frozenset({"repo"})),
    "enterprise": (frozenset({"manage_runners:enterprise", "admin:enterprise"}),),
}


def _grants(granted: str | None, needed: str) -> bool:
    order = {"read": 1, "write": 2, "admin": 3}
    return granted is not None and order.get(granted, 0) >= order[needed]


#: What signing the App's JWT raises when the key is not a usable RSA private key.
_KEY_ERRORS = (jwt.PyJWTError, ValueError, TypeError)


def _key_error(operation: str, error: BaseException) -> GitHubError:
    # The exception may quote the key: only its type is named, and it is not chained.
    return GitHubError(
        f"{operation}: cannot sign the GitHub App's JWT ({type(error).__name__}): "
        "github.app's private key must be the App's RSA private key (PEM)"
    )


def _parse_runners(response: Response[Any, Any]) -> tuple[int, list[GitHubRunner]]:
    data = response.parsed_data
    return data.total_count, [
        GitHubRunner(
            id=int(runner.id),
            name=runner.name,
            online=runner.status == "online",
            busy=bool(runner.busy),
            labels=tuple(label.name for label in runner.labels),
        )
        for runner in data.runners
    ]


def _observed(repo: str, job: Any) -> ObservedJob | None:
    state = _job_state(str(job.status))
    if state is None:
        return None
    created = _epoch(job.created_at) or _epoch(job.started_at) or 0.0
    return ObservedJob(
        id=int(job.id),
        repo=repo,
        labels=tuple(job.labels),
        state=state,
        created_at=created,
        run_id=int(job.run_id),
        name=job.name,
        started_at=_epoch(job.started_at) if state is not JobState.QUEUED else None,
        completed_at=_epoch(job.completed_at),
        runner_name=job.runner_name or None,
        conclusion=job.conclusion,
    )


def _ssl_context(ca_bundle: str) -> Any:
    import ssl  # noqa: PLC0415 - only when a custom CA is configured

    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as error:
        reason = getattr(error, "strerror", None) or "not a PEM file of CA certificates"
        raise ValueError(
            f"cannot use github.ca_bundle {ca_bundle}: {reason}: give a PEM file of the CA "
            "certificates that signed GitHub Enterprise Server's certificate"
        ) from None
