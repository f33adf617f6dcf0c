"""Webhooks of the simulated GitHub: hooks, and the deliveries they get.

On GitHub a webhook belongs to a resource, and the resource decides what it hears and how it
is addressed: a repository hook hears its repository, an organisation hook every repository
of the organisation, and the App's webhook every repository of every installation. Each
delivery carries the headers of *its* hook (``X-GitHub-Hook-ID``, and
``X-GitHub-Hook-Installation-Target-Type``/``-ID`` naming the hook's resource), and only the
App's webhook gets the payload's ``installation``. Autoscalers route deliveries on those
headers, so the simulator keeps them exact. A hook hears only the events it subscribed to
(``workflow_job`` or ``*``), except ``ping``, which every active hook gets when it is created
and when it is pinged.

``--webhook-url`` (:meth:`WebhookHub.add_hook`) is the App's webhook when the simulator serves
an App; without one it stands for an organisation hook on every organisation and a repository
hook on every user's repository (users have no organisation hooks), so one URL hears
everything, addressed as those hooks would be.

Each event becomes one delivery per hook that hears it, all sharing the event's GUID (as the
deliveries API describes ``guid``), rendered at the moment of the event (later changes to the
job do not leak into an earlier delivery). Deliveries leave through an outbox in order; fault
injection can drop, duplicate or reorder them. Like GitHub, a failed delivery is not retried on
its own: it stays in the delivery log, where the REST API (``.../hooks/{id}/deliveries``) and
the control API can read it and ask for a redelivery.

Sending is pluggable (:class:`Sender`): over HTTP with httpx for the standalone server, or a
direct call for the in-process simulation.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol
from urllib.parse import parse_qs

from runnerscale.clock import Clock, iso8601
from runnerscale.fakegithub import shapes
from runnerscale.fakegithub.entities import Job, Owner, OwnerType, Repo
from runnerscale.fakegithub.faults import Faults
from runnerscale.fakegithub.webhook_payloads import (
    GITHUB_ZEN,
    ContentType,
    encode_body,
    ping_payload,
    webhook_delivery_headers,
    workflow_job_payload,
)
from runnerscale.fakegithub.world import ApiError, World, not_found
from runnerscale.github.webhooks import HEADER_TARGET_ID, HEADER_TARGET_TYPE

#: How long a delivery held back for reordering waits for a successor before it goes anyway.
REORDER_HOLD_SECONDS = 1.0

#: The event names a repository or organisation hook may subscribe to (GitHub's webhook
#: events, less the App-only ones such as ``installation``), and ``*`` for all of them. The
#: simulator only ever sends ``workflow_job`` and ``ping``; the others are accepted and wait.
HOOK_EVENTS: Final = frozenset(
    {
        "*",
        "branch_protection_configuration",
        "branch_protection_rule",
        "check_run",
        "check_suite",
        "code_scanning_alert",
        "commit_comment",
        "create",
        "custom_property",
        "custom_property_values",
        "delete",
        "dependabot_alert",
        "deploy_key",
        "deployment",
        "deployment_protection_rule",
        "deployment_review",
        "deployment_status",
        "discussion",
        "discussion_comment",
        "fork",
        "gollum",
        "issue_comment",
        "issue_dependencies",
        "issues",
        "label",
        "member",
        "membership",
        "merge_group",
        "meta",
        "milestone",
        "org_block",
        "organization",
        "package",
        "page_build",
        "project",
        "project_card",
        "project_column",
        "projects_v2",
        "projects_v2_item",
        "public",
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "pull_request_review_thread",
        "push",
        "registry_package",
        "release",
        "repository",
        "repository_advisory",
        "repository_dispatch",
        "repository_import",
        "repository_ruleset",
        "repository_vulnerability_alert",
        "secret_scanning_alert",
        "secret_scanning_alert_location",
        "security_and_analysis",
        "sponsorship",
        "star",
        "status",
        "sub_issues",
        "team",
        "team_add",
        "watch",
        "workflow_dispatch",
        "workflow_job",
        "workflow_run",
    }
)

#: What a hook created without ``events`` hears (GitHub's default).
DEFAULT_EVENTS: Final = ("push",)

#: What GitHub shows instead of a hook's secret: it is write-only.
SECRET_MASK: Final = "********"  # noqa: S105 - a mask, not a secret

#: The status code GitHub reports for a delivery that never got an HTTP answer.
NO_RESPONSE_CODE: Final = 502


class Sender(Protocol):
    async def __call__(self, url: str, headers: dict[str, str], body: bytes) -> int:
        """Deliver one request; return the HTTP status, raise on a transport failure."""
        ...


class HookKind(StrEnum):
    """Where a hook was created, which decides what it hears and how it is addressed."""

    REPOSITORY = "repository"
    ORGANIZATION = "organization"
    APP = "app"
    #: ``--webhook-url`` without an App: an organisation hook on every organisation and a
    #: repository hook on every user-owned repository.
    EVERY_OWNER = "every-owner"


@dataclass(eq=False)
class Hook:
    """One webhook. ``repo`` is set for repository hooks, ``org`` for organisation hooks.

    ``last_response`` is GitHub's ``hook-response``: code, status and message of the latest
    attempt (``unused`` until there is one).
    """

    id: int
    kind: HookKind
    url: str
    secret: str | None = None
    events: tuple[str, ...] = ("*",)
    active: bool = True
    content_type: ContentType = "json"
    insecure_ssl: str = "0"
    repo: Repo | None = None
    org: Owner | None = None
    created_at: float = 0.0
    last_response: tuple[int | None, str, str | None] = (None, "unused", None)

    def hears(self, event: str) -> bool:
        return self.active and ("*" in self.events or event in self.events)

    def public(self) -> dict[str, Any]:
        """The control API's view (``GET /_sim/hooks``); the secret never leaves."""
        return {
            "id": self.id,
            "url": self.url,
            "has_secret": bool(self.secret),
            "kind": self.kind.value,
            "repo": self.repo.full_name if self.repo is not None else None,
            "org": self.org.login if self.org is not None else None,
            "events": list(self.events),
            "active": self.active,
            "content_type": self.content_type,
        }


