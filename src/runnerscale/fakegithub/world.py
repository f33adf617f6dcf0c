"""The simulated GitHub: its state and the rules that change it.

This is the part of the simulator that has to be *right*: which runner gets which job, when a
runner counts as online, what a just-in-time configuration does, what deleting a busy runner
answers, when a queued job or a silent runner gives up. It is written without HTTP and without
sleeping: every method is a synchronous state change that reads the time from an injected
:class:`~runnerscale.clock.Clock`, and :meth:`World.tick` applies whatever timeouts are due.
The HTTP application (:mod:`runnerscale.fakegithub.app`) wraps it for real clients; the
deterministic simulation drives it directly on a virtual clock.

GitHub's behaviour modelled here, each with its reference:

* Routing: a queued job goes to an online, idle runner whose labels contain every label of the
  job's ``runs-on`` (case-insensitive), oldest job first; repository runners serve their
  repository, organisation runners every repository of the organisation, and enterprise
  runners every repository of every organisation in the enterprise.
* JIT runners take exactly one job and are removed when it ends; a runner that never connects
  is removed after ``unconnected_runner_ttl`` (GitHub: one day).
* A busy runner that stops talking fails its job after ``lost_runner_timeout`` with GitHub's
  "lost communication with the server"; a job queued longer than ``queue_timeout`` (GitHub:
  24 h) fails.
* Names are unique per scope (409), deleting a busy runner answers 422.
* A new workflow run stands for the push that started it, so it sets its repository's
  ``pushed_at`` (GitHub updates ``pushed_at`` on every push); a job joining an existing run, or
  a re-run of one, is no push and leaves it alone.

Every transition of a job is reported to ``on_job_event`` so webhooks can be delivered.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from runnerscale.clock import Clock
from runnerscale.fakegithub.deadlines import Deadlines
from runnerscale.fakegithub.entities import (
    DEFAULT_RUNNER_LABELS,
    ENTERPRISE_SCOPE_PREFIX,
    Conclusion,
    Enterprise,
    ExpiringToken,
    Installation,
    Job,
    JobStatus,
    Owner,
    OwnerType,
    Repo,
    Runner,
    RunnerGroup,
    RunnerLabel,
    WorkflowRun,
)
from runnerscale.fakegithub.jitconfig import JitConfig, encode
from runnerscale.fakegithub.routing import Routing

#: GitHub's words on a job whose runner went silent mid-job (shown as the job's check-run
#: annotation; the job itself says only ``conclusion: failure``).
LOST_COMMUNICATION = (
    "The self-hosted runner: {runner} lost communication with the server. Verify the machine "
    "is running and has a healthy network connection. Anything in your workflow that "
    "terminates the runner process, starves it for CPU/Memory, or blocks its network access "
    "can cause this error."
)
#: GitHub's words on a job whose runner was stopped by a signal mid-job (its machine shut down).
SHUTDOWN_SIGNAL = (
    "The runner has received a shutdown signal. This can happen when the runner service is "
    "stopped, or a manually started runner is canceled."
)
QUEUE_TIMEOUT_REASON = "The job was not acquired by a runner within the queue time limit."
MAX_LABELS = 100
DEFAULT_GROUP_ID = 1
#: The token's user gets an id below the owner sequence, so asking for it shifts no other id.
TOKEN_USER_ID = 10_000


class ApiError(Exception):
    """An answer GitHub gives instead of success: status, message and validation errors.

    ``errors`` are strings for the REST API's 422s (GitHub's ``validation-error-simple``) and
    field records for the control API's.
    """

    def __init__(
        self,
        status: int,
        message: str,
        errors: list[str] | list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


def invalid(message: str, *, resource: str, field_name: str, code: str = "invalid") -> ApiError:
    """A control-API 422 (``validation-error``): the errors are field records."""
    return ApiError(
        422,
        message,
        [{"resource": resource, "field": field_name, "code": code, "message": message}],
    )


def rejected(message: str) -> ApiError:
    """A REST runner-endpoint 422 (``validation-error-simple``): the errors are strings."""
    return ApiError(422, message, [message])


@dataclass(frozen=True)
class WorldSettings:
    """Timeouts and identities; defaults are GitHub's, tests shorten them."""

    #: Base URL the runner protocol is reached at; written into JIT configurations.
    server_url: str = "http://127.0.0.1:9000"
    #: The CA (PEM) an https ``server_url`` is signed by, for the stand-in runner to trust.
    server_ca: str | None = None
    #: A runner that has not spoken for this long is shown offline and gets no job.
    runner_offline_after: float = 90.0
    #: A registered runner that never connects is removed after this long (GitHub: 1 day).
    unconnected_runner_ttl: float = 86_400.0
    #: A busy runner silent for this long fails its job (GitHub: about 10 minutes).
    lost_runner_timeout: float = 600.0
    #: A job still queued after this long fails (GitHub: 24 hours).
    queue_timeout: float = 86_400.0
    registration_token_ttl: float = 3_600.0
    installation_token_ttl: float = 3_600.0
    app_id: int | None = None
    app_slug: str = "runnerscale-simulator"
    #: The user behind every personal access token (``GET /user``); it also owns the App.
    token_user: str = "octocat"  # noqa: S105 - a login, not a secret
    seed: int = 0
    # Runner scale sets (:mod:`runnerscale.fakegithub.scalesets`; docs/simulator.md has the
    # assumptions table with sources).
    #: How long an empty long poll is held before its 202 (GitHub: "up to ~50 seconds").
    scale_set_poll_hold: float = 50.0
    #: A session whose owner stops polling lapses after this long (runpool ADR 2026-08-11:
    #: a successor got 409 for about fifty seconds after a SIGKILL).
    scale_set_session_lapse: float = 60.0
    #: Lifetime of a session's message-queue token (not published; 401 when expired).
    scale_set_queue_token_ttl: float = 3_600.0
    #: Lifetime of the Actions-service admin token (the ``exp`` of its JWT).
    scale_set_admin_token_ttl: float = 3_600.0
    #: An assigned job no runner takes within this many seconds × attempt is reassigned.
    scale_set_assign_timeout: float = 120.0
    #: How many times an untaken job is cancelled and reassigned before it is given up.
    scale_set_max_reassignments: int = 3
    #: ``assigned``: github.com assigns jobs (``JobAssigned``); ``available``: older GHES
    #: offers them (``JobAvailable``) and the listener must ``acquirejobs``.
    scale_set_job_mode: Literal["assigned", "available"] = "assigned"
    #: A job queued while the scale set announced capacity 0 is never assigned to it.
    zero_capacity_is_forever: bool = True
    #: At most this many job messages in one answer of the long poll.
    scale_set_message_batch: int = 50
    #: A job a scale set matches goes to the scale set even when an ordinary runner could
    #: take it; False lets idle ordinary runners take it first.
    scale_sets_before_runners: bool = True
    #: Between overlapping scale sets, prefer those with an open session (ties by a seeded
    #: draw); False draws among all of them.
    scale_set_prefer_open_session: bool = True


