"""The Actions service of runner scale sets, answered in process on the virtual clock.

The daemon's scale-set pools talk to GitHub through :class:`~runnerscale.scaleset_api.
ScaleSetAPI` (over HTTP: :mod:`runnerscale.github.scaleset`). ``runnerscale simulate`` gives
the same controller (its listeners and registrars, wired by :func:`runnerscale.wiring.
build_controller` with ``scale_sets=``) this in-process implementation over the simulated
world's :class:`~runnerscale.fakegithub.scalesets.ScaleSets` rules instead: no socket, no
JSON, the same answers.

Every call is one request of the simulated GitHub
(:meth:`~runnerscale.simulation.github.SimulatedGitHub.actions_service`), named
``actions-service/<operation>`` (the HTTP simulator's operation names), so it is counted
apart from REST (:func:`~runnerscale.fakegithub.accounting.api_of`) and the fault plan can
fail it. The authentication chain is the client's: a REST registration token (charged), then
``actions/runner-registration`` for the admin token, again whenever that is due for renewal.

The long poll waits in virtual time: :class:`SimulatedScaleSetSession.next_message` looks at
the queue, and while it is empty waits for the engine's next change (``wait``) up to the
world's ``scale_set_poll_hold``, then answers None (the 202).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager

from runnerscale.fakegithub.scalesets import ActionsError, ScaleSets, Session
from runnerscale.model import Target
from runnerscale.protocols import DeleteOutcome, GitHubError, JitConfig
from runnerscale.scaleset_api import (
    ScaleSet,
    ScaleSetGoneError,
    ScaleSetMessage,
    ScaleSetSpec,
    ScaleSetStatistics,
)
from runnerscale.simulation.github import SimulatedGitHub

__all__ = ["ChangeWait", "SimulatedScaleSetAPI", "SimulatedScaleSetSession"]

#: The client renews its admin token when less than this is left (as the HTTP client does).
ADMIN_RENEW_BEFORE = 60.0

#: Waits until the simulated world may have changed, or until the given time at the latest.
ChangeWait = Callable[[float], Awaitable[None]]


class _Calls:
    """Requests to the Actions service, with its refusals as the client raises them."""

    def __init__(self, github: SimulatedGitHub) -> None:
        self.github = github

    @contextmanager
    def request(self, operation: str) -> Iterator[None]:
        try:
            with self.github.actions_service(operation):
                yield
        except ActionsError as error:
            if error.type_name == "RunnerScaleSetNotFoundException":
                raise ScaleSetGoneError(error.message, status=error.status) from None
            raise GitHubError(
                f"{operation}: {error.type_name}: {error.message}", status=error.status
            ) from None


class SimulatedScaleSetSession:
    """A listener's session on one scale set (the in-process :class:`ScaleSetSession`)."""

    def __init__(
        self,
        api: SimulatedScaleSetAPI,
        scale_set: ScaleSet,
        owner: str,
        session: Session,
        scope: str,
    ) -> None:
        self._api = api
        self._scope = scope
        self._scale_set = scale_set
        self._owner = owner
        self._session = session
        self._statistics = api.rules.statistics(scale_set.id)

    @property
    def statistics(self) -> ScaleSetStatistics:
        return self._statistics

    async def next_message(self, last_message_id: int, max_capacity: int) -> ScaleSetMessage | None:
        """One long poll: a message at once when one waits, else wait for a change in virtual
        time until the poll hold, then None (202). An expired queue token is refreshed (the
        client's answer to the 401, also mid-poll); a lapsed session is opened again."""
        rules = self._api.rules
        with self._api.calls.request("broker/get-message"):
            session = self._polling_session()
            rules.poll_started(self._scale_set.id, session.id, session.queue_token)
            try:
                deadline = rules.world.now + rules.world.settings.scale_set_poll_hold
                capacity: int | None = max_capacity
                while True:
                    if self._polling_session() is not session:
                        return None  # opened again meanwhile: the next poll uses it
                    message = rules.get_message(
                        self._scale_set.id,
                        session.id,
                        session.queue_token,
                        last_message_id,
                        capacity,
                    )
                    capacity = None  # announced once per poll
                    if message is not None:
                        self._statistics = message.statistics
                        return message
                    if rules.world.now >= deadline:
                        return None
                    await self._api.wait(deadline)
            finally:
                rules.poll_ended(session)

    def _polling_session(self) -> Session:
        """The session to poll with: refreshed when its queue token has expired (a 401 and a
        ``sessions/refresh``), opened again when the service dropped it (a 404)."""
        rules = self._api.rules
        now = rules.world.now
        current = rules.sessions.get(self._scale_set.id)
        if current is not None and current.id == self._session.id:
            if now >= current.queue_token_expires_at:
                with self._api.calls.request("sessions/refresh"):
                    self._session = rules.refresh_session(
                        self._scope, self._scale_set.id, current.id
                    )
            return self._session
        with self._api.calls.request("sessions/create"):
            self._session = rules.create_session(self._scope, self._scale_set.id, self._owner)
        return self._session

    async def acknowledge(self, message_id: int) -> None:
        with self._api.calls.request("broker/delete-message"):
            self._api.rules.acknowledge(
                self._scale_set.id, self._session.id, self._session.queue_token, message_id
            )

    async def acquire_jobs(self, runner_request_ids: Sequence[int]) -> list[int]:
        with self._api.calls.request("runnerscalesets/acquirejobs"):
            return self._api.rules.acquire_jobs(
                self._scale_set.id, self._session.queue_token, list(runner_request_ids)
            )

    async def close(self) -> None:
        """Delete the session; never raises (a session already gone is fine)."""
        try:
            with self._api.calls.request("sessions/delete"):
                self._api.rules.delete_session(self._scope, self._scale_set.id, self._session.id)
        except GitHubError:
            pass