@dataclass(eq=False)
class Delivery:
    id: int
    guid: str
    hook: Hook
    event: str
    action: str | None
    body: bytes
    headers: dict[str, str]
    created_at: float
    job_id: int | None = None
    repository_id: int | None = None
    installation_id: int | None = None
    redelivery: bool = False
    status: str = "pending"  # pending, delivered, failed, dropped
    status_code: int | None = None
    error: str | None = None
    delivered_at: float | None = None
    duration: float | None = None

    @property
    def attempted(self) -> bool:
        """Whether it went out (GitHub lists only deliveries it attempted)."""
        return self.status in ("delivered", "failed")

    def public(self, *, with_payload: bool = False) -> dict[str, Any]:
        """The control API's view (``GET /_sim/deliveries``)."""
        record: dict[str, Any] = {
            "id": self.id,
            "guid": self.guid,
            "hook_id": self.hook.id,
            "url": self.hook.url,
            "event": self.event,
            "action": self.action,
            "job_id": self.job_id,
            "target_type": self.headers.get(HEADER_TARGET_TYPE),
            "target_id": self.headers.get(HEADER_TARGET_ID),
            "redelivery": self.redelivery,
            "status": self.status,
            "status_code": self.status_code,
            "error": self.error,
            "delivered_at": iso8601(self.delivered_at) if self.delivered_at else None,
            "duration": self.duration,
        }
        if with_payload:
            record["payload"] = _decode_body(self.body, self.hook.content_type)
        return record

    def item(self) -> dict[str, Any]:
        """GitHub's ``hook-delivery-item`` (the REST deliveries list)."""
        code = self.status_code if self.status_code is not None else NO_RESPONSE_CODE
        return {
            "id": self.id,
            "guid": self.guid,
            "delivered_at": iso8601(self.delivered_at or self.created_at),
            "redelivery": self.redelivery,
            "duration": self.duration or 0.0,
            "status": _status_text(self.status_code, self.error),
            "status_code": code,
            "event": self.event,
            "action": self.action,
            "installation_id": self.installation_id,
            "repository_id": self.repository_id,
            "throttled_at": None,
        }


def _status_text(code: int | None, error: str | None) -> str:
    """How GitHub words an attempt's outcome in a delivery's ``status``."""
    if code is None:
        return "failed to connect" if error else "pending"
    return "OK" if 200 <= code < 300 else f"Invalid HTTP Response: {code}"


def _decode_body(body: bytes, content_type: ContentType) -> Any:
    if content_type == "form":
        return json.loads(parse_qs(body.decode())["payload"][0])
    return json.loads(body)


