"""Webhook delivery for the simulated GitHub.

Each job transition becomes one ``workflow_job`` delivery per configured hook, with GitHub's
payload and headers, rendered at the moment of the transition (later changes to the job do not
leak into an earlier delivery). Deliveries leave through an outbox in order; fault injection can
drop, duplicate or reorder them. Like GitHub, a failed delivery is not retried on its own: it
stays in the delivery log, where the control API can read it and ask for a redelivery.

Sending is pluggable (:class:`Sender`): over HTTP with httpx for the standalone server, or a
direct call for the in-process simulation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from runnerscale.clock import Clock, iso8601
from runnerscale.sim.entities import Job, OwnerType
from runnerscale.sim.faults import Faults
from runnerscale.sim.webhook_payloads import webhook_delivery_headers, workflow_job_payload
from runnerscale.sim.world import World

#: How long a delivery held back for reordering waits for a successor before it goes anyway.
REORDER_HOLD_SECONDS = 1.0


class Sender(Protocol):
    async def __call__(self, url: str, headers: dict[str, str], body: bytes) -> int:
        """Deliver one request; return the HTTP status, raise on a transport failure."""
        ...


@dataclass(frozen=True)
class Hook:
    id: int
    url: str
    secret: str | None = None

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "has_secret": self.secret is not None}


@dataclass
class Delivery:
    id: int
    guid: str
    hook: Hook
    action: str
    job_id: int
    body: bytes
    headers: dict[str, str]
    created_at: float
    redelivery: bool = False
    status: str = "pending"  # pending, delivered, failed, dropped
    status_code: int | None = None
    error: str | None = None
    delivered_at: float | None = None
    duration: float | None = None

    def public(self, *, with_payload: bool = False) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": self.id,
            "guid": self.guid,
            "hook_id": self.hook.id,
            "url": self.hook.url,
            "event": "workflow_job",
            "action": self.action,
            "job_id": self.job_id,
            "redelivery": self.redelivery,
            "status": self.status,
            "status_code": self.status_code,
            "error": self.error,
            "delivered_at": iso8601(self.delivered_at) if self.delivered_at else None,
            "duration": self.duration,
        }
        if with_payload:
            record["payload"] = json.loads(self.body)
        return record


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
        self.hooks: list[Hook] = []
        self.log: list[Delivery] = []
        self._outbox = _Outbox()
        world.add_listener(self.on_job_event)

    # ------------------------------------------------------------------ configuration

    def add_hook(self, url: str, secret: str | None = None) -> Hook:
        hook = Hook(id=len(self.hooks) + 1, url=url, secret=secret)
        self.hooks.append(hook)
        return hook

    # ------------------------------------------------------------------ producing deliveries

    def on_job_event(self, action: str, job: Job) -> None:
        if not self.hooks:
            return
        owner = job.repo.owner
        installation_id = None
        if self.world.settings.app_id is not None:
            installation_id = self.world.installation_for(owner).id
        payload = workflow_job_payload(
            action, job, web_url=self.web_url, api_url=self.api_url, installation_id=installation_id
        )
        body = json.dumps(payload, separators=(",", ":")).encode()
        if installation_id is not None:
            target_type, target_id = "integration", self.world.settings.app_id or 0
        elif owner.type is OwnerType.ORGANIZATION:
            target_type, target_id = "organization", owner.id
        else:
            target_type, target_id = "repository", job.repo.id
        for hook in self.hooks:
            guid = self.world.new_uuid()
            headers = webhook_delivery_headers(
                event="workflow_job",
                delivery_id=guid,
                hook_id=hook.id,
                body=body,
                secret=hook.secret,
                target_type=target_type,
                target_id=target_id,
            )
            delivery = self._record(
                hook, guid=guid, action=action, job_id=job.id, body=body, headers=headers
            )
            self._enqueue_with_faults(delivery)

    def _record(
        self,
        hook: Hook,
        *,
        guid: str,
        action: str,
        job_id: int,
        body: bytes,
        headers: dict[str, str],
        redelivery: bool = False,
    ) -> Delivery:
        delivery = Delivery(
            id=len(self.log) + 1,
            guid=guid,
            hook=hook,
            action=action,
            job_id=job_id,
            body=body,
            headers=headers,
            created_at=self.clock.now(),
            redelivery=redelivery,
        )
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
        """Queue a fresh attempt of a logged delivery (same GUID, as GitHub does)."""
        if not 1 <= delivery_id <= len(self.log):
            raise KeyError(delivery_id)
        original = self.log[delivery_id - 1]
        again = self._record(
            original.hook,
            guid=original.guid,
            action=original.action,
            job_id=original.job_id,
            body=original.body,
            headers=original.headers,
            redelivery=True,
        )
        self._outbox.queue.append(again)
        self._outbox.wakeup.set()
        return again

    # ------------------------------------------------------------------ sending

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
        try:
            code = await sender(delivery.hook.url, delivery.headers, delivery.body)
        except Exception as error:  # any transport failure is a failed delivery
            delivery.status = "failed"
            delivery.error = f"{type(error).__name__}: {error}"
        else:
            delivery.status_code = code
            delivery.status = "delivered" if 200 <= code < 300 else "failed"
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
                await asyncio.wait_for(outbox.wakeup.wait(), timeout)
