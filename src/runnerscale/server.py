"""The daemon's HTTP face: webhook intake, ``/metrics``, ``/healthz``, ``/readyz`` and the
status API.

The webhook endpoint answers within milliseconds: it checks the size, the signature
(``X-Hub-Signature-256``, constant time) and the shape, drops repeated deliveries, and hands the
observation to the controller's queue; the work happens in the controller's loops. Nothing here
logs a payload, a signature or a secret. A delivery that holds what GitHub never sends is a 400
with the reason (``runnerscale.github.fields``), so nothing accepted can fail later; a failure
of our own (the store) is a 500 whose traceback goes to the daemon's log, through its redaction.

A daemon that stands by (another on the same state leads, see ``runnerscale.succession``)
takes webhooks into the shared store like the leader and answers health and status (saying who
leads), but refuses to scale by hand (409): only the leader acts.

The endpoints come in groups (:meth:`DaemonHTTP.routes`): the webhook, metrics, health, the
instances' metadata and callbacks (:mod:`runnerscale.instancemeta`, which the instance's own
token opens), and the control API (``/api/v1/...``: status, scaling, draining and resuming a
pool; ``/``: the status page), which authenticates nobody itself: :mod:`runnerscale.control`
serves it on the daemon's unix socket, or behind the bearer token and the browser checks of
:mod:`runnerscale.access`, never open on ``server.listen``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from typing import Any, Literal, TypeAlias

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runnerscale.controller.loops import Controller, ScaleUpRefusedError
from runnerscale.github.budget import Budgets
from runnerscale.github.webhooks import (
    HEADER_DELIVERY,
    HEADER_EVENT,
    HEADER_SIGNATURE_256,
    Verdict,
    WebhookIntake,
    WebhookPayloadError,
    verify_signature,
)
from runnerscale.instancemeta import InstanceRegistry, instance_routes
from runnerscale.logs import untrusted
from runnerscale.metrics import Metrics, WebhookOutcome
from runnerscale.protocols import GitHubError, ProviderError, Store
from runnerscale.statuspage import HEADERS as PAGE_HEADERS
from runnerscale.statuspage import PAGE
from runnerscale.succession import Role

log = logging.getLogger("runnerscale.server")

#: The groups of endpoints, served apart (see :meth:`DaemonHTTP.routes`).
Group: TypeAlias = Literal["webhook", "metrics", "health", "control", "instances"]

#: GitHub caps webhook payloads at 25 MB.
MAX_WEBHOOK_BYTES = 25 * 1024 * 1024


def _message(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


async def _read_limited(request: Request) -> bytes | None:
    """The body, or None when it exceeds the limit (checked while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_WEBHOOK_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_WEBHOOK_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class DaemonHTTP:
    def __init__(
        self,
        controller: Controller,
        store: Store,
        metrics: Metrics,
        webhook_secret: str | None,
        *,
        budget: Budgets | None = None,
        role: Callable[[], Role] | None = None,
        instances: InstanceRegistry | None = None,
    ) -> None:
        self.controller = controller
        self.store = store
        self.metrics = metrics
        self._secret = webhook_secret
        self.budget = budget
        #: Whether this daemon leads or stands by (None: it always leads).
        self.role = role
        #: The per-instance tokens the ``instances`` group serves by (None: it serves none).
        self.instances = instances
        self.intake = WebhookIntake(
            store, controller.covers, controller.clock, fresh=controller.fresh
        )

    def routes(self, group: Group, middleware: Sequence[Middleware] = ()) -> list[Route]:
        """One group of endpoints, each behind ``middleware``: ``webhook`` (GitHub's signed
        deliveries), ``metrics``, ``health`` (``/healthz``, ``/readyz``), ``control`` (status,
        scaling, runner removal) or ``instances`` (garm's metadata and callback routes, which
        the instance's token opens: :mod:`runnerscale.instancemeta`). Where each group is
        served, and behind what, is for :mod:`runnerscale.control` to say."""
        if group == "instances":
            if self.instances is None:
                return []
            return instance_routes(self.instances, self.metrics.instance_request)
        table: dict[str, list[tuple[str, Callable[[Request], Awaitable[Response]], str]]] = {
            "webhook": [("/webhook", self.webhook, "POST")],
            "metrics": [("/metrics", self.prometheus, "GET")],
            "health": [("/healthz", self.health, "GET"), ("/readyz", self.ready, "GET")],
            "control": [
                ("/", self.page, "GET"),
                ("/api/v1/status", self.status, "GET"),
                ("/api/v1/pools/{pool}/scale-up", self.scale_up, "POST"),
                ("/api/v1/pools/{pool}/scale-down", self.scale_down, "POST"),
                ("/api/v1/pools/{pool}/drain", self.drain, "POST"),
                ("/api/v1/pools/{pool}/resume", self.resume, "POST"),
                ("/api/v1/runners/{name}", self.remove_runner, "DELETE"),
            ],
        }
        return [
            Route(path, endpoint, methods=[method], middleware=middleware)
            for path, endpoint, method in table[group]
        ]

    # ------------------------------------------------------------------ webhooks

    async def webhook(self, request: Request) -> Response:
        outcome, response = await self._deliver(request)
        self.metrics.webhook_delivered(outcome)
        return response

    async def _deliver(self, request: Request) -> tuple[WebhookOutcome, Response]:
        """Take one delivery: what became of it (for the metrics) and the answer."""
        if self._secret is None:
            return "disabled", _message(
                503, "webhooks are disabled: set github.webhook_secret in the config to accept them"
            )
        body = await _read_limited(request)
        if body is None:
            return "too_large", _message(413, f"payload larger than {MAX_WEBHOOK_BYTES} bytes")
        if not verify_signature(self._secret, body, request.headers.get(HEADER_SIGNATURE_256)):
            log.warning("webhook: rejected a delivery with a missing or wrong signature")
            return "bad_signature", _message(401, "missing or invalid X-Hub-Signature-256")
        event_name = request.headers.get(HEADER_EVENT, "")
        if event_name == "ping":
            return "ignored_event", JSONResponse({"message": "pong"})
        if event_name != "workflow_job":
            return "ignored_event", Response(status_code=204)
        delivery = request.headers.get(HEADER_DELIVERY)
        try:
            return await self._take(body, delivery)
        except WebhookPayloadError as error:
            log.warning("webhook: refused delivery %s: %s", untrusted(delivery or "-"), error)
            return "invalid", _message(400, str(error))
        except Exception:
            log.exception("webhook: delivery %s failed", untrusted(delivery or "-"))
            return "failed", _message(500, "the delivery could not be taken: see the daemon's log")

    async def _take(self, body: bytes, delivery: str | None) -> tuple[WebhookOutcome, Response]:
        """Read the delivery, have its GUID and job committed together (grouped with others:
        :class:`~runnerscale.controller.deliveries.DeliveryWriter`), then answer: a 202 only
        once both are durable."""
        reading = self.intake.read(body, delivery)
        taken = await self.controller.deliveries.take(reading.delivery)
        intake = self.intake.judge(reading, taken)
        if intake.verdict is Verdict.DUPLICATE:
            return "duplicate", JSONResponse({"message": intake.verdict.value}, status_code=200)
        if intake.verdict is Verdict.NOT_A_TARGET:
            message = {"message": intake.verdict.value}
            return "not_a_target", JSONResponse(message, status_code=202)
        assert intake.observed is not None
        self.controller.observe_webhook(intake.observed, taken)
        log.debug("webhook: job %s %s", intake.event.workflow_job.id, intake.event.action)
        return "accepted", JSONResponse({"message": "accepted"}, status_code=202)

    # ------------------------------------------------------------------ observability

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")

    async def health(self, request: Request) -> Response:
        """200 while the daemon works (``degraded`` when a pool's last creation failed);
        503 with the reasons when a loop stopped or is stuck, or a pool keeps failing."""
        status = self.controller.status
        unhealthy = [pool.name for pool in status.pools if not pool.healthy]
        reasons = self.controller.health()
        body: dict[str, Any] = {
            "status": "unhealthy" if reasons else "degraded" if unhealthy else "ok",
            "unhealthy_pools": unhealthy,
            "reasons": reasons,
        }
        return JSONResponse(body, status_code=503 if reasons else 200)

    async def ready(self, request: Request) -> Response:
        """200 once the daemon has reconciled since it started, 503 before. A standby is
        ready once it knows it stands by: it takes webhooks into the shared store."""
        role = self.role() if self.role is not None else None
        if role is not None and role.decided and not role.leading:
            return JSONResponse({"ready": True, "role": "standby"})
        if self.controller.ready:
            return JSONResponse({"ready": True})
        return JSONResponse(
            {"ready": False, "reason": "the daemon has not reconciled since it started"},
            status_code=503,
        )

    async def page(self, request: Request) -> Response:
        """The status page (:mod:`runnerscale.statuspage`), which reads ``/api/v1/status``."""
        return Response(PAGE, media_type="text/html", headers=PAGE_HEADERS)

    async def status(self, request: Request) -> Response:
        status = self.controller.status
        body: dict[str, Any] = asdict(status)
        if self.budget is not None:
            body["github"] = self.budget.report()
        body["errors"] = dict(self.controller.errors)
        if self.role is not None:
            role = self.role()
            body["controller_id"] = role.controller_id
            body["instance"] = role.instance
            body["leading"] = role.leading
            body["leader"] = None if role.leader is None else asdict(role.leader)
        return JSONResponse(body)

    def _standing_by(self) -> Response | None:
        """The refusal of an act asked of a standby (only the leader acts), or None."""
        role = self.role() if self.role is not None else None
        if role is None or role.leading:
            return None
        leader = role.leader.id if role.leader is not None else "none right now"
        return _message(409, f"this daemon stands by: ask the one that leads ({leader})")

    # ------------------------------------------------------------------ manual scaling

    async def _count(self, request: Request) -> int | Response:
        try:
            payload = await request.json() if await request.body() else {}
        except ValueError:
            return _message(400, 'body must be JSON, e.g. {"count": 2}')
        count = payload.get("count", 1) if isinstance(payload, dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            return _message(422, "count must be a positive integer")
        return count

    def _pool(self, request: Request) -> str | Response:
        name = request.path_params["pool"]
        if name not in self.controller.pools:
            known = ", ".join(self.controller.pools) or "none"
            return _message(404, f"no pool named {name!r} (pools: {known})")
        return str(name)

    def _acted_on(self, request: Request) -> str | Response:
        """The pool a change names, or its refusal: a standby acts on none (409), an unknown
        pool is a 404 naming the pools."""
        return self._standing_by() or self._pool(request)

    async def scale_up(self, request: Request) -> Response:
        pool = self._acted_on(request)
        if isinstance(pool, Response):
            return pool
        count = await self._count(request)
        if isinstance(count, Response):
            return count
        try:
            created = await self.controller.scale_up(pool, count)
        except ScaleUpRefusedError as error:
            return _message(409, str(error))
        except (GitHubError, ProviderError) as error:
            return _message(502, str(error))
        return JSONResponse({"created": created, "requested": count})

    async def scale_down(self, request: Request) -> Response:
        pool = self._acted_on(request)
        if isinstance(pool, Response):
            return pool
        removed = await self.controller.scale_down(pool_name=pool)
        return JSONResponse({"removed": removed})

    # ------------------------------------------------------------------ out of service

    async def drain(self, request: Request) -> Response:
        """Take a pool out of service (:mod:`runnerscale.controller.pooldrain`): what was
        removed now, what is left (busy runners finish their jobs)."""
        pool = self._acted_on(request)
        if isinstance(pool, Response):
            return pool
        report = await self.controller.drain_pool(pool)
        return JSONResponse(asdict(report))

    async def resume(self, request: Request) -> Response:
        """Put a drained pool back in service (``resumed``: false when it was not drained)."""
        pool = self._acted_on(request)
        if isinstance(pool, Response):
            return pool
        return JSONResponse({"pool": pool, "resumed": self.controller.resume_pool(pool)})

    async def remove_runner(self, request: Request) -> Response:
        if refused := self._standing_by():
            return refused
        name = request.path_params["name"]
        runner = self.store.get_runner(name)
        if runner is None or not runner.state.live:
            return _message(404, f"no live runner named {name!r}")
        removed = await self.controller.scale_down(runner_name=name)
        if not removed:
            return _message(409, f"runner {name} is busy (or being removed): it is kept")
        return JSONResponse({"removed": removed})
