"""GitHub's runner scale sets, as rules over the simulated world: no HTTP, virtual time.

A scale set is GitHub's own autoscaling unit (``actions/scaleset``): GitHub routes a job to
it and tells its one listener, over a long poll on the Actions service, what happened
(``JobAssigned``, ``JobStarted``, ``JobCompleted``) and how many jobs are assigned to it
(``statistics.totalAssignedJobs``). :mod:`runnerscale.fakegithub.actions_service` serves these
rules over HTTP; the deterministic simulation calls them directly. Every rule is a plain
method of :class:`ScaleSets`, reading the time from the world's clock:

* scale sets per scope: :meth:`~ScaleSets.runner_groups`, :meth:`~ScaleSets.find`,
  :meth:`~ScaleSets.create`, :meth:`~ScaleSets.update`, :meth:`~ScaleSets.delete`;
* tokens: :meth:`~ScaleSets.register` (registration token → tenant and admin JWT),
  :meth:`~ScaleSets.admin_scope`;
* sessions: :meth:`~ScaleSets.create_session` (409 while another is open),
  :meth:`~ScaleSets.refresh_session`, :meth:`~ScaleSets.delete_session`;
* the queue: :meth:`~ScaleSets.get_message` (one poll, no holding: None is a 202),
  :meth:`~ScaleSets.acknowledge`, :meth:`~ScaleSets.acquire_jobs`,
  :meth:`~ScaleSets.statistics`;
* runners: :meth:`~ScaleSets.generate_jitconfig`, :meth:`~ScaleSets.remove_runner`;
* behind the listener's back (the control API): :meth:`~ScaleSets.expire_queue_tokens`,
  :meth:`~ScaleSets.drop_sessions`.

What GitHub has not published is a named assumption in :class:`WorldSettings` (the table in
docs/simulator.md gives each one's source): the session lapse, capacity 0 being forever,
scale sets before ordinary runners, open sessions first between overlapping scale sets.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import jwt

from runnerscale.fakegithub.entities import (
    Conclusion,
    Job,
    JobStatus,
    Runner,
    RunnerGroup,
)
from runnerscale.fakegithub.world import (
    DEFAULT_GROUP_ID,
    ApiError,
    World,
    WorldSettings,
    labels_satisfy,
)
from runnerscale.scaleset_api import (
    ScaleSetEvent,
    ScaleSetEventKind,
    ScaleSetMessage,
    ScaleSetStatistics,
)

#: GitHub's word for a job result, by the simulator's conclusion (``JobCompleted.result``).
RESULTS = {
    Conclusion.SUCCESS: "succeeded",
    Conclusion.FAILURE: "failed",
    Conclusion.CANCELLED: "canceled",
    Conclusion.SKIPPED: "skipped",
}
NOT_TAKEN_REASON = "The job was not acquired by a runner of the scale set in time."
ADMIN_TOKEN_ALGORITHM = "HS256"  # noqa: S105 - an algorithm name, not a secret


class ActionsError(Exception):
    """An Actions-service refusal: the HTTP status and the exception ``typeName`` GitHub sends
    (``{"typeName": ..., "message": ...}``)."""

    def __init__(self, status: int, type_name: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type_name = type_name
        self.message = message


def scale_set_not_found(scale_set_id: int) -> ActionsError:
    return ActionsError(
        404, "RunnerScaleSetNotFoundException", f"Runner scale set {scale_set_id} not found."
    )


def unauthorized(what: str) -> ActionsError:
    return ActionsError(401, "UnauthorizedException", f"The {what} is invalid or has expired.")


@dataclass
class ScaleSetRecord:
    """One scale set: ``labels`` are the extra labels; its name is always a label too."""

    id: int
    name: str
    scope: str
    group: RunnerGroup
    labels: list[str]
    disable_update: bool
    created_at: float

    @property
    def label_names(self) -> list[str]:
        extra = [x for x in self.labels if x.lower() != self.name.lower()]
        return [self.name, *extra]


@dataclass
class Session:
    """The one listener session of a scale set. ``queue_token`` is a secret."""

    id: str
    scale_set_id: int
    owner: str
    queue_token: str = field(repr=False)
    queue_token_expires_at: float
    last_active: float
    #: The last ``X-ScaleSetMaxCapacity`` announced; None until the first poll.
    max_capacity: int | None = None
    #: Long polls being held open for it right now: a session being polled never lapses,
    #: however far a virtual clock jumps meanwhile.
    polls_in_flight: int = 0


@dataclass
class _Route:
    """Where a job stands with the scale sets (kept across reassignments)."""

    request_id: int
    state: Literal["pending", "available", "assigned", "running"] = "pending"
    attempt: int = 0
    routed_at: float = 0.0
    #: Scale sets that may never get this job (capacity 0 was announced when it queued).
    excluded: set[int] = field(default_factory=set)


@dataclass
class _Queue:
    """A scale set's messages: events not yet in a message, and unacknowledged messages."""

    outbox: list[ScaleSetEvent] = field(default_factory=list)
    messages: list[tuple[int, tuple[ScaleSetEvent, ...]]] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