class SimulatedScaleSetAPI:
    """The Actions-service side of one target, over the world's scale-set rules."""

    def __init__(
        self, rules: ScaleSets, github: SimulatedGitHub, target: Target, wait: ChangeWait
    ) -> None:
        self.rules = rules
        self.github = github
        self.calls = _Calls(github)
        self.target = target
        self.wait = wait
        #: The admin token's tenant, the token (a secret), and when it expires.
        self._admin: tuple[int, str, float] | None = None

    async def scope(self) -> str:
        """The scope the admin token grants, after the authentication chain when it is due:
        a registration token (REST), traded at ``actions/runner-registration`` for the
        tenant and an admin JWT."""
        world = self.rules.world
        if self._admin is None or world.now >= self._admin[2] - ADMIN_RENEW_BEFORE:
            token, _ = await self.github.registration_token(self.target)
            self.github.ledger.asked("actions/runner-registration")
            path = ("/" + self.target.name) if self.target.kind in ("org", "repo") else ""
            try:
                tenant, admin_token = self.rules.register(token, path)
            except ActionsError as error:
                raise GitHubError(
                    f"runner-registration: {error.type_name}: {error.message}",
                    status=error.status,
                ) from None
            self._admin = (
                tenant,
                admin_token,
                world.now + world.settings.scale_set_admin_token_ttl,
            )
        tenant, admin_token, _ = self._admin
        return self.rules.admin_scope(tenant, admin_token)

    async def ensure_scale_set(self, spec: ScaleSetSpec) -> ScaleSet:
        """Find by name in the runner group; create when absent; update labels that differ."""
        scope = await self.scope()
        with self.calls.request("runnergroups/list"):
            groups = self.rules.runner_groups(scope, spec.runner_group)
        if not groups:
            raise GitHubError(
                f"runner group {spec.runner_group!r} does not exist at {self.target.name}: "
                "create it, or name an existing one in scale_set.runner_group"
            )
        with self.calls.request("runnerscalesets/list"):
            found = self.rules.find(scope, groups[0].id, spec.name)
        if not found:
            with self.calls.request("runnerscalesets/create"):
                record = self.rules.create(scope, spec.name, groups[0].id, spec.labels)
        else:
            record = found[0]
            if [x.lower() for x in record.labels] != [x.lower() for x in spec.labels]:
                with self.calls.request("runnerscalesets/update"):
                    record = self.rules.update(scope, record.id, labels=spec.labels)
        return ScaleSet(
            record.id, record.name, record.group.id, record.group.name, tuple(record.label_names)
        )

    async def open_session(self, scale_set: ScaleSet, owner: str) -> SimulatedScaleSetSession:
        """Open the session; while another holds it (409), wait in virtual time for it to
        lapse, as the client backs off."""
        scope = await self.scope()
        delay = 1.0
        while True:
            try:
                with self.calls.request("sessions/create"):
                    session = self.rules.create_session(scope, scale_set.id, owner)
                return SimulatedScaleSetSession(self, scale_set, owner, session, scope)
            except GitHubError as error:
                if error.status != 409:
                    raise
            await self.rules.world.clock.sleep(delay)
            delay = min(15.0, delay * 2)

    async def generate_jitconfig(self, scale_set: ScaleSet, name: str) -> JitConfig:
        scope = await self.scope()
        with self.calls.request("runnerscalesets/generatejitconfig"):
            runner, encoded = self.rules.generate_jitconfig(scope, scale_set.id, name)
        return JitConfig(runner_id=runner.id, encoded=encoded)

    async def remove_runner(self, runner_id: int) -> DeleteOutcome:
        scope = await self.scope()
        try:
            with self.calls.request("agents/remove"):
                self.rules.remove_runner(scope, runner_id)
        except GitHubError as error:
            if error.status == 404:
                return DeleteOutcome.GONE
            if error.status == 400:
                return DeleteOutcome.BUSY
            raise
        return DeleteOutcome.DELETED

    async def delete_scale_set(self, scale_set_id: int) -> None:
        scope = await self.scope()
        with self.calls.request("runnerscalesets/delete"):
            self.rules.delete(scope, scale_set_id)

    async def close(self) -> None:
        """Nothing to release."""
