"""The simulated GitHub's records.

Plain mutable dataclasses, one per thing GitHub keeps: enterprises, owners (organisations or
users), their repositories, App installations, runner groups, self-hosted runners, workflow runs
and jobs.
They hold facts only; the rules that change them live in :mod:`runnerscale.fakegithub.world`, and
their JSON shapes in :mod:`runnerscale.fakegithub.shapes`. Times are epoch seconds from the world's
clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class OwnerType(StrEnum):
    ORGANIZATION = "Organization"
    USER = "User"


class JobStatus(StrEnum):
    WAITING = "waiting"
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class Conclusion(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


#: The labels GitHub gives every self-hosted runner on its own ("read-only" labels).
DEFAULT_RUNNER_LABELS: tuple[str, ...] = ("self-hosted",)

#: The runner application version the simulated runners report and the downloads list offers.
RUNNER_VERSION = "2.329.0"

#: How an enterprise-level runner's (and a registration token's) ``scope`` starts. A colon is
#: never part of an organisation login or a repository name, so scopes cannot collide.
ENTERPRISE_SCOPE_PREFIX = "enterprise:"


def enterprise_scope(slug: str) -> str:
    """The ``scope`` of the runners registered at the enterprise ``slug``."""
    return f"{ENTERPRISE_SCOPE_PREFIX}{slug}"


@dataclass
class Owner:
    login: str
    id: int
    type: OwnerType
    created_at: float
    #: The enterprise an organisation belongs to, if any (users never belong to one).
    enterprise: Enterprise | None = field(default=None, repr=False, compare=False)


@dataclass
class Enterprise:
    """A GitHub Enterprise Cloud account: a slug and the organisations it contains."""

    slug: str
    id: int
    name: str
    created_at: float
    organizations: list[Owner] = field(default_factory=list, repr=False, compare=False)

    @property
    def scope(self) -> str:
        return enterprise_scope(self.slug)


@dataclass
class Repo:
    id: int
    owner: Owner
    name: str
    created_at: float
    #: The last push: a new workflow run stands for one (:meth:`World.ensure_repo` sets it).
    pushed_at: float
    private: bool = True

    @property
    def full_name(self) -> str:
        return f"{self.owner.login}/{self.name}"


@dataclass
class Installation:
    """An installation of the simulated App on one owner (every owner has one in App mode)."""

    id: int
    owner: Owner
    created_at: float


@dataclass
class RunnerGroup:
    id: int
    name: str
    default: bool = False


@dataclass
class RunnerLabel:
    id: int
    name: str
    type: str  # "read-only" (set by GitHub or at registration) or "custom"


@dataclass
class Runner:
    """A self-hosted runner registered at a repository, an organisation or an enterprise.

    ``scope`` is ``"owner/repo"`` for repository runners, ``"org"`` for organisation ones and
    ``"enterprise:slug"`` for enterprise ones.
    ``credential`` is what the runner process presents on the runner protocol; it is a secret.
    """

    id: int
    name: str
    scope: str
    labels: list[RunnerLabel]
    runner_group: RunnerGroup | None
    ephemeral: bool
    jit: bool
    credential: str
    created_at: float
    os: str = "Linux"
    version: str = RUNNER_VERSION
    #: When the runner process last spoke to the service; None until it first connects.
    last_seen: float | None = None
    connected: bool = False
    job_id: int | None = None
    #: The job it was last given (kept after the job ends, e.g. by a cancel).
    last_job_id: int | None = None
    #: An ephemeral runner that has taken its one job never takes another.
    used: bool = False
    #: The runner scale set it was registered for (its ``generatejitconfig``), if any: such a
    #: runner takes only the jobs GitHub assigned to that scale set.
    scale_set_id: int | None = None

    @property
    def busy(self) -> bool:
        return self.job_id is not None

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]

    @property
    def is_repo_level(self) -> bool:
        return "/" in self.scope

    @property
    def is_enterprise_level(self) -> bool:
        return self.scope.startswith(ENTERPRISE_SCOPE_PREFIX)


@dataclass
class WorkflowRun:
    id: int
    repo: Repo
    name: str
    run_number: int
    created_at: float
    updated_at: float
    head_sha: str
    head_branch: str = "main"
    event: str = "push"
    run_attempt: int = 1
    job_ids: list[int] = field(default_factory=list)
    run_started_at: float | None = None


@dataclass
class Job:
    id: int
    run: WorkflowRun
    name: str
    labels: list[str]
    duration: float
    #: The conclusion the job reaches when it runs to its end (set by whoever queued it).
    planned_conclusion: Conclusion
    created_at: float
    status: JobStatus = JobStatus.QUEUED
    conclusion: Conclusion | None = None
    run_attempt: int = 1
    started_at: float | None = None
    completed_at: float | None = None
    runner_id: int | None = None
    runner_name: str | None = None
    runner_group_id: int | None = None
    runner_group_name: str | None = None
    #: Why the job ended other than by running to its end (e.g. lost communication).
    failure_reason: str | None = None
    #: The environment a waiting job waits on, if any.
    environment: str | None = None
    #: The runner scale set the job is routed to (offered or assigned), if any: then only
    #: that scale set's runners may take it (:mod:`runnerscale.fakegithub.scalesets`).
    scale_set_id: int | None = None

    @property
    def repo(self) -> Repo:
        return self.run.repo


@dataclass
class ExpiringToken:
    """A registration, remove or installation access token."""

    token: str
    expires_at: float
    scope: str
    kind: str  # "registration", "remove" or "installation"
    installation_id: int | None = None