def scope_from_config_path(path: str) -> tuple[str, str]:
    """The scope kind and name a config URL's path names: ``/ORG``, ``/OWNER/REPO`` or
    ``/enterprises/NAME`` (``actions/scaleset`` config.go)."""
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) == 2 and parts[0].lower() == "enterprises":
        return "enterprise", parts[1]
    if len(parts) == 1:
        return "org", parts[0]
    if len(parts) == 2:
        return "repo", f"{parts[0]}/{parts[1]}"
    raise ActionsError(
        400,
        "ArgumentException",
        f"The config URL path {path!r} names no scope: use /ORG, /OWNER/REPO or /enterprises/NAME.",
    )


class ScaleSets:
    """The scale-set rules of one simulated GitHub; attach with ``ScaleSets(world)``."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._rng = random.Random(f"scalesets:{world.settings.seed}")
        self._signing_key = world.new_secret("sim-admin-key-")
        self.scale_sets: dict[int, ScaleSetRecord] = {}
        self.sessions: dict[int, Session] = {}
        self._queues: dict[int, _Queue] = {}
        self._routes: dict[int, _Route] = {}
        self._tenants: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._request_ids = itertools.count(900_001)
        world.extensions.append(self)
        world.add_listener(self._on_job_event)

    @property
    def _settings(self) -> WorldSettings:
        """Read live: the control API may replace the world's settings at any time."""
        return self.world.settings

    # ------------------------------------------------------------------ tokens

    def tenant_of(self, scope: str) -> int:
        """The tenant number of a scope (stable for the world's life)."""
        return self._tenants.setdefault(scope.lower(), len(self._tenants) + 1)

    def scope_of_tenant(self, tenant: int) -> str | None:
        for scope, number in self._tenants.items():
            if number == tenant:
                return scope
        return None

    def register(self, registration_token: str, config_path: str) -> tuple[int, str]:
        """``POST /actions/runner-registration``: a registration token of the scope the config
        URL names buys the tenant number and an admin JWT (``exp`` = now + admin token TTL)."""
        found = self.world.valid_token(registration_token, "registration")
        if found is None:
            raise unauthorized("registration token")
        kind, name = scope_from_config_path(config_path)
        scope = self._resolve_scope(kind, name)
        if scope.lower() != found.scope.lower():
            raise ActionsError(
                403,
                "AccessDeniedException",
                f"The registration token is for {found.scope}, not for the config URL's "
                f"{kind} {name}.",
            )
        tenant = self.tenant_of(scope)
        now = self.world.now
        claims = {
            "scope": scope,
            "tenant": tenant,
            "iat": int(now),
            "exp": int(now + self._settings.scale_set_admin_token_ttl),
        }
        return tenant, jwt.encode(claims, self._signing_key, algorithm=ADMIN_TOKEN_ALGORITHM)

    def _resolve_scope(self, kind: str, name: str) -> str:
        try:
            if kind == "enterprise":
                return self.world.scope_for_enterprise(name)
            if kind == "org":
                return self.world.scope_for_org(name)
            owner, _, repo = name.partition("/")
            return self.world.scope_for_repo(owner, repo)
        except ApiError:
            raise ActionsError(
                404, "NotFoundException", f"The config URL names an unknown {kind}: {name}."
            ) from None

    def admin_scope(self, tenant: int, token: str) -> str:
        """The scope an admin token grants on ``tenant``; 401 when forged, expired or for
        another tenant (the expiry is read from the world's clock)."""
        try:
            claims = jwt.decode(
                token,
                self._signing_key,
                algorithms=[ADMIN_TOKEN_ALGORITHM],
                options={"verify_exp": False},
            )
        except jwt.PyJWTError:
            raise unauthorized("admin token") from None
        if claims.get("tenant") != tenant or float(claims.get("exp", 0)) <= self.world.now:
            raise unauthorized("admin token")
        return str(claims["scope"])

    # ------------------------------------------------------------------ scale sets

    def runner_groups(self, scope: str, name: str | None = None) -> list[RunnerGroup]:
        """The scope's runner groups (a repository has only Default), by name if given."""
        if scope.lower() in self.world.runner_groups:
            groups = sorted(self.world.runner_groups[scope.lower()].values(), key=lambda g: g.id)
        else:
            groups = [RunnerGroup(id=DEFAULT_GROUP_ID, name="Default", default=True)]
        if name is not None:
            groups = [g for g in groups if g.name.lower() == name.lower()]
        return groups

    def _group(self, scope: str, group_id: int) -> RunnerGroup:
        for group in self.runner_groups(scope):
            if group.id == group_id:
                return group
        raise ActionsError(
            404, "RunnerGroupNotFoundException", f"Runner group {group_id} not found."
        )

    def find(
        self, scope: str, group_id: int | None = None, name: str | None = None
    ) -> list[ScaleSetRecord]:
        """Scale sets of the scope, in a group and by name (case-insensitive) if given."""
        return [
            s
            for s in sorted(self.scale_sets.values(), key=lambda s: s.id)
            if s.scope.lower() == scope.lower()
            and (group_id is None or s.group.id == group_id)
            and (name is None or s.name.lower() == name.lower())
        ]

    def get(self, scope: str, scale_set_id: int) -> ScaleSetRecord:
        found = self.scale_sets.get(scale_set_id)
        if found is None or found.scope.lower() != scope.lower():
            raise scale_set_not_found(scale_set_id)
        return found

    def create(
        self,
        scope: str,
        name: str,
        group_id: int,
        labels: Iterable[str] = (),
        *,
        disable_update: bool = False,
    ) -> ScaleSetRecord:
        """A new scale set; its name must be unique in the scope (assumed 409)."""
        if not name.strip():
            raise ActionsError(400, "ArgumentException", "A runner scale set needs a name.")
        group = self._group(scope, group_id)
        if self.find(scope, name=name):
            raise ActionsError(
                409,
                "RunnerScaleSetExistsException",
                f"A runner scale set named {name!r} already exists.",
            )
        record = ScaleSetRecord(
            id=next(self._ids),
            name=name,
            scope=scope,
            group=group,
            labels=list(labels),
            disable_update=disable_update,
            created_at=self.world.now,
        )
        self.scale_sets[record.id] = record
        self._queues[record.id] = _Queue()
        self.world.dispatch()
        return record

    def update(
        self,
        scope: str,
        scale_set_id: int,
        *,
        name: str | None = None,
        group_id: int | None = None,
        labels: Iterable[str] | None = None,
    ) -> ScaleSetRecord:
        record = self.get(scope, scale_set_id)
        if name:
            record.name = name
        if group_id is not None:
            record.group = self._group(scope, group_id)
        if labels is not None:
            record.labels = list(labels)
        self.world.dispatch()
        return record

    def delete(self, scope: str | None, scale_set_id: int) -> None:
        """Remove a scale set (``scope`` None: behind everyone's back, the control API). Its
        session ends, its untaken jobs go back to the queue, its idle runners go."""
        record = self.scale_sets.get(scale_set_id)
        if record is None or (scope is not None and record.scope.lower() != scope.lower()):
            raise scale_set_not_found(scale_set_id)
        del self.scale_sets[scale_set_id]
        self.sessions.pop(scale_set_id, None)
        self._queues.pop(scale_set_id, None)
        for job in self.world.jobs.values():
            if job.scale_set_id == scale_set_id and job.status is JobStatus.QUEUED:
                job.scale_set_id = None
                self._routes[job.id].state = "pending"
        for runner in list(self.world.runners.values()):
            if runner.scale_set_id == scale_set_id and not runner.busy:
                self.world.unregister(runner)
        self.world.dispatch()

    # ------------------------------------------------------------------ runners

    def generate_jitconfig(
        self, scope: str, scale_set_id: int, name: str, work_folder: str = "_work"
    ) -> tuple[Runner, str]:
        """Register an ephemeral runner of the scale set: its labels are the scale set's (no
        default labels), and it takes only the scale set's assigned jobs."""
        record = self.get(scope, scale_set_id)
        if not name.strip():
            raise ActionsError(400, "ArgumentException", "A runner needs a name.")
        try:
            runner = self.world.register_jit_runner(
                scope, name, record.label_names, record.group, scale_set_id=record.id
            )
        except ApiError as error:
            raise ActionsError(409, "AgentExistsException", error.message) from None
        return runner, self.world.encode_jitconfig(runner, work_folder)

    def runner(self, scope: str, runner_id: int) -> Runner:
        try:
            return self.world.runner_in(scope, runner_id)
        except ApiError:
            raise ActionsError(
                404, "AgentNotFoundException", f"No runner with id {runner_id} exists."
            ) from None

    def remove_runner(self, scope: str, runner_id: int) -> None:
        """Unregister a runner; a busy one is refused (``JobStillRunningException``)."""
        runner = self.runner(scope, runner_id)
        if runner.busy:
            raise ActionsError(
                400,
                "JobStillRunningException",
                f"Runner {runner.name} is still running a job and cannot be removed.",
            )
        self.world.unregister(runner)
        self.world.dispatch()

    # ------------------------------------------------------------------ sessions

    def _open_session(self, scale_set_id: int) -> Session | None:
        """The scale set's session unless it has lapsed (then it is gone)."""
        session = self.sessions.get(scale_set_id)
        if session is None:
            return None
        lapsed = self.world.now - session.last_active >= self._settings.scale_set_session_lapse
        if lapsed and session.polls_in_flight == 0:
            del self.sessions[scale_set_id]
            return None
        return session

    def create_session(self, scope: str, scale_set_id: int, owner: str) -> Session:
        """The scale set's one session; 409 while another is open."""
        self.get(scope, scale_set_id)
        existing = self._open_session(scale_set_id)
        if existing is not None:
            raise ActionsError(
                409,
                "RunnerScaleSetSessionConflictException",
                f"The runner scale set {scale_set_id} already has an active session for "
                f"owner {existing.owner}.",
            )
        now = self.world.now
        session = Session(
            id=str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
            scale_set_id=scale_set_id,
            owner=owner,
            queue_token=self.world.new_secret("sq_"),
            queue_token_expires_at=now + self._settings.scale_set_queue_token_ttl,
            last_active=now,
        )
        self.sessions[scale_set_id] = session
        return session

    def _session(self, scale_set_id: int, session_id: str) -> Session:
        session = self._open_session(scale_set_id)
        if session is None or session.id != session_id:
            raise ActionsError(
                404,
                "RunnerAdminException",
                "runner referenced a session ID that doesn't exist in redis",
            )
        return session

    def refresh_session(self, scope: str, scale_set_id: int, session_id: str) -> Session:
        """A new queue token for an open session; 404 when the session is gone."""
        self.get(scope, scale_set_id)
        session = self._session(scale_set_id, session_id)
        now = self.world.now
        session.queue_token = self.world.new_secret("sq_")
        session.queue_token_expires_at = now + self._settings.scale_set_queue_token_ttl
        session.last_active = now
        return session

    def delete_session(self, scope: str, scale_set_id: int, session_id: str) -> None:
        """End the session; 400 ``RunnerScaleSetSessionExpiredException`` when it is gone."""
        self.get(scope, scale_set_id)
        session = self._open_session(scale_set_id)
        if session is None or session.id != session_id:
            raise ActionsError(
                400,
                "RunnerScaleSetSessionExpiredException",
                f"The session {session_id} has expired or does not exist.",
            )
        del self.sessions[scale_set_id]

    def _queue_session(
        self, scale_set_id: int, session_id: str | None, queue_token: str
    ) -> Session:
        """The session a queue call acts for (``session_id`` None: whichever holds the
        token): 404 for a gone scale set, 401 for a token that is expired, replaced or of a
        dropped session."""
        if scale_set_id not in self.scale_sets:
            raise scale_set_not_found(scale_set_id)
        session = self._open_session(scale_set_id)
        if (
            session is None
            or (session_id is not None and session.id != session_id)
            or session.queue_token != queue_token
            or self.world.now >= session.queue_token_expires_at
        ):
            raise unauthorized("message queue token")
        session.last_active = self.world.now
        return session

    # ------------------------------------------------------------------ the queue

    def poll_started(self, scale_set_id: int, session_id: str, queue_token: str) -> Session:
        """A long poll is held open for the session (checked like :meth:`get_message`);
        pair with :meth:`poll_ended`."""
        session = self._queue_session(scale_set_id, session_id, queue_token)
        session.polls_in_flight += 1
        return session

    def poll_ended(self, session: Session) -> None:
        session.polls_in_flight = max(0, session.polls_in_flight - 1)
        session.last_active = self.world.now

    def get_message(
        self,
        scale_set_id: int,
        session_id: str,
        queue_token: str,
        last_message_id: int = 0,
        max_capacity: int | None = None,
    ) -> ScaleSetMessage | None:
        """One look at the queue (the HTTP layer holds the poll): the first unacknowledged
        message after ``last_message_id``, else a new one of at most the batch size, else
        None (202). Records the announced capacity first, so freed capacity routes jobs."""
        session = self._queue_session(scale_set_id, session_id, queue_token)
        if max_capacity is not None:
            session.max_capacity = max(0, max_capacity)
            self.world.dispatch()
        queue = self._queues[scale_set_id]
        for message_id, events in queue.messages:
            if message_id > last_message_id:
                return ScaleSetMessage(message_id, self.statistics(scale_set_id), events)
        if not queue.outbox:
            return None
        batch = max(1, self._settings.scale_set_message_batch)
        events = tuple(queue.outbox[:batch])
        del queue.outbox[:batch]
        message_id = next(queue.ids)
        queue.messages.append((message_id, events))
        return ScaleSetMessage(message_id, self.statistics(scale_set_id), events)

    def acknowledge(
        self, scale_set_id: int, session_id: str, queue_token: str, message_id: int
    ) -> None:
        """Delete a message: it is not delivered again (unknown ids are accepted too)."""
        self._queue_session(scale_set_id, session_id, queue_token)
        queue = self._queues[scale_set_id]
        queue.messages = [(mid, ev) for mid, ev in queue.messages if mid != message_id]

    def acquire_jobs(
        self, scale_set_id: int, queue_token: str, request_ids: list[int]
    ) -> list[int]:
        """Take offered jobs (``JobAvailable``) for the scale set: those still offered to it
        become assigned (``JobAssigned``); returns the ids acquired."""
        self._queue_session(scale_set_id, None, queue_token)
        wanted = set(request_ids)
        acquired: list[int] = []
        for job_id, route in sorted(self._routes.items()):
            job = self.world.jobs[job_id]
            if (
                route.request_id in wanted
                and route.state == "available"
                and job.scale_set_id == scale_set_id
            ):
                route.state = "assigned"
                route.routed_at = self.world.now
                acquired.append(route.request_id)
                self._send(scale_set_id, ScaleSetEventKind.JOB_ASSIGNED, job)
        self.world.dispatch()
        return acquired

    def acquirable_jobs(self, scale_set_id: int) -> list[ScaleSetEvent]:
        """Jobs offered to the scale set and not yet acquired (garm's ``acquirablejobs``)."""
        return [
            self._event(ScaleSetEventKind.JOB_AVAILABLE, self.world.jobs[job_id])
            for job_id, route in sorted(self._routes.items())
            if route.state == "available" and self.world.jobs[job_id].scale_set_id == scale_set_id
        ]

    def statistics(self, scale_set_id: int) -> ScaleSetStatistics:
        """The counts sent with every answer; ``assigned_jobs`` counts waiting and running."""
        states = [
            (route.state, job)
            for job_id, route in self._routes.items()
            if (job := self.world.jobs[job_id]).scale_set_id == scale_set_id
            and job.status is not JobStatus.COMPLETED
        ]
        runners = [r for r in self.world.runners.values() if r.scale_set_id == scale_set_id]
        busy = sum(1 for r in runners if r.busy)
        return ScaleSetStatistics(
            available_jobs=sum(1 for state, _ in states if state == "available"),
            acquired_jobs=0,
            assigned_jobs=sum(1 for state, _ in states if state in ("assigned", "running")),
            running_jobs=sum(1 for state, _ in states if state == "running"),
            registered_runners=len(runners),
            busy_runners=busy,
            idle_runners=len(runners) - busy,
        )

    # ------------------------------------------------------------------ behind the listener's back

    def expire_queue_tokens(self, scale_set_id: int | None = None) -> int:
        """Expire the queue tokens now (of one scale set, or all); returns how many."""
        count = 0
        for session in self.sessions.values():
            if scale_set_id is None or session.scale_set_id == scale_set_id:
                session.queue_token_expires_at = self.world.now
                count += 1
        return count

    def drop_sessions(self, scale_set_id: int | None = None) -> int:
        """End sessions server-side (a broker restart); returns how many."""
        dropped = [k for k in self.sessions if scale_set_id is None or k == scale_set_id]
        for key in dropped:
            del self.sessions[key]
        return len(dropped)

    # ------------------------------------------------------------------ routing (WorldExtension)

    def _scopes_of(self, job: Job) -> set[str]:
        repo = job.repo
        scopes = {repo.full_name.lower(), repo.owner.login.lower()}
        if repo.owner.enterprise is not None:
            scopes.add(repo.owner.enterprise.scope.lower())
        return scopes

    def _loads(self) -> Counter[int]:
        """Jobs routed to each scale set and not completed (what its capacity bounds)."""
        loads: Counter[int] = Counter()
        for job_id, route in self._routes.items():
            job = self.world.jobs[job_id]
            if (
                route.state in ("available", "assigned", "running")
                and job.scale_set_id is not None
                and job.status is not JobStatus.COMPLETED
            ):
                loads[job.scale_set_id] += 1
        return loads

    def route(self, queued: list[Job]) -> None:
        """Route queued jobs, oldest first, to a scale set holding all of their labels
        (superset rule), within each scale set's announced capacity."""
        settings = self._settings
        loads: Counter[int] | None = None
        for job in queued:
            if job.scale_set_id is not None:
                continue
            route = self._routes.get(job.id)
            scopes = self._scopes_of(job)
            candidates = [
                s
                for s in sorted(self.scale_sets.values(), key=lambda s: s.id)
                if s.scope.lower() in scopes
                and labels_satisfy(s.label_names, job.labels)
                and (route is None or s.id not in route.excluded)
            ]
            if not candidates:
                continue
            if not settings.scale_sets_before_runners and self.world.ordinary_runner_could_take(
                job
            ):
                continue
            if route is None:
                route = self._routes[job.id] = _Route(request_id=next(self._request_ids))
            loads = self._loads() if loads is None else loads
            chosen = self._choose(route, candidates, loads)
            if chosen is None:
                continue
            loads[chosen.id] += 1
            job.scale_set_id = chosen.id
            route.attempt += 1
            route.routed_at = self.world.now
            if settings.scale_set_job_mode == "available":
                route.state = "available"
                self._send(chosen.id, ScaleSetEventKind.JOB_AVAILABLE, job)
            else:
                route.state = "assigned"
                self._send(chosen.id, ScaleSetEventKind.JOB_ASSIGNED, job)

    def _choose(
        self, route: _Route, candidates: list[ScaleSetRecord], loads: Counter[int]
    ) -> ScaleSetRecord | None:
        """Among matching scale sets with capacity left, prefer those with an open session,
        then draw (GitHub: "distributed arbitrarily", ARC #4004)."""
        fitting: list[ScaleSetRecord] = []
        for record in candidates:
            session = self._open_session(record.id)
            capacity = session.max_capacity if session is not None else None
            if capacity == 0 and self._settings.zero_capacity_is_forever:
                route.excluded.add(record.id)
            elif capacity is None or loads[record.id] < capacity:
                fitting.append(record)
        if self._settings.scale_set_prefer_open_session:
            with_session = [r for r in fitting if self._open_session(r.id) is not None]
            fitting = with_session or fitting
        if len(fitting) <= 1:
            return fitting[0] if fitting else None
        return self._rng.choice(fitting)

    def may_take(self, runner: Runner, job: Job) -> bool:
        route = self._routes.get(job.id)
        return (
            runner.scale_set_id is not None
            and runner.scale_set_id == job.scale_set_id
            and route is not None
            and route.state == "assigned"
        )

    def dormant(self) -> bool:
        """No scale set exists and no job was ever routed to one."""
        return not self.scale_sets and not self._routes

    def tick(self) -> None:
        """Lapse silent sessions; cancel and reassign jobs no runner took in time."""
        for scale_set_id in list(self.sessions):
            self._open_session(scale_set_id)
        now = self.world.now
        settings = self._settings
        for job_id, route in list(self._routes.items()):
            job = self.world.jobs[job_id]
            if (
                route.state not in ("available", "assigned")
                or job.scale_set_id is None
                or job.status is not JobStatus.QUEUED
                or now < route.routed_at + settings.scale_set_assign_timeout * route.attempt
            ):
                continue
            scale_set_id = job.scale_set_id
            self._send(scale_set_id, ScaleSetEventKind.JOB_COMPLETED, job, result="canceled")
            job.scale_set_id = None
            route.state = "pending"
            if route.attempt >= settings.scale_set_max_reassignments:
                self.world.give_up(job, NOT_TAKEN_REASON)
                del self._routes[job_id]

    def next_deadline(self) -> float | None:
        settings = self._settings
        deadlines = [
            s.last_active + settings.scale_set_session_lapse for s in self.sessions.values()
        ]
        deadlines.extend(
            route.routed_at + settings.scale_set_assign_timeout * route.attempt
            for job_id, route in self._routes.items()
            if route.state in ("available", "assigned")
            and self.world.jobs[job_id].status is JobStatus.QUEUED
        )
        return min(deadlines, default=None)

    # ------------------------------------------------------------------ events

    def _on_job_event(self, action: str, job: Job) -> None:
        route = self._routes.get(job.id)
        if job.scale_set_id is None or route is None:
            return
        if action == "in_progress":
            route.state = "running"
            self._send(job.scale_set_id, ScaleSetEventKind.JOB_STARTED, job)
        elif action == "completed":
            result = RESULTS.get(job.conclusion or Conclusion.FAILURE, "failed")
            self._send(job.scale_set_id, ScaleSetEventKind.JOB_COMPLETED, job, result=result)
            del self._routes[job.id]  # its story is told: keep the routing table small

    def _event(self, kind: ScaleSetEventKind, job: Job, result: str | None = None) -> ScaleSetEvent:
        route = self._routes[job.id]
        with_runner = kind in (ScaleSetEventKind.JOB_STARTED, ScaleSetEventKind.JOB_COMPLETED)
        return ScaleSetEvent(
            kind=kind,
            runner_request_id=route.request_id,
            job_id=job.id,
            repository=job.repo.full_name,
            workflow_run_id=job.run.id,
            job_name=job.name,
            labels=tuple(job.labels),
            queued_at=job.created_at,
            runner_id=job.runner_id if with_runner else None,
            runner_name=job.runner_name if with_runner else None,
            result=result,
        )

    def _send(
        self, scale_set_id: int, kind: ScaleSetEventKind, job: Job, result: str | None = None
    ) -> None:
        queue = self._queues.get(scale_set_id)
        if queue is not None:
            queue.outbox.append(self._event(kind, job, result))