@dataclass(frozen=True)
class JobSpec:
    """One job to queue, as the control API and traces describe it."""

    repo: str
    labels: tuple[str, ...]
    duration: float
    run_id: int | None = None
    name: str | None = None
    conclusion: Conclusion = Conclusion.SUCCESS
    environment: str | None = None


JobListener = Callable[[str, Job], None]


class WorldExtension(Protocol):
    """Rules that ride on the world's routing and clock (the runner scale sets): the world
    asks them before handing queued jobs to runners, and applies their timeouts."""

    def route(self, queued: list[Job]) -> None:
        """Claim queued jobs (set ``job.scale_set_id``) before runners are matched."""

    def may_take(self, runner: Runner, job: Job) -> bool:
        """Whether ``runner`` may take ``job`` when either belongs to a scale set."""

    def dormant(self) -> bool:
        """True while it would claim no job and restrict no runner (nothing to route to
        and nothing routed yet): the world's index then routes alone."""

    def tick(self) -> None: ...

    def next_deadline(self) -> float | None: ...


@dataclass
class _Counters:
    """Id sequences; each kind starts in its own range so mixed-up ids are caught early."""

    owner: Iterator[int] = field(default_factory=lambda: itertools.count(10_001))
    enterprise: Iterator[int] = field(default_factory=lambda: itertools.count(40_001))
    repo: Iterator[int] = field(default_factory=lambda: itertools.count(200_001))
    installation: Iterator[int] = field(default_factory=lambda: itertools.count(30_001))
    runner: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    label: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    job: Iterator[int] = field(default_factory=lambda: itertools.count(7_000_001))
    group: Iterator[int] = field(default_factory=lambda: itertools.count(DEFAULT_GROUP_ID + 1))


_next = next


def _default_groups() -> dict[int, RunnerGroup]:
    """The runner groups every organisation and enterprise starts with."""
    return {DEFAULT_GROUP_ID: RunnerGroup(id=DEFAULT_GROUP_ID, name="Default", default=True)}


def labels_satisfy(runner_labels: Iterable[str], job_labels: Iterable[str]) -> bool:
    """True when the runner has every label the job asks for (case-insensitive)."""
    have = {label.lower() for label in runner_labels}
    return all(label.lower() in have for label in job_labels)