@dataclass
class _Outbox:
    queue: deque[Delivery] = field(default_factory=deque)
    held: Delivery | None = None
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)


class WebhookHub:
    def __init__(
        self,
        world: World,
        faults: Faults,
        clock: Clock,
        *,
        web_url: str,
        api_url: str,
    ) -> None:
        self.world = world
        self.faults = faults
        self.clock = clock
        self.web_url = web_url
        self.api_url = api_url
        self.urls = shapes.Urls(api=api_url.rstrip("/"), web=web_url.rstrip("/"))
        self.hooks: list[Hook] = []
        self.log: list[Delivery] = []
        self._ids = itertools.count(1)
        self._outbox = _Outbox()
        world.add_listener(self.on_job_event)

    # ------------------------------------------------------------------ hooks

    def add_hook(self, url: str, secret: str | None = None) -> Hook:
        """A ``--webhook-url`` hook: the App's webhook in App mode, else one that hears every
        owner (see the module docstring). It hears every event and sends no ``ping``."""
        kind = HookKind.APP if self.world.settings.app_id is not None else HookKind.EVERY_OWNER
        hook = Hook(
            id=next(self._ids), kind=kind, url=url, secret=secret, created_at=self.clock.now()
        )
        self.hooks.append(hook)
        return hook

    def create_hook(
        self,
        *,
        url: str,
        repo: Repo | None = None,
        org: Owner | None = None,
        secret: str | None = None,
        events: tuple[str, ...] = DEFAULT_EVENTS,
        active: bool = True,
        content_type: ContentType = "form",
        insecure_ssl: str = "0",
    ) -> Hook:
        """A repository (``repo``) or organisation (``org``) hook, as ``POST .../hooks``
        makes one; it is pinged at once. GitHub refuses a second hook with the same URL on
        the same resource when their events overlap (422)."""
        if (repo is None) == (org is None):
            raise ValueError("a hook belongs to exactly one repository or organisation")
        kind = HookKind.REPOSITORY if repo is not None else HookKind.ORGANIZATION
        for other in self.hooks_of(repo=repo, org=org):
            overlap = "*" in other.events or "*" in events or set(other.events) & set(events)
            if other.url == url and overlap:
                where = "repository" if repo is not None else "organization"
                raise ApiError(
                    422,
                    "Validation Failed",
                    [
                        {
                            "resource": "Hook",
                            "code": "custom",
                            "message": f"Hook already exists on this {where}",
                        }
                    ],
                )
        hook = Hook(
            id=next(self._ids),
            kind=kind,
            url=url,
            secret=secret or None,
            events=events,
            active=active,
            content_type=content_type,
            insecure_ssl=insecure_ssl,
            repo=repo,
            org=org,
            created_at=self.clock.now(),
        )
        self.hooks.append(hook)
        self.ping(hook)
        return hook

    def hooks_of(self, *, repo: Repo | None = None, org: Owner | None = None) -> list[Hook]:
        """The hooks created on ``repo`` (repository hooks) or on ``org``, oldest first."""
        if repo is not None:
            return [h for h in self.hooks if h.kind is HookKind.REPOSITORY and h.repo is repo]
        return [h for h in self.hooks if h.kind is HookKind.ORGANIZATION and h.org is org]

    def hook_of(self, hook_id: int, *, repo: Repo | None = None, org: Owner | None = None) -> Hook:
        """Hook ``hook_id`` of that repository or organisation; 404 for any other."""
        for hook in self.hooks_of(repo=repo, org=org):
            if hook.id == hook_id:
                return hook
        raise not_found()

    def delete_hook(self, hook: Hook) -> None:
        """Forget the hook: it hears nothing more, and its deliveries leave the REST API."""
        self.hooks.remove(hook)

    def deliveries_of(self, hook: Hook) -> list[Delivery]:
        """The hook's attempted deliveries, newest first (the REST deliveries list)."""
        return [d for d in reversed(self.log) if d.hook is hook and d.attempted]

    def hook_body(self, hook: Hook, urls: shapes.Urls | None = None) -> dict[str, Any]:
        """The REST ``hook`` (repository) or ``org-hook`` body, also sent inside a ``ping``;
        its URLs are built on ``urls`` (default: the hub's). The secret is write-only: GitHub
        shows a mask when there is one."""
        urls = urls or self.urls
        config: dict[str, Any] = {
            "content_type": hook.content_type,
            "insecure_ssl": hook.insecure_ssl,
            "url": hook.url,
        }
        if hook.secret:
            config["secret"] = SECRET_MASK
        created = iso8601(hook.created_at)
        body: dict[str, Any] = {
            "type": "Repository",
            "id": hook.id,
            "name": "web",
            "active": hook.active,
            "events": list(hook.events),
            "config": config,
            "updated_at": created,
            "created_at": created,
        }
        if hook.repo is not None:
            base = f"{urls.api}/repos/{hook.repo.full_name}/hooks/{hook.id}"
            body["test_url"] = f"{base}/test"
            code, status, message = hook.last_response
            body["last_response"] = {"code": code, "status": status, "message": message}
        elif hook.org is not None:
            body["type"] = "Organization"
            base = f"{urls.api}/orgs/{hook.org.login}/hooks/{hook.id}"
        else:
            raise ValueError(f"hook {hook.id} is no repository or organisation hook")
        body["url"] = base
        body["ping_url"] = f"{base}/pings"
        body["deliveries_url"] = f"{base}/deliveries"
        return body

    # ------------------------------------------------------------------ producing deliveries

    def _hears_repo(self, hook: Hook, repo: Repo) -> bool:
        if hook.kind is HookKind.REPOSITORY:
            return hook.repo is repo
        if hook.kind is HookKind.ORGANIZATION:
            return hook.org is repo.owner
        if hook.kind is HookKind.APP:
            return self._installation_id(repo.owner) is not None
        return True

    def _installation_id(self, owner: Owner) -> int | None:
        if self.world.settings.app_id is None:
            return None
        try:
            return self.world.installation_for(owner).id
        except ApiError:
            return None

    def _target(self, hook: Hook, repo: Repo | None = None) -> tuple[str, int]:
        """``X-GitHub-Hook-Installation-Target-Type`` and ``-ID`` of ``hook``'s deliveries
        (for an every-owner hook, of its deliveries about ``repo``)."""
        if hook.repo is not None:
            return "repository", hook.repo.id
        if hook.org is not None:
            return "organization", hook.org.id
        if hook.kind is HookKind.APP:
            return "integration", self.world.settings.app_id or 0
        if repo is None:
            raise ValueError("an every-owner hook is addressed per repository")
        if repo.owner.type is OwnerType.ORGANIZATION:
            return "organization", repo.owner.id
        return "repository", repo.id

    def on_job_event(self, action: str, job: Job) -> None:
        repo = job.repo
        hooks = [h for h in self.hooks if h.hears("workflow_job") and self._hears_repo(h, repo)]
        if not hooks:
            return
        guid = self.world.new_uuid()
        payloads: dict[int | None, dict[str, Any]] = {}
        for hook in hooks:
            installation_id = (
                self._installation_id(repo.owner) if hook.kind is HookKind.APP else None
            )
            payload = payloads.get(installation_id)
            if payload is None:
                payload = workflow_job_payload(
                    action,
                    job,
                    web_url=self.web_url,
                    api_url=self.api_url,
                    installation_id=installation_id,
                )
                payloads[installation_id] = payload
            delivery = self._new_delivery(
                hook,
                guid=guid,
                event="workflow_job",
                action=action,
                payload=payload,
                target=self._target(hook, repo),
                job_id=job.id,
                repository_id=repo.id,
                installation_id=installation_id,
            )
            self._enqueue_with_faults(delivery)

    def ping(self, hook: Hook) -> Delivery | None:
        """Send a repository or organisation hook a ``ping`` (on creation and on
        ``POST .../pings``); an inactive hook sends nothing."""
        if not hook.active:
            return None
        zen = GITHUB_ZEN[(len(self.log) + hook.id) % len(GITHUB_ZEN)]
        payload = ping_payload(
            self.hook_body(hook), zen=zen, urls=self.urls, repo=hook.repo, organization=hook.org
        )
        delivery = self._new_delivery(
            hook,
            guid=self.world.new_uuid(),
            event="ping",
            action=None,
            payload=payload,
            target=self._target(hook),
            repository_id=hook.repo.id if hook.repo is not None else None,
        )
        self._enqueue_with_faults(delivery)
        return delivery

    def _new_delivery(
        self,
        hook: Hook,
        *,
        guid: str,
        event: str,
        action: str | None,
        payload: dict[str, Any],
        target: tuple[str, int],
        job_id: int | None = None,
        repository_id: int | None = None,
        installation_id: int | None = None,
    ) -> Delivery:
        body = encode_body(payload, hook.content_type)
        headers = webhook_delivery_headers(
            event=event,
            delivery_id=guid,
            hook_id=hook.id,
            body=body,
            secret=hook.secret,
            target_type=target[0],
            target_id=target[1],
            content_type=hook.content_type,
        )
        return self._record(
            Delivery(
                id=0,
                guid=guid,
                hook=hook,
                event=event,
                action=action,
                body=body,
                headers=headers,
                created_at=self.clock.now(),
                job_id=job_id,
                repository_id=repository_id,
                installation_id=installation_id,
            )
        )

    def _record(self, delivery: Delivery) -> Delivery:
        delivery.id = len(self.log) + 1
        self.log.append(delivery)
        return delivery

    def _enqueue_with_faults(self, delivery: Delivery) -> None:
        plan = self.faults.plan.webhooks
        if self.faults.chance(plan.drop_rate):
            delivery.status = "dropped"
            delivery.error = "dropped by fault injection"
            return
        outbox = self._outbox
        copies = [delivery]
        if self.faults.chance(plan.duplicate_rate):
            copies.append(delivery)
        if outbox.held is not None:
            outbox.queue.extend(copies)
            outbox.queue.append(outbox.held)
            outbox.held = None
        elif self.faults.chance(plan.reorder_rate):
            outbox.held = delivery
            outbox.queue.extend(copies[1:])
        else:
            outbox.queue.extend(copies)
        outbox.wakeup.set()

    def redeliver(self, delivery_id: int) -> Delivery:
        """Queue a fresh attempt of a logged delivery: a new delivery id, the same GUID,
        body and headers, marked as a redelivery (as GitHub does)."""
        if not 1 <= delivery_id <= len(self.log):
            raise KeyError(delivery_id)
        original = self.log[delivery_id - 1]
        again = self._record(
            Delivery(
                id=0,
                guid=original.guid,
                hook=original.hook,
                event=original.event,
                action=original.action,
                body=original.body,
                headers=original.headers,
                created_at=self.clock.now(),
                job_id=original.job_id,
                repository_id=original.repository_id,
                installation_id=original.installation_id,
                redelivery=True,
            )
        )
        self._outbox.queue.append(again)
        self._outbox.wakeup.set()
        return again

    # ------------------------------------------------------------------ sending

    def holds(self, delivery: Delivery) -> bool:
        """Whether ``delivery`` is held back to leave later (a reordered one)."""
        return self._outbox.held is delivery

    def take_ready(self) -> list[Delivery]:
        """Everything that may leave now, in order (a held delivery leaves after its hold)."""
        outbox = self._outbox
        held = outbox.held
        if held is not None and self.clock.now() - held.created_at >= REORDER_HOLD_SECONDS:
            outbox.queue.append(held)
            outbox.held = None
        ready = list(outbox.queue)
        outbox.queue.clear()
        return ready

    async def send(self, delivery: Delivery, sender: Sender) -> None:
        started = self.clock.now()
        hook = delivery.hook
        try:
            code = await sender(hook.url, delivery.headers, delivery.body)
        except Exception as error:  # any transport failure is a failed delivery
            delivery.status = "failed"
            delivery.error = f"{type(error).__name__}: {error}"
            hook.last_response = (None, "failed", _status_text(None, delivery.error))
        else:
            delivery.status_code = code
            delivery.status = "delivered" if 200 <= code < 300 else "failed"
            ok = delivery.status == "delivered"
            hook.last_response = (
                code,
                "active" if ok else "misconfigured",
                _status_text(code, None),
            )
        delivery.delivered_at = self.clock.now()
        delivery.duration = round(delivery.delivered_at - started, 6)

    async def run(self, sender: Sender) -> None:
        """Deliver forever, in order, one at a time (GitHub does not pipeline a hook)."""
        outbox = self._outbox
        while True:
            for delivery in self.take_ready():
                await self.send(delivery, sender)
            outbox.wakeup.clear()
            if outbox.queue:
                continue
            timeout = REORDER_HOLD_SECONDS if outbox.held is not None else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await outbox.wakeup.wait()