class World:
    """All of the simulated GitHub's state, and its rules."""

    def __init__(
        self,
        clock: Clock,
        settings: WorldSettings | None = None,
        on_job_event: JobListener | None = None,
    ) -> None:
        self.clock = clock
        self.settings = settings or WorldSettings()
        self._listeners: list[JobListener] = [on_job_event] if on_job_event else []
        self._rng = random.Random(self.settings.seed)
        self._ids = _Counters()
        self.owners: dict[str, Owner] = {}
        self.enterprises: dict[str, Enterprise] = {}
        self.repos: dict[str, Repo] = {}
        self.installations: dict[int, Installation] = {}
        #: Runner groups by lower-cased scope: an organisation login or an enterprise scope.
        self.runner_groups: dict[str, dict[int, RunnerGroup]] = {}
        self.runners: dict[int, Runner] = {}
        self.runs: dict[int, WorkflowRun] = {}
        self.jobs: dict[int, Job] = {}
        self.tokens: dict[str, ExpiringToken] = {}
        #: When this GitHub came into being: the App and the token's user date from then.
        self.created_at = clock.now()
        #: Owners the App is not installed on (the token's user, until it owns repositories).
        self._not_installed: set[str] = set()
        self._runners_by_credential: dict[str, int] = {}
        self._run_numbers: dict[str, int] = {}
        #: Bumped on every change; long-polling runners wait for it to move.
        self.version = 0
        self.extensions: list[WorldExtension] = []
        self._routing = Routing()
        self._runner_deadlines = Deadlines(self._runner_due)
        self._job_deadlines = Deadlines(self._job_due)
        #: The settings the noted deadlines were computed with (tests replace them).
        self._deadline_settings = self.settings
        #: Runners by lower-cased scope, each in id order, and their lower-cased names.
        self._by_scope: dict[str, dict[int, Runner]] = {}
        self._names: dict[tuple[str, str], int] = {}

    # ------------------------------------------------------------------ plumbing

    def add_listener(self, listener: JobListener) -> None:
        self._listeners.append(listener)

    def _emit(self, action: str, job: Job) -> None:
        for listener in self._listeners:
            listener(action, job)

    def _changed(self) -> None:
        self.version += 1

    def new_secret(self, prefix: str) -> str:
        """A token drawn from the seeded generator: reproducible, and only as secret as a
        simulator needs."""
        return prefix + "".join(self._rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", k=36))

    def new_uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    @property
    def now(self) -> float:
        return self.clock.now()

    # ------------------------------------------------------------------ owners and repositories

    def ensure_owner(self, login: str, owner_type: OwnerType = OwnerType.ORGANIZATION) -> Owner:
        key = login.lower()
        owner = self.owners.get(key)
        if owner is None:
            owner = Owner(
                login=login, id=_next(self._ids.owner), type=owner_type, created_at=self.now
            )
            self.owners[key] = owner
            if owner_type is OwnerType.ORGANIZATION:
                self.runner_groups[key] = _default_groups()
            self._install(owner)
            self._changed()
        elif key in self._not_installed:
            # The token's user now owns repositories: the App is installed there like anywhere.
            self._not_installed.discard(key)
            self._install(owner)
            self._changed()
        return owner

    def _install(self, owner: Owner) -> None:
        if self.settings.app_id is not None:
            installation = Installation(
                id=_next(self._ids.installation), owner=owner, created_at=self.now
            )
            self.installations[installation.id] = installation

    def token_user(self) -> Owner:
        """The user behind the personal access tokens (``settings.token_user``).

        It comes into being when first asked for, dated from the world's creation, and, unlike
        an owner that comes with its repositories, without the App installed on it: the App's
        owner need not install it on their own account.
        """
        login = self.settings.token_user
        owner = self.owners.get(login.lower())
        if owner is None:
            owner = Owner(
                login=login, id=TOKEN_USER_ID, type=OwnerType.USER, created_at=self.created_at
            )
            self.owners[login.lower()] = owner
            self._not_installed.add(login.lower())
            self._changed()
        return owner

    def account(self, login: str) -> Owner:
        """Any account, user or organisation, by login (case-insensitive); 404 when unknown."""
        if login.lower() == self.settings.token_user.lower():
            return self.token_user()
        owner = self.owners.get(login.lower())
        if owner is None:
            raise not_found()
        return owner

    def ensure_repo(
        self,
        full_name: str,
        owner_type: OwnerType = OwnerType.ORGANIZATION,
        *,
        pushed_at: float | None = None,
    ) -> Repo:
        """The repository ``full_name``, created (with its owner) on first use.

        A new repository was last pushed when it was created, unless ``pushed_at`` says
        otherwise; a ``pushed_at`` in the past also dates its creation back to then (a
        repository is not pushed before it exists). For an existing repository, ``pushed_at``
        just moves its last push.
        """
        owner_login, _, name = full_name.partition("/")
        if not owner_login or not name or "/" in name:
            raise invalid(
                f"repo must be OWNER/NAME, got {full_name!r}",
                resource="Repository",
                field_name="repo",
            )
        repo = self.repos.get(full_name.lower())
        if repo is None:
            owner = self.ensure_owner(owner_login, owner_type)
            pushed = self.now if pushed_at is None else pushed_at
            repo = Repo(
                id=_next(self._ids.repo),
                owner=owner,
                name=name,
                created_at=min(self.now, pushed),
                pushed_at=pushed,
            )
            self.repos[full_name.lower()] = repo
            self._changed()
        elif pushed_at is not None and pushed_at != repo.pushed_at:
            repo.pushed_at = pushed_at
            self._changed()
        return repo

    def repo(self, owner: str, name: str) -> Repo:
        repo = self.repos.get(f"{owner}/{name}".lower())
        if repo is None:
            raise not_found()
        return repo

    def org(self, login: str) -> Owner:
        owner = self.owners.get(login.lower())
        if owner is None or owner.type is not OwnerType.ORGANIZATION:
            raise not_found()
        return owner

    def repos_of(self, owner: Owner) -> list[Repo]:
        return sorted(
            (repo for repo in self.repos.values() if repo.owner is owner), key=lambda r: r.id
        )

    def installation_for(self, owner: Owner) -> Installation:
        for installation in self.installations.values():
            if installation.owner is owner:
                return installation
        raise not_found()

    def add_runner_group(self, org: str, name: str) -> RunnerGroup:
        return self._add_group(self.org(org).login, name)

    def groups_of(self, org: str) -> list[RunnerGroup]:
        return self._groups(self.org(org).login)

    def _add_group(self, scope: str, name: str) -> RunnerGroup:
        groups = self.runner_groups[scope.lower()]
        for group in groups.values():
            if group.name.lower() == name.lower():
                return group
        group = RunnerGroup(id=_next(self._ids.group), name=name)
        groups[group.id] = group
        self._changed()
        return group

    def _groups(self, scope: str) -> list[RunnerGroup]:
        return sorted(self.runner_groups[scope.lower()].values(), key=lambda g: g.id)

    # ------------------------------------------------------------------ enterprises

    def ensure_enterprise(
        self, slug: str, orgs: Iterable[str] = (), name: str | None = None
    ) -> Enterprise:
        """The enterprise ``slug`` (created on first use), now also containing ``orgs``.

        Organisations come into being on first use, as they do for jobs. A user account, or
        an organisation of another enterprise, cannot join (control-API 422).
        """
        if not slug or not all(c.isalnum() or c == "-" for c in slug):
            raise invalid(
                f"an enterprise slug is letters, digits and hyphens, got {slug!r}",
                resource="Enterprise",
                field_name="slug",
            )
        enterprise = self.enterprises.get(slug.lower())
        if enterprise is None:
            enterprise = Enterprise(
                slug=slug, id=_next(self._ids.enterprise), name=name or slug, created_at=self.now
            )
            self.enterprises[slug.lower()] = enterprise
            self.runner_groups[enterprise.scope.lower()] = _default_groups()
            self._changed()
        for login in orgs:
            existing = self.owners.get(login.lower())
            if existing is not None and existing.type is not OwnerType.ORGANIZATION:
                raise invalid(
                    f"{existing.login} is a user account, not an organization",
                    resource="Enterprise",
                    field_name="orgs",
                )
            owner = self.ensure_owner(login)
            if owner.enterprise is enterprise:
                continue
            if owner.enterprise is not None:
                raise invalid(
                    f"organization {owner.login} already belongs to enterprise "
                    f"{owner.enterprise.slug}",
                    resource="Enterprise",
                    field_name="orgs",
                )
            owner.enterprise = enterprise
            enterprise.organizations.append(owner)
            self._changed()
        if orgs:
            self._dispatch()  # enterprise runners may now serve the new organisations' jobs
        return enterprise

    def enterprise(self, slug: str) -> Enterprise:
        """The enterprise by slug or, as GitHub also accepts, by id; 404 when unknown."""
        enterprise = self.enterprises.get(slug.lower())
        if enterprise is None and slug.isdigit():
            enterprise = next((e for e in self.enterprises.values() if str(e.id) == slug), None)
        if enterprise is None:
            raise not_found()
        return enterprise

    def add_enterprise_runner_group(self, slug: str, name: str) -> RunnerGroup:
        return self._add_group(self.enterprise(slug).scope, name)

    def enterprise_groups(self, slug: str) -> list[RunnerGroup]:
        return self._groups(self.enterprise(slug).scope)

    # ------------------------------------------------------------------ scopes

    def scope_for_repo(self, owner: str, name: str) -> str:
        return self.repo(owner, name).full_name

    def scope_for_org(self, org: str) -> str:
        return self.org(org).login

    def scope_for_enterprise(self, slug: str) -> str:
        return self.enterprise(slug).scope

    def _in_scope(self, runner: Runner, scope: str) -> bool:
        return runner.scope.lower() == scope.lower()

    def runners_in(self, scope: str) -> list[Runner]:
        return list(self._by_scope.get(scope.lower(), {}).values())

    def runner_in(self, scope: str, runner_id: int) -> Runner:
        runner = self.runners.get(runner_id)
        if runner is None or not self._in_scope(runner, scope):
            raise not_found()
        return runner

    # ------------------------------------------------------------------ tokens

    def create_token(self, scope: str, kind: str) -> ExpiringToken:
        """A registration or remove token for the scope, valid for an hour."""
        prefix = "A" if kind == "registration" else "R"
        token = ExpiringToken(
            token=self.new_secret(prefix),
            expires_at=self.now + self.settings.registration_token_ttl,
            scope=scope,
            kind=kind,
        )
        self.tokens[token.token] = token
        return token

    def issue_installation_token(self, installation_id: int) -> ExpiringToken:
        if installation_id not in self.installations:
            raise not_found()
        token = ExpiringToken(
            token=self.new_secret("ghs_"),
            expires_at=self.now + self.settings.installation_token_ttl,
            scope=self.installations[installation_id].owner.login,
            kind="installation",
            installation_id=installation_id,
        )
        self.tokens[token.token] = token
        return token

    def valid_token(self, token: str, kind: str) -> ExpiringToken | None:
        found = self.tokens.get(token)
        if found is None or found.kind != kind:
            return None
        if self.now >= found.expires_at:
            return None
        return found

    # ------------------------------------------------------------------ runner registration

    def _labels_for(self, names: Iterable[str], *, read_only: bool) -> list[RunnerLabel]:
        kind = "read-only" if read_only else "custom"
        return [RunnerLabel(id=_next(self._ids.label), name=name, type=kind) for name in names]

    def _validate_labels(self, labels: object, *, allow_empty: bool = False) -> list[str]:
        if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
            raise rejected("labels must be a list of non-empty strings")
        if not labels and not allow_empty:
            raise rejected("labels must contain at least one label")
        if len(labels) > MAX_LABELS:
            raise rejected(f"a runner can have at most {MAX_LABELS} labels, got {len(labels)}")
        return labels

    def _register(
        self,
        scope: str,
        name: str,
        labels: list[str],
        group: RunnerGroup | None,
        *,
        ephemeral: bool,
        jit: bool,
        scale_set_id: int | None = None,
    ) -> Runner:
        if (scope.lower(), name.lower()) in self._names:
            raise ApiError(409, f"A runner with the name {name!r} already exists.")
        # Scale-set runners get no default labels (live tests, runpool ADR 2026-08-29).
        implicit = (
            []
            if scale_set_id is not None
            else [x for x in DEFAULT_RUNNER_LABELS if x.lower() not in {y.lower() for y in labels}]
        )
        runner = Runner(
            id=_next(self._ids.runner),
            name=name,
            scope=scope,
            labels=self._labels_for([*implicit, *labels], read_only=True),
            runner_group=group,
            ephemeral=ephemeral,
            jit=jit,
            credential=self.new_secret("rnr_"),
            created_at=self.now,
            scale_set_id=scale_set_id,
        )
        self.runners[runner.id] = runner
        self._runners_by_credential[runner.credential] = runner.id
        self._by_scope.setdefault(scope.lower(), {})[runner.id] = runner
        self._names[scope.lower(), name.lower()] = runner.id
        self._runner_deadlines.note(runner.id)
        self._changed()
        return runner

    def generate_jitconfig(
        self, scope: str, body: object, *, org_level: bool
    ) -> tuple[Runner, str]:
        """Register a just-in-time runner and return it with its encoded configuration.

        ``org_level`` is true for an organisation or enterprise scope, whose runner groups
        the body's ``runner_group_id`` is looked up in.
        """
        if not isinstance(body, dict):
            raise ApiError(400, "Problems parsing JSON")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise rejected("name is required")
        labels = self._validate_labels(body.get("labels"))
        group_id = body.get("runner_group_id")
        if not isinstance(group_id, int) or isinstance(group_id, bool):
            raise rejected("runner_group_id is required and must be an integer")
        group = self._group_for(scope, group_id, org_level=org_level)
        work_folder = body.get("work_folder", "_work")
        if not isinstance(work_folder, str):
            raise rejected("work_folder must be a string")
        runner = self._register(scope, name, labels, group, ephemeral=True, jit=True)
        return runner, self.encode_jitconfig(runner, work_folder)

    def encode_jitconfig(self, runner: Runner, work_folder: str = "_work") -> str:
        """The encoded JIT configuration the stand-in runner starts ``runner`` from."""
        return encode(
            JitConfig(
                server_url=self.settings.server_url,
                server_ca=self.settings.server_ca,
                runner_id=runner.id,
                runner_name=runner.name,
                credential=runner.credential,
                work_folder=work_folder,
            )
        )

    def register_jit_runner(
        self,
        scope: str,
        name: str,
        labels: list[str],
        group: RunnerGroup | None,
        *,
        scale_set_id: int | None = None,
    ) -> Runner:
        """Register an ephemeral just-in-time runner (the scale sets' ``generatejitconfig``)."""
        return self._register(
            scope, name, labels, group, ephemeral=True, jit=True, scale_set_id=scale_set_id
        )

    def _group_for(self, scope: str, group_id: int, *, org_level: bool) -> RunnerGroup | None:
        if not org_level:
            # Repository runners all live in the default group; any other id is unknown.
            if group_id != DEFAULT_GROUP_ID:
                raise rejected(f"runner group {group_id} does not exist for this repository")
            return RunnerGroup(id=DEFAULT_GROUP_ID, name="Default", default=True)
        group = self.runner_groups[scope.lower()].get(group_id)
        if group is None:
            where = (
                f"enterprise {scope.removeprefix(ENTERPRISE_SCOPE_PREFIX)}"
                if scope.startswith(ENTERPRISE_SCOPE_PREFIX)
                else f"organization {scope}"
            )
            raise rejected(f"runner group {group_id} does not exist in {where}")
        return group

    def register_with_token(
        self, token: str, name: str, labels: list[str], *, ephemeral: bool
    ) -> tuple[Runner, str]:
        """What ``config.sh --token`` does: trade a registration token for a runner."""
        found = self.valid_token(token, "registration")
        if found is None:
            raise ApiError(401, "The registration token is invalid or has expired.")
        labels = self._validate_labels(labels)
        org_level = "/" not in found.scope
        group = self._group_for(found.scope, DEFAULT_GROUP_ID, org_level=org_level)
        runner = self._register(found.scope, name, labels, group, ephemeral=ephemeral, jit=False)
        encoded = encode(
            JitConfig(
                server_url=self.settings.server_url,
                server_ca=self.settings.server_ca,
                runner_id=runner.id,
                runner_name=runner.name,
                credential=runner.credential,
                ephemeral=ephemeral,
            )
        )
        return runner, encoded

    def delete_runner(self, scope: str, runner_id: int) -> None:
        runner = self.runner_in(scope, runner_id)
        if runner.busy:
            raise ApiError(422, f'Bad request - Runner "{runner.name}" is still running a job".')
        self._remove_runner(runner)

    def unregister(self, runner: Runner) -> None:
        """Remove a runner's registration, whatever it is doing (callers check first)."""
        self._remove_runner(runner)

    def give_up(self, job: Job, reason: str) -> None:
        """End a job that was never taken: cancelled, with ``reason``."""
        if job.status is not JobStatus.COMPLETED:
            self._complete(job, Conclusion.CANCELLED, reason)

    def _remove_runner(self, runner: Runner) -> None:
        if self.runners.pop(runner.id, None) is not None:
            self._by_scope[runner.scope.lower()].pop(runner.id, None)
            self._names.pop((runner.scope.lower(), runner.name.lower()), None)
        self._runners_by_credential.pop(runner.credential, None)
        self._routing.forget_runner(runner)
        self._runner_deadlines.forget(runner.id)
        self._changed()

    def add_labels(self, scope: str, runner_id: int, body: object) -> Runner:
        runner = self.runner_in(scope, runner_id)
        if not isinstance(body, dict) or "labels" not in body:
            raise rejected("labels is required")
        labels = self._validate_labels(body["labels"])
        have = {label.name.lower() for label in runner.labels}
        new: list[str] = []
        for name in labels:  # label names are case-insensitive, within the request too
            if name.lower() not in have:
                have.add(name.lower())
                new.append(name)
        if len(runner.labels) + len(new) > MAX_LABELS:
            raise rejected(f"a runner can have at most {MAX_LABELS} labels")
        runner.labels.extend(self._labels_for(new, read_only=False))
        self._routing.offer_runner(runner)
        self._changed()
        self._dispatch()
        return runner

    # ------------------------------------------------------------------ the runner protocol

    def runner_by_credential(self, credential: str) -> Runner:
        runner_id = self._runners_by_credential.get(credential)
        if runner_id is None:
            raise ApiError(401, "This runner is not registered (it may have been removed).")
        return self.runners[runner_id]

    def _seen(self, runner: Runner) -> None:
        runner.last_seen = self.now
        if not runner.connected:
            runner.connected = True
            self._changed()
        self._routing.offer_runner(runner)
        self._runner_deadlines.note(runner.id)

    def runner_connect(self, credential: str) -> Runner:
        runner = self.runner_by_credential(credential)
        self._seen(runner)
        self._dispatch()
        return runner

    def runner_poll(self, credential: str) -> Job | None:
        """A runner asks for work: returns the job assigned to it, if any."""
        runner = self.runner_by_credential(credential)
        self._seen(runner)
        self._dispatch()
        if runner.job_id is not None:
            return self.jobs[runner.job_id]
        if runner.ephemeral and runner.used and runner.last_job_id is not None:
            # Its one job ended (cancelled) before it picked it up: it still gets the message,
            # and learns of the end on its first heartbeat, as the official runner does.
            return self.jobs[runner.last_job_id]
        return None

    def runner_heartbeat(self, credential: str, job_id: int) -> bool:
        """A busy runner reports it is alive; True when its job was cancelled meanwhile."""
        runner = self.runner_by_credential(credential)
        self._seen(runner)
        job = self.jobs.get(job_id)
        return job is None or job.status is JobStatus.COMPLETED or runner.job_id != job_id

    def runner_complete(self, credential: str, job_id: int, conclusion: Conclusion) -> None:
        runner = self.runner_by_credential(credential)
        self._seen(runner)
        job = self.jobs.get(job_id)
        if job is None or job.runner_id != runner.id:
            raise ApiError(409, "This job is not assigned to this runner.")
        if runner.job_id != job_id:
            if job.status is JobStatus.COMPLETED and runner.ephemeral:
                self._remove_runner(runner)  # acknowledging a cancel: its one job is over
                return
            raise ApiError(409, "This job is not assigned to this runner.")
        if job.status is not JobStatus.COMPLETED:
            self._complete(job, conclusion)
        self._release(runner)

    def runner_disconnect(self, credential: str) -> None:
        """The runner process exits on its own (for example on SIGTERM while idle).

        Like GitHub, the registration stays (shown offline) until someone deletes it or, for a
        runner that never connected, the unconnected-runner timeout removes it.
        """
        runner = self.runner_by_credential(credential)
        runner.connected = False
        self._runner_deadlines.note(runner.id)
        self._changed()

    def runner_shut_down(self, credential: str) -> None:
        """The runner's machine shuts down under it (a spot instance taken back): the runner
        process gets SIGTERM, a job it runs fails with GitHub's words for that, and it goes
        offline (an ephemeral runner that ran a job is removed, as after any job)."""
        runner = self.runner_by_credential(credential)
        runner.connected = False
        self._runner_deadlines.note(runner.id)
        job = self.jobs.get(runner.job_id) if runner.job_id is not None else None
        if job is None:
            self._changed()
            return
        if job.status is not JobStatus.COMPLETED:
            self._complete(job, Conclusion.FAILURE, SHUTDOWN_SIGNAL)
        self._release(runner)

    def _release(self, runner: Runner) -> None:
        runner.job_id = None
        if runner.ephemeral:
            self._remove_runner(runner)
        else:
            self._freed(runner)
        self._changed()
        self._dispatch()

    # ------------------------------------------------------------------ jobs and runs

    def create_jobs(self, specs: Iterable[JobSpec]) -> list[Job]:
        created = [self._create_job(spec) for spec in specs]
        self._dispatch()
        return created

    def _create_job(self, spec: JobSpec) -> Job:
        repo = self.ensure_repo(spec.repo)
        run = self._run_for(repo, spec.run_id)
        index = len(run.job_ids)
        job = Job(
            id=_next(self._ids.job),
            run=run,
            name=spec.name or f"job-{index}",
            labels=list(spec.labels),
            duration=spec.duration,
            planned_conclusion=spec.conclusion,
            created_at=self.now,
            status=JobStatus.WAITING if spec.environment else JobStatus.QUEUED,
            environment=spec.environment,
            run_attempt=run.run_attempt,
        )
        self.jobs[job.id] = job
        self._routing.offer_job(job)
        self._job_deadlines.note(job.id)
        run.job_ids.append(job.id)
        run.updated_at = self.now
        self._changed()
        self._emit(job.status.value, job)
        return job

    def _run_for(self, repo: Repo, run_id: int | None) -> WorkflowRun:
        """The run ``run_id`` of ``repo``, or a new run (a new id when ``run_id`` is None).

        A new run stands for a push (a push starts the run), so it moves the repository's
        ``pushed_at``, as GitHub updates it on every push; joining an existing run does not.
        """
        if run_id is not None and run_id in self.runs:
            run = self.runs[run_id]
            if run.repo is not repo:
                raise invalid(
                    f"run_id {run_id} already belongs to {run.repo.full_name}",
                    resource="Job",
                    field_name="run_id",
                )
            return run
        if run_id is None:
            run_id = max(self.runs, default=0) + 1
        number = self._run_numbers.get(repo.full_name, 0) + 1
        self._run_numbers[repo.full_name] = number
        sha = hashlib.sha1(f"{repo.full_name}:{run_id}".encode(), usedforsecurity=False).hexdigest()
        run = WorkflowRun(
            id=run_id,
            repo=repo,
            name="CI",
            run_number=number,
            created_at=self.now,
            updated_at=self.now,
            head_sha=sha,
        )
        self.runs[run_id] = run
        repo.pushed_at = self.now
        return run

    def approve(self, job_id: int) -> Job:
        """Approve a job waiting on its environment: it becomes queued."""
        job = self.jobs.get(job_id)
        if job is None:
            raise not_found()
        if job.status is not JobStatus.WAITING:
            raise ApiError(409, f"job {job_id} is {job.status.value}, not waiting")
        job.status = JobStatus.QUEUED
        self._routing.offer_job(job)
        self._job_deadlines.note(job.id)
        self._changed()
        self._emit("queued", job)
        self._dispatch()
        return job

    def run_jobs(self, run: WorkflowRun) -> list[Job]:
        return [self.jobs[job_id] for job_id in run.job_ids]

    def run_status(self, run: WorkflowRun) -> tuple[str, str | None]:
        """A run's status and conclusion, derived from its latest attempt's jobs."""
        jobs = [job for job in self.run_jobs(run) if job.run_attempt == run.run_attempt]
        statuses = {job.status for job in jobs}
        if not jobs or statuses == {JobStatus.QUEUED}:
            return "queued", None
        if statuses == {JobStatus.COMPLETED}:
            conclusions = {job.conclusion for job in jobs}
            for worst in (Conclusion.FAILURE, Conclusion.CANCELLED):
                if worst in conclusions:
                    return "completed", worst.value
            return "completed", Conclusion.SUCCESS.value
        if statuses <= {JobStatus.WAITING, JobStatus.QUEUED, JobStatus.COMPLETED} and (
            JobStatus.WAITING in statuses
        ):
            return "waiting", None
        return "in_progress", None

    def runs_of(self, repo: Repo, status: str | None = None) -> list[WorkflowRun]:
        """Runs of a repository, newest first, optionally filtered by status or conclusion."""
        runs = sorted(
            (run for run in self.runs.values() if run.repo is repo),
            key=lambda r: (r.created_at, r.id),
            reverse=True,
        )
        if status is None:
            return runs
        return [run for run in runs if status in self.run_status(run)]

    def job_in(self, repo: Repo, job_id: int) -> Job:
        job = self.jobs.get(job_id)
        if job is None or job.repo is not repo:
            raise not_found()
        return job

    def run_in(self, repo: Repo, run_id: int) -> WorkflowRun:
        run = self.runs.get(run_id)
        if run is None or run.repo is not repo:
            raise not_found()
        return run

    def cancel_run(self, run: WorkflowRun) -> None:
        status, _ = self.run_status(run)
        if status == "completed":
            raise ApiError(409, "Cannot cancel a workflow run that is completed.")
        freed: list[Runner] = []
        for job in self.run_jobs(run):
            if job.status is not JobStatus.COMPLETED:
                self._complete(job, Conclusion.CANCELLED)
                if job.runner_id is not None and job.runner_id in self.runners:
                    freed.append(self.runners[job.runner_id])
        # Only once every job of the run is cancelled: releasing a runner dispatches, and it
        # must not hand the freed runner a job of this very run.
        for runner in freed:
            # The slot frees at once. The runner process learns of the cancel on its next
            # heartbeat and acknowledges it; an ephemeral runner is removed then (or, if it
            # never speaks again, once it has been silent for ``runner_offline_after``).
            runner.job_id = None
            self._freed(runner)
        self._changed()
        self._dispatch()

    def rerun_job(self, job: Job) -> Job:
        """Re-run a completed job: a new attempt of the run with a new job id."""
        if job.status is not JobStatus.COMPLETED:
            raise ApiError(403, "This job cannot be re-run while it is still running.")
        run = job.run
        run.run_attempt += 1
        run.updated_at = self.now
        rerun = self._create_job(
            JobSpec(
                repo=run.repo.full_name,
                labels=tuple(job.labels),
                duration=job.duration,
                run_id=run.id,
                name=job.name,
                conclusion=job.planned_conclusion,
                environment=job.environment,
            )
        )
        self._dispatch()
        return rerun

    # ------------------------------------------------------------------ routing

    def _eligible(self, runner: Runner, job: Job) -> bool:
        if runner.busy or not runner.connected or (runner.ephemeral and runner.used):
            return False
        if runner.is_repo_level:
            if runner.scope.lower() != job.repo.full_name.lower():
                return False
        elif runner.is_enterprise_level:
            enterprise = job.repo.owner.enterprise
            if enterprise is None or runner.scope.lower() != enterprise.scope.lower():
                return False
        elif runner.scope.lower() != job.repo.owner.login.lower():
            return False
        if runner.scale_set_id is not None or job.scale_set_id is not None:
            return any(extension.may_take(runner, job) for extension in self.extensions)
        return labels_satisfy(runner.label_names, job.labels)

    def ordinary_runner_could_take(self, job: Job) -> bool:
        """Whether an idle runner outside any scale set could take ``job`` now."""
        return any(
            runner.scale_set_id is None and self._eligible(runner, job)
            for runner in self.runners.values()
            if job.scale_set_id is None
        )

    def dispatch(self) -> None:
        """Route and hand out queued jobs now (after a change outside the world's own
        methods, e.g. a scale set's announced capacity)."""
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand queued jobs, oldest first, to online idle runners that match.

        Without scale sets the index (:mod:`runnerscale.fakegithub.routing`) decides; once
        there are some, their rules (which claim jobs and restrict runners) are asked by
        scanning."""
        if all(extension.dormant() for extension in self.extensions):
            for job, runner in self._routing.pairs():
                self._assign(job, runner)
            return
        self._dispatch_by_scanning()

    def _dispatch_by_scanning(self) -> None:
        """GitHub's rule applied to every queued job and idle runner, with the extensions."""
        queued = sorted(
            (job for job in self.jobs.values() if job.status is JobStatus.QUEUED),
            key=lambda j: (j.created_at, j.id),
        )
        if not queued:
            return
        for extension in self.extensions:
            extension.route(queued)
        idle = [r for r in sorted(self.runners.values(), key=lambda r: r.id) if not r.busy]
        for job in queued:
            runner = next((r for r in idle if self._eligible(r, job)), None)
            if runner is None:
                continue
            idle.remove(runner)
            self._assign(job, runner)

    def _assign(self, job: Job, runner: Runner) -> None:
        runner.job_id = job.id
        runner.last_job_id = job.id
        runner.used = True
        job.status = JobStatus.IN_PROGRESS
        job.started_at = self.now
        job.runner_id = runner.id
        job.runner_name = runner.name
        group = runner.runner_group
        job.runner_group_id = group.id if group else DEFAULT_GROUP_ID
        job.runner_group_name = group.name if group else "Default"
        self._runner_deadlines.note(runner.id)
        if job.run.run_started_at is None:
            job.run.run_started_at = self.now
        job.run.updated_at = self.now
        self._changed()
        self._emit("in_progress", job)

    def _complete(self, job: Job, conclusion: Conclusion, reason: str | None = None) -> None:
        job.status = JobStatus.COMPLETED
        job.conclusion = conclusion
        job.completed_at = self.now
        job.failure_reason = reason
        job.run.updated_at = self.now
        self._changed()
        self._emit("completed", job)

    # ------------------------------------------------------------------ time

    def tick(self) -> None:
        """Apply every timeout that is due at the clock's current time."""
        now = self.now
        settings = self.settings
        due = self._own_deadline()
        if due is not None and due <= now:
            self._apply_timeouts(now, settings)
        for extension in self.extensions:
            extension.tick()
        self._dispatch()

    def _apply_timeouts(self, now: float, settings: WorldSettings) -> None:
        for runner in list(self.runners.values()):
            if runner.last_seen is None:
                if now - runner.created_at >= settings.unconnected_runner_ttl:
                    self._remove_runner(runner)
                continue
            silent = now - runner.last_seen
            if runner.busy and silent >= settings.lost_runner_timeout:
                job = self.jobs[runner.job_id] if runner.job_id is not None else None
                if job is not None and job.status is not JobStatus.COMPLETED:
                    reason = LOST_COMMUNICATION.format(runner=runner.name)
                    self._complete(job, Conclusion.FAILURE, reason)
                runner.connected = False
                self._release(runner)
            elif not runner.busy and silent >= settings.runner_offline_after:
                if runner.ephemeral and runner.used:
                    self._remove_runner(runner)  # its job was cancelled and it went away
                elif runner.connected:
                    runner.connected = False
                    self._runner_deadlines.note(runner.id)
                    self._changed()
        for job in list(self.jobs.values()):
            if job.status is JobStatus.QUEUED and now - job.created_at >= settings.queue_timeout:
                self._complete(job, Conclusion.FAILURE, QUEUE_TIMEOUT_REASON)

    def _freed(self, runner: Runner) -> None:
        """A runner's job left it and it stays: it may take another, on a new deadline."""
        self._routing.offer_runner(runner)
        self._runner_deadlines.note(runner.id)

    def _runner_due(self, runner_id: int) -> float | None:
        """When :meth:`tick` has something to do with the runner (None: nothing)."""
        runner = self.runners.get(runner_id)
        if runner is None:
            return None
        settings = self.settings
        if runner.last_seen is None:
            return runner.created_at + settings.unconnected_runner_ttl
        if runner.busy:
            return runner.last_seen + settings.lost_runner_timeout
        if runner.connected or (runner.ephemeral and runner.used):
            return runner.last_seen + settings.runner_offline_after
        return None

    def _job_due(self, job_id: int) -> float | None:
        """When a queued job times out (None: it is not queued)."""
        job = self.jobs.get(job_id)
        if job is None or job.status is not JobStatus.QUEUED:
            return None
        return job.created_at + self.settings.queue_timeout

    def _own_deadline(self) -> float | None:
        """The earliest runner or job deadline, from the noted ones (no scan unless the
        timeouts were replaced, which moves every deadline)."""
        if self.settings is not self._deadline_settings:
            self._deadline_settings = self.settings
            self._runner_deadlines = Deadlines(self._runner_due)
            self._job_deadlines = Deadlines(self._job_due)
            for runner_id in self.runners:
                self._runner_deadlines.note(runner_id)
            for job_id in self.jobs:
                self._job_deadlines.note(job_id)
        found = [
            d
            for d in (self._runner_deadlines.earliest(), self._job_deadlines.earliest())
            if d is not None
        ]
        return min(found, default=None)

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`tick` has something to do."""
        own = self._own_deadline()
        deadlines: list[float] = [] if own is None else [own]
        for extension in self.extensions:
            deadline = extension.next_deadline()
            if deadline is not None:
                deadlines.append(deadline)
        return min(deadlines, default=None)
